/**
 * An actor: one processor instance bound to one partition of its stage. It restores its
 * state, runs the processor over its input (or polls its source) one unit at a time, and
 * takes barriers between micro-batches; the checkpoint protocol itself is checkpoint.ts.
 *
 * A chain (runtime/api/chains.ts) runs in its head's actor: each chained stage is an Actor
 * of its own (state, timers, dead letters, figures), driven by the head's run loop, fed
 * directly with what its upstream emits, and checkpointed in the head's transaction.
 */
import { join } from 'node:path'
import type { Logger } from 'pino'
import { instantiate, type Pipeline, type StageSpec } from '../api/pipeline.ts'
import { constructProcessor } from '../api/state.ts'
import { Source, type DeadLetterRecord, type LifecycleContext, type Processor, type SourceContext, type SourceStatus, type StreamRecord, type Timer, type TimerService } from '../api/processor.ts'
import { codecFor, stateCodec, type Codec } from '../codec.ts'
import { ActorFencedError, ConfigError, DecodeError, ProcessingError, SinkFencedError, WeirError, describeError, failsActor } from '../errors.ts'
import { SimulatedCrash, type Faults } from '../faults.ts'
import { naming } from '../naming.ts'
import type { PartitionOffset, PartitionReader, Pipe, OutgoingRecord, StoredRecord, TransactionalProducer } from '../pipe/pipe.ts'
import { replayChangelog } from '../state/changelog.ts'
import { StateStore } from '../state/state-store.ts'
import { EVENT_TIMER_PREFIX, Timers, type TimerEntry } from '../state/timers.ts'
import { WriteCache } from '../state/write-cache.ts'
import { freezeLoaded } from '../values.ts'
import { keyBytes, keyString } from '../record-keys.ts'
import { dataRecordsBetween, decodeMark, isControlRecord, type WatermarkMark } from '../watermarks.ts'
import { Checkpointer, type ActorCheckpoints, type ChainedCheckpoints, type CommittedCheckpoint } from './checkpoint.ts'
import { ActorContext } from './context.ts'
import { HandedRecord } from './handed.ts'
import { Outputs } from './outputs.ts'
import { Publisher, type CheckpointRecord } from './publish.ts'
import { purgeConsumed } from './purge.ts'
import { prefetch, stateAccess, UnitScope } from './scope.ts'
import { ACTOR_PREFIX, CHECKPOINT_RECORD, keyedPrefix, INPUT_POSITIONS, SOURCE_FINISHED, VIEW_EPOCH, WATERMARKS } from './state-keys.ts'
import { ActorWatermarks } from './watermark-marks.ts'
import { CommittedReads, ViewMovedError } from '../views/committed-reads.ts'
import { answerView, type ViewReply, type ViewRequest } from '../views/view-protocol.ts'

export type ActorLifecycle = 'restoring' | 'running' | 'committing' | 'finished' | 'fenced' | 'failed' | 'closed'

export interface ActorConfig {
  /** Records per micro-batch. */
  maxBatch: number
  /** Cached state entries kept in memory (clean entries beyond are evicted). */
  cacheEntries: number
  /**
   * Dirty entries that force an early barrier. While the previous checkpoint is still being
   * sealed, the actor goes on up to `cacheEntries` dirty entries instead of waiting for it
   * at the barrier.
   */
  maxDirty: number
  /**
   * Records emitted in one transaction that force an early barrier. A reader sees a
   * writer's transaction whole, after the others' before it: bounding it bounds how far
   * one writer's records run ahead of the others' watermarks (and the open windows that
   * takes downstream) during a backlog. actorConfigFor defaults it to the pipe's
   * `transactionRecords` (20,000 embedded, 50,000 on Kafka).
   */
  maxTransactionRecords: number
  /**
   * Take nothing new in: sources are not polled and topic inputs (records from outside the
   * pipeline) are not read, while everything already in the pipeline's own topics is
   * processed and checkpointed. A savepoint drains a pipeline this way, so that its cut has
   * nothing in flight between stages (runner/create-savepoint.ts).
   */
  holdInputs?: boolean
  /**
   * A processor whose inputs all come from weir actors takes its barrier as soon as it has
   * read a newer checkpoint of every upstream writer (their marks carry the ingest horizon),
   * instead of at the coordinator's next epoch: a record then waits for each stage's commit,
   * not for one epoch interval per stage. The coordinator's epoch is taken when no upstream
   * commit came for a whole epoch (idle inputs). Not while the input is backlogged (a poll
   * returned a full batch): there each upstream transaction would become a commit here. Default true.
   */
  followUpstreamCommits?: boolean
}

/** Defaults of an actor's config; `maxTransactionRecords` comes from the pipe (actorConfigFor). */
export const defaultActorConfig: Omit<ActorConfig, 'maxTransactionRecords'> = { maxBatch: 2000, cacheEntries: 250_000, maxDirty: 200_000 }

/**
 * The config of the actors on `pipe`: the defaults, the pipe's `transactionRecords`, then `overrides`.
 *
 * @example
 * new Worker(bus, pipe, pipeline, { ...options, actorConfig: actorConfigFor(pipe, { maxBatch: 500 }) })
 */
export function actorConfigFor(pipe: Pick<Pipe, 'transactionRecords'>, overrides: Partial<ActorConfig> = {}): ActorConfig {
  return { ...defaultActorConfig, maxTransactionRecords: pipe.transactionRecords, ...overrides }
}

/** Figures an actor reports; read by progress displays, metrics and benchmarks. */
export interface ActorStats {
  recordsIn: number
  recordsOut: number
  errors: number
  deadLettered: number
  lastEpoch: number
  checkpoints: number
  /** What the actor waits on now (`ctx.waitingOn`): an outside system that holds it back. */
  waiting: { on: string; message: string; since: number } | undefined
  /** The stage's own figures (`ctx.reportStats`). */
  custom: Record<string, number>
  /** Time processing was stopped at each barrier, ms (last 1024); not the last checkpoint's (end of input, stop), behind which no record waits. */
  barrierStallsMs: number[]
  /** Time from commit start to pipe commit done, ms (last 1024). */
  commitMs: number[]
  restoreMs: number
  replayedChangelogRecords: number
  lag: number
  /** Unprocessed records per input stage. */
  lagByInput: Record<string, number>
  /** Records that arrived at or below the watermark. */
  late: number
  /** Event-time watermark (-Infinity before the first, +Infinity at the end of input). */
  watermark: number
  /** Wall clock when the watermark last advanced. */
  watermarkChangedAt: number | undefined
  /** Every input is idle. */
  idle: boolean
  /** Ingest horizon carried by the newest checkpoint (wall-clock ms; -Infinity unknown). */
  ingestHorizon: number
  /** Commit time minus ingest horizon of the newest checkpoint, ms. */
  endToEndMs: number | undefined
  lastCommitAt: number | undefined
  /** Sampled time to process one record, µs (last 1024 samples). */
  processingUs: number[]
  /** When this actor instance started. */
  startedAt: number
}

export interface ActorDeps {
  pipeline: Pipeline
  spec: StageSpec
  partition: number
  pipe: Pipe
  dataDir: string
  /** What relative paths of the processors resolve against (LifecycleContext.workDir). Default: the process's working directory. */
  workDir?: string
  log: Logger
  faults: Faults
  config: ActorConfig
}

/** Consumed input records are purged every this many checkpoints. */
const PURGE_EVERY = 10
/** How long a graceful stop waits for its final purge. */
const FINAL_PURGE_WAIT_MS = 5_000
/** One record in this many has its processing time sampled for the progress channel. */
const SAMPLE_EVERY = 64

function pushBounded(list: number[], v: number): void {
  list.push(v)
  if (list.length > 1024) list.shift()
}

export class ActorFailedError extends WeirError {
  constructor(actor: string, cause: unknown, context: Record<string, unknown>) {
    super('WEIR_ACTOR_FAILED', `actor ${actor} stopped: ${(cause as Error)?.message ?? String(cause)}`, { actor, ...context }, { cause })
  }
}

export class Actor {
  readonly id: string
  lifecycle: ActorLifecycle = 'restoring'
  readonly stats: ActorStats = {
    recordsIn: 0, recordsOut: 0, errors: 0, deadLettered: 0, lastEpoch: 0, checkpoints: 0, waiting: undefined, custom: {}, barrierStallsMs: [], commitMs: [], restoreMs: 0, replayedChangelogRecords: 0, lag: 0,
    lagByInput: {}, late: 0, watermark: -Infinity, watermarkChangedAt: undefined, idle: false, ingestHorizon: -Infinity, endToEndMs: undefined, lastCommitAt: undefined, processingUs: [], startedAt: Date.now(),
  }

