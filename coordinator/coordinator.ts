/**
 * The coordinator of one pipeline: membership (hello, heartbeats, leave, silence past a
 * timeout), placement of actors on workers, assignment generations, checkpoint epochs, and
 * end-of-input tracking for bounded pipelines. Processing never waits on it: it starts
 * epochs and moves actors; actors commit on their own (and on a local timer when no epoch
 * comes). It needs only the pipeline's shape, which workers send, so `weir coordinator`
 * never loads a pipeline file.
 *
 * A planned move (a worker leaves, or joins and takes a share) releases before it assigns,
 * as Kafka's consumer protocol waits for a partition's revocation before its new owner gets
 * it: the actor is first published as releasing from its old owner, which stops it with a
 * final checkpoint and reports `actorReleased`; only then is it assigned to its new owner,
 * whose producer therefore fences nothing in flight. A release not heard within
 * `releaseTimeoutMs` falls back to fencing, and an actor of a worker declared dead moves at once.
 *
 * An actor that fails for good on a worker (`actorFailed`: its instance stopped alone, the
 * worker runs on) moves to a worker it has not failed on; after failing on two workers, or
 * on every worker there is, it is quarantined: assigned to nobody, kept in the metadata and
 * published with the assignment, until an operator clears it (`actorClear`). A bad actor
 * thus costs its own partition, never the workers that try it.
 */
import type { Logger } from 'pino'
import { BusNoResponderError, subjects, type ControlBus, type Subscription } from '../runtime/control/bus.ts'
import { type Pipeline } from '../runtime/api/pipeline.ts'
import { naming } from '../runtime/naming.ts'
import { actorClear, actorFailed, actorFinished, actorReleased, epochAck, generationTerm, MAX_WORKERS, pipelineShapeOf, workerHeartbeat, workerHello, workerLeave, type ActorClear, type ActorClearAnswer, type ActorFailed, type ActorFailure, type AssignmentMessage, type EpochMessage, type PipelineShape, type WorkerHeartbeat, type WorkerRefused } from '../runtime/control/messages.ts'
import { place, placeStandbys, type Assignment, type Standbys } from './placement.ts'
import { EpochClock } from './epochs.ts'
import type { PipelineMetadata } from './cluster-metadata.ts'
import { TOPOLOGY_CHANGE_ADVICE } from '../runtime/topology-guard.ts'

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
   * With a finite `workerTimeoutMs`, every worker that answers probes is asked this often
   * whether it lives; one nobody answers twice in a row is declared dead then, not after the
   * timeout (a killed process's bus connection closes, and the bus knows at once that its
   * subscriptions are gone). Default `DEFAULT_WORKER_PROBE_MS`; 0 turns probing off, leaving
   * the timeout alone. A slow answer proves nothing either way: the timeout covers a worker
   * alive but stuck.
   */
  workerProbeMs?: number
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
  /**
   * How long an actor in a planned move waits for its old owner's release report before it
   * is assigned anyway (its new owner's producer then fences the old instance), ms.
   * Default 10 000.
   */
  releaseTimeoutMs?: number
}

/** Default of `workerProbeMs`. */
export const DEFAULT_WORKER_PROBE_MS = 250

/**
 * Probes in a row nobody answered before a worker is declared dead: one could come of the
 * moment its subscription moves between the servers of a NATS cluster.
 */
export const UNANSWERED_PROBES_BEFORE_DEAD = 2

/** Default of `releaseTimeoutMs`. */
export const DEFAULT_RELEASE_TIMEOUT_MS = 10_000

/** An actor that failed for good on this many different workers is quarantined. */
export const QUARANTINE_AFTER_WORKERS = 2

interface Member {
  lastSeen: number
  /** Its hello or heartbeat said it answers probes. */
  answersProbes: boolean
  /** Probes in a row that nobody answered (reset by an answer or a heartbeat). */
  unanswered: number
  probing: boolean
}

const member = (answersProbes = false): Member => ({ lastSeen: Date.now(), answersProbes, unanswered: 0, probing: false })

