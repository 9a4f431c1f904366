/**
 * A worker hosts actors. It runs what the coordinator assigns (newest generation only),
 * forwards epochs to its actors as barrier requests, and reports commits and finished
 * actors back over the control bus. An actor that fails for good (not a retriable pipe
 * error) stops alone: the worker keeps its state, reports it (`actorFailed`, and failed on
 * the progress channel) and runs its other actors.
 */
import type { Logger } from 'pino'
import { assignmentMessage, epochMessage, GENERATIONS_PER_TERM, workerRefused, pipelineShapeOf, workerHelloOf, type WorkerProbeAnswer, type ActorFailed, type ActorFailure, type ActorReleased, type AssignmentMessage, type EpochMessage, type WorkerHeartbeat } from './control/messages.ts'
import { Actor, ActorFailedError, type ActorConfig } from './actor/actor.ts'
import { subjects, viewSubjects, type ControlBus, type Subscription } from './control/bus.ts'
import { respondToView } from './views/view-protocol.ts'
import { answerInspect } from './views/inspect-protocol.ts'
import { ViewClient } from './views/view-client.ts'
import { sampleEdge } from './tail.ts'
import { describeError, WeirError } from './errors.ts'
import { SimulatedCrash, type Faults } from './faults.ts'
import type { Pipe } from './pipe/pipe.ts'
import type { Pipeline } from './api/pipeline.ts'
import { ProgressReporter } from './progress-reporter.ts'
import { StandbyReplica } from './standby.ts'
import { refusalReason } from './topology-guard.ts'
import { SavepointParticipant } from './savepoint/live.ts'
import { chainHead, chainMembers, chainsOf, type ChainPlan } from './api/chains.ts'

/** Restarts of one actor on retriable errors before the run fails (backoff doubles up to 30 s). */
const MAX_RESTARTS = 10
/** An assignment more lease terms than this ahead of the leader's known generation is refused: no failover skips so many. */
const MAX_TERMS_AHEAD = 1000
/** Epochs, all stating an older generation than this worker's, after which it drops its generation and follows the leader. */
const EPOCHS_BEFORE_FOLLOWING = 5

export interface WorkerOptions {
  id: string
  cluster: string
  dataDir: string
  /** What relative paths of the processors resolve against (LifecycleContext.workDir). Default: the process's working directory. */
  workDir?: string
  log: Logger
  faults: Faults
  actorConfig: ActorConfig
  /** Interval of progress and health events on the bus, ms. Default 1000. */
  progressIntervalMs?: number
  /**
   * The coordinator's epoch interval, ms. When no epoch arrives for twice this long (bus
   * or coordinator down), the worker checkpoints its actors on its own at this interval.
   * Default 1000.
   */
  epochIntervalMs?: number
  /** Interval of membership heartbeats to the coordinator, ms. Default 1000. */
  heartbeatMs?: number
  /**
   * Where this worker writes the state of its actors for a savepoint of the running pipeline
   * (runtime/savepoint/live.ts); undefined: it takes part in none.
   */
  savepointDir?: string
  /** Called once the coordinator reports every stage of the pipeline finished (bounded pipelines). */
  onPipelineFinished?: () => void
  /** Called when an actor failed for good and stopped alone (after it was reported). */
  onActorFailed?: (actor: string, err: WeirError) => void
  /**
   * An actor stopped because a newer instance of it fenced this one (its producer, or its
   * sink's store). In a cluster that instance runs elsewhere; a run alone in its process
   * (the embedded runner) has no other instance, so there it is another run writing the same.
   */
  onActorFenced?: (actor: string, err: WeirError) => void
}

/** An actor that failed for good here: stopped, its state kept, reported until it runs again somewhere. */
interface FailedActor {
  actor: Actor
  /** A typed error as thrown (StateCorruptedError, ActorFailedError, …); anything else wrapped in ActorFailedError. */
  error: WeirError
  at: number
  /** Set once the coordinator published it quarantined. */
  quarantined: ActorFailure | undefined
}

/**
 * Answers the coordinator's liveness probes for worker `id` of `pipeline` until the
 * subscription ends (coordinator.ts tells a dead worker by nobody answering).
 */
