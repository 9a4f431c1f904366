/**
 * Scaling benchmark: the word count on Kafka as a weir cluster (`weir coordinator` and
 * `weir worker` processes on Kafka + NATS), first with 1 worker, then with 2, over the same
 * pre-loaded input topic. Each run has its own pipeline name (so its own topics, groups and
 * transactional ids) and output topic; its output is read back and checked. Prints exactly
 * one JSON line on stdout with both rates and their ratio; progress goes to stderr. See
 * benchmarks/README.md (current results, method notes).
 *
 * @example
 * npm run bench:scaling
 * node --import tsx benchmarks/scaling.ts --lines 200k
 */
import { randomBytes } from 'node:crypto'
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs'
import { cpus, tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
// Before kafkajs: its read_committed filter leaks aborted transactions (see the file).
import '../runtime/pipe/kafka/kafkajs-fixes.ts'
import { Kafka, logLevel, type Admin } from 'kafkajs'
import { pino } from 'pino'
import { assignmentMessage } from '../runtime/control/messages.ts'
import { NatsBus } from '../runtime/control/nats/nats-bus.ts'
import { subjects } from '../runtime/control/bus.ts'
import { createTopics, expectedCounts, produceLines, WORDS_PER_LINE } from './lib/kafka-input.ts'
import { checkOutput } from './lib/kafka-readback.ts'
import { deleteLeaseBucket, deleteRunArtifacts } from './lib/cluster-cleanup.ts'
import { coresByGroup, cpuByProcess, killWeirProcesses, machineCpuSeconds, OutputTail, startWeirProcess, stopWeirProcess, waitForOutput, type Sample, type WeirProcess } from './lib/scaling-cluster.ts'
import { parseScalingOptions, type ScalingBenchOptions } from './lib/scaling-options.ts'
import { startRunInfo } from './lib/run-info.ts'
import { progress, round, wallMs } from './lib/stats.ts'

const SCRIPT = fileURLToPath(import.meta.url)
const PIPELINE_FILE = join(dirname(SCRIPT), 'lib/scaling-wordcount.ts')
/** The measured window starts once this fraction of the output has landed (startup and the first epoch excluded). */
const MARK_FRACTION = 0.05
/** Coordinator's listening time before its first placement: both workers of a run join within it. */
const SETTLE_MS = 3000

type Result = Record<string, unknown>

interface RunFigures {
  workers: number
  /** Input lines per second over the measured window. */
  rate: number
  wordsPerS: number
  /** Input lines ÷ (first placement → every output record committed), startup included. */
  wallRate: number
  /** First placement → first output record seen, s. */
  startupS: number
  measuredS: number
  /** Machine CPU busy over the measured window, in cores (of `cpus`). */
  machineCores: number
  /** CPU over the measured window, in cores: each worker (w1, w2), coordinator, harness, kafka_broker, nats, other. */
  cpuCores: Record<string, number>
  generations: number
  /** Actors per worker in the first placement. */
  placement: Record<string, number>
  stopS: number
  correct: boolean
  outputRecords: number
  wrong: string[]
}

/** One run: `n` workers of a fresh pipeline over the input topic, until every count is committed. */
async function runWith(n: number, o: ScalingBenchOptions, ctx: { kafka: Kafka; admin: Admin; bus: NatsBus; coordinatorPid: number | undefined; runId: string; cluster: string; inputTopic: string; root: string; expected: Map<string, number> }): Promise<RunFigures> {
  const pipeline = `bench-scale-${ctx.runId}-w${n}`
  const outputTopic = `bench.counts.${ctx.runId}.w${n}`
  const words = o.lines * WORDS_PER_LINE
  await createTopics(ctx.admin, [{ topic: outputTopic, numPartitions: o.countPartitions }])

  const workers: WeirProcess[] = []
  // Every process's CPU at both ends of the measured window: the workers, the coordinator, this harness (its output tail), the broker, NATS, anything else.
  const named = new Map<number, string>([[process.pid, 'harness'], ...(ctx.coordinatorPid === undefined ? [] : [[ctx.coordinatorPid, 'coordinator'] as [number, string]])])
  const sample = (records: number): Sample => {
    for (const w of workers) if (w.child.pid !== undefined) named.set(w.child.pid, w.name.slice(w.name.indexOf('/') + 1))
    return { at: wallMs(), records, machine: machineCpuSeconds(), processes: cpuByProcess(named) }
  }
  const tail = new OutputTail(ctx.kafka, outputTopic, words, Math.ceil(words * MARK_FRACTION), sample)
  await tail.start()

  // The coordinator's placements of this pipeline, as the workers see them.
  const generations: { at: number; actors: Record<string, string> }[] = []
  const sub = ctx.bus.subscribe(subjects.assignment(ctx.cluster, pipeline), (raw) => {
    const m = assignmentMessage.safeParse(raw)
    if (m.success && generations.at(-1)?.actors !== undefined && JSON.stringify(generations.at(-1)!.actors) === JSON.stringify(m.data.actors)) return
    if (m.success) generations.push({ at: wallMs(), actors: m.data.actors })
  })

  const params = { name: pipeline, input: ctx.inputTopic, 'input-partitions': String(o.partitions), 'count-partitions': String(o.countPartitions), output: outputTopic }
  progress(`${n} worker${n > 1 ? 's' : ''}: pipeline ${pipeline}, output ${outputTopic}`)
  for (let i = 1; i <= n; i++) {
    const id = `w${i}`
    const stateDir = join(ctx.root, pipeline, id)
    mkdirSync(stateDir, { recursive: true })
    workers.push(startWeirProcess(`${n}w/${id}`, ['worker', PIPELINE_FILE, '--pipe', `kafka://${o.brokers.join(',')}`, '--bus', o.bus, '--cluster', ctx.cluster, '--id', id, '--state-dir', stateDir,
      '--epoch-ms', String(o.epochMs), ...Object.entries(params).flatMap(([k, v]) => ['--param', `${k}=${v}`])]))
  }
  try {
    const early = Promise.race(workers.map((w) => w.exited.then((r) => Promise.reject(new Error(`${w.name} exited (code ${r.code}, signal ${r.signal}) before the output was complete: ${w.stderrTail().slice(-2000)}`)))))
    const timeout = new Promise<never>((_, reject) => setTimeout(() => reject(new Error(`${n} workers: ${tail.records} of ${words} output records after ${o.timeoutS} s`)), o.timeoutS * 1000).unref())
    const end = await Promise.race([tail.done, early, timeout])
    const mark = tail.mark!
    const measuredS = (end.at - mark.at) / 1000
    const first = generations[0]
    const placement: Record<string, number> = {}
    for (const w of Object.values(first?.actors ?? {})) placement[w] = (placement[w] ?? 0) + 1
    const startedAt = first?.at ?? NaN
    const figures = {
      workers: n,
      rate: Math.round((words - mark.records) / WORDS_PER_LINE / measuredS),
      wordsPerS: Math.round((words - mark.records) / measuredS),
      wallRate: Math.round(o.lines / ((end.at - startedAt) / 1000)),
      startupS: round((tail.firstAt - startedAt) / 1000),
      measuredS: round(measuredS),
      machineCores: round((end.machine.busy - mark.machine.busy) / measuredS),
      cpuCores: coresByGroup(mark.processes, end.processes, measuredS),
      generations: generations.length,
      placement,
    }
    progress(`${n} worker${n > 1 ? 's' : ''}: ${figures.rate.toLocaleString('en')} lines/s (${figures.wordsPerS.toLocaleString('en')} words/s) over ${figures.measuredS} s; startup ${figures.startupS} s; machine ${figures.machineCores} cores busy (${Object.entries(figures.cpuCores).map(([g, c]) => `${g} ${c}`).join(', ')}); placement ${JSON.stringify(placement)} in ${generations.length} generation(s)`)

    // Stop: every worker leaves at once, so the coordinator has nobody to move actors to and they stop where they are.
    const stopStarted = performance.now()
    const stops = await Promise.all(workers.map((w) => stopWeirProcess(w, 30_000)))
    const stopS = round((performance.now() - stopStarted) / 1000)
    const badStop = stops.map((s, i) => ({ s, w: workers[i]! })).filter(({ s }) => s.code !== 0 || s.killed)
    for (const { s, w } of badStop) progress(`${w.name}: stopped with code ${s.code}, signal ${s.signal}${s.killed ? ' (SIGKILLed after 30 s)' : ''}: ${w.stderrTail().slice(-1500)}`)
    await tail.stop(ctx.admin)

    progress(`${n} worker${n > 1 ? 's' : ''}: stopped in ${stopS} s; reading ${outputTopic} back`)
    const check = await checkOutput(ctx.kafka, ctx.admin, outputTopic, ctx.expected, words)
    if (badStop.length > 0) check.wrong.push(`worker(s) ${badStop.map(({ w }) => w.name).join(', ')} did not stop cleanly`)
    const correct = check.ok && badStop.length === 0
    progress(`${n} worker${n > 1 ? 's' : ''}: ${check.records.toLocaleString('en')} output records, ${check.counts.size} words: ${correct ? 'correct' : `WRONG: ${check.wrong.join('; ')}`}`)
    return { ...figures, stopS, correct, outputRecords: check.records, wrong: check.wrong }
  } finally {
    sub.unsubscribe()
    for (const w of workers) w.child.kill('SIGKILL')
    await tail.stop(ctx.admin)
  }
}

async function main(o: ScalingBenchOptions): Promise<number> {
  const started = performance.now()
  const runId = `${Date.now().toString(36)}${randomBytes(2).toString('hex')}`
  const cluster = `bench-scale-${runId}`
  const inputTopic = `bench.lines.${runId}`
  const root = mkdtempSync(join(tmpdir(), 'weir-bench-scaling-'))
  const kafka = new Kafka({ clientId: `weir-bench-${runId}`, brokers: o.brokers, logLevel: logLevel.WARN })
  const admin = kafka.admin()
  const bus = await NatsBus.connect({ servers: [o.bus], name: `weir-bench-scaling-${runId}`, log: pino({ level: 'warn' }, pino.destination(2)) })
  let coordinator: WeirProcess | undefined
  let cleaned = false
  const cleanup = async (): Promise<void> => {
    if (cleaned) return
    cleaned = true
    if (coordinator !== undefined) await stopWeirProcess(coordinator, 5000).catch(() => undefined)
    killWeirProcesses()
    await bus.close().catch(() => undefined)
    if (o.keep) {
      progress(`kept topics of run ${runId} (input ${inputTopic}), cluster ${cluster} and ${root}`)
    } else {
      await deleteRunArtifacts(admin, runId).catch((err: unknown) => progress(`could not delete the run's topics: ${String(err)}`))
      await deleteLeaseBucket(o.bus, cluster).catch((err: unknown) => progress(`could not delete KV bucket weir-${cluster}: ${String(err)}`))
      rmSync(root, { recursive: true, force: true })
    }
    await admin.disconnect()
  }
  for (const sig of ['SIGINT', 'SIGTERM'] as const) {
    process.on(sig, () => {
      void cleanup().finally(() => process.exit(130))
    })
  }
  const info = startRunInfo(['runtime', 'coordinator', 'cli'], started)
  try {
    await admin.connect()
    const words = o.lines * WORDS_PER_LINE
    await createTopics(admin, [{ topic: inputTopic, numPartitions: o.partitions }])
    progress(`run ${runId}: producing ${o.lines.toLocaleString('en')} lines (${words.toLocaleString('en')} words) to ${inputTopic} (${o.partitions} partitions; not timed)`)
    const produceStarted = performance.now()
    await produceLines(kafka, inputTopic, o.lines, o.partitions)
    const produceS = (performance.now() - produceStarted) / 1000
    progress(`produced in ${produceS.toFixed(1)} s`)
    const expected = expectedCounts(o.lines)

    coordinator = startWeirProcess('coordinator', ['coordinator', '--bus', o.bus, '--cluster', cluster, '--epoch-ms', String(o.epochMs), '--settle-ms', String(SETTLE_MS)])
    await waitForOutput(coordinator, /leading cluster/, 30_000)

    const ctx = { kafka, admin, bus, coordinatorPid: coordinator.child.pid, runId, cluster, inputTopic, root, expected }
    const runs: RunFigures[] = []
    for (const n of [1, 2]) runs.push(await runWith(n, o, ctx))
    const [one, two] = runs as [RunFigures, RunFigures]
    const allCorrect = runs.every((r) => r.correct)
    const result: Result = {
      bench: 'scaling',
      date: new Date().toISOString().slice(0, 10),
      records: o.lines,
      words,
      partitions: o.partitions,
      count_partitions: o.countPartitions,
      epoch_ms: o.epochMs,
      rate_1_worker: one.rate,
      rate_2_workers: two.rate,
      ratio: round(two.rate / one.rate),
      words_per_s_1_worker: one.wordsPerS,
      words_per_s_2_workers: two.wordsPerS,
      wall_rate_1_worker: one.wallRate,
      wall_rate_2_workers: two.wallRate,
      wall_ratio: round(two.wallRate / one.wallRate),
      measured_s: [one.measuredS, two.measuredS],
      startup_s: [one.startupS, two.startupS],
      stop_s: [one.stopS, two.stopS],
      machine_cores_busy: [one.machineCores, two.machineCores],
      cpu_cores: [one.cpuCores, two.cpuCores],
      placement: [one.placement, two.placement],
      generations: [one.generations, two.generations],
      correct: { '1_worker': one.correct, '2_workers': two.correct },
      output_records: [one.outputRecords, two.outputRecords],
      ...(allCorrect ? {} : { wrong: { '1_worker': one.wrong, '2_workers': two.wrong } }),
      cpus: cpus().length,
      produce_s: round(produceS),
      ...info.finish(),
      run_id: runId,
    }
    process.stdout.write(JSON.stringify(result) + '\n')
    return allCorrect ? 0 : 1
  } finally {
    await cleanup()
  }
}

process.exitCode = await main(parseScalingOptions(process.argv.slice(2)))