  readonly partition: number
  private readonly spec: StageSpec
  private readonly pipeline: Pipeline
  private readonly pipe: Pipe
  private readonly log: Logger
  private readonly faults: Faults
  private readonly config: ActorConfig
  private readonly changelogTopic: string
  private readonly dlqTopic: string
  private readonly group: string
  private readonly storePath: string
  private readonly inputTopics: string[]
  /** Inputs from outside the pipeline (topic inputs): not read while the actor holds its inputs. */
  private readonly externalInputs: boolean[]
  /** Holding its inputs for a savepoint (besides ActorConfig.holdInputs): set by `hold`. */
  private held = false
  /** Frozen for a savepoint: it processes nothing, fires no timer, and takes only barriers. */
  private frozen = false
  private readonly inputCodecs: Codec<unknown>[]
  /** Per input, the event time of a topic input's records (`timestampOf`), if it has one. */
  private readonly inputTimestamps: Array<((value: unknown, recordTimestamp: number) => number) | undefined>

  private store!: StateStore
  /** Committed-state reads of the stage's views (undefined when it serves none, or until restored). */
  private views: CommittedReads | undefined
  /** Input positions as of the newest barrier (what its checkpoint commits), for the views' answers. */
  private viewPositions: Record<string, number> = {}
  /**
   * The epoch views report: never below one they reported before a restart (the first
   * commit after a restart may carry an epoch number from before the coordinator caught up).
   */
  private viewEpoch = 0
  /** Opened first at restore (it fences older instances); the checkpointer runs it after. */
  private producer: TransactionalProducer | undefined
  private checkpoints!: ActorCheckpoints
  /** The checkpointer of a chain's head (or of an actor that is not chained): the transaction's owner. */
  private own: Checkpointer | undefined
  /** Of a chained stage: the actor of its chain's head, whose loop runs it. */
  private head: Actor | undefined
  /** The stages chained after this one, in order (a chain's head only). */
  private members: Actor[] = []
  /** The stage chained directly after this one: its records go to it instead of to the output topic. */
  private next: Actor | undefined
  /** The output topic the chain replaces (nobody reads it: the next stage gets the records directly). */
  private chainedOutput: string | undefined
  /** Of a chained stage: what its upstream emitted since it last processed, records and marks in order. */
  private queue: StoredRecord[] = []
  /** Runs the processor's `onCheckpointCommitted`, if it has one. */
  private publisher: Publisher | undefined
  /** The newest committed checkpoint that carried a record for the publisher, found at restore. */
  private restoredCheckpoint: CheckpointRecord | undefined
  /** This actor's checkpoint count (kept in its checkpoints when it has a publisher). */
  private checkpointNo = 0
  private readers: PartitionReader[] = []
  private processor!: Processor<unknown, unknown>
  private readonly cache: WriteCache
  private readonly scope: UnitScope
  private readonly outputs: Outputs
  private timers!: Timers
  private eventTimers!: Timers
  private marks!: ActorWatermarks
  private ctx!: ActorContext
  private readonly lifecycleCtx: LifecycleContext

  private requestedEpoch = 0
  /** A checkpoint the worker asked for without a new epoch (the coordinator is out of reach). */
  private localBarrierRequested = false
  /** Records emitted since the last barrier. */
  private transactionRecords = 0
  /** Newest epoch whose barrier this actor took (its commit may still be in flight). */
  private barrierEpoch = 0
  /** The input ingest horizon at this actor's newest barrier: an upstream commit past it makes a barrier due. */
  private barrierIngest = -Infinity
  /** The newest poll returned a full batch. */
  private inputBacklogged = false
  private committedEpoch = 0
  /**
   * After a (re)start the first micro-batch is committed at once rather than at the next
   * epoch, so output resumes promptly after recovery.
   */
  private awaitingFirstCommit = true
  private unitsSinceStart = 0
  /** Input positions of the newest committed checkpoint that carried them. */
  private committedPositions: PartitionOffset[] | undefined
  private positionsChanged = false
  private upstreamFinished = false
  private sourceDone = false
  private stopRequested = false
  private abandoned = false
  /** Why the actor stopped as fenced (lifecycle 'fenced'): the pipe's or its sink's store's refusal. */
  fencedBy: WeirError | undefined
  private wake: (() => void) | undefined
  private readonly onEpoch: (epoch: number) => void
  private readonly onFinished: () => void
  private readonly onWatermark: (() => void) | undefined

  constructor(deps: ActorDeps, hooks: { onEpoch(epoch: number): void; onFinished(): void; onWatermark?(): void }) {
    this.spec = deps.spec
    this.pipeline = deps.pipeline
    this.partition = deps.partition
    this.pipe = deps.pipe
    this.faults = deps.faults
    this.config = deps.config
    this.id = naming.actor(deps.spec.name, deps.partition)
    this.log = deps.log.child({ actor: this.id, stage: deps.spec.name, partition: deps.partition })
    const p = deps.pipeline.name
    this.changelogTopic = naming.changelog(p, deps.spec.name)
    this.dlqTopic = naming.deadLetter(p, deps.spec.name)
    this.group = naming.group(p, deps.spec.name)
    this.inputCodecs = deps.spec.inputs.map((i) => codecFor(deps.pipeline.stage(i)!.codec))
    this.inputTimestamps = deps.spec.inputs.map((i) => deps.pipeline.stage(i)!.timestampOf)
    this.inputTopics = deps.spec.inputs.map((i) => deps.pipeline.outputTopic(deps.pipeline.stage(i)!))
    this.externalInputs = deps.spec.inputs.map((i) => deps.pipeline.stage(i)!.kind === 'topic')
    this.storePath = join(deps.dataDir, 'state', deps.spec.name, String(deps.partition))
    this.cache = new WriteCache(deps.config.cacheEntries)
    this.scope = new UnitScope(this.cache, deps.spec.name, this.id)
    this.outputs = new Outputs(deps.pipeline, deps.spec, deps.partition, this.id, this.scope)
    this.lifecycleCtx = {
      pipeline: p, stage: deps.spec.name, partition: deps.partition, partitions: deps.spec.parallelism, log: this.log, sideOutputs: deps.spec.sideOutputs, workDir: deps.workDir ?? process.cwd(),
      deadLetter: (record, error, detail) => this.userDeadLetter(record, error, detail),
      waitingOn: (on, error) => this.waitingOn(on, error),
      reportStats: (stats) => this.reportStats(stats),
      wake: () => (this.head ?? this).wake?.(),
    }
    this.onEpoch = hooks.onEpoch
    this.onFinished = hooks.onFinished
    this.onWatermark = hooks.onWatermark
  }

  /**
   * Runs `members` in this actor, each chained to the one before (runtime/api/chains.ts):
   * they restore with it, process what their upstream emits as it emits it, and commit in
   * its transactions. Call before `restore`.
   */
  chain(members: Actor[]): void {
    let up: Actor = this
    for (const m of members) {
      up.next = m
      up.chainedOutput = this.pipeline.outputTopic(up.spec)
      up.outputs.chainTo(up.chainedOutput)
      m.head = this
      up = m
    }
    this.members = members
  }

  /** The stages chained after this one (this actor runs them), in order. */
  get chained(): readonly Actor[] {
    return this.members
  }

  /** Whether this actor is a chained stage, run by the actor of its chain's head. */
  get isChained(): boolean {
    return this.head !== undefined
  }

  /** The directory of this actor's local RocksDB. */
  get statePath(): string {
    return this.storePath
  }

  /** The stage this actor runs. */
  get stage(): StageSpec {
    return this.spec
  }

  get isSource(): boolean {
    return this.spec.kind === 'source'
  }

  /** Where its input readers stand; after a clean stop, the positions its final checkpoint committed. */
  get inputPositions(): PartitionOffset[] {
    return this.readers.map((r) => ({ topic: r.topic, partition: r.partition, offset: r.position }))
  }

  /** The actor's current watermark, as `ctx.watermark` shows it. */
  get watermark(): number {
    return this.marks?.watermark ?? -Infinity
  }

  // ---- restore -------------------------------------------------------------------------