export function answerProbes(bus: ControlBus, cluster: string, pipeline: string, id: string): Subscription {
  const answer: WorkerProbeAnswer = { v: 1, worker: id }
  return bus.respond(subjects.workerProbe(cluster, pipeline, id), () => answer)
}

/** The coordinator refused this worker (it runs a different topology of the pipeline). */
export class WorkerRefusedError extends WeirError {
  constructor(reason: string, context: Record<string, unknown>) {
    super('WEIR_WORKER_REFUSED', reason, context)
  }
}

export class Worker {
  readonly actors = new Map<string, { actor: Actor; restoring: Promise<void>; running: Promise<void>; started: boolean }>()
  private generation = -1
  /** Actors of the newest assignment held here. */
  private assigned = new Set<string>()
  private stopped = false
  private readonly subs: Subscription[] = []
  private readonly finishedStages = new Set<string>()
  private failure: ((err: unknown) => void) | undefined
  private readonly log: Logger
  private readonly progress: ProgressReporter
  /** Actors waiting out a restart backoff: reconciliation leaves them to it. */
  private readonly restartsPending = new Set<string>()
  private nextAssignment: AssignmentMessage | undefined
  private applying: Promise<void> | undefined
  /** Standby replicas this worker keeps warm, by actor id. */
  private readonly replicas = new Map<string, StandbyReplica>()
  /** The stale-read responders of replicas of view stages, by actor id. */
  private readonly replicaViews = new Map<string, Subscription>()
  private lastEpochAt = Date.now()
  private fallbackTimer: NodeJS.Timeout | undefined
  private heartbeatTimer: NodeJS.Timeout | undefined
  /** Answers the coordinator's liveness probes; outlives `subs` until the worker has stopped. */
  private probeResponder: Subscription | undefined
  private pipelineFinished = false
  /** Announced its leave: no more heartbeats (they would make it a member again) and no new actors. */
  private leaving = false
  /** Stopping as a crash would: actors' errors from here on are the abandon's doing, not theirs. */
  private abandoning = false
  /** Each actor's record count at the previous heartbeat, for its load. */
  private readonly loadSamples = new Map<string, { at: number; count: number }>()
  /** Actors that failed for good here, by id. */
  private readonly failed = new Map<string, FailedActor>()
  /** Actor ids of the pipeline: an assignment naming any other is refused. */
  private readonly pipelineActors: ReadonlySet<string>
  /** The newest generation the leader's epochs stated, and how many epochs in a row stated one older than ours. */
  private leaderGeneration = -1
  private epochsBehind = 0
  private readonly savepoints: SavepointParticipant
  /** Which stages run in the actors of another (runtime/api/chains.ts): the coordinator knows only the chains' heads. */
  private readonly chains: ChainPlan

  constructor(private readonly bus: ControlBus, private readonly pipe: Pipe, private readonly pipeline: Pipeline, private readonly options: WorkerOptions) {
    this.log = options.log.child({ worker: options.id })
    this.progress = new ProgressReporter(bus, pipeline, () => [...this.actorList, ...[...this.failed.values()].map((f) => f.actor)], {
      cluster: options.cluster, worker: options.id, intervalMs: options.progressIntervalMs, log: this.log, standbys: () => [...this.replicas.values()],
      failure: (actor) => {
        const f = this.failed.get(actor.id)
        if (f === undefined || f.actor !== actor) return undefined
        return { code: f.error.code, message: f.error.message, at: f.at, quarantined: f.quarantined !== undefined, failedOn: f.quarantined?.workers ?? [this.options.id] }
      },
    })
    this.chains = chainsOf(pipeline)
    this.pipelineActors = new Set(pipeline.actorStages.flatMap((s) => Array.from({ length: s.parallelism }, (_, p) => `${s.name}/${p}`)))
    this.savepoints = new SavepointParticipant({ bus, pipeline, cluster: options.cluster, worker: options.id, pipe, dir: options.savepointDir, actors: () => [...this.actors.values()].filter((e) => e.started).flatMap((e) => [e.actor, ...e.actor.chained]), log: this.log })
  }

  get id(): string {
    return this.options.id
  }

  private subject(kind: Exclude<keyof typeof subjects, 'workerProbe'>): string {
    return subjects[kind](this.options.cluster, this.pipeline.name)
  }

