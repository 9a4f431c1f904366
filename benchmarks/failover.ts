/**
 * Failover benchmark: a `weir worker` holding count actors with 1M keys of state is
 * SIGKILLed, and the time from the kill to the first committed output of its reassigned
 * actors is measured, without standby replicas (`failover_ms`: the new owner replays the
 * whole changelog) and with one (`failover_standby_ms`: it replays only what its warm copy
 * misses). The full changelog replay of the moved state is timed on its own (`replay_ms`).
 * Prints exactly one JSON line on stdout; progress goes to stderr. See benchmarks/README.md
 * (current results, method notes).
 *
 * How, and why so:
 * - Real processes on the real services, as a deployment runs them (docs/operations.md):
 *   one `weir coordinator` and, per run, two `weir worker`s, all at weir's defaults: worker
 *   timeout 10 s, liveness probes every 250 ms, heartbeats every 1 s, checkpoints every
 *   500 ms. The coordinator notices the killed worker's closed bus connection by its
 *   unanswered probes (two in a row), not by the timeout; the detection time is reported
 *   and subtracted in `*_after_detection_ms`. `--worker-probe-ms 0` measures detection by
 *   the timeout alone.
 * - The pipeline (lib/failover-pipeline.ts) is a count per key straight off an input topic:
 *   actor `count/p` reads input partition p, holds the counts of its keys and writes output
 *   partition p. `--keys` distinct keys (2M) are split exactly evenly over the partitions
 *   (keys are chosen so Kafka's partitioner puts the same number in each), so with 2
 *   partitions and 2 workers the killed worker's actor holds exactly 1M keys, and its
 *   changelog 1M records plus a few per checkpoint. Each run is its own pipeline with its
 *   own input and output topics, groups, transactional ids and state dirs.
 * - Building the state (not timed): the pre-load writes every key once while the workers
 *   run, at most 30k records per partition ahead of what the count stage has committed.
 *   A reader catching up a backlog of a million records blocks its worker's event loop for
 *   over a second per 4 MiB fetch (kafkajs decodes it in one go), and under a 2 s worker
 *   timeout on 2 cores that got workers declared dead, over and over, while the state was
 *   built: actors moved back and forth and the survivor held a copy of the state it would
 *   later "restore". Pre-load records are counted without an output record (only the state
 *   and its changelog are needed; an output per key would nearly double the build).
 * - Then a trickle of new input (200 records/s, every key reachable, a few hot keys) runs
 *   for `--warm-s` before the kill and until the end, so the moved actor has input waiting
 *   when it comes back. With a standby, the kill also waits until the survivor's health
 *   report (progress channel) shows its replica trailing the changelog by 0 records; the new
 *   owner's restore log then shows how much it still replayed.
 * - The worker with the most state is SIGKILLed (t0). A read_committed consumer tails the
 *   output topic (lib/failover-tail.ts); output partition p is actor count/p's, and the new
 *   instance of a moved actor writes with a bumped producer epoch, so the first record of a
 *   moved partition from a producer instance not seen before the kill is its first committed
 *   output (t1, when the tail sees it). `failover_ms = t1 − t0`, over all moved actors.
 * - Where the time goes, from what the cluster says about itself: the coordinator's new
 *   assignment on the bus (detection and placement), the new owner's debug log line
 *   'actor restored' with the runtime's own restore time and replayed record count
 *   (runtime/actor.ts; the progress channel carries neither), and t1.
 * - `replay_ms`: that restore also opens the producer (fencing the dead one) and the input
 *   reader, so the replay alone is measured after the standbys 0 run, in this process, with
 *   the runtime's own `replayChangelog` (runtime/state/changelog.ts) of the moved actors'
 *   changelog partitions into fresh stores, while nothing else runs.
 * - Correctness: the tail checks every output as it comes (each key's counts go on from its
 *   pre-loaded 1 as 2, 3… with no gap and no repeat); after the survivor's graceful stop it
 *   must have read every partition to its end, with exactly one output per trickle record
 *   and each key's last count equal to its input records. The moved actors' state in the
 *   survivor's RocksDB must then hold every one of their keys with exactly that count. The
 *   benchmark exits 1 if either run is wrong.
 * - Cleanup: every topic and group with the run id, the cluster's KV bucket and the temp dir
 *   (with each process's log) go, also on an error or Ctrl-C; `--keep` keeps them.
 *
 * @example
 * npm run bench:failover
 * node --import tsx benchmarks/failover.ts --keys 4m --worker-probe-ms 0 --worker-timeout-ms 2000 --heartbeat-ms 250
 */
