/**
 * The coordinator of one pipeline: membership (hello, heartbeats, leave, silence past a
 * timeout), placement of actors on workers, assignment generations, checkpoint epochs, and
 * end-of-input tracking for bounded pipelines. Processing never waits on it: it starts
 * epochs and moves actors; actors commit on their own (and on a local timer when no epoch
 * comes). It needs only the pipeline's shape, which workers send, so `weir coordinator`
 * never loads a pipeline file.
 */
import type { Logger } from 'pino'
import { subjects, type ControlBus, type Subscription } from '../runtime/control/bus.ts'
import { type Pipeline } from '../runtime/api/pipeline.ts'
import { naming } from '../runtime/naming.ts'
import { actorFinished, epochAck, pipelineShapeOf, workerHeartbeat, workerHello, workerLeave, type AssignmentMessage, type EpochMessage, type PipelineShape, type WorkerRefused } from '../runtime/control/messages.ts'
import { place, placeStandbys, type Assignment, type Standbys } from './placement.ts'
import { EpochClock } from './epochs.ts'
import type { PipelineMetadata } from './cluster-metadata.ts'

/** What a coordinator knows of the pipeline it coordinates. */
export interface CoordinatedPipeline {
  name: string
  fingerprint: string
  shape: PipelineShape
}

/** The coordinated view of a loaded pipeline (its actor stages). */
export function coordinatedPipeline(pipeline: Pipeline): CoordinatedPipeline {
  return { name: pipeline.name, fingerprint: pipeline.fingerprint(), shape: pipelineShapeOf(pipeline) }
}

export interface CoordinatorOptions {
  cluster: string
  /** Interval between checkpoint epochs, ms. */
  epochIntervalMs: number
  log: Logger
  /** Called once when every actor of a bounded pipeline has finished. */
  onAllFinished?: () => void
  /**
   * A worker not heard for this long is declared dead and its actors move. Default
   * Infinity (the in-process runner: one worker, which cannot die without the coordinator).
   */
  workerTimeoutMs?: number
  /**
   * Before its first placement, listen this long for heartbeats of workers already
   * running (after a restart or a takeover), to continue their generation, epochs and
   * placement. Default 0.
   */
  settleMs?: number
  /**
   * Generations start above this (a leader uses its lease term × 1e6): a new leader's
   * assignments outrank every one of a deposed leader, which workers then ignore.
   */
  generationBase?: number
  /**
   * What the previous leader stored of this pipeline: its members (each gets a full
   * timeout to be heard from), placement, standbys, epochs and finished actors. Listening
   * ends early once every stored member has been heard.
   */
  restored?: PipelineMetadata
  /** Called when membership, placement or finished actors change: the leader stores `metadata()`. */
  onChange?: () => void
}

interface Member {
  lastSeen: number
}

export class Coordinator {
  private readonly workers = new Map<string, Member>()
  /** Workers that announced their leave: their late heartbeats do not make them members again (a new hello does). */
  private readonly left = new Set<string>()
  private assignment: Assignment = new Map()
  private standbys: Standbys = new Map()
  private generation = 0
  private readonly finishedActors = new Set<string>()
  private readonly finishedStages = new Set<string>()
  private readonly subs: Subscription[] = []
  private readonly clock: EpochClock
  private readonly actors: string[]
  private readonly log: Logger
  private livenessTimer: NodeJS.Timeout | undefined
  private settled = false
  private settleTimer: NodeJS.Timeout | undefined
  /** Records per second per actor, from the heartbeats of the worker running it. */
  private readonly actorLoad = new Map<string, number>()
  /** Stored members not heard from yet since this coordinator started. */
  private readonly unheard = new Set<string>()

  constructor(private readonly bus: ControlBus, private readonly pipeline: CoordinatedPipeline, private readonly options: CoordinatorOptions) {
    this.actors = pipeline.shape.stages.flatMap((s) => Array.from({ length: s.parallelism }, (_, p) => naming.actor(s.name, p)))
    this.clock = new EpochClock(this.actors, options.epochIntervalMs, (epoch) => this.publishEpoch(epoch))
    this.log = options.log.child({ pipeline: pipeline.name, component: 'coordinator' })
    this.generation = options.generationBase ?? 0
    if (options.restored !== undefined) this.restore(options.restored)
  }

  /** Continues from what the previous leader stored. */
  private restore(m: PipelineMetadata): void {
    this.generation = Math.max(this.generation, m.generation)
    const now = Date.now()
    for (const w of m.members) {
      this.workers.set(w, { lastSeen: now })
      this.unheard.add(w)
    }
    for (const [a, w] of Object.entries(m.assignment)) if (this.actors.includes(a)) this.assignment.set(a, w)
    for (const [a, ws] of Object.entries(m.standbys)) if (this.actors.includes(a)) this.standbys.set(a, ws)
    this.clock.restore(m.epoch, m.completedEpoch)
    for (const a of m.finished) this.actorDone(a, false)
  }

