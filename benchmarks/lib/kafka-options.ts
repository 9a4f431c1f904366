/**
 * Command-line and environment options of the Kafka word-count benchmark. A flag wins over
 * its environment variable (BENCH_<NAME>, e.g. BENCH_LINES=2m); numbers take the same forms
 * as the embedded benchmark's (`1_000_000`, `1e6`, `1m`).
 */
import { parseCount } from './options.ts'

export const CONTENDERS = ['raw', 'streams', 'weir'] as const
export type Contender = (typeof CONTENDERS)[number]

export interface KafkaBenchOptions {
  /** Lines in the input topic (8 words each). */
  lines: number
  /** Partitions of the input topic. */
  partitions: number
  /** Contenders to run, in this order. */
  only: Contender[]
  brokers: string[]
  /** Kafka Streams' record cache (`statestore.cache.max.bytes`); 0 forwards every count update. */
  streamsCacheBytes: number
  /** Gives up on a contender that has not finished after this long, s. */
  timeoutS: number
  /** Keeps the run's topics and temp dir (their names go to stderr). */
  keep: boolean
  /** Internal: the phase a child process runs ('raw' or 'weir'). */
  phase: string | undefined
  /** Internal: the run id, input and output topics and data dir of a child phase. */
  runId: string | undefined
  inputTopic: string | undefined
  outputTopic: string | undefined
  dataDir: string | undefined
}

export const USAGE = `usage: node --import tsx benchmarks/kafka-throughput.ts [options]
  --lines N              lines in the input topic, 8 words each (default 200_000; env BENCH_LINES)
  --partitions P         partitions of the input topic (default 2)
  --only LIST            contenders to run, comma-separated: raw,streams,weir (default all three)
  --brokers LIST         bootstrap brokers (default 127.0.0.1:9092; env BENCH_BROKERS or WEIR_KAFKA_BROKERS)
  --streams-cache-bytes B  Kafka Streams' record cache; 0 (default) forwards every count update
                         like the other two, 10485760 is Kafka Streams' own default
  --timeout-s S          per-contender time limit (default 1800)
  --keep                 keep the run's topics and temp dir
`

const NUMERIC = { lines: 'lines', partitions: 'partitions', 'timeout-s': 'timeoutS' } as const
const STRINGS = {
  phase: 'phase',
  'run-id': 'runId',
  'input-topic': 'inputTopic',
  'output-topic': 'outputTopic',
  'data-dir': 'dataDir',
} as const

function parseOnly(raw: string): Contender[] {
  const names = raw.split(',').map((s) => s.trim()).filter((s) => s !== '')
  for (const n of names) {
    if (!(CONTENDERS as readonly string[]).includes(n)) throw new Error(`--only: unknown contender '${n}' (expected some of ${CONTENDERS.join(',')})`)
  }
  if (names.length === 0) throw new Error('--only: name at least one contender')
  return CONTENDERS.filter((c) => names.includes(c))
}

/** `host:port[,host:port…]`, optionally as a `kafka://` URL (query ignored). */
function parseBrokers(raw: string): string[] {
  return raw.replace(/^kafka:\/\//, '').replace(/\?.*$/, '').split(',').map((b) => b.trim()).filter((b) => b !== '')
}

function parseBytes(raw: string, name: string): number {
  if (raw.trim() === '0') return 0
  return parseCount(raw, name)
}

export function parseKafkaOptions(argv: string[], env: NodeJS.ProcessEnv = process.env): KafkaBenchOptions {
  const o: KafkaBenchOptions = {
    lines: 200_000,
    partitions: 2,
    only: [...CONTENDERS],
    brokers: ['127.0.0.1:9092'],
    streamsCacheBytes: 0,
    timeoutS: 1800,
    keep: false,
    phase: undefined,
    runId: undefined,
    inputTopic: undefined,
    outputTopic: undefined,
    dataDir: undefined,
  }
  for (const [flag, field] of Object.entries(NUMERIC)) {
    const v = env['BENCH_' + flag.toUpperCase().replace(/-/g, '_')]
    if (v !== undefined && v !== '') o[field] = parseCount(v, flag)
  }
  const brokersEnv = env.BENCH_BROKERS || env.WEIR_KAFKA_BROKERS
  if (brokersEnv) o.brokers = parseBrokers(brokersEnv)
  if (env.BENCH_ONLY) o.only = parseOnly(env.BENCH_ONLY)
  if (env.BENCH_KEEP && env.BENCH_KEEP !== '0' && env.BENCH_KEEP !== 'false') o.keep = true
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
    else if (name in STRINGS) o[STRINGS[name as keyof typeof STRINGS]] = value()
    else if (name === 'only') o.only = parseOnly(value())
    else if (name === 'brokers') o.brokers = parseBrokers(value())
    else if (name === 'streams-cache-bytes') o.streamsCacheBytes = parseBytes(value(), '--' + name)
    else if (name === 'keep') o.keep = true
    else throw new Error(`unknown option --${name}\n${USAGE}`)
  }
  return o
}

/** The arguments of a child phase. */
export function kafkaChildArgs(o: KafkaBenchOptions, phase: Contender, run: { runId: string; inputTopic: string; outputTopic: string; dataDir: string }): string[] {
  return [
    '--phase', phase, '--run-id', run.runId,
    '--input-topic', run.inputTopic, '--output-topic', run.outputTopic, '--data-dir', run.dataDir,
    '--lines', String(o.lines), '--partitions', String(o.partitions), '--brokers', o.brokers.join(','),
    '--timeout-s', String(o.timeoutS),
  ]
}