  /** Opens state and readers: local RocksDB plus the changelog tail it is missing. */
  async restore(): Promise<void> {
    if (this.head !== undefined) return this.restoreChained(this.head)
    const started = performance.now()
    // Opening the producer fences the previous instance (on Kafka: aborts or completes its
    // open transaction, which can take a while); the changelog replays meanwhile.
    const opening = this.pipe.producer(naming.transactionalId(this.pipeline.name, this.spec.name, this.partition))
    let replayed: { position: number; records: number }
    try {
      this.store = await StateStore.open(this.storePath)
      const replay = (): Promise<{ position: number; records: number }> => this.replayChangelog()
      const before = await replay()
      this.producer = await opening
      // Only now is the previous instance's last transaction settled: a commit it had in
      // flight may just have become visible. Replay that tail too, or its positions are lost.
      const tail = await replay()
      replayed = { position: tail.position, records: before.records + tail.records }
    } catch (err) {
      // A producer opened for a restore that failed is closed with the actor.
      await opening.then((p) => void (this.producer ??= p), () => undefined)
      throw err
    }
    this.stats.replayedChangelogRecords = replayed.records
    await this.openProcessor(replayed.position)
    const stored = this.cache.get(ACTOR_PREFIX, INPUT_POSITIONS)?.value as Record<string, number> | undefined
    for (const topic of this.inputTopics) {
      const from = stored?.[topic] ?? (await this.pipe.committedOffset(this.group, topic, this.partition)) ?? (await this.pipe.startOffset(topic, this.partition))
      this.readers.push(await this.pipe.reader(topic, this.partition, from))
    }
    if (this.spec.views.length > 0) this.openViews()
    // The chained stages restore after the producer fenced the chain's previous instance: their changelogs are settled.
    for (const m of this.members) await m.restore()
    this.stats.restoreMs = performance.now() - started
    this.lifecycle = 'running'
    this.log.debug({ changelogPosition: replayed.position, replayed: replayed.records, ms: this.stats.restoreMs, chained: this.members.map((m) => m.spec.name) }, 'actor restored')
  }

  /** A chained stage's restore: its own store and changelog; its transactions are its head's. */
  private async restoreChained(head: Actor): Promise<void> {
    const started = performance.now()
    this.store = await StateStore.open(this.storePath)
    const replayed = await this.replayChangelog()
    this.stats.replayedChangelogRecords = replayed.records
    await this.openProcessor(replayed.position, head)
    this.stats.restoreMs = performance.now() - started
    this.lifecycle = 'running'
    this.log.debug({ changelogPosition: replayed.position, replayed: replayed.records, ms: this.stats.restoreMs, head: head.id }, 'chained stage restored')
  }

  /** Brings the local store to the end of the stage's changelog partition. */
  private replayChangelog(): Promise<{ position: number; records: number }> {
    return replayChangelog({
      pipe: this.pipe,
      topic: this.changelogTopic,
      partition: this.partition,
      store: this.store,
      storePath: this.storePath,
      log: this.log,
      faults: this.faults,
      reopen: async () => {
        await this.store.close()
        StateStore.destroy(this.storePath)
        this.store = await StateStore.open(this.storePath)
        return this.store
      },
    })
  }

  /** Constructs the processor on the restored state, with its timers, checkpoints, watermarks and context. */
  private async openProcessor(changelogPosition: number, head?: Actor): Promise<void> {
    this.processor = constructProcessor(this.spec.name, () => instantiate(this.spec))
    this.processor.state.bind(stateAccess(this.cache, this.scope))
    await this.loadActorState()
    if (this.processor.onCheckpointCommitted !== undefined) {
      this.publisher = new Publisher({ processor: this.processor, cache: this.cache, lifecycle: this.lifecycleCtx, faults: this.faults, log: this.log, actor: this.id, outputTopics: new Set(this.pipeline.writtenBy(this.spec).map((s) => this.pipeline.outputTopic(s))), abandoned: () => this.abandoned })
      this.restoredCheckpoint = this.publisher.restored()
      this.checkpointNo = this.restoredCheckpoint?.checkpoint ?? 0
    }
    this.timers = await Timers.load(this.store, this.cache)
    this.eventTimers = await Timers.load(this.store, this.cache, EVENT_TIMER_PREFIX)
    const part = { store: this.store, cache: this.cache, actor: this.id, changelogTopic: this.changelogTopic, outputTopic: this.pipeline.outputTopic(this.spec), changelogPosition, onCommitted: (c: CommittedCheckpoint) => this.committed(c) }
    if (head === undefined) {
      this.own = new Checkpointer({ ...part, producer: this.producer!, pipe: this.pipe, faults: this.faults, partition: this.partition, group: this.group })
      this.checkpoints = this.own
    } else {
      this.checkpoints = head.own!.follow(part)
    }
    this.checkpoints.onFailed(() => this.wake?.())
    this.marks = new ActorWatermarks(
      { pipeline: this.pipeline, spec: this.spec, partition: this.partition, actor: this.id, cache: this.cache, stats: this.stats, send: (t, p, r) => this.sendOut(t, p, r), onAdvance: this.onWatermark },
      this.cache.get(ACTOR_PREFIX, WATERMARKS)?.value,
      this.isSource && this.cache.get(ACTOR_PREFIX, SOURCE_FINISHED)?.value === true,
    )
    this.ctx = new ActorContext(this.spec, this.partition, this.scope, this.outputs, this.timerService(), this.log, () => this.watermark, this.lifecycleCtx, {
      load: (keys) => prefetch(this.store, this.cache, this.processor.state.keyedNames, keys),
      loaded: (key) => this.processor.state.keyedNames.every((name) => this.cache.has(keyedPrefix(name), key)),
    })
  }

  /**
   * Pins the restored store for the views: it holds exactly the last committed checkpoint
   * (the changelog replayed to its end), whose epoch and positions came back with the actor state.
   */
  private openViews(): void {
    for (const v of this.spec.views) {
      if (!this.processor.state.keyedNames.includes(v.state)) {
        const declared = this.processor.state.keyedNames
        throw new ConfigError(`stages.${this.spec.name}.views.${v.name}.state`, `'${v.state}' is not a keyed state of the processor (${declared.length === 0 ? 'it declares none' : `it declares ${declared.join(', ')}`}); a view serves this.state.value, map or list`, { stage: this.spec.name })
      }
    }
    this.viewPositions = { ...((this.cache.get(ACTOR_PREFIX, INPUT_POSITIONS)?.value as Record<string, number> | undefined) ?? {}) }
    for (const r of this.readers) this.viewPositions[r.topic] ??= r.position
    const epoch = (this.cache.get(ACTOR_PREFIX, VIEW_EPOCH)?.value as number | undefined) ?? 0
    this.viewEpoch = epoch
    // Reported in the worker's heartbeats: a coordinator that starts over (a restarted weir run)
    // continues its epochs after this one, so atLeast=epoch:N+1 is reached by the next checkpoint.
    this.committedEpoch = Math.max(this.committedEpoch, epoch)
    this.stats.lastEpoch = this.committedEpoch
    this.views = new CommittedReads(this.store, { epoch, positions: { ...this.viewPositions }, committedAt: Date.now() }, this.id)
  }

  /** The actor is about to stop: view readers are sent to its next holder instead of waiting on it. */
  stopServingViews(): void {
    this.views?.close()
  }

  /** Answers a view request from the newest committed checkpoint (view-protocol.ts). */
  async queryView(request: ViewRequest): Promise<ViewReply> {
    const view = this.spec.views.find((v) => v.name === request.view)
    if (view === undefined) throw new WeirError('WEIR_VIEW_UNKNOWN', `stage ${this.spec.name} serves no view '${request.view}'`, { stage: this.spec.name, actor: this.id, view: request.view })
    if (this.views === undefined) throw new ViewMovedError(this.id)
    return answerView(this.views, view, request, this.id)
  }

  private async loadActorState(): Promise<void> {
    const keys = [...this.processor.state.actorNames]
    keys.push(this.isSource ? SOURCE_FINISHED : INPUT_POSITIONS, WATERMARKS, CHECKPOINT_RECORD)
    if (this.spec.views.length > 0) keys.push(VIEW_EPOCH)
    const values = await this.store.getMany(keys.map((k) => Buffer.from(ACTOR_PREFIX + k)))
    keys.forEach((k, i) => this.cache.load(ACTOR_PREFIX, k, values[i] ? freezeLoaded(stateCodec.decode(values[i]!)) : undefined, true))
  }

  // ---- control -------------------------------------------------------------------------