// Before kafkajs: its read_committed filter leaks aborted transactions, and the tail reads a killed worker's.
import '../runtime/pipe/kafka/kafkajs-fixes.ts'
import { randomBytes } from 'node:crypto'
import { createWriteStream, mkdirSync, mkdtempSync, rmSync } from 'node:fs'
import { cpus, tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { Kafka, logLevel, type Admin } from 'kafkajs'
import { pino, type Logger } from 'pino'
import { assignmentMessage } from '../runtime/control/messages.ts'
import { subjects } from '../runtime/control/bus.ts'
import { NatsBus } from '../runtime/control/nats/nats-bus.ts'
import { progressSubjects, workerHealth, type WorkerHealth } from '../runtime/control/progress.ts'
import { Faults } from '../runtime/faults.ts'
import { KafkaPipe } from '../runtime/pipe/kafka/kafka-pipe.ts'
import { naming } from '../runtime/naming.ts'
import { replayChangelog } from '../runtime/state/changelog.ts'
import { StateStore } from '../runtime/state/state-store.ts'
import { deleteLeaseBucket, deleteRunArtifacts } from './lib/cluster-cleanup.ts'
import { keyNumber, KeySpace, preloadKeys, Trickle } from './lib/failover-input.ts'
import { parseFailoverOptions, type FailoverBenchOptions } from './lib/failover-options.ts'
import { COUNT_STAGE } from './lib/failover-pipeline.ts'
import { FailoverTail } from './lib/failover-tail.ts'
import { createTopics } from './lib/kafka-input.ts'
import { startRunInfo } from './lib/run-info.ts'
import { killWeirProcesses, startWeirProcess, stopWeirProcess, waitForOutput, type WeirProcess } from './lib/scaling-cluster.ts'
import { scanKeyedState } from './lib/state-scan.ts'
import { progress, round, wallMs } from './lib/stats.ts'
import { onLogEntry, type LogEntry } from './lib/weir-log.ts'

const SCRIPT = fileURLToPath(import.meta.url)
const PIPELINE_FILE = join(dirname(SCRIPT), 'lib/failover-pipeline.ts')
/** Coordinator's listening time before its first placement: both workers of a run join within it, so nothing moves while the state is built. */
const SETTLE_MS = 3000
/** The pre-load runs at most this many records per partition ahead of the count stage's committed input position. */
const PRELOAD_AHEAD = 30_000
/** The project's goals (benchmarks/README.md, current results). */
const GOAL_MS = { standbys_0: 5000, standbys_1: 2000 }
/** How long the standbys 1 run waits for the survivor to report its replicas caught up before it kills anyway. */
const STANDBY_CATCH_UP_MS = 30_000
/** A killed worker's reader groups keep their member this long (the runtime's reader session timeout), so they cannot be deleted before. */
const READER_SESSION_MS = 30_000

type Result = Record<string, unknown>

/** The coordinator's placement as the harness saw it on the bus. */
interface Placement {
  at: number
  generation: number
  actors: Record<string, string>
  standbys: Record<string, string[]>
}

/** What the new owner logged when a moved actor finished restoring (runtime/actor.ts). */
interface Restore {
  actor: string
  /** Restore end, the worker's wall clock ms. */
  at: number
  ms: number
  replayed: number
}

interface RunFigures {
  standbys: number
  failoverMs: number
  /** Kill → the coordinator's assignment moving the dead worker's actors, seen on the bus. */
  detectMs: number
  /** That assignment → the new owner starting the restore (with standbys: after stopping the replica). */
  assignToRestoreMs: number
  /** The new owner's restore (producer with fencing, store, changelog replay, readers), slowest moved actor. */
  restoreMs: number
  replayedRecords: number
  /** Restore end → first output visible to the tail (first micro-batch, its commit, the fetch). */
  firstOutputMs: number
  movedActors: string[]
  keysOnKilledWorker: number
  /** Placements before the kill that moved actors (a worker declared dead, or rejoining, while the state was built). */
  movesBeforeKill: number
  /** Largest event-loop delay a worker reported on the health channel between its start and the kill, ms. */
  maxLoopDelayMs: number
  /** The survivor's replicas of the moved actors just before the kill: changelog records not applied yet (null without standbys or not reported). */
  standbyLagAtKill: number | null
  /** Workers started → every pre-loaded key counted and committed, s. */
  buildS: number
  trickleRecords: number
  correct: boolean
  outputRecords: number
  /** Keys of the moved actors whose count in the survivor's state after its graceful stop is their input records. */
  movedStateKeysExact: number
  wrong: string[]
  pipeline: string
  movedPartitions: number[]
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms))
}