  /** Registers with the coordinator; `onFailure` hears of an actor that failed. */
  start(onFailure: (err: unknown) => void): void {
    this.failure = onFailure
    const views = new ViewClient(this.bus, this.pipeline, { cluster: this.options.cluster })
    this.subs.push(
      // Questions of clients that know only names (the monitor's dashboard, weir peek --bus): any one worker answers.
      this.bus.respond(this.subject('inspect'), (raw) => answerInspect(raw, { pipeline: this.pipeline, views, sample: (stage, n) => sampleEdge(this.pipe, this.pipeline, stage, n) })),
      this.bus.subscribe(this.subject('assignment'), (raw, subject) => {
        const msg = assignmentMessage.safeParse(raw)
        if (!msg.success) return void this.log.warn({ subject, issue: msg.error.issues[0] }, 'malformed assignment dropped')
        const refusal = this.assignmentRefusal(msg.data)
        if (refusal !== undefined) return void this.log.warn({ subject, generation: msg.data.generation, reason: refusal }, 'assignment refused')
        this.enqueueAssignment(msg.data)
      }),
      this.bus.subscribe(this.subject('epoch'), (raw, subject) => {
        const msg = epochMessage.safeParse(raw)
        if (!msg.success) return void this.log.warn({ subject, issue: msg.error.issues[0] }, 'malformed epoch dropped')
        this.lastEpochAt = Date.now()
        this.followLeader(msg.data)
        for (const s of msg.data.finishedStages) if (this.pipeline.stage(s) !== undefined) this.finishedStages.add(s)
        for (const { actor } of this.actors.values()) {
          actor.requestBarrier(msg.data.epoch)
          this.maybeUpstreamFinished(actor)
        }
        if (!this.pipelineFinished && this.pipeline.actorStages.every((s) => this.stageFinished(s.name))) {
          this.pipelineFinished = true
          this.options.onPipelineFinished?.()
        }
      }),
      this.bus.subscribe(this.subject('workerRefused'), (raw) => {
        const msg = workerRefused.safeParse(raw)
        if (!msg.success || msg.data.worker !== this.options.id) return
        this.failure?.(new WorkerRefusedError(refusalReason(msg.data, this.pipeline), { worker: this.options.id, pipeline: this.pipeline.name, fingerprint: msg.data.fingerprint, expectedFingerprint: msg.data.expectedFingerprint }))
      }),
    )
    this.savepoints.start()
    // Subscribed before the hello, and kept until the worker has stopped: while this process
    // and its bus connection live, the coordinator's probes get an answer (coordinator.ts).
    this.probeResponder = answerProbes(this.bus, this.options.cluster, this.pipeline.name, this.options.id)
    this.bus.publish(this.subject('workerHello'), workerHelloOf(this.pipeline, this.options.id))
    this.heartbeatTimer = setInterval(() => this.heartbeat(), this.options.heartbeatMs ?? 1000)
    this.heartbeatTimer.unref()
    this.progress.start()
    const interval = this.options.epochIntervalMs ?? 1000
    this.fallbackTimer = setInterval(() => {
      if (Date.now() - this.lastEpochAt < 2 * interval) return
      this.log.debug({ sinceEpochMs: Date.now() - this.lastEpochAt }, 'no epoch from the coordinator: checkpointing locally')
      for (const { actor } of this.actors.values()) actor.requestLocalBarrier()
    }, interval)
    this.fallbackTimer.unref()
  }

  /** Why an assignment cannot be the leader's: an actor the pipeline lacks, a generation far beyond the leader's. */
  private assignmentRefusal(msg: AssignmentMessage): string | undefined {
    const unknown = [...Object.keys(msg.actors), ...Object.keys(msg.standbys ?? {}), ...Object.keys(msg.releasing ?? {}), ...Object.keys(msg.quarantined ?? {})].find((a) => !this.pipelineActors.has(a))
    if (unknown !== undefined) return `actor ${unknown} is not an actor of pipeline '${this.pipeline.name}'`
    // What the leader is known to be at: its epochs, or before the first epoch reaches this
    // worker (a loaded machine, a worker that just started), the assignment it already took.
    const known = Math.max(this.leaderGeneration, this.generation)
    if (known >= 0 && msg.generation > known + MAX_TERMS_AHEAD * GENERATIONS_PER_TERM) {
      return `generation ${msg.generation} is more than ${MAX_TERMS_AHEAD} lease terms ahead of the leader's (generation ${known})`
    }
    return undefined
  }

