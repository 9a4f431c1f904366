/**
 * Kafka word-count benchmark: the same word count over the same input topic on the same broker,
 * by a hand-written kafkajs transactional loop (the ceiling), Kafka Streams and weir on the
 * Kafka pipe, one after another, each checked against the expected counts. The raw loop and
 * weir run `--rounds` times, alternating, and are compared by their medians: the raw loop's
 * rate moves 2x from one run to the next on a 2-core machine, so one pair says little. Prints
 * exactly one JSON line on stdout; progress goes to stderr. See benchmarks/README.md (current
 * results, method notes).
 *
 * @example
 * npm run bench:kafka
 * node --import tsx benchmarks/kafka-throughput.ts --lines 2m --only raw,streams
 */
import { spawnSync } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
// Before kafkajs: its read_committed filter leaks aborted transactions (see the file).
import '../runtime/pipe/kafka/kafkajs-fixes.ts'
import { Kafka, logLevel } from 'kafkajs'
import { killChildren, startChild } from './lib/children.ts'
import { deleteRunArtifacts } from './lib/cluster-cleanup.ts'
import { createTopics, expectedCounts, produceLines, WORDS_PER_LINE } from './lib/kafka-input.ts'
import { kafkaChildArgs, parseKafkaOptions, type Contender, type KafkaBenchOptions } from './lib/kafka-options.ts'
import type { ContenderRun } from './lib/kafka-raw-wordcount.ts'
import { tuneHeap } from '../runtime/heap.ts'
import { checkOutput } from './lib/kafka-readback.ts'
import { buildStreamsPeer, killStreamsPeers, runStreamsPeer } from './lib/kafka-streams-peer.ts'
import { startRunInfo } from './lib/run-info.ts'
import { median, progress, round, wallMs } from './lib/stats.ts'

const SCRIPT = fileURLToPath(import.meta.url)
/** Partitions of the word-keyed output topic (and of weir's keyBy). */
const OUTPUT_PARTITIONS = 4
const COMMIT_INTERVAL_MS = 1000

type Result = Record<string, unknown>

/** One contender's figures, whichever way it ran. */
interface Measured {
  /** First input record processed → the first commit covering the last input record, s. */
  seconds: number
  /** Launch → first input record, s. */
  startupS: number
  /** Launch → the contender's process exited (startup, processing, shutdown), s. */
  processS: number
  linesIn: number
  commits: number
  peakRssMiB: number
  /** CPU seconds of the contender's process from the first record to the end (null: not measured). */
  cpuS: number | null
  extra: Result
}

interface RunNames {
  runId: string
  inputTopic: string
  root: string
}

/** Contender names as they appear in the JSON. */
const LABEL: Record<Contender, string> = { raw: 'raw', streams: 'kafka_streams', weir: 'weir' }

/** The output topic of contender `c` in round `roundNo` (1-based). */
function outputTopic(names: RunNames, c: Contender, roundNo: number): string {
  return `bench.counts.${c}.${names.runId}${roundNo === 1 ? '' : `.r${roundNo}`}`
}

function fromChildRun(r: ContenderRun, launchedAt: number, exitedAt: number, extra: Result = {}): Measured {
  return {
    seconds: (r.endAt - r.firstRecordAt) / 1000,
    startupS: (r.firstRecordAt - launchedAt) / 1000,
    processS: (exitedAt - launchedAt) / 1000,
    linesIn: r.linesIn,
    commits: r.commits,
    peakRssMiB: r.peakRssMiB,
    cpuS: r.cpuS,
    extra,
  }
}

/** Runs the raw loop or weir in a child process (own heap, own RSS, nothing shared with the harness). */
async function runInChild(o: KafkaBenchOptions, c: 'raw' | 'weir', names: RunNames, roundNo: number): Promise<Measured> {
  const dataDir = join(names.root, `${c}-${roundNo}`)
  mkdirSync(dataDir, { recursive: true })
  const launchedAt = wallMs()
  // A round of its own: consumer group, transactional ids and (weir) pipeline name, all under the run's id.
  const runId = roundNo === 1 ? names.runId : `${names.runId}-r${roundNo}`
  const child = startChild(SCRIPT, kafkaChildArgs(o, c, { runId, inputTopic: names.inputTopic, outputTopic: outputTopic(names, c, roundNo), dataDir }), { pipe: 'kafka' })
  const m = await child.waitFor((msg) => msg.event === 'done', (o.timeoutS + 120) * 1000)
  await child.exited
  const r = m.run as ContenderRun & Result
  const extra: Result = {}
  if (c === 'weir') Object.assign(extra, { weir_lag_at_end: r.lag, weir_stop_ms: round(Number(r.stopMs)) })
  return fromChildRun(r, launchedAt, wallMs(), extra)
}