/** `promise`, or a rejection naming `what` after `ms`. */
function within<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  return Promise.race([promise, new Promise<never>((_, reject) => setTimeout(() => reject(new Error(`${what}: not within ${ms / 1000} s`)), ms).unref())])
}

/** Rejects when any of `workers` exits: none may end on its own while a run measures. */
function exitsEarly(workers: WeirProcess[], phase: string): Promise<never> {
  return Promise.race(workers.map((w) => w.exited.then((r) => Promise.reject(new Error(`${w.name} exited (code ${r.code}, signal ${r.signal}) during ${phase}: ${w.stderrTail().slice(-2000)}`)))))
}

/** Keys held by each worker's count actors under `placement`. */
function keysByWorker(placement: Placement, space: KeySpace): Map<string, number> {
  const out = new Map<string, number>()
  for (const [actor, worker] of Object.entries(placement.actors)) out.set(worker, (out.get(worker) ?? 0) + space.keysIn(Number(actor.split('/')[1])))
  return out
}

/**
 * The count stage's committed input position (committed with its state, in its
 * transactions), summed over the input partitions, polled from the stage's consumer group.
 */
class CommittedInput {
  records = 0
  private timer: NodeJS.Timeout | undefined
  private polling = false

  constructor(private readonly admin: Admin, private readonly group: string, private readonly topic: string) {}

  start(): void {
    this.timer = setInterval(() => void this.poll(), 250)
  }

  private async poll(): Promise<void> {
    if (this.polling) return
    this.polling = true
    try {
      const partitions = (await this.admin.fetchOffsets({ groupId: this.group, topics: [this.topic] }))[0]?.partitions ?? []
      this.records = partitions.reduce((s, p) => s + Math.max(0, Number(p.offset)), 0)
    } catch {
      // The group does not exist before the first commit; the next poll asks again.
    } finally {
      this.polling = false
    }
  }

  /** Resolves once the committed position is at least `records`, reporting progress every 15 s. */
  async reach(records: number, label: string): Promise<void> {
    let reportedAt = Date.now()
    while (this.records < records) {
      if (Date.now() - reportedAt > 15_000) {
        reportedAt = Date.now()
        progress(`${label}: ${this.records.toLocaleString('en')} of ${records.toLocaleString('en')} pre-load records counted and committed`)
      }
      await sleep(100)
    }
  }

  stop(): void {
    clearInterval(this.timer)
  }
}

/**
 * Waits until a health report of the survivor, sent after this call, shows its replicas of
 * `actors` trailing their changelogs by 0 records (the worker measures the lag once a
 * second, in the background). Returns the largest lag last reported; after
 * STANDBY_CATCH_UP_MS it stops waiting and returns that (null when none was reported).
 */
async function replicasCaughtUp(latest: () => { at: number; health: WorkerHealth } | undefined, actors: string[], label: string): Promise<number | null> {
  const since = wallMs()
  let lag: number | null = null
  while (wallMs() - since < STANDBY_CATCH_UP_MS) {
    const h = latest()
    if (h !== undefined && h.at > since) {
      const lags = actors.map((a) => h.health.standbys?.find((r) => r.actor === a)?.lag ?? null)
      lag = lags.some((l) => l === null) ? null : Math.max(...(lags as number[]))
      if (lag === 0) return 0
    }
    await sleep(20)
  }
  progress(`${label}: WARNING: the survivor's replicas of ${actors.join(', ')} still trail by ${lag ?? 'an unknown number of'} records after ${STANDBY_CATCH_UP_MS / 1000} s; killing anyway`)
  return lag
}

/**
 * The moved actors' state in the survivor's RocksDB after its graceful stop (each took a
 * final checkpoint): every key of their partitions with its input records as count, and no other.
 */
