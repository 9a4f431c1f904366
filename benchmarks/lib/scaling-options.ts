/**
 * Command-line and environment options of the scaling benchmark (benchmarks/scaling.ts). A
 * flag wins over its environment variable (BENCH_<NAME>, e.g. BENCH_LINES=200k); numbers take
 * the same forms as the other benchmarks' (`100_000`, `1e5`, `100k`).
 */
import { countArg, envValue, flagArg, readArgs, type Args } from './options.ts'

export interface ScalingBenchOptions {
  /** Lines in the input topic (8 words each). */
  lines: number
  /** Partitions of the input topic (split actors). */
  partitions: number
  /** Partitions of the word-keyed topic and the output topic (count actors). */
  countPartitions: number
  /** Checkpoint epoch interval of the coordinator and the workers, ms. */
  epochMs: number
  brokers: string[]
  /** NATS control bus, nats://host:port. */
  bus: string
  /** Gives up on a run that has not produced every output record after this long, s. */
  timeoutS: number
  /** Keeps the run's topics and temp dir (their names go to stderr). */
  keep: boolean
}

export const USAGE = `usage: node --import tsx benchmarks/scaling.ts [options]
  --lines N              lines in the input topic, 8 words each (default 100_000; env BENCH_LINES)
  --partitions P         partitions of the input topic (default 2)
  --count-partitions C   partitions of the keyed topic and the output topic (default 4)
  --epoch-ms MS          checkpoint epoch interval (default 1000)
  --brokers LIST         Kafka bootstrap brokers (default 127.0.0.1:9092; env BENCH_BROKERS or WEIR_KAFKA_BROKERS)
  --bus URL              NATS control bus (default nats://127.0.0.1:4222; env BENCH_BUS or WEIR_NATS_URL)
  --timeout-s S          time limit per run (default 600)
  --keep                 keep the run's topics and temp dir
`

const NUMERIC = { lines: 'lines', partitions: 'partitions', 'count-partitions': 'countPartitions', 'epoch-ms': 'epochMs', 'timeout-s': 'timeoutS' } as const

/** `host:port[,host:port…]`, optionally as a `kafka://` URL (query ignored). */
function parseBrokers(raw: string): string[] {
  return raw.replace(/^kafka:\/\//, '').replace(/\?.*$/, '').split(',').map((b) => b.trim()).filter((b) => b !== '')
}

export function parseScalingOptions(argv: string[], env: NodeJS.ProcessEnv = process.env): ScalingBenchOptions {
  const args = readArgs(argv, [...Object.keys(NUMERIC), 'brokers', 'bus'], ['keep'], USAGE)
  const o: ScalingBenchOptions = {
    lines: 100_000,
    partitions: 2,
    countPartitions: 4,
    epochMs: 1000,
    brokers: ['127.0.0.1:9092'],
    bus: 'nats://127.0.0.1:4222',
    timeoutS: 600,
    keep: false,
  }
  for (const [flag, field] of Object.entries(NUMERIC)) o[field] = countArg(args, env, flag) ?? o[field]
  readClusterEndpoints(args, env, o)
  o.keep = flagArg(args, env, 'keep')
  return o
}

/**
 * `--brokers` and `--bus` of a cluster benchmark into `o` (which holds the defaults): the
 * flag, else BENCH_BROKERS / BENCH_BUS, else WEIR_KAFKA_BROKERS / WEIR_NATS_URL. Throws
 * when the bus is not a nats://host:port URL.
 */
export function readClusterEndpoints(args: Args, env: NodeJS.ProcessEnv, o: { brokers: string[]; bus: string }): void {
  const brokers = args.values.get('brokers') ?? envValue(env, 'brokers') ?? (env.WEIR_KAFKA_BROKERS || undefined)
  if (brokers !== undefined) o.brokers = parseBrokers(brokers)
  const bus = args.values.get('bus') ?? envValue(env, 'bus') ?? (env.WEIR_NATS_URL || undefined)
  if (bus !== undefined) o.bus = bus
  if (!/^nats:\/\/[^\s/:]+:\d{1,5}$/.test(o.bus)) throw new Error(`--bus: '${o.bus}' is not a nats://host:port URL`)
}