/** An actor in a planned move, waiting for `from` to report it released. */
interface Release {
  from: string
  /** The generation that first published the release: reports from older ones are stale. */
  generation: number
  timer: NodeJS.Timeout | undefined
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
  private readonly actorSet: ReadonlySet<string>
  private readonly log: Logger
  private livenessTimer: NodeJS.Timeout | undefined
  private probeTimer: NodeJS.Timeout | undefined
  private settled = false
  private settleTimer: NodeJS.Timeout | undefined
  /** Records per second per actor, from the heartbeats of the worker running it. */
  private readonly actorLoad = new Map<string, number>()
  /** Stored members not heard from yet since this coordinator started. */
  private readonly unheard = new Set<string>()
  /** Actors moving in a planned hand-off, by actor: assigned (in `assignment`) but not published until released. */
  private readonly releasing = new Map<string, Release>()
  private republishing: NodeJS.Immediate | undefined
  private started = false
  private stopped = false
  /**
   * Actors whose worker went away (left or declared dead), by actor: that worker's state dir
   * keeps their stores, so they go back to it when it returns (a restart, a rolling upgrade).
   * In memory only: a new leader forgets it, and placement is then sticky to where they run.
   */
  private readonly homes = new Map<string, string>()
  /** Actors that failed for good: where, the last error, and whether they are quarantined. */
  private readonly failures = new Map<string, { failure: ActorFailure; quarantined: boolean }>()

  constructor(private readonly bus: ControlBus, private readonly pipeline: CoordinatedPipeline, private readonly options: CoordinatorOptions) {
    this.actors = pipeline.shape.stages.flatMap((s) => Array.from({ length: s.parallelism }, (_, p) => naming.actor(s.name, p)))
    this.actorSet = new Set(this.actors)
    this.clock = new EpochClock(this.actors, options.epochIntervalMs, (epoch) => this.publishEpoch(epoch))
    this.log = options.log.child({ pipeline: pipeline.name, component: 'coordinator' })
    this.generation = options.generationBase ?? 0
    if (options.restored !== undefined) this.restore(options.restored)
  }