async function runStreams(o: KafkaBenchOptions, names: RunNames): Promise<Measured> {
  const stateDir = join(names.root, 'streams')
  mkdirSync(stateDir, { recursive: true })
  const launchedAt = wallMs()
  const r = await runStreamsPeer({
    brokers: o.brokers,
    inputTopic: names.inputTopic,
    outputTopic: outputTopic(names, 'streams', 1),
    applicationId: `bench-wc-streams-${names.runId}`,
    stateDir,
    lines: o.lines,
    words: o.lines * WORDS_PER_LINE,
    cacheBytes: o.streamsCacheBytes,
    timeoutS: o.timeoutS,
  })
  return {
    seconds: r.seconds,
    startupS: r.first_record_after_start_s,
    processS: (wallMs() - launchedAt) / 1000,
    linesIn: r.records,
    commits: r.commits,
    peakRssMiB: r.peakRssMiB,
    cpuS: null,
    extra: { kafka_streams_running_after_s: r.startup_s, kafka_streams_last_word_to_commit_s: r.last_word_to_commit_s },
  }
}

/** `java -version`'s first line (it writes to stderr). */
function javaVersion(): string | null {
  const r = spawnSync('java', ['-version'], { encoding: 'utf8' })
  return r.stderr?.split('\n')[0]?.trim() || null
}