  /** Asks for barrier `epoch` at the next record boundary. */
  requestBarrier(epoch: number): void {
    if (epoch > this.requestedEpoch) this.requestedEpoch = epoch
    this.wake?.()
  }

  /**
   * Takes a checkpoint at the next record boundary under the current epoch number, as an
   * early barrier does: the worker's fallback while no epochs arrive, so commits (and the
   * watermarks and outputs they carry) never wait on the coordinator or the control bus.
   */
  requestLocalBarrier(): void {
    this.localBarrierRequested = true
    this.wake?.()
  }

  /** Every upstream stage finished: end when the inputs are drained. */
  markUpstreamFinished(): void {
    this.upstreamFinished = true
    this.wake?.()
  }

  /** Takes a final checkpoint and stops. */
  requestStop(): void {
    this.stopRequested = true
    this.wake?.()
  }

  /** Stops without writing anything more, as a kill would. */
  abandon(): void {
    this.abandoned = true
    this.stopRequested = true
    for (const r of this.readers) r.close()
    for (const m of this.members) {
      m.abandoned = true
      m.stopRequested = true
    }
    this.wake?.()
  }

  // ---- running -------------------------------------------------------------------------

  /**
   * Opens the processor, then runs until finished, stopped, fenced or failed. Opening is
   * here, not in restore(): a worker that lost the actor while restoring never opens it.
   */
  async run(): Promise<void> {
    if (this.head !== undefined) throw new WeirError('WEIR_ACTOR_CHAINED', `${this.id} is chained to ${this.head.id}, whose actor runs it`, { actor: this.id })
    try {
      for (const a of [this, ...this.members]) {
        if (a.processor.open !== undefined) await a.scope.hook('open', () => a.processor.open!(a.lifecycleCtx))
      }
      // A crash may have come between the pipe commit of the newest checkpoint and its publish.
      if (this.restoredCheckpoint !== undefined) await this.publisher!.publish(this.restoredCheckpoint, true)
      if (this.isSource) await this.runSource()
      else await this.runProcessor()
    } catch (err) {
      if (err instanceof SimulatedCrash) this.abandoned = true
      if (this.abandoned) throw err
      if (err instanceof ActorFencedError || err instanceof SinkFencedError) {
        this.lifecycle = 'fenced'
        this.fencedBy = err
        this.log.warn({ err: describeError(err) }, err instanceof SinkFencedError ? "actor fenced: its sink's store refused the write, a newer instance claimed it" : 'actor fenced: a newer instance owns this partition')
        return
      }
      this.lifecycle = 'failed'
      throw err
    } finally {
      if (!this.abandoned) await this.closeResources()
    }
  }

  private barrierDue(): boolean {
    if (this.localBarrierRequested || this.transactionRecords >= this.config.maxTransactionRecords || (this.awaitingFirstCommit && this.unitsSinceStart > 0) || (this.members.length > 0 && this.chainFull())) return true
    if (!this.barrierWanted()) return false
    // While the previous checkpoint is sealed (its transaction committing), the barrier could
    // only wait for it, and records with it (at 10M keys, 90–200 ms at some epochs): the actor
    // goes on and takes the barrier as the seal ends, or once the dirty entries fill the cache.
    return !this.checkpoints.sealing || this.cache.dirtyCount >= Math.max(this.config.maxDirty, this.config.cacheEntries)
  }

  /** An epoch, an upstream commit or the dirty entries call for a barrier (which may wait for the seal: barrierDue). */
  private barrierWanted(): boolean {
    return this.epochDue() || this.upstreamCommitted() || this.cache.dirtyCount >= this.config.maxDirty
  }

  /** Whether this actor follows its upstream writers' commits (see ActorConfig.followUpstreamCommits). */
  private get followsUpstream(): boolean {
    const inputs = this.marks.inputs
    return this.config.followUpstreamCommits !== false && inputs !== undefined && !inputs.hasExternalInputs
  }

  /**
   * The coordinator asked for a newer epoch. An actor following its upstream commits takes
   * it with the next upstream commit, or when the epoch after it is asked for too (its inputs
   * were idle for an epoch): it acknowledges epochs at most one late. A backlogged one takes
   * epochs as they come.
   */
  private epochDue(): boolean {
    if (this.requestedEpoch <= this.barrierEpoch) return false
    return !this.followsUpstream || this.inputBacklogged || this.requestedEpoch > this.barrierEpoch + 1
  }

  /** Every upstream writer committed a checkpoint newer than the one this actor's last barrier followed. */
  private upstreamCommitted(): boolean {
    if (!this.followsUpstream || this.inputBacklogged) return false
    const ingest = this.marks.inputs!.view.ingest
    return ingest > this.barrierIngest && Number.isFinite(ingest)
  }

  private async runProcessor(): Promise<void> {
    let next = 0
    while (!this.abandoned) {
      this.checkpoints.checkFailed()
      if (this.barrierDue()) await this.checkpoint(Math.max(this.requestedEpoch, this.barrierEpoch))
      if (this.stopRequested) break
      if (this.frozen) {
        await this.idle(50)
        continue
      }
      let records: StoredRecord[] = []
      let input = next
      await this.checkpoints.whenWritable()
      for (let i = 0; i < this.readers.length && records.length === 0; i++) {
        input = (next + i) % this.readers.length
        if (this.holding && this.externalInputs[input] === true) continue
        records = await this.readers[input]!.poll(this.config.maxBatch, 0)
      }
      if (this.abandoned) return
      if (records.length === 0) {
        // Held for a savepoint and through its input: commit now rather than at the next epoch, so the drain waits for no interval.
        if (this.held && this.uncommitted()) this.localBarrierRequested = true
        await this.fireDueTimers()
        await this.advanceWatermark()
        if (this.members.length > 0) await this.runChain()
        // A bounded actor ends when its inputs are drained and its pending timers have fired.
        if (this.upstreamFinished && this.timers.size === 0 && !this.chainTimersPending() && (await this.inputsDrained())) {
          // Every upstream writer ended: the watermark is +infinity and every event-time timer fires.
          await this.advanceWatermark(true)
          await this.finish()
          return
        }
        if (this.barrierDue() || this.stopRequested) continue
        // Wait for data on one input; an append wakes the reader at once.
        // A barrier held back by the seal is taken within a few ms of its end.
        const due = this.timers.nextDue()
        const waitMs = this.barrierWanted() ? 2 : Math.max(1, Math.min(50, due === undefined ? 50 : due - Date.now()))
        input = next
        records = this.holding && this.externalInputs[input] === true ? await sleep(waitMs).then(() => []) : await this.readers[input]!.poll(this.config.maxBatch, waitMs)
        if (this.abandoned) return
        if (records.length === 0) {
          next = (next + 1) % this.readers.length
          continue
        }
      }
      next = (input + 1) % this.readers.length
      // A full batch means more is waiting: a backlog, where following upstream commits would only multiply commits.
      this.inputBacklogged = records.length >= this.config.maxBatch
      await this.processBatch(input, records)
      this.marks.markIfDue()
      this.positionsChanged = true
      this.unitsSinceStart++
      if (this.members.length > 0) await this.runChain()
      // Records already buffered resolve polls without I/O; let timers (epochs) and I/O run.
      await yieldToLoop()
      await this.fireDueTimers()
      if (this.members.length > 0) await this.runChain()
      this.cache.evict()
    }
    await this.finalCheckpointOnStop()
  }