  /** Continues from what the previous leader stored. */
  private restore(m: PipelineMetadata): void {
    this.generation = Math.max(this.generation, m.generation)
    for (const w of m.members) {
      this.workers.set(w, member())
      this.unheard.add(w)
    }
    for (const [a, w] of Object.entries(m.assignment)) if (this.actorSet.has(a)) this.assignment.set(a, w)
    for (const [a, r] of Object.entries(m.releasing)) {
      if (!this.actorSet.has(a)) continue
      // Still waited for (timers start with the coordinator): a leaving worker may still report it.
      this.releasing.set(a, { from: r.from, generation: r.generation, timer: undefined })
      if (!this.workers.has(r.from)) this.left.add(r.from)
    }
    for (const [a, ws] of Object.entries(m.standbys)) if (this.actorSet.has(a)) this.standbys.set(a, ws)
    this.clock.restore(m.epoch, m.completedEpoch)
    for (const a of m.finished) this.actorDone(a, false)
    for (const [a, { quarantined, ...failure }] of Object.entries(m.failures)) {
      if (!this.actorSet.has(a)) continue
      this.failures.set(a, { failure, quarantined })
      if (quarantined) this.quarantine(a)
    }
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
      releasing: Object.fromEntries([...this.releasing].map(([a, r]) => [a, { from: r.from, generation: r.generation }])),
      failures: Object.fromEntries([...this.failures].map(([a, f]) => [a, { ...f.failure, quarantined: f.quarantined }])),
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

  private subject(kind: Exclude<keyof typeof subjects, 'workerProbe'>): string {
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
        const known = this.workers.get(msg.data.worker)
        if (known !== undefined) {
          this.seen(known, msg.data.answersProbes === true)
          // A generation's content never changes: releases not yet published go out in a new one.
          if (this.republishing !== undefined) this.publishReleased()
          else this.publishAssignment()
          return void this.heard(msg.data.worker)
        }
        this.join(msg.data.worker, msg.data.answersProbes === true)
      }),
      this.bus.subscribe(this.subject('workerHeartbeat'), (raw, subject) => {
        const msg = workerHeartbeat.safeParse(raw)
        if (!msg.success) return void log.warn({ subject, issue: msg.error.issues[0] }, 'malformed worker heartbeat dropped')
        const hb = msg.data
        if (this.left.has(hb.worker) || !this.accepts(hb.worker, hb.fingerprint)) return
        if (hb.actors.length > this.actors.length) return void log.warn({ subject, worker: hb.worker, reason: `it lists ${hb.actors.length} actors; the pipeline has ${this.actors.length}` }, 'worker heartbeat refused')
        // Continue where the running workers are: their generation, their epochs, their actors.
        if (hb.generation > this.generation) this.adoptGeneration(hb)
        this.clock.advanceTo(hb.lastEpoch)
        for (const a of hb.finished) this.actorDone(a)
        for (const [a, l] of Object.entries(hb.load ?? {})) if (this.assignment.get(a) === hb.worker || !this.settled) this.actorLoad.set(a, l)
        // Before the first placement, what a worker runs is the truth (stored metadata may be a step behind it).
        if (!this.settled) for (const a of hb.actors) if (this.actorSet.has(a)) this.assignment.set(a, hb.worker)
        // A release report may be lost (core NATS, a leader change): a worker that applied the
        // releasing generation and no longer lists the actor has stopped it and closed its producer.
        for (const [a, r] of this.releasing) {
          if (r.from === hb.worker && hb.generation >= r.generation && !hb.actors.includes(a)) this.released(a, 'its worker no longer runs it')
        }
        const known = this.workers.get(hb.worker)
        if (known !== undefined) {
          this.seen(known, hb.answersProbes === true)
          return void this.heard(hb.worker)
        }
        this.join(hb.worker, hb.answersProbes === true)
      }),
      this.bus.subscribe(this.subject('workerLeave'), (raw) => {
        const msg = workerLeave.safeParse(raw)
        if (!msg.success) return
        this.left.add(msg.data.worker)
        // Oldest first: leaves of ids never seen must not grow it without bound.
        if (this.left.size > MAX_WORKERS) this.left.delete(this.left.values().next().value!)
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
      this.bus.subscribe(this.subject('actorReleased'), (raw, subject) => {
        const msg = actorReleased.safeParse(raw)
        if (!msg.success) return void log.warn({ subject, issue: msg.error.issues[0] }, 'malformed release report dropped')
        const r = this.releasing.get(msg.data.actor)
        // From another worker, or from an older release of the same actor: not this one. A worker
        // that left reports only after its leave (one connection keeps its order): every report of it is final.
        if (r === undefined || r.from !== msg.data.worker || (msg.data.generation < r.generation && !this.left.has(msg.data.worker))) return
        const final = msg.data.finalCheckpoint
        this.released(msg.data.actor, final === undefined ? 'released without a final checkpoint' : `released after its final checkpoint (epoch ${final.epoch})`)
      }),
      this.bus.subscribe(this.subject('actorFailed'), (raw, subject) => {
        const msg = actorFailed.safeParse(raw)
        if (!msg.success) return void log.warn({ subject, issue: msg.error.issues[0] }, 'malformed actor failure report dropped')
        this.failedOn(msg.data)
      }),
      this.bus.subscribe(this.subject('actorClear'), (raw, subject) => {
        const msg = actorClear.safeParse(raw)
        if (!msg.success) return void log.warn({ subject, issue: msg.error.issues[0] }, 'malformed clear request dropped')
        this.clear(msg.data)
      }),
    )
    this.started = true
    for (const actor of this.releasing.keys()) this.armReleaseTimer(actor)
    this.clock.start()
    const timeout = this.options.workerTimeoutMs ?? Infinity
    if (Number.isFinite(timeout)) {
      // Checked often (a scan of the members): detection is the timeout plus at most one check.
      this.livenessTimer = setInterval(() => this.expireSilentWorkers(timeout), Math.max(50, Math.min(250, timeout / 8)))
      this.livenessTimer.unref()
      const probeMs = this.options.workerProbeMs ?? DEFAULT_WORKER_PROBE_MS
      if (probeMs > 0) {
        this.probeTimer = setInterval(() => this.probeWorkers(probeMs, timeout), probeMs)
        this.probeTimer.unref()
      }
    }
    const settleMs = this.options.settleMs ?? 0
    if (settleMs <= 0) this.settled = true
    else {
      this.settleTimer = setTimeout(() => this.settle(), settleMs)
      this.settleTimer.unref()
    }
  }

  /**
   * Continues a running worker's generation, only while listening before the first placement
   * and only from this leader's term or an earlier one: after placing, this coordinator's own
   * generation is the newest there is, so a higher one came of a message it never sent (a
   * forged assignment, which the worker drops once it sees the epochs state an older
   * generation: worker.ts). Adopting it would let one message push generations past every later leader's.
   */
  private adoptGeneration(hb: WorkerHeartbeat): void {
    const term = generationTerm(this.options.generationBase ?? 0)
    let reason: string | undefined
    if (generationTerm(hb.generation) > term) reason = `generation ${hb.generation} is of lease term ${generationTerm(hb.generation)}, after this coordinator's term ${term}`
    else if (this.settled) reason = `generation ${hb.generation} is newer than the newest this coordinator assigned (${this.generation})`
    if (reason === undefined) this.generation = hb.generation
    else this.log.warn({ worker: hb.worker, generation: hb.generation, reason }, 'worker generation not adopted')
  }