async function checkMovedState(stateDir: string, partitions: number[], space: KeySpace, expected: Uint32Array): Promise<{ exact: number; wrong: string[] }> {
  const wrong: string[] = []
  let exact = 0
  for (const p of partitions) {
    let found = 0
    await scanKeyedState(join(stateDir, 'state', COUNT_STAGE, String(p)), 'count', (key, count) => {
      found++
      const n = keyNumber(key)
      const want = n < 0 || n >= expected.length ? 0 : expected[n]!
      if (count === want) exact++
      else if (wrong.length < 5) wrong.push(`state of ${COUNT_STAGE}/${p}: ${key} is ${String(count)}, expected ${want}`)
    })
    if (found !== space.keysIn(p)) wrong.unshift(`state of ${COUNT_STAGE}/${p} holds ${found} keys, expected ${space.keysIn(p)}`)
  }
  return { exact, wrong }
}

interface RunContext {
  kafka: Kafka
  admin: Admin
  bus: NatsBus
  runId: string
  cluster: string
  root: string
  space: KeySpace
  /** 1 per pre-loaded key number: the counts built without output. */
  preloaded: Uint32Array
  /** Wall clock of the latest kill, for the cleanup of the dead worker's groups. */
  lastKillAt: number
  /** Workers running now, for a cleanup on an error or a signal. */
  workers: Set<WeirProcess>
}

