/**
 * Command-line and environment options of the embedded benchmarks. A flag wins over its
 * environment variable (BENCH_<NAME>, e.g. BENCH_KEYS=1000000); numbers accept `_`
 * separators, exponents and k/m suffixes (`10_000_000`, `1e7`, `10m`, `100k`). The command-line
 * reading and the BENCH_* lookups here serve the Kafka benchmark's options too.
 */
import { parseArgs } from 'node:util'

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
  /** The restarted process loads the TypeScript sources through tsx instead of compiled JavaScript. */
  restartFromSources: boolean
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
  --restart-from-sources the restarted process runs the TypeScript through tsx (default: compiled JavaScript, as an installed weir runs)
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

/** The options found on a command line: `--name value` / `--name=value` by name, and the flags given. */
export interface Args {
  values: Map<string, string>
  flags: Set<string>
}

/**
 * Reads a benchmark's command line with node:util's parseArgs: `--name value` and `--name=value`
 * for the options in `valueNames` (the last one given wins), bare `--name` for those in `flagNames`.
 * `--help` / `-h` prints `usage` on stderr and exits 0. An unknown option or a stray argument throws
 * with the usage, as does an option missing its value or a flag given one.
 */
export function readArgs(argv: string[], valueNames: readonly string[], flagNames: readonly string[], usage: string): Args {
  const options: Record<string, { type: 'string' | 'boolean'; short?: string }> = { help: { type: 'boolean', short: 'h' } }
  for (const n of valueNames) options[n] = { type: 'string' }
  for (const n of flagNames) options[n] = { type: 'boolean' }
  // Not strict, so the refusals below keep this file's wording; parseArgs still splits the
  // arguments (it takes the next argument as a value even when it starts with '-').
  const { tokens } = parseArgs({ args: argv, options, strict: false, allowPositionals: true, tokens: true })
  const args: Args = { values: new Map(), flags: new Set() }
  for (const t of tokens) {
    if (t.kind === 'positional') throw new Error(`unexpected argument '${t.value}'\n${usage}`)
    if (t.kind === 'option-terminator') throw new Error(`unexpected argument '--'\n${usage}`)
    if (t.name === 'help') {
      process.stderr.write(usage)
      process.exit(0)
    }
    const type = Object.hasOwn(options, t.name) ? options[t.name]!.type : undefined
    if (type === undefined) throw new Error(`unknown option ${t.rawName}\n${usage}`)
    if (type === 'string') {
      if (t.value === undefined) throw new Error(`${t.rawName} needs a value`)
      args.values.set(t.name, t.value)
    } else {
      if (t.value !== undefined) throw new Error(`${t.rawName} takes no value, got '${t.rawName}=${t.value}'`)
      args.flags.add(t.name)
    }
  }
  return args
}

/** BENCH_<FLAG> (`epoch-ms` → BENCH_EPOCH_MS); an empty variable counts as unset. */
export function envValue(env: NodeJS.ProcessEnv, flag: string): string | undefined {
  const v = env['BENCH_' + flag.toUpperCase().replace(/-/g, '_')]
  return v === '' ? undefined : v
}

/** A count from `--flag`, else from BENCH_<FLAG>; undefined when neither is set. */
export function countArg(args: Args, env: NodeJS.ProcessEnv, flag: string): number | undefined {
  const given = args.values.get(flag)
  if (given !== undefined) return parseCount(given, '--' + flag)
  const v = envValue(env, flag)
  return v === undefined ? undefined : parseCount(v, flag)
}

/** `--flag` was given, or BENCH_<FLAG> is set to anything but 0 or false. */
export function flagArg(args: Args, env: NodeJS.ProcessEnv, flag: string): boolean {
  const v = envValue(env, flag)
  return args.flags.has(flag) || (v !== undefined && v !== '0' && v !== 'false')
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
  'restart-from-sources': 'restartFromSources',
  keep: 'keep',
} as const

/** No environment variables: these are paths and the internal phase of a child process. */
const STRINGS = { 'cpu-prof-dir': 'cpuProfDir', phase: 'phase', 'data-dir': 'dataDir' } as const

export function parseOptions(argv: string[], env: NodeJS.ProcessEnv = process.env): BenchOptions {
  const args = readArgs(argv, [...Object.keys(NUMERIC), ...Object.keys(STRINGS)], Object.keys(FLAGS), USAGE)
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
    restartFromSources: false,
    restartKeys: 1_000_000,
    restartRate: 100_000,
    cpuProfDir: undefined,
    keep: false,
    phase: undefined,
    dataDir: undefined,
  }
  for (const [flag, field] of Object.entries(NUMERIC)) o[field] = countArg(args, env, flag) ?? o[field]
  for (const [flag, field] of Object.entries(FLAGS)) o[field] = flagArg(args, env, flag)
  for (const [flag, field] of Object.entries(STRINGS)) o[field] = args.values.get(flag)
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
