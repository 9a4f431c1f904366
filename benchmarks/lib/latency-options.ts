/**
 * Command-line and environment options of the latency benchmark (benchmarks/latency.ts). A
 * flag wins over its environment variable (BENCH_<NAME>, e.g. BENCH_MEASURE_S=60).
 */
import { countArg, envValue, flagArg, readArgs } from './options.ts'
import { readClusterEndpoints } from './scaling-options.ts'

export type LatencyPipe = 'embedded' | 'kafka'

export interface LatencyBenchOptions {
  /** Which pipes to run the ticker on, in this order. */
  pipes: LatencyPipe[]
  /** Ticks per second per source partition (the ticker's `rate` param; 2 partitions). */
  rate: number
  /** Checkpoint interval passed as --epoch-ms; undefined = the CLI default (what users get). */
  epochMs: number | undefined
  /** Kafka: number of `weir worker` processes. */
  workers: number
  /** Seconds after the first signal before latencies count (startup, placement, first epochs). */
  warmupS: number
  /** Seconds of signals measured per pipe. */
  measureS: number
  /** Round trips of the raw Kafka transaction floor (commit → visible to a read_committed consumer). */
  floorRounds: number
  brokers: string[]
  bus: string
  keep: boolean
}

export const USAGE = `usage: node --import tsx benchmarks/latency.ts [options]
  --pipes LIST           embedded,kafka (default both, in this order)
  --rate N               ticks per second per source partition, 2 partitions (default 1000)
  --epoch-ms MS          checkpoint interval given to weir (default: none, i.e. the CLI's default)
  --workers N            Kafka: weir worker processes (default 2)
  --warmup-s S           seconds after the first signal that are not counted (default 10)
  --measure-s S          seconds of signals measured per pipe (default 30)
  --floor-rounds N       raw Kafka transaction round trips for the per-hop floor (default 30)
  --brokers LIST         Kafka bootstrap brokers (default 127.0.0.1:9092; env BENCH_BROKERS or WEIR_KAFKA_BROKERS)
  --bus URL              NATS control bus (default nats://127.0.0.1:4222; env BENCH_BUS or WEIR_NATS_URL)
  --keep                 keep the runs' topics, data dirs and signal files
`

const NUMERIC = { rate: 'rate', workers: 'workers', 'warmup-s': 'warmupS', 'measure-s': 'measureS', 'floor-rounds': 'floorRounds' } as const

export function parseLatencyOptions(argv: string[], env: NodeJS.ProcessEnv = process.env): LatencyBenchOptions {
  const args = readArgs(argv, [...Object.keys(NUMERIC), 'epoch-ms', 'pipes', 'brokers', 'bus'], ['keep'], USAGE)
  const o: LatencyBenchOptions = {
    pipes: ['embedded', 'kafka'],
    rate: 1000,
    epochMs: countArg(args, env, 'epoch-ms'),
    workers: 2,
    warmupS: 10,
    measureS: 30,
    floorRounds: 30,
    brokers: ['127.0.0.1:9092'],
    bus: 'nats://127.0.0.1:4222',
    keep: false,
  }
  for (const [flag, field] of Object.entries(NUMERIC)) o[field] = countArg(args, env, flag) ?? o[field]
  const pipes = args.values.get('pipes') ?? envValue(env, 'pipes')
  if (pipes !== undefined) {
    const list = pipes.split(',').map((p) => p.trim()).filter((p) => p !== '')
    for (const p of list) if (p !== 'embedded' && p !== 'kafka') throw new Error(`--pipes: '${p}' is neither embedded nor kafka\n${USAGE}`)
    o.pipes = list as LatencyPipe[]
  }
  readClusterEndpoints(args, env, o)
  o.keep = flagArg(args, env, 'keep')
  return o
}
