/**
 * Command-line and environment options of the Kafka word-count benchmark. A flag wins over
 * its environment variable (BENCH_<NAME>, e.g. BENCH_LINES=2m); numbers take the same forms
 * as the embedded benchmark's (`1_000_000`, `1e6`, `1m`).
 */
import { countArg, envValue, flagArg, parseCount, readArgs } from './options.ts'

export const CONTENDERS = ['raw', 'streams', 'weir'] as const
export type Contender = (typeof CONTENDERS)[number]

export interface KafkaBenchOptions {
  /** Lines in the input topic (8 words each). */
  lines: number
  /** Partitions of the input topic. */
  partitions: number
  /** Contenders to run, in this order. */
  only: Contender[]
  /** Rounds of the Node contenders (raw, weir), alternating; Kafka Streams runs once. */
  rounds: number
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
  --lines N              lines in the input topic, 8 words each (default 1m; env BENCH_LINES)
  --partitions P         partitions of the input topic (default 2)
  --only LIST            contenders to run, comma-separated: raw,streams,weir (default all three)
  --rounds R             rounds of raw and weir, alternating (raw, weir, raw, weir, …; default 3;
                         env BENCH_ROUNDS): rates and ratio are medians over the rounds
  --brokers LIST         bootstrap brokers (default 127.0.0.1:9092; env BENCH_BROKERS or WEIR_KAFKA_BROKERS)
  --streams-cache-bytes B  Kafka Streams' record cache; 0 (default) forwards every count update
                         like the other two, 10485760 is Kafka Streams' own default
  --timeout-s S          per-contender time limit (default 1800)
  --keep                 keep the run's topics and temp dir
`

const NUMERIC = { lines: 'lines', partitions: 'partitions', rounds: 'rounds', 'timeout-s': 'timeoutS' } as const
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
  const args = readArgs(argv, [...Object.keys(NUMERIC), ...Object.keys(STRINGS), 'only', 'brokers', 'streams-cache-bytes'], ['keep'], USAGE)
  const o: KafkaBenchOptions = {
    lines: 1_000_000,
    partitions: 2,
    only: [...CONTENDERS],
    rounds: 3,
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
  for (const [flag, field] of Object.entries(NUMERIC)) o[field] = countArg(args, env, flag) ?? o[field]
  for (const [flag, field] of Object.entries(STRINGS)) o[field] = args.values.get(flag)
  const only = args.values.get('only') ?? envValue(env, 'only')
  if (only !== undefined) o.only = parseOnly(only)
  const brokers = args.values.get('brokers') ?? envValue(env, 'brokers') ?? (env.WEIR_KAFKA_BROKERS || undefined)
  if (brokers !== undefined) o.brokers = parseBrokers(brokers)
  const cacheBytes = args.values.get('streams-cache-bytes')
  if (cacheBytes !== undefined) o.streamsCacheBytes = parseBytes(cacheBytes, '--streams-cache-bytes')
  o.keep = flagArg(args, env, 'keep')
  if (!Number.isInteger(o.rounds) || o.rounds < 1 || o.rounds > 20) throw new Error(`--rounds must be a whole number in 1..20, got ${o.rounds}`)
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
