/**
 * Opens the pipe a run asks for: `embedded` (the default, a RocksDB log in the data dir) or
 * `kafka://host:port[,host:port][?tls=true&sasl=…&user=…]` with optional options from a
 * JSON file. The one place that knows the adapters; the rest of the runtime sees the port.
 *
 * @example
 * const pipe = await openPipe('kafka://127.0.0.1:9092', { dataDir: './.weir/wordcount' })
 */
import type { Logger } from 'pino'
import { ConfigError } from './errors.ts'
import { EmbeddedPipe, type EmbeddedPipeOptions } from './pipe/embedded/embedded-pipe.ts'
import { KafkaPipe, parseKafkaUrl, readKafkaConfigFile } from './pipe/kafka/kafka-pipe.ts'
import { resolveKafkaOptions } from './pipe/kafka/options.ts'
import type { ConnectRetry, Pipe } from './pipe/pipe.ts'

export interface OpenPipeOptions {
  /** Where the embedded pipe lives. */
  dataDir: string
  /** A JSON file with Kafka client options (TLS files, SASL, timeouts); the URL's brokers win. */
  configFile?: string
  embedded?: EmbeddedPipeOptions
  log?: Logger
  /** Called for each failed attempt to reach the pipe while opening it (default: a warning in `log` per attempt). */
  onConnectRetry?: (retry: ConnectRetry) => void
}

/** Checks a pipe URL without connecting (for refusing bad input before anything starts). */
export function checkPipeUrl(url: string): void {
  if (url === 'embedded') return
  if (url.startsWith('kafka://')) {
    resolveKafkaOptions(parseKafkaUrl(url))
    return
  }
  throw new ConfigError('pipe', `'${url}' is not a pipe: use 'embedded' or kafka://host:port`)
}

export async function openPipe(url: string | undefined, options: OpenPipeOptions): Promise<Pipe> {
  if (url === undefined || url === 'embedded') {
    if (options.configFile !== undefined) throw new ConfigError('pipe-config', 'only the kafka pipe takes a config file')
    return EmbeddedPipe.open(options.dataDir, options.embedded)
  }
  checkPipeUrl(url)
  const fromFile = options.configFile === undefined ? {} : readKafkaConfigFile(options.configFile)
  return KafkaPipe.connect({ ...fromFile, ...parseKafkaUrl(url) }, options.log, { onRetry: options.onConnectRetry })
}