/** One run: two workers build the state, one is killed under a trickle, its actors move; everything timed from the outside. */
async function runFailover(standbys: number, o: FailoverBenchOptions, ctx: RunContext): Promise<RunFigures> {
  const pipeline = `bench-fo-${ctx.runId}-s${standbys}`
  const inputTopic = `bench.keys.${ctx.runId}.s${standbys}`
  const outputTopic = `bench.counts.${ctx.runId}.s${standbys}`
  const label = `standbys ${standbys}`
  // Records written to the input topic per key number, once acknowledged: what the counts must reach.
  const inputCounts = new Uint32Array(ctx.space.maxKey + 1)
  const total = (): number => inputCounts.reduce((s, v) => s + v, 0)
  await createTopics(ctx.admin, [{ topic: inputTopic, numPartitions: o.partitions }, { topic: outputTopic, numPartitions: o.partitions }])
  const tail = new FailoverTail(ctx.kafka, outputTopic, o.partitions, ctx.preloaded)
  await tail.start()

  const placements: Placement[] = []
  let killed = false
  let maxLoopDelayMs = 0
  // Each worker's latest health (with the standby replicas it keeps warm and their lag), and when it came.
  const health = new Map<string, { at: number; health: WorkerHealth }>()
  const subs = [
    ctx.bus.subscribe(subjects.assignment(ctx.cluster, pipeline), (raw) => {
      const m = assignmentMessage.safeParse(raw)
      if (m.success && m.data.generation > (placements.at(-1)?.generation ?? -1)) placements.push({ at: wallMs(), generation: m.data.generation, actors: m.data.actors, standbys: m.data.standbys ?? {} })
    }),
    // A worker whose event loop stalls past the worker timeout is declared dead: the health channel says how long its loop stalled.
    ctx.bus.subscribe(progressSubjects.health(ctx.cluster, pipeline), (raw) => {
      const h = workerHealth.safeParse(raw)
      if (!h.success) return
      if (!killed) maxLoopDelayMs = Math.max(maxLoopDelayMs, h.data.eventLoopDelayMs.max)
      health.set(h.data.worker, { at: wallMs(), health: h.data })
    }),
  ]

  const params = { name: pipeline, input: inputTopic, partitions: String(o.partitions), output: outputTopic, standbys: String(standbys) }
  progress(`${label}: pipeline ${pipeline}, input ${inputTopic}, output ${outputTopic}`)
  const workers: WeirProcess[] = []
  const restores = new Map<string, Restore[]>()
  const buildStarted = wallMs()
  for (const id of ['w1', 'w2']) {
    const stateDir = join(ctx.root, pipeline, id)
    mkdirSync(stateDir, { recursive: true })
    // Debug level: the restore figures are logged there and nowhere else.
    const w = startWeirProcess(`s${standbys}/${id}`, ['worker', PIPELINE_FILE, '--pipe', `kafka://${o.brokers.join(',')}`, '--bus', o.bus, '--cluster', ctx.cluster, '--id', id, '--state-dir', stateDir,
      '--epoch-ms', String(o.epochMs), '--heartbeat-ms', String(o.heartbeatMs), ...Object.entries(params).flatMap(([k, v]) => ['--param', `${k}=${v}`])], { logLevel: 'debug' })
    restores.set(id, [])
    // Its whole log stays in the run's temp dir (kept with --keep), for a closer look at a failover.
    w.child.stderr!.pipe(createWriteStream(join(ctx.root, pipeline, `${id}.log`)))
    onLogEntry(w, (e: LogEntry) => {
      if (e.msg === 'actor restored') restores.get(id)!.push({ actor: String(e.actor), at: e.time, ms: Number(e.ms), replayed: Number(e.replayed) })
    })
    workers.push(w)
    ctx.workers.add(w)
    void w.exited.then(() => ctx.workers.delete(w))
  }
  const committed = new CommittedInput(ctx.admin, naming.group(pipeline, COUNT_STAGE), inputTopic)
  committed.start()
  let trickle: Trickle | undefined
  const timeoutMs = o.timeoutS * 1000
  try {
    // The state is built (not timed): the pre-load written as the workers count it, all of it committed.
    const room = async (sent: number): Promise<void> => {
      while (sent - committed.records > PRELOAD_AHEAD * o.partitions) await sleep(50)
    }
    const built = preloadKeys(ctx.kafka, inputTopic, ctx.space, inputCounts, room).then(() => committed.reach(ctx.space.keys, label))
    await Promise.race([within(built, timeoutMs, `${label}: building the state`), exitsEarly(workers, 'the build')])
    const buildS = (wallMs() - buildStarted) / 1000
    const placed = placements.at(-1)!
    progress(`${label}: state built in ${buildS.toFixed(1)} s (${Math.round(ctx.space.keys / buildS).toLocaleString('en')} keys/s); placement ${JSON.stringify(placed.actors)}${standbys > 0 ? `, standbys ${JSON.stringify(placed.standbys)}` : ''}; ${placements.length - 1} moves while building, event loops stalled up to ${Math.round(maxLoopDelayMs)} ms`)

    const countedIn = Array.from({ length: o.partitions }, (_, p) => tail.recordsIn(p))
    const trickleFrom = total()
    trickle = new Trickle(ctx.kafka, inputTopic, ctx.space, o.trickleRate, inputCounts)
    await trickle.start()
    await Promise.race([sleep(o.warmS * 1000), exitsEarly(workers, 'the warm-up')])
    if (trickle.error !== undefined) throw trickle.error

    const before = placements.at(-1)!
    const held = keysByWorker(before, ctx.space)
    const victimId = [...held].sort((a, b) => b[1] - a[1])[0]![0]
    const victim = workers.find((w) => w.name.endsWith(`/${victimId}`))!
    const survivor = workers.find((w) => w !== victim)!
    const survivorId = survivor.name.slice(survivor.name.indexOf('/') + 1)
    const movedActors = Object.entries(before.actors).filter(([, w]) => w === victimId).map(([a]) => a)
    const movedPartitions = movedActors.map((a) => Number(a.split('/')[1]))
    const keysOnKilledWorker = held.get(victimId)!
    const movesBeforeKill = placements.length - 1
    if (movesBeforeKill > 0) progress(`${label}: WARNING: actors moved ${movesBeforeKill} times before the kill; the survivor may hold an old copy of the state it restores`)
    if (movedPartitions.some((p) => tail.recordsIn(p) <= countedIn[p]!)) throw new Error(`${label}: no trickle output yet in partitions ${movedPartitions.join(',')} after ${o.warmS} s`)
    const standbyLagAtKill = standbys > 0 ? await replicasCaughtUp(() => health.get(survivorId), movedActors, label) : null

    // The kill. The watch is armed in the same turn, before any record after the kill can be seen.
    progress(`${label}: SIGKILL ${victimId} (actors ${movedActors.join(', ')}, ${keysOnKilledWorker.toLocaleString('en')} keys); ${survivorId} survives`)
    const firsts = tail.watchNewProducers(movedPartitions)
    const t0 = wallMs()
    victim.child.kill('SIGKILL')
    killed = true
    ctx.lastKillAt = t0
    const found = await Promise.race([within(firsts, timeoutMs, `${label}: first output of the moved actors`), exitsEarly([survivor], 'the failover')])
    const t1 = Math.max(...[...found.values()].map((f) => f.at))
    const failoverMs = t1 - t0

    const moved = placements.find((p) => p.at > t0 && !Object.values(p.actors).includes(victimId))
    const restored = movedActors.map((a) => restores.get(survivorId)!.find((r) => r.actor === a && r.at > t0))
    if (moved === undefined || restored.some((r) => r === undefined)) throw new Error(`${label}: the move was not seen (assignment ${moved === undefined ? 'missing' : 'seen'}; restore log lines of ${movedActors.join(', ')}: ${restored.map((r) => (r === undefined ? 'missing' : 'seen')).join(', ')})`)
    const slowest = restored.reduce((a, b) => (b!.at > a!.at ? b : a))!
    const figures = {
      failoverMs,
      detectMs: moved.at - t0,
      // Log times are whole ms and the bus delivers to the worker before the harness: clamp the rounding.
      assignToRestoreMs: Math.max(0, Math.min(...restored.map((r) => r!.at - r!.ms)) - moved.at),
      restoreMs: slowest.ms,
      replayedRecords: restored.reduce((s, r) => s + r!.replayed, 0),
      firstOutputMs: t1 - slowest.at,
    }
    progress(`${label}: failover ${Math.round(failoverMs)} ms = detection ${Math.round(figures.detectMs)} + to restore ${Math.round(figures.assignToRestoreMs)} + restore ${Math.round(figures.restoreMs)} (${figures.replayedRecords.toLocaleString('en')} changelog records replayed) + first output ${Math.round(figures.firstOutputMs)}`)

    // More input through the moved actors, then everything sent must come out exactly once.
    await Promise.race([sleep(o.afterS * 1000), exitsEarly([survivor], 'the trickle after the failover')])
    await trickle.stop()
    trickle = undefined
    await within(tail.whenRecords(total() - ctx.space.keys), 60_000, `${label}: the last output`).catch((err: unknown) => progress(String(err)))
    const stop = await stopWeirProcess(survivor, 30_000)
    await tail.readToEnd(ctx.admin, 60_000)
    const check = tail.check(inputCounts)
    const state = await checkMovedState(join(ctx.root, pipeline, survivorId), movedPartitions, ctx.space, inputCounts)
    check.wrong.push(...state.wrong)
    if (stop.code !== 0 || stop.killed) check.wrong.push(`${survivor.name} stopped with code ${stop.code}, signal ${stop.signal}${stop.killed ? ' (SIGKILLed after 30 s)' : ''}`)
    const correct = check.ok && state.wrong.length === 0 && stop.code === 0 && !stop.killed
    progress(`${label}: ${check.records.toLocaleString('en')} output records (expected ${check.expectedRecords.toLocaleString('en')}), ${tail.sequenceErrors} out of sequence, ${check.wrongKeys} keys with a wrong last output; moved state: ${state.exact.toLocaleString('en')} of ${keysOnKilledWorker.toLocaleString('en')} keys exact: ${correct ? 'correct' : `WRONG: ${check.wrong.join('; ')}`}`)
    return {
      standbys,
      ...figures,
      movedActors,
      keysOnKilledWorker,
      movesBeforeKill,
      maxLoopDelayMs,
      standbyLagAtKill,
      buildS,
      trickleRecords: total() - trickleFrom,
      correct,
      outputRecords: check.records,
      movedStateKeysExact: state.exact,
      wrong: check.wrong,
      pipeline,
      movedPartitions,
    }
  } finally {
    committed.stop()
    for (const sub of subs) sub.unsubscribe()
    await trickle?.stop().catch(() => undefined)
    // Gracefully, so their reader groups can be deleted at once (a no-op for those already gone).
    const stops = await Promise.all(workers.map((w) => stopWeirProcess(w, 5000)))
    if (stops.some((s) => s.killed)) ctx.lastKillAt = Date.now()
    await tail.stop(ctx.admin)
  }
}