  /** What a successor needs to continue: stored in NATS KV by the leader. */
  metadata(): PipelineMetadata {
    return {
      fingerprint: this.pipeline.fingerprint,
      shape: this.pipeline.shape,
      members: [...this.workers.keys()],
      generation: this.generation,
      assignment: Object.fromEntries(this.assignment),
      standbys: Object.fromEntries(this.standbys),
      epoch: this.clock.latest,
      completedEpoch: this.clock.completed,
      finished: [...this.finishedActors],
    }
  }

  /** A stored member was heard: once all were, there is nothing left to listen for. */
  private heard(worker: string): void {
    if (!this.unheard.delete(worker) || this.unheard.size > 0 || this.settled) return
    this.log.info({ workers: this.workers.size }, 'every stored member was heard from: placing now')
    this.settle()
  }

  private settle(): void {
    if (this.settled) return
    this.settled = true
    clearTimeout(this.settleTimer)
    if (this.workers.size > 0) this.rebalance()
  }

  private subject(kind: keyof typeof subjects): string {
    return subjects[kind](this.options.cluster, this.pipeline.name)
  }

  start(): void {
    const log = this.log
    this.subs.push(
      this.bus.subscribe(this.subject('workerHello'), (raw, subject) => {
        const msg = workerHello.safeParse(raw)
        if (!msg.success) return void log.warn({ subject, issue: msg.error.issues[0] }, 'malformed worker hello dropped')
        if (!this.accepts(msg.data.worker, msg.data.fingerprint)) return
        this.left.delete(msg.data.worker)
        if (this.workers.has(msg.data.worker)) {
          this.workers.get(msg.data.worker)!.lastSeen = Date.now()
          this.publishAssignment()
          return void this.heard(msg.data.worker)
        }
        this.join(msg.data.worker)
      }),
      this.bus.subscribe(this.subject('workerHeartbeat'), (raw, subject) => {
        const msg = workerHeartbeat.safeParse(raw)
        if (!msg.success) return void log.warn({ subject, issue: msg.error.issues[0] }, 'malformed worker heartbeat dropped')
        const hb = msg.data
        if (this.left.has(hb.worker) || !this.accepts(hb.worker, hb.fingerprint)) return
        // Continue where the running workers are: their generation, their epochs, their actors.
        if (hb.generation > this.generation) this.generation = hb.generation
        this.clock.advanceTo(hb.lastEpoch)
        for (const a of hb.finished) this.actorDone(a)
        for (const [a, l] of Object.entries(hb.load ?? {})) if (this.assignment.get(a) === hb.worker || !this.settled) this.actorLoad.set(a, l)
        // Before the first placement, what a worker runs is the truth (stored metadata may be a step behind it).
        if (!this.settled) for (const a of hb.actors) if (this.actors.includes(a)) this.assignment.set(a, hb.worker)
        const known = this.workers.get(hb.worker)
        if (known !== undefined) {
          known.lastSeen = Date.now()
          return void this.heard(hb.worker)
        }
        this.join(hb.worker)
      }),
      this.bus.subscribe(this.subject('workerLeave'), (raw) => {
        const msg = workerLeave.safeParse(raw)
        if (!msg.success) return
        this.left.add(msg.data.worker)
        this.unheard.delete(msg.data.worker)
        if (!this.workers.has(msg.data.worker)) return
        log.info({ worker: msg.data.worker }, 'worker leaves; moving its actors')
        this.workers.delete(msg.data.worker)
        this.rebalance()
      }),
      this.bus.subscribe(this.subject('epochAck'), (raw) => {
        const msg = epochAck.safeParse(raw)
        if (msg.success) this.clock.ack(msg.data.actor, msg.data.epoch)
      }),
      this.bus.subscribe(this.subject('actorFinished'), (raw) => {
        const msg = actorFinished.safeParse(raw)
        if (msg.success) this.actorDone(msg.data.actor)
      }),
    )
    this.clock.start()
    const timeout = this.options.workerTimeoutMs ?? Infinity
    if (Number.isFinite(timeout)) {
      // Checked often (a scan of the members): detection is the timeout plus at most one check.
      this.livenessTimer = setInterval(() => this.expireSilentWorkers(timeout), Math.max(50, Math.min(250, timeout / 8)))
      this.livenessTimer.unref()
    }
    const settleMs = this.options.settleMs ?? 0
    if (settleMs <= 0) this.settled = true
    else {
      this.settleTimer = setTimeout(() => this.settle(), settleMs)
      this.settleTimer.unref()
    }
  }

