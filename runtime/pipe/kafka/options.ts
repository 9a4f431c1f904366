/**
 * Kafka pipe configuration: brokers, TLS, SASL and client tuning, from a `kafka://` URL
 * and/or an options object (a JSON file given to `--pipe-config`). Validated at start;
 * an invalid field is refused with its name.
 *
 * @example
 * parseKafkaUrl('kafka://10.0.0.1:9092,10.0.0.2:9092?tls=true&sasl=scram-sha-512&user=weir')
 * // → { brokers: ['10.0.0.1:9092', '10.0.0.2:9092'], ssl: true, sasl: { mechanism: 'scram-sha-512', username: 'weir', password: <WEIR_KAFKA_PASSWORD> } }
 */
import { readFileSync } from 'node:fs'
import { z } from 'zod'
import { ConfigError } from '../../errors.ts'

const brokerSchema = z.string().regex(/^[^\s:/]+:\d{1,5}$/, 'a broker is host:port')

const saslSchema = z.discriminatedUnion('mechanism', [
  z.object({ mechanism: z.literal('plain'), username: z.string().min(1), password: z.string() }).strict(),
  z.object({ mechanism: z.literal('scram-sha-256'), username: z.string().min(1), password: z.string() }).strict(),
  z.object({ mechanism: z.literal('scram-sha-512'), username: z.string().min(1), password: z.string() }).strict(),
])

const tlsSchema = z.union([
  z.boolean(),
  z
    .object({
      /** PEM files: CA bundle, client certificate and key (mutual TLS). */
      caFile: z.string().optional(),
      certFile: z.string().optional(),
      keyFile: z.string().optional(),
      servername: z.string().optional(),
      rejectUnauthorized: z.boolean().optional(),
    })
    .strict(),
])

export const kafkaOptionsSchema = z
  .object({
    brokers: z.array(brokerSchema).min(1),
    clientId: z.string().min(1).default('weir'),
    ssl: tlsSchema.optional(),
    sasl: saslSchema.optional(),
    connectionTimeoutMs: z.number().int().min(100).max(120_000).default(3000),
    requestTimeoutMs: z.number().int().min(1000).max(300_000).default(30_000),
    /**
     * Retries of one request on retriable errors, with exponential backoff (from
     * `initialRetryTimeMs`, doubling) up to `maxRetryTimeMs`. Opening the pipe retries too:
     * with the defaults, brokers that do not answer are given up on after about 41 s
     * (each attempt reported as it fails); lower these for a faster verdict.
     */
    retries: z.number().int().min(0).max(1000).default(12),
    initialRetryTimeMs: z.number().int().min(10).max(60_000).default(200),
    maxRetryTimeMs: z.number().int().min(100).max(600_000).default(5000),
    /** Kafka `transaction.timeout.ms` of the actors' producers: an abandoned transaction is aborted after it. */
    transactionTimeoutMs: z.number().int().min(1000).max(900_000).default(60_000),
    /** Replication factor of topics weir creates; -1 takes the broker's `default.replication.factor`. */
    replicationFactor: z.number().int().min(-1).max(32).default(-1),
    /**
     * Bytes fetched per partition per request (the Java consumer's default, 1 MiB). kafkajs
     * decodes a fetch in one go on the event loop: a 4 MiB fetch of small records blocked a
     * worker catching up a backlog for ~1.2 s, long enough to miss heartbeats (and read 1M
     * changelog records no faster than 512 KiB fetches did).
     */
    maxBytesPerPartition: z.number().int().min(1024).max(64 << 20).default(1 << 20),
    /** Records a reader buffers before it stops fetching (back-pressure). */
    readerBufferRecords: z.number().int().min(100).max(10_000_000).default(50_000),
    /** Upper bound of one produce request's record batch per partition (broker `message.max.bytes` is 1 MiB by default). */
    maxBatchBytes: z.number().int().min(1024).max(64 << 20).default(900 * 1024),
    /**
     * Upper bound of records per partition in one produce request (and `maxBatchBytes`
     * bounds it too). 1000 was chosen when kafkajs grouped a request's messages in O(n²);
     * since kafkajs-fixes.ts fix 5 larger requests are cheaper per record: bench:kafka's weir
     * did +7 % at 4000–16000 (benchmarks/HISTORY.md).
     */
    maxBatchRecords: z.number().int().min(1).max(1_000_000).default(8000),
    /** Records an actor's producer may hold unsent before the actor waits (back-pressure). */
    producerHighWaterRecords: z.number().int().min(1).max(10_000_000).default(20_000),
    /** Session timeout of the readers' single-member consumer groups. */
    sessionTimeoutMs: z.number().int().min(6000).max(300_000).default(30_000),
  })
  .strict()