  private async runSource(): Promise<void> {
    const source = this.processor as Source<unknown>
    this.sourceDone = this.cache.get(ACTOR_PREFIX, SOURCE_FINISHED)?.value === true
    if (this.sourceDone && source.reopen !== undefined && (await this.scope.hook('reopen', () => source.reopen!(this.lifecycleCtx)))) {
      this.cache.set(this.cache.getOrCreate(ACTOR_PREFIX, SOURCE_FINISHED, true), false)
      this.sourceDone = false
      this.marks.source!.reopen()
    }
    while (!this.abandoned) {
      this.checkpoints.checkFailed()
      if (this.barrierDue()) await this.checkpoint(Math.max(this.requestedEpoch, this.barrierEpoch))
      if (this.stopRequested) break
      if (this.sourceDone && !this.chainTimersPending()) return this.finish()
      if (this.sourceDone) {
        await this.idle(50)
        await this.runChain()
        continue
      }
      if (this.holding || this.frozen) {
        // Held for a savepoint: commit what it emitted now rather than at the next epoch, so the drain waits for no interval.
        if (this.held && this.uncommitted()) this.localBarrierRequested = true
        // Not idle either: downstream watermarks must not pass over a source that only waits.
        await this.idle(50)
        continue
      }
      await this.checkpoints.whenWritable()
      let status: SourceStatus = 'more'
      let emitted = 0
      while (status === 'more' && emitted < this.config.maxBatch && !this.barrierDue() && !this.stopRequested) {
        status = await this.pollSource(source)
        emitted += this.flushEmits()
        this.unitsSinceStart++
        this.faults.point('source-poll')
      }
      this.marks.markIfDue()
      if (this.members.length > 0) await this.runChain()
      if (status === 'done') {
        this.cache.set(this.cache.getOrCreate(ACTOR_PREFIX, SOURCE_FINISHED, true), true)
        this.sourceDone = true
        this.marks.source!.end()
      } else if (status === 'idle') {
        this.marks.source!.observeIdle(Date.now())
        await this.idle(50)
      }
      await this.fireDueTimers()
      if (this.members.length > 0) await this.runChain()
      this.cache.evict()
      // A source whose poll is synchronous would otherwise keep epochs from ever firing.
      await yieldToLoop()
    }
    await this.finalCheckpointOnStop()
  }

  private get holding(): boolean {
    return this.held || this.config.holdInputs === true
  }

  /**
   * Holds the actor's inputs (sources are not polled, topics from outside the pipeline not
   * read) or lets them go: a live savepoint drains the pipeline this way while it runs.
   */
  hold(on: boolean): void {
    this.held = on
    if (!on) this.frozen = false
    this.wake?.()
  }

  /**
   * Freezes the actor (nothing processed, no timer fired; barriers still taken) and waits
   * until everything it did is committed and in its local store. Resolves whether it is
   * then drained: nothing uncommitted, and no record of the pipeline's own topics after its
   * positions (watermark marks aside). A frozen, drained actor's store is the state of its
   * last checkpoint, which a savepoint reads.
   */
  async freeze(): Promise<boolean> {
    if (this.lifecycle === 'finished' || this.lifecycle === 'closed') return true
    if (this.head !== undefined) {
      // A chained stage is frozen with its chain: its head's barrier commits everything of it.
      await this.head.freeze()
      await this.checkpoints.drain()
      return this.drained()
    }
    this.frozen = true
    this.localBarrierRequested = true
    this.wake?.()
    const deadline = Date.now() + 30_000
    // The loop takes the barrier at its next turn (a finished actor's loop has ended: it has nothing uncommitted).
    while (this.barrierDue() && !this.ended() && Date.now() < deadline && !this.abandoned) await sleep(5)
    await this.checkpoints.drain()
    return this.drained()
  }

  private ended(): boolean {
    return this.lifecycle === 'finished' || this.lifecycle === 'closed' || this.lifecycle === 'failed' || this.lifecycle === 'fenced'
  }

  /** Lets a frozen actor run again (its inputs stay held until `hold(false)`). */
  unfreeze(): void {
    if (this.head !== undefined) return this.head.unfreeze()
    this.frozen = false
    this.wake?.()
  }

  private uncommitted(): boolean {
    return this.positionsChanged || this.cache.dirtyCount > 0 || this.transactionRecords > 0 || this.members.some((m) => m.uncommitted())
  }

  /** Processing-time timers of chained stages still to fire: the chain does not end before they did. */
  private chainTimersPending(): boolean {
    return this.members.some((m) => m.timers.size > 0)
  }

  /** Nothing uncommitted, and no data record in the pipeline's own input topics past its positions. */
  async drained(): Promise<boolean> {
    if (this.lifecycle === 'finished') return true
    if (this.uncommitted() || this.queue.length > 0) return false
    for (const m of this.members) if (!(await m.drained())) return false
    for (let i = 0; i < this.readers.length; i++) {
      if (this.externalInputs[i] === true) continue
      const r = this.readers[i]!
      if ((await dataRecordsBetween(this.pipe, r.topic, r.partition, r.position, await this.pipe.endOffset(r.topic, r.partition))) > 0) return false
    }
    return true
  }

  /** The actor's local store: a frozen actor's holds its last checkpoint (savepoints read it). */
  get stateStore(): StateStore {
    return this.store
  }

  /** End of input: a last checkpoint, visible to readers, before telling the coordinator. */
  private async finish(): Promise<void> {
    await this.endChain()
    await this.lastCheckpoint()
    await this.checkpoints.awaitOutputsVisible()
    for (const m of this.members) {
      m.lifecycle = 'finished'
      m.onFinished()
    }
    this.lifecycle = 'finished'
    this.onFinished()
  }

  private async finalCheckpointOnStop(): Promise<void> {
    if (!this.stopRequested || this.abandoned) return
    await this.lastCheckpoint()
  }

  /**
   * The actor's last checkpoint, and as many more as it takes to commit what the publishes of
   * the ones before sent (dead letters of onCheckpointCommitted go into the transaction open
   * beside it: without one more checkpoint the producer's close would abort them).
   */
  private async lastCheckpoint(): Promise<void> {
    for (let extra = 0; ; extra++) {
      await this.checkpoint(Math.max(this.requestedEpoch, this.barrierEpoch + 1), true)
      await this.checkpoints.drain()
      if (this.checkpoints.sentSinceBarrier === 0) return
      if (extra >= MAX_EXTRA_LAST_CHECKPOINTS) {
        throw new WeirError('WEIR_PUBLISH_UNSETTLED', `stage ${this.spec.name}: onCheckpointCommitted sent records (dead letters) in each of ${extra + 1} final checkpoints, including ones that staged nothing: it must only publish what its checkpoint staged`, { stage: this.spec.name, actor: this.id })
      }
    }
  }

  private async pollSource(source: Source<unknown>): Promise<SourceStatus> {
    const attempts = this.spec.onError.kind === 'retry' ? this.spec.onError.attempts : 0
    for (let attempt = 0; ; attempt++) {
      this.beginUnit(null, Date.now())
      try {
        const r = source.poll(this.ctx as SourceContext<unknown>)
        const status = r instanceof Promise ? await r : r
        this.scope.succeed()
        return status
      } catch (err) {
        this.failUnit()
        if (attempt < attempts) {
          await sleep(backoff(this.spec.onError, attempt))
          continue
        }
        throw new ActorFailedError(this.id, err, { stage: this.spec.name, partition: this.partition })
      }
    }
  }

  private idle(ms: number): Promise<void> {
    if (this.barrierDue() || this.stopRequested || this.abandoned) return Promise.resolve()
    const wait = Math.max(1, Math.min(ms, 100))
    return new Promise((resolve) => {
      const done = (): void => {
        clearTimeout(t)
        this.wake = undefined
        resolve()
      }
      const t = setTimeout(done, wait)
      this.wake = done
    })
  }

  private async inputsDrained(): Promise<boolean> {
    for (const r of this.readers) {
      if (r.position < (await this.pipe.endOffset(r.topic, r.partition))) return false
    }
    return true
  }

  // ---- records -------------------------------------------------------------------------