  private actorDone(actor: string, announce = true): void {
    if (this.finishedActors.has(actor) || !this.actorSet.has(actor)) return
    this.finishedActors.add(actor)
    this.clock.retire(actor)
    this.updateFinishedStages(announce)
    if (announce) this.options.onChange?.()
    if (this.allFinished) this.options.onAllFinished?.()
  }

  /** Refuses a worker running a different topology under this pipeline's name, telling it why. */
  private accepts(worker: string, fingerprint: string): boolean {
    if (fingerprint === this.pipeline.fingerprint) return true
    const reason = `worker ${worker} runs a different topology of pipeline '${this.pipeline.name}' (fingerprint ${fingerprint}, the cluster runs ${this.pipeline.fingerprint}): a rolling upgrade may change processor code, not stages, state names or partitions; run the same topology on every worker, or ${TOPOLOGY_CHANGE_ADVICE}`
    this.log.error({ worker, fingerprint, expected: this.pipeline.fingerprint }, 'worker runs a different pipeline topology; refused')
    const msg: WorkerRefused = { v: 1, worker, reason, expectedFingerprint: this.pipeline.fingerprint, fingerprint, shape: this.pipeline.shape }
    this.bus.publish(this.subject('workerRefused'), msg)
    return false
  }

  private join(worker: string, answersProbes: boolean): void {
    if (this.workers.size >= MAX_WORKERS) return void this.log.warn({ worker, reason: `the pipeline has ${this.workers.size} workers (at most ${MAX_WORKERS})` }, 'worker not admitted')
    this.workers.set(worker, member(answersProbes))
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
    for (const w of silent) this.log.warn({ worker: w, silentMs: timeoutMs }, 'worker silent past the timeout: declared dead, its actors move')
    this.declareDead(silent)
  }

  /** A heartbeat or hello of a member: alive now, so its unanswered probes are forgotten. */
  private seen(m: Member, answersProbes: boolean): void {
    m.lastSeen = Date.now()
    m.answersProbes = answersProbes
    m.unanswered = 0
  }

  /**
   * Asks every member that answers probes whether it lives. Only "nobody listens" counts
   * against it (a timeout may be a busy worker), and not within a worker timeout of this
   * coordinator's own reconnect to the bus: the workers may not have reconnected yet.
   * (Members restored from stored metadata are probed only once heard from.)
   */
  private probeWorkers(probeMs: number, timeoutMs: number): void {
    if (this.bus.state !== 'connected' || Date.now() - this.bus.reconnectedAt < timeoutMs) return
    for (const [worker, m] of this.workers) {
      if (!m.answersProbes || m.probing) continue
      m.probing = true
      this.bus.request(subjects.workerProbe(this.options.cluster, this.pipeline.name, worker), { v: 1 }, { timeoutMs: probeMs }).then(
        () => { m.unanswered = 0 },
        (err: unknown) => { if (err instanceof BusNoResponderError && this.workers.get(worker) === m) this.unansweredProbe(worker, m) },
      ).finally(() => { m.probing = false })
    }
  }

  private unansweredProbe(worker: string, m: Member): void {
    m.unanswered++
    if (m.unanswered < UNANSWERED_PROBES_BEFORE_DEAD || this.stopped) return
    // Nobody answering for every member at once points at this coordinator's link, as silence does.
    if ([...this.workers.values()].every((o) => o.unanswered > 0)) return
    this.log.warn({ worker, probes: m.unanswered, silentMs: Date.now() - m.lastSeen }, 'worker answers no probe (its bus connection is gone): declared dead, its actors move')
    this.declareDead([worker])
  }

  private declareDead(workers: string[]): void {
    for (const w of workers) this.workers.delete(w)
    // Stored members declared dead are not waited for any longer.
    const waitedFor = workers.filter((w) => this.unheard.delete(w))
    if (!this.settled && waitedFor.length > 0 && this.unheard.size === 0) return this.settle()
    this.rebalance()
  }