  /**
   * Epochs state the leader's generation. One older than ours, epoch after epoch, means the
   * leader never sent the assignment we hold (a forged or stray message): without this, its
   * generation would make us ignore every real assignment after it. We drop it and say
   * hello; the leader answers with its current assignment. A leader that did send ours states
   * it in its next epoch, so a deposed leader's epochs in between change nothing.
   */
  private followLeader(epoch: EpochMessage): void {
    this.leaderGeneration = epoch.generation
    if (epoch.generation >= this.generation) return void (this.epochsBehind = 0)
    // A worker on its way out says no hello: that would make it a member again.
    if (++this.epochsBehind < EPOCHS_BEFORE_FOLLOWING || this.leaving || this.stopped) return
    this.log.warn({ generation: this.generation, leaderGeneration: epoch.generation, epochs: this.epochsBehind }, 'the leader never stated this worker\'s assignment generation: dropping it and following the leader')
    this.epochsBehind = 0
    this.generation = epoch.generation - 1
    this.bus.publish(this.subject('workerHello'), workerHelloOf(this.pipeline, this.options.id))
  }

  /** Alive, with what it runs: lets a coordinator that (re)started continue from here. */
  private heartbeat(): void {
    if (this.leaving) return
    this.reconcile()
    const actors = [...this.actors.values()].map((e) => e.actor)
    const msg: WorkerHeartbeat = {
      v: 1,
      worker: this.options.id,
      fingerprint: this.pipeline.fingerprint(),
      generation: Math.max(0, this.generation),
      shape: pipelineShapeOf(this.pipeline),
      actors: actors.map((a) => a.id),
      finished: actors.filter((a) => a.lifecycle === 'finished').map((a) => a.id),
      lastEpoch: actors.reduce((m, a) => Math.max(m, a.stats.lastEpoch), 0),
      load: this.actorLoad(actors),
      answersProbes: true,
    }
    this.bus.publish(this.subject('workerHeartbeat'), msg)
  }

  /** Records in (emitted, for a source) per second per actor since the previous heartbeat. */
  private actorLoad(actors: readonly Actor[]): Record<string, number> {
    const now = performance.now()
    const load: Record<string, number> = {}
    for (const a of actors) {
      const count = a.isSource ? a.stats.recordsOut : a.stats.recordsIn
      const prev = this.loadSamples.get(a.id)
      if (prev !== undefined && now > prev.at && count >= prev.count) load[a.id] = Math.round(((count - prev.count) * 1000) / (now - prev.at))
      this.loadSamples.set(a.id, { at: now, count })
    }
    for (const id of this.loadSamples.keys()) if (!actors.some((a) => a.id === id)) this.loadSamples.delete(id)
    return load
  }

  /**
   * Starts any actor of the newest assignment that is not running here: one that was
   * fenced (a zombie's instance) or ended while an assignment gave it back. A safety net
   * under every race between assignments, restores and fencing.
   */
  private reconcile(): void {
    if (this.stopped || this.leaving || this.applying !== undefined) return
    for (const id of this.assigned) {
      if (this.actors.has(id) || this.restartsPending.has(id) || this.failed.has(id)) continue
      this.log.info({ actor: id }, 'assigned actor not running here: starting it')
      void this.startActor(id).catch((err: unknown) => this.failure?.(err))
    }
  }

  /** Tells the coordinator this worker is leaving, so its actors move now rather than after the timeout. */
  announceLeave(): void {
    this.leaving = true
    this.bus.publish(this.subject('workerLeave'), { v: 1, worker: this.options.id })
  }

  /** Actors this worker runs now (not those that finished their input). */
  get actorIds(): string[] {
    return [...this.actors.entries()].filter(([, e]) => e.actor.lifecycle !== 'finished').map(([id]) => id)
  }

  private maybeUpstreamFinished(actor: Actor): void {
    // A side output or keyed stream ends when the stage writing it does.
    const inputs = actor.stage.inputs.map((i) => this.pipeline.writerOf(this.pipeline.stage(i)!)?.name ?? i)
    if (inputs.length > 0 && inputs.every((i) => this.stageFinished(i))) actor.markUpstreamFinished()
  }