  private async processBatch(input: number, records: StoredRecord[]): Promise<void> {
    const recordsBefore = this.stats.recordsIn
    const codec = this.inputCodecs[input]!
    const topic = this.inputTopics[input]!
    const timestampOf = this.inputTimestamps[input]
    const decoded: Array<StreamRecord<unknown> | WatermarkMark | undefined> = new Array(records.length)
    const keys = new Set<string | null>()
    let marks = false
    for (let i = 0; i < records.length; i++) {
      const r = records[i]!
      if (r.headers !== undefined && isControlRecord(r)) {
        decoded[i] = decodeMark(r)
        marks = true
        continue
      }
      const key = r.key === null ? null : keyString(r.key)
      let value: unknown
      let timestamp = r.timestamp
      try {
        value = r instanceof HandedRecord ? r.decoded : r.value === null ? null : codec.decode(r.value)
      } catch (cause) {
        const err = new DecodeError(`cannot decode record with codec ${codec.name}: ${(cause as Error).message}`, { topic, partition: this.partition, offset: r.offset, stage: this.spec.name, actor: this.id }, cause)
        this.deadLetter(r, topic, err, 1)
        continue
      }
      if (timestampOf !== undefined) {
        // The user's function, not the codec: say so, naming the option it was given as.
        const option = `stages.${this.spec.inputs[input]}.timestampOf`
        let problem: string | undefined
        let thrown: unknown
        try {
          timestamp = timestampOf(value, r.timestamp)
          if (!Number.isFinite(timestamp)) problem = `returned ${String(timestamp)}`
        } catch (cause) {
          thrown = cause
          problem = `threw: ${(cause as Error)?.message ?? String(cause)}`
        }
        if (problem !== undefined) {
          const err = new DecodeError(`${option} ${problem} for the record at offset ${r.offset} of ${topic}: it must return the record's event time as a finite number of ms (e.g. Date.parse(value.time)); the record is dead-lettered`, { topic, partition: this.partition, offset: r.offset, stage: this.spec.name, actor: this.id, field: option }, thrown)
          this.deadLetter(r, topic, err, 1)
          continue
        }
      }
      decoded[i] = { key, keyBytes: r.key, value, timestamp, headers: r.headers ?? EMPTY_HEADERS, topic, partition: this.partition, offset: r.offset, input }
      keys.add(key)
    }
    await prefetch(this.store, this.cache, this.processor.state.keyedNames, keys)
    const watermarks = this.marks.inputs!
    const external = watermarks.hasExternalInputs
    const now = external ? Date.now() : 0
    const mid = this.faults.armed ? Math.floor(records.length / 2) : -1
    for (let i = 0; i < decoded.length; i++) {
      const rec = decoded[i]
      if (i === mid) this.faults.point('mid-batch')
      if (rec === undefined) continue
      if (marks && !('offset' in rec)) {
        // In-band watermark: records before it are done; timers it makes due fire here, in order.
        watermarks.applyMark(input, rec)
        await this.advanceWatermark()
        continue
      }
      const record = rec as StreamRecord<unknown>
      this.stats.recordsIn++
      if (record.timestamp <= watermarks.watermark) this.stats.late++
      if (external) watermarks.observeTimestamp(input, record.timestamp, now)
      if ((this.stats.recordsIn & (SAMPLE_EVERY - 1)) === 0) {
        const t = performance.now()
        const pending = this.processRecord(record, records[i]!)
        if (pending !== undefined) await pending
        pushBounded(this.stats.processingUs, (performance.now() - t) * 1000)
        continue
      }
      const pending = this.processRecord(record, records[i]!)
      if (pending !== undefined) await pending
    }
    // A crash plan can be placed by how far a stage got (faults.ts afterRecords).
    this.faults.processed(this.spec.name, this.stats.recordsIn - recordsBefore)
    if (external) await this.advanceWatermark()
  }

  /**
   * Runs one record. The common case (a synchronous onRecord that succeeds) completes
   * without creating a Promise; only async processors and failures take the slow path.
   */
  private processRecord(rec: StreamRecord<unknown>, raw: StoredRecord): Promise<void> | undefined {
    this.beginUnit(rec.key, rec.timestamp, rec.keyBytes)
    let result: void | Promise<void>
    try {
      result = this.processor.onRecord(rec, this.ctx)
    } catch (cause) {
      return this.recordFailed(rec, raw, cause, 0)
    }
    if (result instanceof Promise) {
      return result.then(
        () => this.unitSucceeded(),
        (cause: unknown) => this.recordFailed(rec, raw, cause, 0),
      )
    }
    this.unitSucceeded()
    return undefined
  }

  private beginUnit(key: string | null, timestamp: number, keyBytes: Buffer | null = null): void {
    this.scope.begin(key, timestamp, keyBytes)
  }

  /** The unit failed: its state changes and emitted records are discarded. */
  private failUnit(): void {
    this.scope.fail()
    this.stats.errors++
  }

  private unitSucceeded(): void {
    this.scope.succeed()
    this.flushEmits()
  }

  /** Rolls the record back, then retries, dead-letters or stops as the stage's policy says. */
  private async recordFailed(rec: StreamRecord<unknown>, raw: StoredRecord, cause: unknown, attempt: number): Promise<void> {
    const policy = this.spec.onError
    if (failsActor(cause)) {
      this.failUnit()
      throw cause
    }
    for (;;) {
      this.failUnit()
      const attempts = policy.kind === 'retry' ? policy.attempts : 0
      if (attempt >= attempts) break
      await sleep(backoff(policy, attempt))
      attempt++
      this.beginUnit(rec.key, rec.timestamp, rec.keyBytes)
      try {
        const r = this.processor.onRecord(rec, this.ctx)
        if (r instanceof Promise) await r
        this.unitSucceeded()
        return
      } catch (err) {
        cause = err
        if (failsActor(cause)) {
          this.failUnit()
          throw cause
        }
      }
    }
    // A record handed along a chain has no offset (-1): name the stage it came from instead.
    const where = rec.offset >= 0 || this.head === undefined ? { offset: rec.offset } : { chainedTo: this.spec.inputs[0] }
    const err = new ProcessingError(`${this.spec.name} failed on a record: ${(cause as Error)?.message ?? String(cause)}${frozenHint(cause)}`, { topic: rec.topic, partition: rec.partition, ...where, stage: this.spec.name, actor: this.id }, cause)
    const final = policy.kind === 'retry' ? policy.then : policy.kind
    if (final === 'fail-stop') throw new ActorFailedError(this.id, err, err.context)
    this.deadLetter(raw, rec.topic, err, attempt + 1)
  }

  private deadLetter(raw: StoredRecord, topic: string, err: WeirError, attempts: number, extra: { detail?: unknown; lastOffset?: number } = {}): void {
    const described = describeError(err)
    const cause = err.cause === undefined ? undefined : describeError(err.cause)
    const body = {
      error: { code: described.code, message: described.message, cause: cause ? { name: cause.name, message: cause.message, stack: cause.stack } : undefined },
      origin: { topic, partition: this.partition, offset: raw.offset, timestamp: raw.timestamp, ...(extra.lastOffset === undefined ? {} : { lastOffset: extra.lastOffset }) },
      stage: this.spec.name,
      actor: this.id,
      attempts,
      key: raw.key,
      value: raw.value,
      ...(extra.detail === undefined ? {} : { detail: extra.detail }),
      failedAt: Date.now(),
    }
    this.checkpoints.send(this.dlqTopic, this.partition, { key: raw.key, value: stateCodec.encode(body), timestamp: raw.timestamp })
    this.stats.deadLettered++
    this.log.warn({ topic, partition: this.partition, offset: raw.offset, code: described.code, attempts, err: described.message }, 'record sent to dead-letter topic')
  }

  /** `ctx.deadLetter`: a record user code gives up on (a sink's row the store refused). */
  private userDeadLetter(record: StreamRecord<unknown> | DeadLetterRecord, error: unknown, detail: unknown): void {
    if (this.checkpoints === undefined) throw new WeirError('WEIR_DEAD_LETTER_EARLY', `stage ${this.spec.name}: ctx.deadLetter was called before the actor restored its state`, { stage: this.spec.name, actor: this.id })
    const read = 'keyBytes' in record
    const input = read ? this.inputTopics.indexOf(record.topic) : -1
    let value: Buffer | null
    if (read) {
      // The bytes as read: re-encoded with the codec they were decoded with.
      const codec = this.inputCodecs[input]
      const v = (record as StreamRecord<unknown>).value
      value = codec === undefined || v === null || v === undefined ? null : Buffer.from(codec.encode(v))
    } else {
      const v = (record as DeadLetterRecord).value
      value = typeof v === 'string' ? Buffer.from(v) : Buffer.from(v.buffer, v.byteOffset, v.byteLength)
    }
    const key = read ? (record as StreamRecord<unknown>).keyBytes : record.key === null ? null : keyBytes(record.key)
    const origin = read ? { topic: record.topic, offset: (record as StreamRecord<unknown>).offset } : (record as DeadLetterRecord).origin
    const context = { topic: origin?.topic, partition: this.partition, offset: origin?.offset, stage: this.spec.name, actor: this.id }
    const err = error instanceof WeirError ? error : new ProcessingError(`${this.spec.name}: ${(error as Error)?.message ?? String(error)}`, context, error)
    const raw: StoredRecord = { key, value, timestamp: record.timestamp, offset: origin?.offset ?? -1 }
    this.deadLetter(raw, origin?.topic ?? '', err, 1, { detail, lastOffset: read ? undefined : (record as DeadLetterRecord).origin?.lastOffset })
  }

