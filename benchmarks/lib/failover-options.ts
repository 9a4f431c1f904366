/**
 * Command-line and environment options of the failover benchmark (benchmarks/failover.ts).
 * A flag wins over its environment variable (BENCH_<NAME>, e.g. BENCH_KEYS=4m); numbers take
 * the same forms as the other benchmarks' (`2_000_000`, `2e6`, `2m`).
 */
import { DEFAULT_WORKER_PROBE_MS } from '../../coordinator/coordinator.ts'
import { DEFAULT_EPOCH_INTERVAL_MS } from '../../coordinator/epochs.ts'
import { countArg, envValue, flagArg, parseCount, readArgs } from './options.ts'
import { readClusterEndpoints } from './scaling-options.ts'

export interface FailoverBenchOptions {
  /** Distinct keys pre-loaded (one record each), split evenly over the partitions. */
  keys: number
  /** Partitions of the input and output topics: the count actors. */
  partitions: number
  /** The coordinator's `--worker-timeout-ms`: a worker silent this long is declared dead. */
  workerTimeoutMs: number
  /** The coordinator's `--worker-probe-ms` (0: off, detection waits out the timeout). */
  workerProbeMs: number
  /** The workers' `--heartbeat-ms`. */
  heartbeatMs: number
  /** Checkpoint epoch interval of the coordinator and the workers, ms. */
  epochMs: number
  /** Records per second of new input across the kill. */
  trickleRate: number
  /** Trickle time after the state is built and before the kill, s (with a standby the kill also waits for it to catch up). */
  warmS: number
  /** Trickle time after the moved actors' first output, before the workers stop, s. */
  afterS: number
  brokers: string[]
  /** NATS control bus, nats://host:port. */
  bus: string
  /** Gives up on a run (pre-load, failover, read-back) after this long, s. */
  timeoutS: number
  /** Keeps the run's topics, KV bucket and temp dir (their names go to stderr). */
  keep: boolean
}

export const USAGE = `usage: node --import tsx benchmarks/failover.ts [options]
  --keys K               distinct keys pre-loaded, split evenly over the partitions (default 2_000_000; env BENCH_KEYS)
  --partitions P         partitions of the input and output topics = count actors (default 2)
  --worker-timeout-ms MS the coordinator declares a silent worker dead after this (default 10000, weir's)
  --worker-probe-ms MS   the coordinator probes each worker's liveness this often; 0: off (default 250, weir's)
  --heartbeat-ms MS      the workers' heartbeat interval (default 1000, weir's)
  --epoch-ms MS          checkpoint epoch interval (default ${DEFAULT_EPOCH_INTERVAL_MS}, weir's)
  --trickle-rate R       new input records/s while the worker is killed (default 200)
  --warm-s S             trickle before the kill once the state is built (default 5; with a standby, then until it has caught up)
  --after-s S            trickle after the moved actors' first output (default 3)
  --brokers LIST         Kafka bootstrap brokers (default 127.0.0.1:9092; env BENCH_BROKERS or WEIR_KAFKA_BROKERS)
  --bus URL              NATS control bus (default nats://127.0.0.1:4222; env BENCH_BUS or WEIR_NATS_URL)
  --timeout-s S          time limit of each phase of a run (default 300)
  --keep                 keep the run's topics, KV bucket and temp dir
`

const NUMERIC = {
  keys: 'keys',
  partitions: 'partitions',
  'worker-timeout-ms': 'workerTimeoutMs',
  'heartbeat-ms': 'heartbeatMs',
  'epoch-ms': 'epochMs',
  'trickle-rate': 'trickleRate',
  'warm-s': 'warmS',
  'after-s': 'afterS',
  'timeout-s': 'timeoutS',
} as const

/** Enough keys that the hot keys and the spread of the trickle never overlap. */
const MIN_KEYS = 1000

export function parseFailoverOptions(argv: string[], env: NodeJS.ProcessEnv = process.env): FailoverBenchOptions {
  const args = readArgs(argv, [...Object.keys(NUMERIC), 'worker-probe-ms', 'brokers', 'bus'], ['keep'], USAGE)
  const o: FailoverBenchOptions = {
    keys: 2_000_000,
    partitions: 2,
    // weir's defaults: the goal is failover at the default worker timeout.
    workerTimeoutMs: 10_000,
    workerProbeMs: DEFAULT_WORKER_PROBE_MS,
    heartbeatMs: 1000,
    epochMs: DEFAULT_EPOCH_INTERVAL_MS,
    trickleRate: 200,
    warmS: 5,
    afterS: 3,
    brokers: ['127.0.0.1:9092'],
    bus: 'nats://127.0.0.1:4222',
    timeoutS: 300,
    keep: false,
  }
  for (const [flag, field] of Object.entries(NUMERIC)) o[field] = countArg(args, env, flag) ?? o[field]
  // A count, or 0: probing off.
  const probeMs = args.values.get('worker-probe-ms') ?? envValue(env, 'worker-probe-ms')
  if (probeMs !== undefined) o.workerProbeMs = probeMs.trim() === '0' ? 0 : parseCount(probeMs, '--worker-probe-ms')
  readClusterEndpoints(args, env, o)
  o.keep = flagArg(args, env, 'keep')
  if (o.keys < MIN_KEYS) throw new Error(`--keys: at least ${MIN_KEYS}, got ${o.keys}`)
  if (o.partitions < 2) throw new Error('--partitions: at least 2, so that each of the two workers holds a count actor')
  if (o.workerTimeoutMs < 100) throw new Error('--worker-timeout-ms: at least 100 (the coordinator refuses less)')
  if (o.heartbeatMs < 50 || o.heartbeatMs >= o.workerTimeoutMs) throw new Error('--heartbeat-ms: at least 50 and below --worker-timeout-ms')
  return o
}