  /** Whether a stage finished: the coordinator reports chains' heads, and a chained stage finishes with its head. */
  private stageFinished(stage: string): boolean {
    return this.finishedStages.has(chainHead(this.chains, stage))
  }

  /**
   * Assignments are applied one at a time, the newest waiting one next: an actor given
   * back while it was still stopping for an older assignment must be started again after
   * that stop, not skipped because it is still listed.
   */
  private enqueueAssignment(msg: AssignmentMessage): void {
    if (msg.generation <= Math.max(this.generation, this.nextAssignment?.generation ?? -1)) return
    this.nextAssignment = msg
    if (this.applying !== undefined) return
    this.applying = (async () => {
      while (this.nextAssignment !== undefined) {
        const next = this.nextAssignment
        this.nextAssignment = undefined
        await this.applyAssignment(next)
      }
    })()
      .catch((err: unknown) => this.failure?.(err))
      .finally(() => {
        this.applying = undefined
      })
  }

  private async applyAssignment(msg: AssignmentMessage): Promise<void> {
    if (msg.generation <= this.generation) return
    this.generation = msg.generation
    const mine = new Set(Object.entries(msg.actors).filter(([, w]) => w === this.options.id).map(([a]) => a))
    this.assigned = mine
    // A failed actor assigned again (here after a clear, or elsewhere) is no longer this worker's to report.
    for (const [a, f] of this.failed) {
      if (msg.actors[a] !== undefined) this.failed.delete(a)
      else f.quarantined = msg.quarantined?.[a]
    }
    const standby = this.withChained(new Set(Object.entries(msg.standbys ?? {}).filter(([, ws]) => ws.includes(this.options.id)).map(([a]) => a)))
    const mineChained = this.withChained(mine)
    const leaving = [...this.actors.keys()].filter((a) => !mine.has(a))
    // Asked to release an actor it does not run (never started, or waiting out a restart): nothing to stop.
    for (const [a, r] of Object.entries(msg.releasing ?? {})) if (r.from === this.options.id && !this.actors.has(a)) this.reportReleased(a, msg.generation, undefined)
    // A replica of an actor that becomes active here stops first: the actor opens the store it kept warm.
    await Promise.all([...this.replicas.keys()].filter((a) => !standby.has(a) || mineChained.has(a)).map((a) => this.stopReplica(a)))
    // Each one is reported as soon as it stopped, so its new owner can start it while the others still stop.
    await Promise.all(leaving.map(async (a) => this.reportReleased(a, msg.generation, await this.stopActor(a))))
    for (const a of standby) if (!mineChained.has(a) && !this.actors.has(a) && !this.replicas.has(a) && !this.stopped) this.startReplica(a)
    // Actors restore in parallel: on Kafka each one waits for its producer's InitProducerId and its readers' group joins.
    await Promise.all([...mine].filter((id) => !this.actors.has(id)).map((id) => (this.stopped || this.leaving ? undefined : this.startActor(id))))
  }

  /** `actors` and the actors of the stages chained to them (a chain's state is one per stage: each has its replica). */
  private withChained(actors: Set<string>): Set<string> {
    const out = new Set(actors)
    for (const a of actors) {
      const [stage, p] = a.split('/')
      for (const m of chainMembers(this.chains, stage!)) out.add(`${m}/${p}`)
    }
    return out
  }

  private startReplica(id: string): void {
    const [stageName, p] = id.split('/')
    const replica = new StandbyReplica({ pipe: this.pipe, pipeline: this.pipeline, spec: this.pipeline.stage(stageName!)!, partition: Number(p), dataDir: this.options.dataDir, log: this.log })
    this.replicas.set(id, replica)
    replica.start().catch((err: unknown) => this.log.warn({ standby: id, err: describeError(err) }, 'standby replica failed to start; the actor would restore from the changelog'))
    const views = this.serveStandbyViews(replica)
    if (views !== undefined) this.replicaViews.set(id, views)
  }

  private async stopReplica(id: string): Promise<void> {
    // Stale readers go to another replica, or wait for the actor, from here on.
    this.replicaViews.get(id)?.unsubscribe()
    this.replicaViews.delete(id)
    const replica = this.replicas.get(id)
    this.replicas.delete(id)
    await replica?.stop()
  }