export type KafkaPipeOptions = z.input<typeof kafkaOptionsSchema>
export type ResolvedKafkaOptions = z.output<typeof kafkaOptionsSchema>

/** Validates options; the error names the field (`pipe.kafka.<field>`). */
export function resolveKafkaOptions(options: KafkaPipeOptions): ResolvedKafkaOptions {
  const parsed = kafkaOptionsSchema.safeParse(options)
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!
    throw new ConfigError(`pipe.kafka.${issue.path.join('.') || 'options'}`, issue.message)
  }
  return parsed.data
}

/**
 * Parses `kafka://host:port[,host:port...][?tls=true&sasl=plain|scram-sha-256|scram-sha-512&user=U&clientId=C]`.
 * The SASL password never goes in the URL: it comes from WEIR_KAFKA_PASSWORD (or the config file).
 */
export function parseKafkaUrl(url: string, env: NodeJS.ProcessEnv = process.env): KafkaPipeOptions {
  const m = /^kafka:\/\/([^?]+)(?:\?(.*))?$/.exec(url)
  if (m === null) throw new ConfigError('pipe', `'${url}' is not a kafka:// URL (kafka://host:port[,host:port])`)
  const brokers = m[1]!.split(',').map((b) => b.trim()).filter((b) => b !== '')
  const params = new URLSearchParams(m[2] ?? '')
  const options: KafkaPipeOptions = { brokers }
  for (const [key, value] of params) {
    switch (key) {
      case 'tls':
      case 'ssl':
        if (value !== 'true' && value !== 'false') throw new ConfigError(`pipe.${key}`, `must be true or false, got '${value}'`)
        options.ssl = value === 'true'
        break
      case 'sasl': {
        const user = params.get('user')
        if (user === null) throw new ConfigError('pipe.user', 'sasl needs user=NAME (the password comes from WEIR_KAFKA_PASSWORD)')
        const password = env.WEIR_KAFKA_PASSWORD
        if (password === undefined) throw new ConfigError('pipe.sasl', 'set WEIR_KAFKA_PASSWORD to the SASL password')
        options.sasl = { mechanism: value as 'plain', username: user, password }
        break
      }
      case 'user':
        break
      case 'clientId':
        options.clientId = value
        break
      case 'password':
        throw new ConfigError('pipe.password', 'do not put the password in the URL; set WEIR_KAFKA_PASSWORD')
      default:
        throw new ConfigError(`pipe.${key}`, `unknown parameter (known: tls, sasl, user, clientId)`)
    }
  }
  return options
}

/** Reads a JSON options file (`--pipe-config`); URL fields given on the command line win. */
export function readKafkaConfigFile(path: string): Partial<KafkaPipeOptions> {
  let text: string
  try {
    text = readFileSync(path, 'utf8')
  } catch (err) {
    throw new ConfigError('pipe-config', `cannot read ${path}: ${(err as Error).message}`)
  }
  try {
    return JSON.parse(text) as Partial<KafkaPipeOptions>
  } catch (err) {
    throw new ConfigError('pipe-config', `${path} is not valid JSON: ${(err as Error).message}`)
  }
}

/** TLS options for kafkajs: files read once at start. */
export function tlsFor(ssl: ResolvedKafkaOptions['ssl']): boolean | { ca?: Buffer; cert?: Buffer; key?: Buffer; servername?: string; rejectUnauthorized?: boolean } | undefined {
  if (ssl === undefined || typeof ssl === 'boolean') return ssl
  const read = (field: string, file?: string): Buffer | undefined => {
    if (file === undefined) return undefined
    try {
      return readFileSync(file)
    } catch (err) {
      throw new ConfigError(`pipe.kafka.ssl.${field}`, `cannot read ${file}: ${(err as Error).message}`)
    }
  }
  return { ca: read('caFile', ssl.caFile), cert: read('certFile', ssl.certFile), key: read('keyFile', ssl.keyFile), servername: ssl.servername, rejectUnauthorized: ssl.rejectUnauthorized }
}