  /** `ctx.reportStats`: the stage's own figures, carried by its progress events. */
  private reportStats(stats: Readonly<Record<string, number>>): void {
    for (const [name, value] of Object.entries(stats)) {
      if (typeof value !== 'number' || !Number.isFinite(value)) throw new WeirError('WEIR_STAT_VALUE', `stage ${this.spec.name}: ctx.reportStats: stat '${name}' is ${String(value)}, not a finite number`, { stage: this.spec.name, actor: this.id, field: name })
      this.stats.custom[name] = value
    }
  }

  /** `ctx.waitingOn`: an outside system holds the actor back (or, with undefined, no longer). */
  private waitingOn(on: string | undefined, error: unknown): void {
    if (on === undefined) {
      if (this.stats.waiting !== undefined) this.log.info({ on: this.stats.waiting.on, waitedMs: Date.now() - this.stats.waiting.since }, 'no longer waiting')
      this.stats.waiting = undefined
      return
    }
    const message = error === undefined ? '' : ((error as Error)?.message ?? String(error))
    if (this.stats.waiting?.on !== on) this.log.warn({ on, err: message }, 'waiting on an outside system')
    this.stats.waiting = { on, message, since: this.stats.waiting?.on === on ? this.stats.waiting.since : Date.now() }
  }

  /**
   * A record for the transaction; one for the output a chained stage reads goes to that
   * stage instead (in order with the watermark marks), with offset -1: it was never in a topic.
   */
  private sendOut(topic: string, partition: number, record: OutgoingRecord): void {
    if (topic !== this.chainedOutput) return this.checkpoints.send(topic, partition, record)
    if (record instanceof HandedRecord) {
      this.next!.queue.push(record)
      return
    }
    // The chained stage reads it as a topic's record would be read: bytes.
    const { key, value } = record
    const handed: StoredRecord = { key: typeof key === 'string' ? Buffer.from(key, 'utf8') : key, value: typeof value === 'string' ? Buffer.from(value, 'utf8') : value, timestamp: record.timestamp, offset: -1 }
    if (record.headers !== undefined) handed.headers = record.headers
    this.next!.queue.push(handed)
  }

  /** Moves the succeeded unit's records into the transaction. */
  private flushEmits(): number {
    const emits = this.scope.emits
    const n = emits.length
    if (n === 0) return 0
    for (let i = 0; i < n; i++) {
      const e = emits[i]!
      this.sendOut(e.topic, e.partition, e.record)
    }
    this.marks.emitted(emits)
    emits.length = 0
    this.stats.recordsOut += n
    this.transactionRecords += n
    return n
  }

  // ---- timers and watermarks -----------------------------------------------------------

  private timerService(): TimerService {
    const checkTime = (time: number): void => {
      if (!Number.isSafeInteger(time) || time < 0) throw new WeirError('WEIR_TIMER_TIME', `stage ${this.spec.name}: a timer's time is a whole number of ms >= 0 (an epoch time such as Date.now() + 60_000 or record.timestamp + 1), got ${time}: round it (Math.ceil) or check the arithmetic`, { stage: this.spec.name, actor: this.id })
    }
    return {
      registerProcessingTime: (time) => (checkTime(time), this.scope.requireUnit('ctx.timers.registerProcessingTime'), this.timers.register(this.scope.key, time)),
      deleteProcessingTime: (time) => (this.scope.requireUnit('ctx.timers.deleteProcessingTime'), this.timers.delete(this.scope.key, time)),
      currentProcessingTime: () => Date.now(),
      registerEventTime: (time) => (checkTime(time), this.scope.requireUnit('ctx.timers.registerEventTime'), this.eventTimers.register(this.scope.key, time)),
      deleteEventTime: (time) => (this.scope.requireUnit('ctx.timers.deleteEventTime'), this.eventTimers.delete(this.scope.key, time)),
      currentWatermark: () => this.watermark,
    }
  }

  private async fireDueTimers(): Promise<void> {
    if (this.processor.onTimer === undefined) return
    const due = this.timers.takeDue(Date.now())
    if (due.length === 0) return
    await this.runTimers(due, 'processing-time')
  }

  /** Fires event-time timers up to `watermark`, including ones they register at or below it. */
  private async fireEventTimers(watermark: number): Promise<void> {
    if (this.processor.onTimer === undefined) return
    for (;;) {
      const due = this.eventTimers.takeDue(watermark)
      if (due.length === 0) return
      await this.runTimers(due, 'event-time')
    }
  }

  /** Fires timers; a throwing `onTimer` is rolled back and follows the stage's `onError` policy, as a record does. */
  private async runTimers(due: TimerEntry[], domain: Timer['domain']): Promise<void> {
    await prefetch(this.store, this.cache, this.processor.state.keyedNames, due.map((t) => t.key))
    const policy = this.spec.onError
    const retries = policy.kind === 'retry' ? policy.attempts : 0
    for (const t of due) {
      const timer: Timer = { key: t.key, keyBytes: t.key === null ? null : keyBytes(t.key), time: t.time, domain }
      for (let attempt = 0; ; attempt++) {
        this.beginUnit(t.key, t.time)
        try {
          const r = this.processor.onTimer?.(timer, this.ctx)
          if (r instanceof Promise) await r
          this.unitSucceeded()
          break
        } catch (cause) {
          this.failUnit()
          if (attempt < retries) {
            await sleep(backoff(policy, attempt))
            continue
          }
          this.timerFailed(timer, cause, attempt + 1)
          break
        }
      }
    }
  }

  /** A timer failed for good: fail-stop stops the actor; else a dead letter carries the timer (key, time, domain), there being no record. */
  private timerFailed(timer: Timer, cause: unknown, attempts: number): void {
    const context = { stage: this.spec.name, partition: this.partition, actor: this.id, timer: timer.time, domain: timer.domain }
    const err = new ProcessingError(`${this.spec.name} failed in onTimer (${timer.domain} timer at ${timer.time}): ${(cause as Error)?.message ?? String(cause)}`, context, cause)
    const policy = this.spec.onError
    if ((policy.kind === 'retry' ? policy.then : policy.kind) === 'fail-stop') throw new ActorFailedError(this.id, err, context)
    const described = describeError(err)
    const why = describeError(cause)
    const body = {
      error: { code: described.code, message: described.message, cause: { name: why.name, message: why.message, stack: why.stack } },
      timer: { key: timer.key, time: timer.time, domain: timer.domain },
      stage: this.spec.name,
      actor: this.id,
      attempts,
      key: timer.keyBytes,
      value: null,
      failedAt: Date.now(),
    }
    this.checkpoints.send(this.dlqTopic, this.partition, { key: body.key, value: stateCodec.encode(body), timestamp: timer.time })
    this.stats.deadLettered++
    this.log.warn({ timer: timer.time, domain: timer.domain, key: timer.key, attempts, err: described.message }, 'timer sent to dead-letter topic')
  }

  /**
   * Recomputes the input watermark and fires the event-time timers it makes due (all of
   * them at the end of input).
   */
  private async advanceWatermark(endOfInput = false): Promise<void> {
    const watermarks = this.marks.inputs
    if (watermarks === undefined) return
    const now = Date.now()
    if (endOfInput) watermarks.end(now)
    else if (!watermarks.update(now) && this.eventTimers.size === 0) return
    this.marks.publish(watermarks.view)
    await this.fireEventTimers(watermarks.watermark)
  }

  // ---- checkpoint ----------------------------------------------------------------------