async function main(o: KafkaBenchOptions): Promise<number> {
  const started = performance.now()
  const runId = `${Date.now().toString(36)}${randomBytes(2).toString('hex')}`
  const names: RunNames = { runId, inputTopic: `bench.lines.${runId}`, root: mkdtempSync(join(tmpdir(), 'weir-bench-kafka-')) }
  const kafka = new Kafka({ clientId: `weir-bench-${runId}`, brokers: o.brokers, logLevel: logLevel.WARN })
  const admin = kafka.admin()
  let cleaned = false
  const cleanup = async (): Promise<void> => {
    if (cleaned) return
    cleaned = true
    killChildren()
    killStreamsPeers()
    if (o.keep) {
      progress(`kept topics of run ${runId} (input ${names.inputTopic}) and ${names.root}`)
    } else {
      await deleteRunArtifacts(admin, runId).catch((err: unknown) => progress(`could not delete the run's topics: ${String(err)}`))
      rmSync(names.root, { recursive: true, force: true })
    }
    await admin.disconnect()
  }
  for (const sig of ['SIGINT', 'SIGTERM'] as const) {
    process.on(sig, () => {
      void cleanup().finally(() => process.exit(130))
    })
  }
  const info = startRunInfo(['runtime', 'coordinator'], started)
  try {
    if (o.only.includes('streams')) buildStreamsPeer()
    // raw, weir, raw, weir, …; Kafka Streams once, after the first round.
    const schedule: Array<{ c: Contender; roundNo: number }> = []
    for (let roundNo = 1; roundNo <= o.rounds; roundNo++) {
      for (const c of o.only) if (c !== 'streams' || roundNo === 1) schedule.push({ c, roundNo })
    }
    await admin.connect()
    const words = o.lines * WORDS_PER_LINE
    await createTopics(admin, [
      { topic: names.inputTopic, numPartitions: o.partitions },
      ...schedule.map(({ c, roundNo }) => ({ topic: outputTopic(names, c, roundNo), numPartitions: OUTPUT_PARTITIONS })),
    ])
    progress(`run ${runId}: producing ${o.lines.toLocaleString('en')} lines (${words.toLocaleString('en')} words) to ${names.inputTopic} (${o.partitions} partitions; not timed)`)
    const produceStarted = performance.now()
    await produceLines(kafka, names.inputTopic, o.lines, o.partitions)
    const produceS = (performance.now() - produceStarted) / 1000
    progress(`produced in ${produceS.toFixed(1)} s`)
    const expected = expectedCounts(o.lines)

    const result: Result = {
      bench: 'kafka-throughput',
      date: new Date().toISOString().slice(0, 10),
      lines: o.lines,
      words,
      partitions: o.partitions,
      output_partitions: OUTPUT_PARTITIONS,
      commit_interval_ms: COMMIT_INTERVAL_MS,
      contenders: o.only,
      rounds: o.rounds,
    }
    const runs = new Map<Contender, Measured[]>()
    const correct: Record<string, boolean> = {}
    const wrong: Record<string, string[]> = {}
    const outputRecords: Record<string, number> = {}
    const failures: Record<string, string> = {}
    for (const { c, roundNo } of schedule) {
      const label = o.rounds === 1 || c === 'streams' ? c : `${c} (round ${roundNo} of ${o.rounds})`
      progress(`${label}: counting`)
      let m: Measured
      try {
        m = c === 'streams' ? await runStreams(o, names) : await runInChild(o, c, names, roundNo)
      } catch (err) {
        // A failed contender is reported; the others still run.
        failures[LABEL[c]] = String((err as Error)?.message ?? err).slice(0, 2000)
        correct[LABEL[c]] = false
        progress(`${label}: FAILED: ${String((err as Error)?.stack ?? err)}`)
        continue
      }
      runs.set(c, [...(runs.get(c) ?? []), m])
      progress(`${label}: ${m.linesIn.toLocaleString('en')} lines in ${m.seconds.toFixed(1)} s = ${Math.round(m.linesIn / m.seconds).toLocaleString('en')} lines/s (startup ${m.startupS.toFixed(1)} s, ${m.commits} commits); reading its output back`)
      // Kafka Streams with a record cache forwards fewer updates than one per word.
      const everyUpdate = c !== 'streams' || o.streamsCacheBytes === 0
      const check = await checkOutput(kafka, admin, outputTopic(names, c, roundNo), expected, everyUpdate ? words : undefined)
      const ok = check.ok && m.linesIn === o.lines
      // Every round of a contender must be exact.
      correct[LABEL[c]] = (correct[LABEL[c]] ?? true) && ok
      outputRecords[LABEL[c]] = check.records
      if (m.linesIn !== o.lines) check.wrong.unshift(`${m.linesIn} lines processed, expected ${o.lines}`)
      if (check.wrong.length > 0) wrong[o.rounds === 1 ? LABEL[c] : `${LABEL[c]}_round_${roundNo}`] = check.wrong
      progress(`${label}: ${check.records.toLocaleString('en')} output records, ${check.counts.size} words: ${ok ? 'correct' : `WRONG: ${check.wrong.join('; ')}`}`)
    }

    const rateOf = (m: Measured): number => m.linesIn / m.seconds
    /** The contender's run with the median rate (of an even count, the slower middle one), whose other figures are reported. */
    const medianRun = (c: Contender): Measured | undefined => {
      const ms = [...(runs.get(c) ?? [])].sort((a, b) => rateOf(a) - rateOf(b))
      return ms[(ms.length - 1) >> 1]
    }
    const rate = (c: Contender): number | null => {
      const ms = runs.get(c)
      return ms === undefined ? null : Math.round(median(ms.map(rateOf)))
    }
    const ratio = (a: Contender, b: Contender): number | null => {
      const x = rate(a)
      const y = rate(b)
      return x === null || y === null ? null : Math.round((x / y) * 1000) / 1000
    }
    Object.assign(result, {
      weir_rps: rate('weir'),
      raw_rps: rate('raw'),
      kafka_streams_rps: rate('streams'),
      ratio: ratio('weir', 'raw'),
      ratio_vs_kafka_streams: ratio('weir', 'streams'),
      kafka_streams_vs_raw: ratio('streams', 'raw'),
    })
    const rawRuns = runs.get('raw') ?? []
    const weirRuns = runs.get('weir') ?? []
    if (o.rounds > 1) {
      Object.assign(result, {
        raw_rps_rounds: rawRuns.map((m) => Math.round(rateOf(m))),
        weir_rps_rounds: weirRuns.map((m) => Math.round(rateOf(m))),
        // Each weir round against the raw round just before it.
        ratio_rounds: weirRuns.length === rawRuns.length ? weirRuns.map((w, i) => round(rateOf(w) / rateOf(rawRuns[i]!))) : null,
      })
    }
    // CPU per line of the Node process, which the broker's pace moves less than the rate.
    const cpuPerLine = (ms: Measured[]): number | null => (ms.length === 0 || ms.some((m) => m.cpuS === null) ? null : median(ms.map((m) => (m.cpuS! / m.linesIn) * 1e6)))
    const rawCpu = cpuPerLine(rawRuns)
    const weirCpu = cpuPerLine(weirRuns)
    Object.assign(result, {
      raw_cpu_us_per_line: rawCpu === null ? null : round(rawCpu),
      weir_cpu_us_per_line: weirCpu === null ? null : round(weirCpu),
      ratio_cpu: rawCpu === null || weirCpu === null ? null : round(rawCpu / weirCpu),
    })
    for (const c of ['weir', 'raw', 'streams'] as const) {
      const m = medianRun(c)
      const l = LABEL[c]
      result[`${l}_words_per_s`] = m === undefined ? null : Math.round((m.linesIn * WORDS_PER_LINE) / m.seconds)
      result[`${l}_s`] = m === undefined ? null : round(m.seconds)
      result[`${l}_startup_s`] = m === undefined ? null : round(m.startupS)
      result[`${l}_process_s`] = m === undefined ? null : round(m.processS)
      result[`${l}_commits`] = m === undefined ? null : m.commits
      result[`${l}_peak_rss_mib`] = m === undefined ? null : Math.round(m.peakRssMiB)
      if (m !== undefined) Object.assign(result, m.extra)
    }
    const allCorrect = Object.values(correct).every((v) => v)
    Object.assign(result, {
      correct,
      output_records: outputRecords,
      ...(Object.keys(wrong).length > 0 ? { wrong } : {}),
      ...(Object.keys(failures).length > 0 ? { failed: failures } : {}),
      kafka_streams_cache_bytes: o.streamsCacheBytes,
      produce_s: round(produceS),
      ...info.finish(),
      java: o.only.includes('streams') ? javaVersion() : null,
      kafkajs: '2.2.4',
      kafka_streams: o.only.includes('streams') ? '3.9.1' : null,
      run_id: runId,
    })
    process.stdout.write(JSON.stringify(result) + '\n')
    return allCorrect ? 0 : 1
  } finally {
    await cleanup()
  }
}