/**
 * The runtime's own changelog replay of `partitions` of `pipeline`'s count changelog into
 * fresh stores, in parallel as a worker restores moved actors, in this process while
 * nothing else runs. Returns the wall time and the records replayed.
 */
async function measureReplay(o: FailoverBenchOptions, pipeline: string, partitions: number[], dir: string, log: Logger): Promise<{ ms: number; records: number }> {
  const pipe = await KafkaPipe.connect({ brokers: o.brokers, clientId: 'weir-bench-failover-replay' }, log)
  try {
    const topic = naming.changelog(pipeline, COUNT_STAGE)
    const stores = await Promise.all(partitions.map((p) => StateStore.open(join(dir, String(p)))))
    const started = performance.now()
    const replayed = await Promise.all(partitions.map((partition, i) => {
      const storePath = join(dir, String(partition))
      return replayChangelog({
        pipe, topic, partition, store: stores[i]!, storePath, log, faults: Faults.none(),
        reopen: async () => {
          await stores[i]!.close()
          StateStore.destroy(storePath)
          stores[i] = await StateStore.open(storePath)
          return stores[i]!
        },
      })
    }))
    const ms = performance.now() - started
    await Promise.all(stores.map((s) => s.close()))
    return { ms, records: replayed.reduce((s, r) => s + r.records, 0) }
  } finally {
    await pipe.close()
  }
}