  /**
   * An actor failed for good on `report.worker`. Its instance is stopped and closed there, so
   * it moves at once (nothing to release) to a worker it has not failed on; after failing on
   * QUARANTINE_AFTER_WORKERS workers, or with no other worker to try, it is quarantined.
   */
  private failedOn(report: ActorFailed): void {
    const { actor, worker } = report
    if (!this.actorSet.has(actor) || this.failures.get(actor)?.quarantined === true) return
    // Only the instance this coordinator gave the actor to counts: a zombie (a worker paused
    // past its timeout, the actor moved meanwhile) failing on its way out is not the actor's fault.
    if (this.assignment.get(actor) !== worker && this.releasing.get(actor)?.from !== worker) {
      this.log.info({ actor, worker, runsOn: this.assignment.get(actor), err: report.error }, 'failure of an actor instance that no longer runs there: not counted')
      return
    }
    const before = this.failures.get(actor)?.failure.workers ?? []
    const workers = before.includes(worker) ? before : [...before, worker]
    const untried = [...this.workers.keys()].filter((w) => !workers.includes(w))
    const quarantined = workers.length >= QUARANTINE_AFTER_WORKERS || untried.length === 0
    this.failures.set(actor, { failure: { workers, error: report.error, at: report.at }, quarantined })
    // Its instance is closed: nothing to release, and it starts afresh wherever placement puts it.
    this.endRelease(actor)
    this.assignment.delete(actor)
    if (quarantined) {
      this.quarantine(actor)
      this.log.error({ actor, workers, err: report.error }, `actor quarantined: it failed for good on ${workers.join(' and ')}; it runs nowhere until an operator clears it (weir actor clear ${this.pipeline.name} ${actor})`)
    } else {
      this.log.warn({ actor, worker, err: report.error, untried }, 'actor failed for good on a worker: moving it to another')
    }
    this.rebalance()
  }

  /** Assigned to nobody and out of epoch completion until cleared. */
  private quarantine(actor: string): void {
    this.assignment.delete(actor)
    this.endRelease(actor)
    this.clock.retire(actor)
  }

  /** An operator clears an actor's failures: it is placed again (anywhere) and counted from zero. */
  private clear(request: ActorClear): void {
    const answer = (a: Omit<ActorClearAnswer, 'v' | 'actor' | 'requestId'>): void => this.bus.publish(this.subject('actorClearAnswer'), { v: 1, actor: request.actor, requestId: request.requestId, ...a } satisfies ActorClearAnswer)
    if (!this.actorSet.has(request.actor)) return answer({ outcome: 'unknown-actor' })
    const known = this.failures.get(request.actor)
    if (known === undefined) return answer({ outcome: 'not-failed' })
    this.failures.delete(request.actor)
    if (known.quarantined && !this.finishedActors.has(request.actor)) this.clock.track(request.actor)
    this.log.warn({ actor: request.actor, failure: known.failure, quarantined: known.quarantined }, 'actor failures cleared by an operator: placing it again')
    this.rebalance()
    this.options.onChange?.()
    answer({ outcome: 'cleared', generation: this.generation, failure: known.failure })
  }

  /** Actors placement deals with: all but the quarantined. */
  private get placeable(): string[] {
    return this.actors.filter((a) => this.failures.get(a)?.quarantined !== true)
  }

  /** Where each placeable actor failed: it goes elsewhere while it can. */
  private get avoid(): Map<string, string[]> {
    return new Map([...this.failures].filter(([, f]) => !f.quarantined).map(([a, f]) => [a, f.failure.workers]))
  }

  /** The newest epoch every live actor has committed. */
  get completedEpoch(): number {
    return this.clock.completed
  }

  /**
   * Workers and where each actor goes in the newest generation (an actor being released
   * runs nowhere until its old owner, in `releasing`, reports it stopped).
   */
  get placement(): { generation: number; workers: string[]; actors: Record<string, string>; releasing: Record<string, string>; quarantined: string[] } {
    return {
      generation: this.generation,
      workers: [...this.workers.keys()],
      actors: Object.fromEntries(this.assignment),
      releasing: Object.fromEntries([...this.releasing].map(([a, r]) => [a, r.from])),
      quarantined: [...this.failures].filter(([, f]) => f.quarantined).map(([a]) => a),
    }
  }