  /**
   * Answers stale view reads (`ReadOptions.stale`) for a replica's partition from the newest
   * whole checkpoint it holds, marked `standby: true`: view clients ask it while the actor
   * moves. Several replicas of one partition share the subject; one of them answers.
   */
  private serveStandbyViews(replica: StandbyReplica): Subscription | undefined {
    if (!replica.servesViews) return undefined
    const subject = viewSubjects.standby(this.options.cluster, this.pipeline.name, replica.stage, replica.partition)
    return this.bus.respond(subject, (raw) => respondToView(raw, replica.partition, `the standby of ${replica.id}`, (request) => replica.queryView(request)))
  }

  /** Standby replicas kept warm here. */
  get standbyIds(): string[] {
    return [...this.replicas.keys()]
  }

  private async startActor(id: string, attempt = 0): Promise<void> {
    const [stageName, p] = id.split('/')
    const spec = this.pipeline.stage(stageName!)!
    const actor = new Actor(
      { pipeline: this.pipeline, spec, partition: Number(p), pipe: this.pipe, dataDir: this.options.dataDir, workDir: this.options.workDir, log: this.log, faults: this.options.faults, config: this.options.actorConfig },
      {
        onEpoch: (epoch) => this.bus.publish(this.subject('epochAck'), { v: 1, actor: id, epoch }),
        onFinished: () => {
          this.progress.publishNow(actor)
          this.bus.publish(this.subject('actorFinished'), { v: 1, actor: id, worker: this.options.id })
        },
        onWatermark: () => this.progress.watermarkAdvanced(actor),
      },
    )
    // The stages chained to this one run in its actor: their figures are their own, their acks and finishing its.
    const members = chainMembers(this.chains, spec.name).map((name) => {
      const member: Actor = new Actor(
        { pipeline: this.pipeline, spec: this.pipeline.stage(name)!, partition: Number(p), pipe: this.pipe, dataDir: this.options.dataDir, workDir: this.options.workDir, log: this.log, faults: this.options.faults, config: this.options.actorConfig },
        { onEpoch: () => undefined, onFinished: () => this.progress.publishNow(member), onWatermark: () => this.progress.watermarkAdvanced(member) },
      )
      return member
    })
    actor.chain(members)
    const startedAt = Date.now()
    const entry = { actor, restoring: actor.restore(), running: Promise.resolve(), started: false }
    this.actors.set(id, entry)
    try {
      await entry.restoring
    } catch (err) {
      if (this.abandoning) return
      if (this.restartLater(id, err, attempt, startedAt, actor)) return
      if (isolated(err)) return this.failedForGood(id, err, actor, true)
      throw err
    }
    // Stopped, or moved away while restoring (this worker was paused): the stop path releases
    // the actor, and its processor is never opened (a sink's open may touch external state).
    if (this.stopped || !this.assigned.has(id) || this.leaving) return
    this.log.info({ actor: id, positions: actor.inputPositions, replayed: actor.stats.replayedChangelogRecords, restoreMs: Math.round(actor.stats.restoreMs) }, 'actor restored: starting from its last checkpoint')
    this.maybeUpstreamFinished(actor)
    this.savepoints.actorStarted(actor)
    entry.started = true
    const views = this.serveViews(actor)
    entry.running = actor.run().finally(() => views?.unsubscribe()).then(
      () => {
        // Fenced: a newer instance runs elsewhere (this worker was paused past its timeout).
        // Forget it here, so a later assignment that gives it back starts it again.
        if (actor.lifecycle === 'fenced' && this.actors.get(id) === entry) this.actors.delete(id)
        if (actor.lifecycle === 'fenced' && !this.stopped && !this.abandoning) this.options.onActorFenced?.(id, actor.fencedBy ?? new WeirError('WEIR_ACTOR_FENCED', `${id} was fenced`, { actor: id }))
      },
      (err: unknown) => {
        if (this.abandoning) return
        if (this.restartLater(id, err, attempt, startedAt)) return
        if (isolated(err)) return this.failedForGood(id, err, actor, false)
        // A simulated crash is the test's plan, not a failure: an error line with a stack would make a passing test look failed.
        if (err instanceof SimulatedCrash) this.log.info({ actor: id, point: err.point, hit: err.hit }, `planned crash (weir/testing): ${err.point}, hit ${err.hit}; the run is abandoned as a kill would leave it`)
        else this.log.error({ actor: id, err: describeError(err) }, 'actor failed')
        this.failure?.(err)
      },
    )
  }

