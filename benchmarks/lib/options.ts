/**
 * Command-line and environment options of the embedded benchmarks. A flag wins over its
 * environment variable (BENCH_<NAME>, e.g. BENCH_KEYS=1000000); numbers accept `_`
 * separators, exponents and k/m suffixes (`10_000_000`, `1e7`, `10m`, `100k`).
 */

export interface BenchOptions {
  records: number
  keys: number
  /** Count actors (partitions of the keyed topic). */
  partitions: number
  /** Source actors of the pre-load run. */
  sourcePartitions: number
  /** Checkpoint interval of the measured stage, ms. */
  epochMs: number
  /** Checkpoint interval of the pre-load run (sets the size of the input batches), ms. */
  preloadEpochMs: number
  /** The count stage emits the new count per record (default: it emits nothing). */
  emit: boolean
  /** Skip the ceiling measurements. */
  noCeilings: boolean
  /** Pre-load and measure only the ceilings (no count stage). */
  ceilingsOnly: boolean
  /** Only the restart-after-SIGKILL measurement. */
  restartOnly: boolean
  /** Throughput and restart in one run (one JSON line with both). */
  withRestart: boolean
  restartKeys: number
  /** Input rate of the restart pipeline's source, records/s. */
  restartRate: number
  /** Writes a V8 CPU profile of the measured (count) process here. */
  cpuProfDir: string | undefined
  /** Keeps the temp data dir (prints its path on stderr). */
  keep: boolean
  /** Internal: the phase a child process runs. */
  phase: string | undefined
  /** Internal: the data dir a child process works in. */
  dataDir: string | undefined
}

export const USAGE = `usage: node --import tsx benchmarks/embedded-throughput.ts [options]
  --records N            records in the input topic (default 10_000_000; env BENCH_RECORDS)
  --keys K               distinct words (default 100_000; env BENCH_KEYS)
  --partitions P         count actors = partitions of the keyed topic (default 1)
  --source-partitions S  source actors of the pre-load run (default 1)
  --epoch-ms MS          checkpoint interval of the measured run (default 1000)
  --preload-epoch-ms MS  checkpoint interval of the pre-load run (default: --epoch-ms)
  --emit                 the count stage emits the new count for every record
  --no-ceilings          skip the Map / RocksDB / msgpack ceilings
  --ceilings-only        pre-load, then measure only the ceilings
  --restart              only measure restart after SIGKILL (prints its own JSON line)
  --with-restart         throughput and restart in one run
  --restart-keys K       state size of the restart measurement (default 1_000_000)
  --restart-rate R       source rate of the restart pipeline, records/s (default 100_000)
  --cpu-prof-dir DIR     write a CPU profile of the measured count process to DIR
  --keep                 keep the temp data dir
`

export function parseCount(raw: string, name: string): number {
  const m = /^([0-9][0-9_]*(?:\.[0-9]+)?(?:e[0-9]+)?)([km]?)$/i.exec(raw.trim())
  if (m === null) throw new Error(`${name}: expected a number like 1000000, 1_000_000, 1e6 or 1m, got '${raw}'`)
  const base = Number(m[1]!.replace(/_/g, ''))
  const mult = m[2]!.toLowerCase() === 'k' ? 1e3 : m[2]!.toLowerCase() === 'm' ? 1e6 : 1
  const v = Math.round(base * mult)
  if (!Number.isFinite(v) || v < 1) throw new Error(`${name}: must be a positive number, got '${raw}'`)
  return v
}

const NUMERIC = {
  records: 'records',
  keys: 'keys',
  partitions: 'partitions',
  'source-partitions': 'sourcePartitions',
  'epoch-ms': 'epochMs',
  'preload-epoch-ms': 'preloadEpochMs',
  'restart-keys': 'restartKeys',
  'restart-rate': 'restartRate',
} as const

const FLAGS = {
  emit: 'emit',
  'no-ceilings': 'noCeilings',
  'ceilings-only': 'ceilingsOnly',
  restart: 'restartOnly',
  'with-restart': 'withRestart',
  keep: 'keep',
} as const

const STRINGS = { 'cpu-prof-dir': 'cpuProfDir', phase: 'phase', 'data-dir': 'dataDir' } as const

export function parseOptions(argv: string[], env: NodeJS.ProcessEnv = process.env): BenchOptions {
  const o: BenchOptions = {
    records: 10_000_000,
    keys: 100_000,
    partitions: 1,
    sourcePartitions: 1,
    epochMs: 1000,
    preloadEpochMs: NaN,
    emit: false,
    noCeilings: false,
    ceilingsOnly: false,
    restartOnly: false,
    withRestart: false,
    restartKeys: 1_000_000,
    restartRate: 100_000,
    cpuProfDir: undefined,
    keep: false,
    phase: undefined,
    dataDir: undefined,
  }
  for (const [flag, field] of Object.entries(NUMERIC)) {
    const v = env['BENCH_' + flag.toUpperCase().replace(/-/g, '_')]
    if (v !== undefined && v !== '') o[field] = parseCount(v, flag)
  }
  for (const [flag, field] of Object.entries(FLAGS)) {
    const v = env['BENCH_' + flag.toUpperCase().replace(/-/g, '_')]
    if (v !== undefined && v !== '' && v !== '0' && v !== 'false') o[field] = true
  }
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!
    if (arg === '--help' || arg === '-h') {
      process.stderr.write(USAGE)
      process.exit(0)
    }
    if (!arg.startsWith('--')) throw new Error(`unexpected argument '${arg}'\n${USAGE}`)
    const eq = arg.indexOf('=')
    const name = arg.slice(2, eq < 0 ? undefined : eq)
    const inline = eq < 0 ? undefined : arg.slice(eq + 1)
    const value = (): string => {
      const v = inline ?? argv[++i]
      if (v === undefined) throw new Error(`--${name} needs a value`)
      return v
    }
    if (name in NUMERIC) o[NUMERIC[name as keyof typeof NUMERIC]] = parseCount(value(), '--' + name)
    else if (name in FLAGS) o[FLAGS[name as keyof typeof FLAGS]] = true
    else if (name in STRINGS) o[STRINGS[name as keyof typeof STRINGS]] = value()
    else throw new Error(`unknown option --${name}\n${USAGE}`)
  }
  if (Number.isNaN(o.preloadEpochMs)) o.preloadEpochMs = o.epochMs
  return o
}

/** The options a child process needs, as arguments. */
export function childArgs(o: BenchOptions, phase: string, dataDir: string, extra: string[] = []): string[] {
  const args = [
    '--phase', phase, '--data-dir', dataDir,
    '--records', String(o.records), '--keys', String(o.keys),
    '--partitions', String(o.partitions), '--source-partitions', String(o.sourcePartitions),
    '--epoch-ms', String(o.epochMs), '--preload-epoch-ms', String(o.preloadEpochMs),
    '--restart-keys', String(o.restartKeys), '--restart-rate', String(o.restartRate),
  ]
  if (o.emit) args.push('--emit')
  return [...args, ...extra]
}