  private rebalance(): void {
    if (!this.settled) return
    clearImmediate(this.republishing)
    this.republishing = undefined
    const workers = [...this.workers.keys()]
    const previous = this.assignment
    const actors = this.placeable
    for (const [a, w] of this.assignment) if (!this.workers.has(w)) this.homes.set(a, w)
    this.assignment = place(actors, workers, this.assignment, this.standbys, this.actorLoad, this.avoid, this.homes)
    // A home counts once, when its worker is back: from then on placement is sticky as usual.
    for (const [a, w] of this.homes) if (this.workers.has(w)) this.homes.delete(a)
    this.standbys = placeStandbys(actors, workers, this.assignment, this.standbys, this.pipeline.shape.standbys)
    this.generation++
    this.updateReleases(previous)
    this.publishAssignment()
    this.options.onChange?.()
  }

  /**
   * A worker that can still stop an actor cleanly (a member, or one that announced its
   * leave) releases it before anyone else gets it. A worker declared dead cannot: its
   * actors move at once, and their new owners' producers fence whatever it left.
   */
  private canRelease(worker: string): boolean {
    return this.workers.has(worker) || this.left.has(worker)
  }

  private updateReleases(previous: Assignment): void {
    for (const actor of this.actors) {
      const target = this.assignment.get(actor)
      const pending = this.releasing.get(actor)
      if (pending !== undefined) {
        // Back to the worker releasing it (it starts it again), or that worker died: nothing to wait for.
        if (target === pending.from) this.endRelease(actor)
        else if (!this.canRelease(pending.from)) {
          this.log.info({ actor, from: pending.from, to: target }, 'worker releasing an actor is gone: assigning the actor now')
          this.endRelease(actor)
        }
        continue
      }
      const from = previous.get(actor)
      if (from === undefined || from === target || !this.canRelease(from)) continue
      this.releasing.set(actor, { from, generation: this.generation, timer: undefined })
      this.armReleaseTimer(actor)
    }
  }

  private armReleaseTimer(actor: string): void {
    const r = this.releasing.get(actor)
    if (r === undefined || !this.started || r.timer !== undefined) return
    const timeoutMs = this.options.releaseTimeoutMs ?? DEFAULT_RELEASE_TIMEOUT_MS
    r.timer = setTimeout(() => {
      r.timer = undefined
      this.log.warn({ actor, from: r.from, to: this.assignment.get(actor), timeoutMs }, 'actor not released in time: assigning it anyway (its new owner fences the old instance)')
      this.released(actor, 'release timed out')
    }, timeoutMs)
    r.timer.unref()
  }

  private endRelease(actor: string): void {
    const r = this.releasing.get(actor)
    if (r === undefined) return
    clearTimeout(r.timer)
    this.releasing.delete(actor)
  }

  /** The old owner let the actor go (or will not): its new owner gets it in the next generation. */
  private released(actor: string, why: string): void {
    const r = this.releasing.get(actor)
    if (r === undefined) return
    this.endRelease(actor)
    this.log.info({ actor, from: r.from, to: this.assignment.get(actor), why }, 'actor released: assigning it to its new owner')
    // Reports of one hand-off arrive in bursts: one new generation for the ones heard together.
    this.republishing ??= setImmediate(() => this.publishReleased())
  }

  /** Publishes the actors released since the last generation, in a new one. */
  private publishReleased(): void {
    clearImmediate(this.republishing)
    this.republishing = undefined
    if (!this.settled) return
    this.generation++
    this.publishAssignment()
    this.options.onChange?.()
  }

  private publishAssignment(): void {
    if (!this.settled) return
    const actors: Record<string, string> = {}
    for (const [a, w] of this.assignment) if (!this.releasing.has(a)) actors[a] = w
    const msg: AssignmentMessage = { v: 1, generation: this.generation, actors }
    if (this.standbys.size > 0) msg.standbys = Object.fromEntries(this.standbys)
    if (this.releasing.size > 0) {
      msg.releasing = Object.fromEntries([...this.releasing].map(([a, r]) => {
        const to = this.assignment.get(a)
        return [a, to === undefined ? { from: r.from } : { from: r.from, to }]
      }))
    }
    const quarantined = [...this.failures].filter(([, f]) => f.quarantined)
    if (quarantined.length > 0) msg.quarantined = Object.fromEntries(quarantined.map(([a, f]) => [a, f.failure]))
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
    this.stopped = true
    this.clock.stop()
    clearInterval(this.livenessTimer)
    clearInterval(this.probeTimer)
    clearTimeout(this.settleTimer)
    clearImmediate(this.republishing)
    for (const r of this.releasing.values()) clearTimeout(r.timer)
    for (const s of this.subs) s.unsubscribe()
  }
}