async function main(o: FailoverBenchOptions): Promise<number> {
  const started = performance.now()
  const runId = `${Date.now().toString(36)}${randomBytes(2).toString('hex')}`
  const cluster = `bench-fo-${runId}`
  const root = mkdtempSync(join(tmpdir(), 'weir-bench-failover-'))
  const log = pino({ level: 'warn' }, pino.destination(2))
  const kafka = new Kafka({ clientId: `weir-bench-${runId}`, brokers: o.brokers, logLevel: logLevel.WARN })
  const admin = kafka.admin()
  const bus = await NatsBus.connect({ servers: [o.bus], name: `weir-bench-failover-${runId}`, log })
  let coordinator: WeirProcess | undefined
  let ctx: RunContext | undefined
  let interrupted = false
  let cleaning: Promise<void> | undefined
  const cleanup = (): Promise<void> => (cleaning ??= (async () => {
    // Workers stopped gracefully leave their reader groups, which can then be deleted at once;
    // one SIGKILLed after the grace leaves them to its session timeout.
    const stops = await Promise.all([...(ctx?.workers ?? [])].map((w) => stopWeirProcess(w, 5000).catch(() => undefined)))
    if (ctx !== undefined && stops.some((s) => s?.signal === 'SIGKILL')) ctx.lastKillAt = Date.now()
    if (coordinator !== undefined) await stopWeirProcess(coordinator, 5000).catch(() => undefined)
    killWeirProcesses()
    await bus.close().catch(() => undefined)
    if (o.keep) {
      progress(`kept topics of run ${runId}, cluster ${cluster} and ${root} (with every process's log)`)
    } else {
      // A killed worker's reader groups can only go once their member's session has expired.
      const waitS = Math.ceil((READER_SESSION_MS - (Date.now() - (ctx?.lastKillAt ?? 0))) / 1000) + 5
      await deleteRunArtifacts(admin, runId, Math.max(10, waitS)).catch((err: unknown) => progress(`could not delete the run's topics: ${String(err)}`))
      await deleteLeaseBucket(o.bus, cluster).catch((err: unknown) => progress(`could not delete KV bucket weir-${cluster}: ${String(err)}`))
      rmSync(root, { recursive: true, force: true })
    }
    await admin.disconnect()
  })())
  for (const sig of ['SIGINT', 'SIGTERM'] as const) {
    process.on(sig, () => {
      interrupted = true
      progress(`${sig}: stopping the workers and cleaning up`)
      void cleanup().finally(() => process.exit(130))
    })
  }
  const info = startRunInfo(['runtime', 'coordinator', 'cli'], started)
  try {
    await admin.connect()
    const space = new KeySpace(o.keys, o.partitions)
    const preloaded = new Uint32Array(space.maxKey + 1)
    for (const keys of space.byPartition) for (const n of keys) preloaded[n] = 1
    progress(`run ${runId}: ${o.keys.toLocaleString('en')} keys, ${space.keysIn(0).toLocaleString('en')} per partition; worker timeout ${o.workerTimeoutMs} ms, probes every ${o.workerProbeMs} ms, heartbeat ${o.heartbeatMs} ms`)

    coordinator = startWeirProcess('coordinator', ['coordinator', '--bus', o.bus, '--cluster', cluster, '--epoch-ms', String(o.epochMs), '--settle-ms', String(SETTLE_MS), '--worker-timeout-ms', String(o.workerTimeoutMs), '--worker-probe-ms', String(o.workerProbeMs)], { logLevel: 'info' })
    coordinator.child.stderr!.pipe(createWriteStream(join(root, 'coordinator.log')))
    await waitForOutput(coordinator, /leading cluster/, 30_000)

    ctx = { kafka, admin, bus, runId, cluster, root, space, preloaded, lastKillAt: 0, workers: new Set() }
    const cold = await runFailover(0, o, ctx)
    progress(`replaying the changelog of ${cold.movedActors.join(', ')} into a fresh store (the runtime's replayChangelog, in this process)`)
    const replay = await measureReplay(o, cold.pipeline, cold.movedPartitions, join(root, 'replay'), log)
    progress(`replayed ${replay.records.toLocaleString('en')} changelog records in ${Math.round(replay.ms)} ms (${Math.round(replay.records / (replay.ms / 1000)).toLocaleString('en')} records/s)`)
    const warm = await runFailover(1, o, ctx)

    const runs = [cold, warm]
    const allCorrect = runs.every((r) => r.correct)
    const breakdown = (r: RunFigures): Record<string, number> => ({
      detect_ms: Math.round(r.detectMs),
      assign_to_restore_ms: Math.round(r.assignToRestoreMs),
      restore_ms: Math.round(r.restoreMs),
      first_output_ms: Math.round(r.firstOutputMs),
    })
    const result: Result = {
      bench: 'failover',
      date: new Date().toISOString().slice(0, 10),
      keys: o.keys,
      partitions: o.partitions,
      keys_on_killed_worker: cold.keysOnKilledWorker,
      worker_timeout_ms: o.workerTimeoutMs,
      worker_probe_ms: o.workerProbeMs,
      heartbeat_ms: o.heartbeatMs,
      epoch_ms: o.epochMs,
      trickle_rate: o.trickleRate,
      failover_ms: Math.round(cold.failoverMs),
      failover_standby_ms: Math.round(warm.failoverMs),
      standby_speedup: round(cold.failoverMs / warm.failoverMs),
      failover_after_detection_ms: Math.round(cold.failoverMs - cold.detectMs),
      failover_standby_after_detection_ms: Math.round(warm.failoverMs - warm.detectMs),
      failover_minus_timeout_ms: Math.round(cold.failoverMs - o.workerTimeoutMs),
      failover_standby_minus_timeout_ms: Math.round(warm.failoverMs - o.workerTimeoutMs),
      goal_ms: GOAL_MS,
      goal_met: { standbys_0: cold.failoverMs <= GOAL_MS.standbys_0, standbys_1: warm.failoverMs <= GOAL_MS.standbys_1 },
      replay_ms: Math.round(replay.ms),
      replay_records: replay.records,
      replay_records_per_s: Math.round(replay.records / (replay.ms / 1000)),
      breakdown: { standbys_0: breakdown(cold), standbys_1: breakdown(warm) },
      restore_replayed_records: { standbys_0: cold.replayedRecords, standbys_1: warm.replayedRecords },
      moved_actors: cold.movedActors,
      moves_before_kill: [cold.movesBeforeKill, warm.movesBeforeKill],
      max_event_loop_delay_before_kill_ms: [Math.round(cold.maxLoopDelayMs), Math.round(warm.maxLoopDelayMs)],
      standby_lag_at_kill: warm.standbyLagAtKill,
      build_s: [round(cold.buildS), round(warm.buildS)],
      trickle_records: [cold.trickleRecords, warm.trickleRecords],
      correct: { standbys_0: cold.correct, standbys_1: warm.correct },
      output_records: [cold.outputRecords, warm.outputRecords],
      moved_state_keys_exact: [cold.movedStateKeysExact, warm.movedStateKeysExact],
      ...(allCorrect ? {} : { wrong: { standbys_0: cold.wrong, standbys_1: warm.wrong } }),
      cpus: cpus().length,
      ...info.finish(),
      run_id: runId,
    }
    process.stdout.write(JSON.stringify(result) + '\n')
    return allCorrect ? 0 : 1
  } catch (err) {
    // Interrupted: what failed afterwards failed because the workers were being stopped.
    if (!interrupted) throw err
    await cleanup()
    return 130
  } finally {
    await cleanup()
  }
}

process.exitCode = await main(parseFailoverOptions(process.argv.slice(2)))