  /**
   * Answers view requests for a running actor's partition (view-protocol.ts); any worker's
   * view client finds it by the subject, so requests follow the actor when it moves.
   */
  private serveViews(actor: Actor): Subscription | undefined {
    if (actor.stage.views.length === 0) return undefined
    const subject = viewSubjects.actor(this.options.cluster, this.pipeline.name, actor.stage.name, actor.partition)
    return this.bus.respond(subject, (raw) => respondToView(raw, actor.partition, actor.id, (request) => actor.queryView(request)))
  }

  /**
   * The actor failed for good: it stops alone. Its state stays in the state dir, its
   * producer and store are closed (`release`: it failed while restoring, before run() could
   * close them), the coordinator hears of it (and moves or quarantines it), and the
   * progress channel reports it failed with its error.
   */
  private async failedForGood(id: string, err: unknown, actor: Actor, release: boolean): Promise<void> {
    if (this.actors.get(id)?.actor === actor) this.actors.delete(id)
    const error = err instanceof WeirError ? err : new ActorFailedError(id, err, { stage: actor.stage.name, partition: actor.partition })
    const at = Date.now()
    this.failed.set(id, { actor, error, at, quarantined: undefined })
    this.log.error({ actor: id, err: describeError(err) }, 'actor failed for good: it stops alone (its state is kept); the worker runs its other actors')
    if (release) await actor.release()
    const report: ActorFailed = { v: 1, actor: id, worker: this.options.id, generation: Math.max(0, this.generation), error: { code: error.code, message: error.message }, at }
    this.bus.publish(this.subject('actorFailed'), report)
    this.progress.publishNow(actor)
    this.options.onActorFailed?.(id, error)
  }

  /** Actors that failed for good on this worker and are not running anywhere since. */
  get failedActors(): Array<{ actor: string; error: WeirError; at: number; quarantined: boolean }> {
    return [...this.failed].map(([actor, f]) => ({ actor, error: f.error, at: f.at, quarantined: f.quarantined !== undefined }))
  }

  /**
   * An actor that failed on a retriable pipe error (broker restarting, coordinator moving)
   * is started again from its last checkpoint after a backoff, as after a process restart:
   * its producer fences the failed instance, state comes from local RocksDB and the
   * changelog, positions from the committed offsets. Other failures stop the run.
   */
  private restartLater(id: string, err: unknown, attempt: number, startedAt: number, unreleased?: Actor): boolean {
    if (this.stopped || !(err instanceof WeirError) || !err.retriable) return false
    // An actor that ran a while before failing starts its backoff over.
    const next = Date.now() - startedAt > 60_000 ? 0 : attempt + 1
    if (next > MAX_RESTARTS) return false
    const delayMs = Math.min(30_000, 250 * 2 ** next)
    this.log.warn({ actor: id, attempt: next, delayMs, err: describeError(err) }, 'actor failed on a retriable pipe error; restarting it from its last checkpoint')
    this.actors.delete(id)
    this.restartsPending.add(id)
    const released = unreleased === undefined ? Promise.resolve() : (unreleased.abandon(), unreleased.release())
    setTimeout(() => {
      this.restartsPending.delete(id)
      void released.then(() => {
        if (this.stopped || this.actors.has(id) || !this.assigned.has(id)) return
        return this.startActor(id, next)
      }).catch((e: unknown) => this.failure?.(e))
    }, delayMs)
    return true
  }

  /** Stops an actor with a final checkpoint; resolves once its producer and store are closed. */
  private async stopActor(id: string): Promise<Actor | undefined> {
    const entry = this.actors.get(id)
    if (entry === undefined) return undefined
    await entry.restoring.catch(() => undefined)
    entry.actor.stopServingViews()
    entry.actor.requestStop()
    await entry.running
    if (!entry.started) await entry.actor.release()
    if (this.actors.get(id) === entry) this.actors.delete(id)
    return entry.actor
  }