  private actorDone(actor: string, announce = true): void {
    if (this.finishedActors.has(actor) || !this.actors.includes(actor)) return
    this.finishedActors.add(actor)
    this.clock.retire(actor)
    this.updateFinishedStages(announce)
    if (announce) this.options.onChange?.()
    if (this.allFinished) this.options.onAllFinished?.()
  }

  /** Refuses a worker running a different topology under this pipeline's name, telling it why. */
  private accepts(worker: string, fingerprint: string): boolean {
    if (fingerprint === this.pipeline.fingerprint) return true
    const reason = `worker ${worker} runs a different topology of pipeline '${this.pipeline.name}' (fingerprint ${fingerprint}, the cluster runs ${this.pipeline.fingerprint}): run the same pipeline file on every worker; to run the new topology, start it under a new pipeline name (its state starts empty: savepoints, which will carry state across a topology change, are not built yet)`
    this.log.error({ worker, fingerprint, expected: this.pipeline.fingerprint }, 'worker runs a different pipeline topology; refused')
    const msg: WorkerRefused = { v: 1, worker, reason, expectedFingerprint: this.pipeline.fingerprint, fingerprint }
    this.bus.publish(this.subject('workerRefused'), msg)
    return false
  }

  private join(worker: string): void {
    this.workers.set(worker, { lastSeen: Date.now() })
    this.log.info({ worker, workers: this.workers.size }, 'worker joined')
    this.rebalance()
  }

  /**
   * Workers silent past the timeout are declared dead and their actors move. When every
   * worker is silent at once, the coordinator suspects its own link to the bus rather than
   * all of them, and waits.
   */
  private expireSilentWorkers(timeoutMs: number): void {
    const now = Date.now()
    const silent = [...this.workers].filter(([, m]) => now - m.lastSeen > timeoutMs).map(([w]) => w)
    if (silent.length === 0 || silent.length === this.workers.size) return
    for (const w of silent) {
      this.workers.delete(w)
      this.log.warn({ worker: w, silentMs: timeoutMs }, 'worker silent past the timeout: declared dead, its actors move')
    }
    // Stored members declared dead are not waited for any longer.
    const waitedFor = silent.filter((w) => this.unheard.delete(w))
    if (!this.settled && waitedFor.length > 0 && this.unheard.size === 0) return this.settle()
    this.rebalance()
  }

  /** The newest epoch every live actor has committed. */
  get completedEpoch(): number {
    return this.clock.completed
  }

  /** Workers and the actors each runs in the newest generation. */
  get placement(): { generation: number; workers: string[]; actors: Record<string, string> } {
    return { generation: this.generation, workers: [...this.workers.keys()], actors: Object.fromEntries(this.assignment) }
  }

  private rebalance(): void {
    if (!this.settled) return
    const workers = [...this.workers.keys()]
    this.assignment = place(this.actors, workers, this.assignment, this.standbys, this.actorLoad)
    this.standbys = placeStandbys(this.actors, workers, this.assignment, this.standbys, this.pipeline.shape.standbys)
    this.generation++
    this.publishAssignment()
    this.options.onChange?.()
  }

  private publishAssignment(): void {
    if (!this.settled) return
    const msg: AssignmentMessage = { v: 1, generation: this.generation, actors: Object.fromEntries(this.assignment) }
    if (this.standbys.size > 0) msg.standbys = Object.fromEntries(this.standbys)
    this.bus.publish(this.subject('assignment'), msg)
  }

  private publishEpoch(epoch: number): void {
    const msg: EpochMessage = { v: 1, epoch, generation: this.generation, finishedStages: [...this.finishedStages] }
    this.bus.publish(this.subject('epoch'), msg)
  }

  private updateFinishedStages(announce: boolean): void {
    for (const s of this.pipeline.shape.stages) {
      if (this.finishedStages.has(s.name)) continue
      const all = Array.from({ length: s.parallelism }, (_, p) => naming.actor(s.name, p)).every((a) => this.finishedActors.has(a))
      if (all) this.finishedStages.add(s.name)
    }
    // Tell workers now rather than at the next epoch, so bounded runs end promptly.
    if (announce) this.publishEpoch(this.clock.current)
  }

  get allFinished(): boolean {
    return this.finishedActors.size === this.actors.length
  }

  stop(): void {
    this.clock.stop()
    clearInterval(this.livenessTimer)
    clearTimeout(this.settleTimer)
    for (const s of this.subs) s.unsubscribe()
  }
}
