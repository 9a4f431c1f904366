/**
 * Kafka clients compared on weir's two hot paths, against the real broker: transactional
 * produce (~100-byte records, 1000 per request, 20,000 per transaction) and read_committed
 * fetch + decode of the same records, for kafkajs as it is, kafkajs with weir's record-batch
 * codec (runtime/pipe/kafka/kafkajs-fixes.ts, what the Kafka pipe runs), @platformatic/kafka,
 * and weir's codec on raw Fetch responses (no client: the floor). Each measurement runs in
 * a process of its own; CPU µs per record is that process's user+system time. Then
 * @platformatic/kafka's transactions are checked (aborted invisible, zombie fenced).
 * Prints one JSON line; docs/kafka.md has the figures and the decision.
 *
 * @example
 * npm run bench:kafka-clients
 * node --import tsx benchmarks/kafka-clients.ts --records 500000
 */
import { spawnSync } from 'node:child_process'
import { randomUUID } from 'node:crypto'
import { fileURLToPath } from 'node:url'
import { Kafka, logLevel } from 'kafkajs'
import { startRunInfo } from './lib/run-info.ts'

const WORKER = fileURLToPath(new URL('./lib/kafka-clients-worker.ts', import.meta.url))
const args = process.argv.slice(2)
const flag = (name: string): string | undefined => {
  const i = args.indexOf(`--${name}`)
  return i < 0 ? undefined : args[i + 1]
}
const RECORDS = Number(flag('records') ?? process.env.WEIR_BENCH_CLIENT_RECORDS ?? 300_000)
const BROKER = flag('broker') ?? (process.env.WEIR_KAFKA_BROKERS ?? '127.0.0.1:9092').split(',')[0]!

const info = startRunInfo(['runtime/pipe/kafka', 'benchmarks'])
const run = randomUUID().slice(0, 8)
const topics = { kafkajs: `bench-clients-${run}-kafkajs`, platformatic: `bench-clients-${run}-platformatic`, weir: `bench-clients-${run}-kafkajs-weir`, check: `bench-clients-${run}-check` }
const admin = new Kafka({ clientId: 'bench-clients', brokers: [BROKER], logLevel: logLevel.NOTHING }).admin()
await admin.connect()
await admin.createTopics({ waitForLeaders: true, topics: Object.values(topics).map((topic) => ({ topic, numPartitions: 1 })) })

function measure(variant: string, topic: string): Record<string, unknown> {
  process.stderr.write(`kafka-clients: ${variant} on ${topic}\n`)
  const r = spawnSync(process.execPath, ['--import', 'tsx', WORKER, variant, BROKER, topic, String(RECORDS)], { encoding: 'utf8', timeout: 600_000, maxBuffer: 1 << 20 })
  const line = r.stdout.trim().split('\n').pop() ?? ''
  try {
    return JSON.parse(line) as Record<string, unknown>
  } catch {
    return { variant, failed: true, exit: r.status, stderr: r.stderr.split('\n').filter((l) => !/TimeoutNegativeWarning|Timeout duration|trace-warnings/.test(l)).slice(-6).join('\n') }
  }
}

const results: Record<string, Record<string, unknown>> = {}
// Each producer writes its own topic; every fetch variant of a topic reads the same committed records.
results.produce_kafkajs = measure('produce-kafkajs', topics.kafkajs)
results.produce_kafkajs_weir = measure('produce-kafkajs-weir', topics.weir)
results.produce_platformatic = measure('produce-platformatic', topics.platformatic)
results.fetch_kafkajs = measure('fetch-kafkajs', topics.kafkajs)
results.fetch_kafkajs_weir = measure('fetch-kafkajs-weir', topics.kafkajs)
results.fetch_platformatic = measure('fetch-platformatic', topics.kafkajs)
results.fetch_weir_codec = measure('fetch-weir-codec', topics.kafkajs)
results.check_platformatic = measure('check-platformatic', topics.check)

await admin.deleteTopics({ topics: Object.values(topics) }).catch(() => undefined)
await admin.disconnect()

const rate = (k: string): number => Number(results[k]?.records_per_s ?? Number.NaN)
const ratio = (a: string, b: string): number => Math.round((rate(a) / rate(b)) * 100) / 100
process.stdout.write(
  JSON.stringify({
    bench: 'kafka-clients',
    records: RECORDS,
    record_bytes: 100,
    broker: BROKER,
    ...Object.fromEntries(Object.entries(results).flatMap(([k, v]) => (v.records_per_s === undefined ? [[k, v]] : [[`${k}_records_per_s`, v.records_per_s], [`${k}_cpu_us_per_record`, v.cpu_us_per_record], ...(v.decode_only_us_per_record === undefined ? [] : [[`${k}_decode_only_us_per_record`, v.decode_only_us_per_record]])]))),
    ratio_fetch_kafkajs_weir_vs_kafkajs: ratio('fetch_kafkajs_weir', 'fetch_kafkajs'),
    ratio_fetch_platformatic_vs_kafkajs: ratio('fetch_platformatic', 'fetch_kafkajs'),
    ratio_fetch_weir_codec_vs_kafkajs: ratio('fetch_weir_codec', 'fetch_kafkajs'),
    ratio_produce_platformatic_vs_kafkajs: ratio('produce_platformatic', 'produce_kafkajs'),
    ratio_produce_kafkajs_weir_vs_kafkajs: ratio('produce_kafkajs_weir', 'produce_kafkajs'),
    ...info.finish(),
  }) + '\n',
)