/** A contender's child process: runs it and reports its figures to the harness. */
async function runChildPhase(o: KafkaBenchOptions): Promise<void> {
  const { runId, inputTopic, outputTopic: output, dataDir } = o
  if (runId === undefined || inputTopic === undefined || output === undefined || dataDir === undefined) throw new Error('--phase needs --run-id, --input-topic, --output-topic and --data-dir')
  // Both Node contenders run with the V8 heap settings `weir run --pipe kafka://…` uses (runtime/heap.ts).
  tuneHeap('kafka')
  let run: ContenderRun
  if (o.phase === 'raw') {
    const { runRawWordCount } = await import('./lib/kafka-raw-wordcount.ts')
    run = await runRawWordCount({ brokers: o.brokers, inputTopic, outputTopic: output, groupId: `bench-wc-raw-${runId}`, lines: o.lines, commitIntervalMs: COMMIT_INTERVAL_MS, timeoutMs: o.timeoutS * 1000 })
  } else if (o.phase === 'weir') {
    // Loaded only when weir runs, so the other contenders run without weir's Kafka API.
    const { runWeirWordCount } = await import('./lib/kafka-weir-wordcount.ts')
    run = await runWeirWordCount({ brokers: o.brokers, pipeline: `bench-wc-${runId}`, inputTopic, inputPartitions: o.partitions, outputTopic: output, dataDir, lines: o.lines, epochIntervalMs: COMMIT_INTERVAL_MS, timeoutMs: o.timeoutS * 1000 })
  } else {
    throw new Error(`unknown phase ${o.phase}`)
  }
  await new Promise<void>((resolve) => process.send!({ event: 'done', run }, undefined, {}, () => resolve()))
}

const options = parseKafkaOptions(process.argv.slice(2))
if (options.phase !== undefined) {
  try {
    await runChildPhase(options)
    process.exit(0)
  } catch (err) {
    const error = String((err as Error)?.stack ?? err)
    if (process.send !== undefined) await new Promise<void>((resolve) => process.send!({ event: 'failed', error }, undefined, {}, () => resolve()))
    else process.stderr.write(error + '\n')
    process.exit(1)
  }
} else {
  process.exitCode = await main(options)
}
