/**
 * Command-line and environment options of the progress-latency benchmark. A flag wins over
 * its environment variable (BENCH_<NAME>, e.g. BENCH_SECONDS=60); numbers take the same
 * forms as the other benchmarks' (`30`, `1_000`, `1k`).
 */
import { countArg, envValue, flagArg, readArgs } from './options.ts'

export interface ProgressBenchOptions {
  /** The control bus the monitor and the pipelines share. */
  nats: string
  /** Actors publishing progress, in total (half sources, half forward processors). */
  actors: number
  /** `weir run` processes the actors are spread over (one pipeline each). */
  workers: number
  /** Records per second per source partition. */
  rate: number
  /** Checkpoint interval of the pipelines, ms: each actor's watermark advances about this often. */
  epochMs: number
  /** Not measured: the monitor knows every actor, then this long, s. */
  warmupS: number
  /** The measurement window, s. */
  seconds: number
  /** How often `/api/actors` is read during the window, ms. */
  sampleMs: number
  /** A window of the monitor's CPU without API reads, s (0: skip). */
  quietS: number
  /** The raw NATS ceiling's window, s. */
  ceilingS: number
  /** Writes a V8 CPU profile of the monitor here. */
  cpuProfDir: string | undefined
  /** Keeps the pipelines' temp data dirs. */
  keep: boolean
}

export const USAGE = `usage: node --import tsx benchmarks/progress-latency.ts [options]
  --nats URL             the NATS of scripts/services.sh (default nats://127.0.0.1:4222; env WEIR_NATS_URL)
  --actors N             actors publishing progress in total (default 256)
  --workers W            weir run processes they are spread over (default 4)
  --rate R               records/s per source partition (default 5)
  --epoch-ms MS          checkpoint interval of the pipelines (default 1000)
  --warmup S             seconds after every actor is known, not measured (default 10)
  --seconds S            measurement window (default 30)
  --sample-ms MS         how often GET /api/actors is read (default 200)
  --quiet S              seconds of monitor CPU without API reads (default 10; 0 skips)
  --ceiling S            seconds of the raw NATS ceiling (default 15)
  --cpu-prof-dir DIR     write a V8 CPU profile of the monitor to DIR
  --keep                 keep the pipelines' data dirs
`

const NUMERIC = {
  actors: 'actors',
  workers: 'workers',
  rate: 'rate',
  'epoch-ms': 'epochMs',
  warmup: 'warmupS',
  seconds: 'seconds',
  'sample-ms': 'sampleMs',
  ceiling: 'ceilingS',
} as const

export function parseProgressOptions(argv: string[], env: NodeJS.ProcessEnv = process.env): ProgressBenchOptions {
  const args = readArgs(argv, [...Object.keys(NUMERIC), 'nats', 'quiet', 'cpu-prof-dir'], ['keep'], USAGE)
  const o: ProgressBenchOptions = {
    nats: args.values.get('nats') ?? envValue(env, 'nats') ?? env.WEIR_NATS_URL ?? 'nats://127.0.0.1:4222',
    actors: 256,
    workers: 4,
    rate: 5,
    epochMs: 1000,
    warmupS: 10,
    seconds: 30,
    sampleMs: 200,
    quietS: 10,
    ceilingS: 15,
    cpuProfDir: args.values.get('cpu-prof-dir'),
    keep: flagArg(args, env, 'keep'),
  }
  for (const [flag, field] of Object.entries(NUMERIC)) o[field] = countArg(args, env, flag) ?? o[field]
  // 0 is a valid value here (skip the quiet window), which parseCount refuses.
  const quiet = args.values.get('quiet') ?? envValue(env, 'quiet')
  if (quiet !== undefined) {
    if (!/^\d+$/.test(quiet)) throw new Error(`--quiet: expected whole seconds, got '${quiet}'`)
    o.quietS = Number(quiet)
  }
  if (!/^nats:\/\/[^/]+$/.test(o.nats)) throw new Error(`--nats: '${o.nats}' is not a nats://host:port URL`)
  // Each worker runs one pipeline of a source and a forward stage on the same partitions.
  if (o.actors % (2 * o.workers) !== 0) throw new Error(`--actors ${o.actors} must be a multiple of 2 × --workers (${2 * o.workers}): each worker runs a source and a forward stage of equal partitions`)
  return o
}