  /**
   * Tells the coordinator this worker let an actor go: it is stopped, its producer and store
   * closed. A clean stop (its final checkpoint committed, or it never ran) carries that
   * checkpoint's epoch and input positions, where the next owner starts.
   */
  private reportReleased(id: string, generation: number, actor: Actor | undefined): void {
    // 'running' after a stop: restored but never run (it was given away first), so nothing of
    // it is uncommitted and its positions are the ones it restored (epoch 0: it committed nothing).
    const clean = actor !== undefined && (actor.lifecycle === 'closed' || actor.lifecycle === 'finished' || actor.lifecycle === 'running')
    const msg: ActorReleased = { v: 1, actor: id, worker: this.options.id, generation }
    if (clean) msg.finalCheckpoint = { epoch: actor.stats.lastEpoch, positions: actor.inputPositions }
    this.log.info({ actor: id, generation, lifecycle: actor?.lifecycle, ...msg.finalCheckpoint }, clean ? 'actor released after its final checkpoint' : 'actor released')
    this.bus.publish(this.subject('actorReleased'), msg)
  }

  /** Graceful stop: every actor takes a final checkpoint. */
  async stop(): Promise<void> {
    this.stopped = true
    clearInterval(this.fallbackTimer)
    clearInterval(this.heartbeatTimer)
    for (const s of this.subs) s.unsubscribe()
    await this.savepoints.stop()
    const actors = this.actorList
    await Promise.all([...this.replicas.keys()].map((a) => this.stopReplica(a)))
    // A leaving worker whose hand-off ran out of time still says what it let go, so nobody waits out a release timeout.
    await Promise.all([...this.actors.keys()].map(async (a) => {
      const stopped = await this.stopActor(a)
      if (this.leaving) this.reportReleased(a, Math.max(0, this.generation), stopped)
    }))
    // The final figures, after the last checkpoints: the monitor sees where each actor stopped.
    for (const a of actors) this.progress.publishNow(a)
    for (const f of this.failed.values()) this.progress.publishNow(f.actor)
    this.progress.stop()
    this.probeResponder?.unsubscribe()
  }

  /** Stops without writing anything more, as a kill would; waits for in-flight I/O to settle. */
  async abandon(): Promise<void> {
    this.stopped = true
    this.abandoning = true
    clearInterval(this.fallbackTimer)
    clearInterval(this.heartbeatTimer)
    this.progress.stop()
    for (const s of this.subs) s.unsubscribe()
    // As a killed process's connection would, it stops answering at once.
    this.probeResponder?.unsubscribe()
    await this.savepoints.stop().catch(() => undefined)
    await Promise.all([...this.replicas.keys()].map((a) => this.stopReplica(a).catch(() => undefined)))
    for (const { actor } of this.actors.values()) actor.abandon()
    await Promise.all([...this.actors.values()].map(async ({ actor, restoring, running }) => {
      await restoring.catch(() => undefined)
      actor.abandon()
      await running.catch(() => undefined)
      await actor.release()
    }))
    this.actors.clear()
  }

  /** Every actor here, with the stages chained to each (they report figures and progress of their own). */
  get actorList(): Actor[] {
    return [...this.actors.values()].flatMap((e) => [e.actor, ...e.actor.chained])
  }

  /** The generation of the newest assignment applied here; -1 before the first (readiness reads it). */
  get assignmentGeneration(): number {
    return this.generation
  }

  /** Announced its leave or stopped: its actors are on their way elsewhere. */
  get isLeaving(): boolean {
    return this.leaving || this.stopped
  }

  /**
   * Each actor the newest assignment gives this worker, with its instance here: none while it
   * starts, waits out a restart backoff (`restarting`) or failed for good (`failed`).
   */
  get assignedActors(): Array<{ id: string; actor: Actor | undefined; restarting: boolean; failed: boolean }> {
    return [...this.assigned].map((id) => ({ id, actor: this.actors.get(id)?.actor, restarting: this.restartsPending.has(id), failed: this.failed.has(id) }))
  }
}

/**
 * Whether an actor's failure stays with the actor. A simulated crash is a crash of the
 * process (recovery tests), and a retriable pipe error that outlasted the restarts is an
 * outage of the pipe, not of the actor: those still stop the worker.
 */
function isolated(err: unknown): boolean {
  return !(err instanceof SimulatedCrash) && !(err instanceof WeirError && err.retriable)
}