  /**
   * Barrier `epoch` (checkpoint.ts is the protocol): `onCheckpoint` runs, the input
   * positions and the watermark state join the changed state, a watermark mark follows
   * the epoch's records, and the checkpointer seals the transaction in the background.
   * `last`: the actor's last checkpoint (lastCheckpoint), whose wait is no processing stall.
   */
  private async checkpoint(epoch: number, last = false): Promise<void> {
    const stallStart = performance.now()
    this.lifecycle = 'committing'
    await this.checkpoints.ready()
    this.barrierEpoch = Math.max(this.barrierEpoch, epoch)
    const checkpoint = ++this.checkpointNo
    const staged = this.processor.onCheckpoint === undefined ? undefined : await this.scope.hook('onCheckpoint', () => this.processor.onCheckpoint!({ ...this.lifecycleCtx, checkpoint, epoch }))
    const publish = this.publisher?.stage(checkpoint, epoch, staged)
    this.faults.point('before-commit')
    this.awaitingFirstCommit = false
    this.localBarrierRequested = false
    this.transactionRecords = 0
    const positions = this.positionsChanged ? this.readers.map((r) => ({ topic: r.topic, partition: r.partition, offset: r.position })) : undefined
    this.positionsChanged = false
    // The positions also go into the actor's own changelog: restore reads them from there,
    // where they are certain to match the outputs (Kafka shows a transaction's group offsets
    // a moment after its data, and kafkajs cannot ask for stable offsets).
    if (positions !== undefined) this.cache.set(this.cache.getOrCreate(ACTOR_PREFIX, INPUT_POSITIONS, true), Object.fromEntries(positions.map((o) => [o.topic, o.offset])))
    const ingest = this.marks.atBarrier(positions !== undefined)
    this.barrierIngest = ingest
    let pinViews: (() => void) | undefined
    if (this.views !== undefined) {
      // The epoch goes into the checkpoint, so a restored actor's views say which one they hold.
      this.viewEpoch = Math.max(this.viewEpoch, epoch)
      this.cache.set(this.cache.getOrCreate(ACTOR_PREFIX, VIEW_EPOCH, true), this.viewEpoch)
      if (positions !== undefined) for (const p of positions) this.viewPositions[p.topic] = p.offset
      const views = this.views
      const meta = { epoch: this.viewEpoch, positions: { ...this.viewPositions } }
      pinViews = () => views.pin({ ...meta, committedAt: Date.now() })
    }
    // The chained stages take the barrier after what the head emitted before it (its mark last), each in chain order.
    for (const m of this.members) {
      await m.processQueued()
      m.chainedBarrier(epoch)
    }
    this.own!.take(epoch, positions, ingest, publish, pinViews)
    if (!last) pushBounded(this.stats.barrierStallsMs, performance.now() - stallStart)
    this.lifecycle = 'running'
  }

  /** A chained stage's side of its head's barrier `epoch`: its watermark state and mark join the head's checkpoint. */
  private chainedBarrier(epoch: number): void {
    this.barrierEpoch = Math.max(this.barrierEpoch, epoch)
    this.checkpointNo++
    this.awaitingFirstCommit = false
    this.localBarrierRequested = false
    this.transactionRecords = 0
    const ingest = this.marks.atBarrier(this.positionsChanged)
    this.positionsChanged = false
    ;(this.checkpoints as ChainedCheckpoints).cut(ingest)
  }

  /**
   * A chained stage processes what its upstream handed it since the last call (a
   * micro-batch, as if read from the topic) and fires its due processing-time timers.
   */
  private async processQueued(): Promise<void> {
    if (this.queue.length > 0) {
      const batch = this.queue
      this.queue = []
      await this.processBatch(0, batch)
      this.marks.markIfDue()
      this.positionsChanged = true
      this.unitsSinceStart++
    }
    await this.fireDueTimers()
    this.cache.evict()
  }

  /** Runs the chained stages over what the stages before them emitted, in chain order. */
  private async runChain(): Promise<void> {
    for (const m of this.members) await m.processQueued()
  }

  /**
   * End of the head's input: each chained stage, in order, processes what is left, waits
   * for its processing-time timers, and ends its watermark (its event-time timers fire), as
   * an actor of its own does when its upstream finished.
   */
  private async endChain(): Promise<void> {
    for (const m of this.members) {
      await m.processQueued()
      while (m.timers.size > 0 && !this.abandoned) {
        const due = m.timers.nextDue()
        await sleep(Math.max(1, Math.min(50, due === undefined ? 50 : due - Date.now())))
        await m.processQueued()
      }
      await m.advanceWatermark(true)
    }
  }

  /** Dirty entries or records of the open transaction that force an early barrier, over the chain. */
  private chainFull(): boolean {
    let records = this.transactionRecords
    for (const m of this.members) {
      if (m.cache.dirtyCount >= this.config.maxDirty) return true
      records += m.transactionRecords
    }
    return records >= this.config.maxTransactionRecords
  }

  /** A checkpoint committed in the pipe: figures, the epoch ack, and now and then a purge. */
  private committed(c: CommittedCheckpoint): void {
    this.stats.lastCommitAt = c.committedAt
    this.stats.ingestHorizon = c.ingest
    if (Number.isFinite(c.ingest)) this.stats.endToEndMs = Math.max(0, c.committedAt - c.ingest)
    if (c.positions !== undefined) this.committedPositions = c.positions
    pushBounded(this.stats.commitMs, c.commitMs)
    this.committedEpoch = Math.max(this.committedEpoch, c.epoch)
    this.stats.lastEpoch = this.committedEpoch
    this.stats.checkpoints++
    this.onEpoch(this.committedEpoch)
    if (this.stats.checkpoints % PURGE_EVERY === 0) void this.purge()
  }

  /** Deletes the input records that every reader committed past (never rejects). */
  private purge(): Promise<void> {
    const inputs = this.readers.map((r, i) => ({ stage: this.pipeline.stage(this.spec.inputs[i]!)!, topic: r.topic, partition: r.partition }))
    return purgeConsumed(this.pipe, this.pipeline, this.spec, inputs, this.committedPositions, this.log)
  }

  // ---- closing -------------------------------------------------------------------------

  private async closeResources(): Promise<void> {
    if (this.lifecycle !== 'failed' && this.lifecycle !== 'fenced') {
      try {
        await this.checkpoints?.drain()
      } catch (err) {
        this.log.error({ err: describeError(err) }, 'local state write failed; the changelog replays it on restart')
      }
    }
    for (const r of this.readers) r.close()
    await this.checkpoints?.settled()
    // A graceful stop purges what its last checkpoint consumed: an actor that stops after
    // fewer than PURGE_EVERY checkpoints (a short bounded run, a move) would leave it all.
    // Bounded: a pipe that does not answer must not hold the stop.
    if (this.lifecycle !== 'failed' && this.lifecycle !== 'fenced') await Promise.race([this.purge(), sleep(FINAL_PURGE_WAIT_MS, true)])
    for (const a of [this, ...this.members]) {
      if (a.processor?.close !== undefined) await a.scope.hook('close', () => a.processor.close!()).catch((err: unknown) => a.log.error({ err: describeError(err) }, 'processor close failed'))
    }
    await this.closeProducerAndStore()
    if (this.lifecycle !== 'finished' && this.lifecycle !== 'failed' && this.lifecycle !== 'fenced') this.lifecycle = 'closed'
    for (const m of this.members) if (m.lifecycle !== 'finished') m.lifecycle = this.lifecycle
  }

  /** Waits for in-flight local writes and closes files; for an abandoned (crashed) actor. */
  async release(): Promise<void> {
    await this.closeProducerAndStore()
  }

  private async closeProducerAndStore(): Promise<void> {
    this.views?.close()
    if (this.checkpoints !== undefined) await this.checkpoints.close()
    else await this.producer?.close().catch(() => undefined)
    await this.store?.close().catch(() => undefined)
    // The chain's stores close after the producer: its close waits for their local writes.
    for (const m of this.members) await m.store?.close().catch(() => undefined)
  }

  /** Input lag: end offsets minus positions. */
  async measureLag(): Promise<number> {
    let lag = 0
    const byInput: Record<string, number> = {}
    for (const [i, r] of this.readers.entries()) {
      const n = Math.max(0, (await this.pipe.endOffset(r.topic, r.partition)) - r.position)
      byInput[this.spec.inputs[i]!] = n
      lag += n
    }
    this.stats.lag = lag
    this.stats.lagByInput = byInput
    return lag
  }
}

/** Checkpoints after the last one that a publish's dead letters may take before the actor gives up (a hook that dead-letters on every publish). */
const MAX_EXTRA_LAST_CHECKPOINTS = 3

const EMPTY_HEADERS: Readonly<Record<string, Buffer>> = Object.freeze({})

function yieldToLoop(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve))
}

function sleep(ms: number, unref = false): Promise<void> {
  return new Promise((r) => {
    const t = setTimeout(r, ms)
    if (unref) t.unref()
  })
}

/** What a TypeError from changing a frozen state value means, and what to do instead. */
function frozenHint(cause: unknown): string {
  if (!(cause instanceof TypeError) || !/read only property|not extensible|Cannot (add|delete|assign to read only) property/.test(cause.message)) return ''
  return ' (state values are frozen once set or read: set a new object, e.g. state.set({ ...old, n: old.n + 1 }), instead of changing one in place)'
}

function backoff(policy: StageSpec['onError'], attempt: number): number {
  return policy.kind === 'retry' ? Math.min(30_000, policy.backoffMs * 2 ** attempt) : 0
}
