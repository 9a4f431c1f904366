/**
 * An actor: one processor instance bound to one partition of its stage. It keeps the
 * checkpoint invariant for its partition: outputs since the last barrier, the changed
 * state (as changelog records) and the input offsets at the barrier commit in one pipe
 * transaction; local RocksDB follows only after that commit succeeded.
 */
import type { Logger } from 'pino'
import { codecFor, stateCodec, type Codec } from './codec.ts'
import { ActorFencedError, DecodeError, PipeError, ProcessingError, WeirError, describeError } from './errors.ts'
import { SimulatedCrash, type Faults } from './faults.ts'
import { partitionForKey } from './partitioner.ts'
import { instantiate, type Pipeline, type StageSpec } from './api/pipeline.ts'
import { naming } from './naming.ts'
import type { PartitionOffset, PartitionReader, Pipe, PipeRecord, StoredRecord, TransactionalProducer } from './pipe/pipe.ts'
import { Source, type Context, type EmitOptions, type LifecycleContext, type Processor, type SourceContext, type SourceStatus, type StreamRecord, type Timer, type TimerService } from './api/processor.ts'
import type { StateAccess } from './api/state.ts'
import { StateStore, type StoreWrite } from './state/state-store.ts'
import { WriteCache, type CacheEntry, type DirtyEntry } from './state/write-cache.ts'
import { EVENT_TIMER_PREFIX, Timers, type TimerEntry } from './state/timers.ts'
import { replayChangelog } from './state/changelog.ts'
import { decodeMark, encodeMark, InputWatermarks, isControlRecord, SourceWatermarks, type WatermarkMark, type WatermarkView } from './watermarks.ts'
import { join } from 'node:path'

export type ActorLifecycle = 'restoring' | 'running' | 'committing' | 'finished' | 'fenced' | 'failed' | 'closed'

export interface ActorConfig {
  /** Records per micro-batch. */
  maxBatch: number
  /** Cached state entries kept in memory (clean entries beyond are evicted). */
  cacheEntries: number
  /** Dirty entries that force an early barrier. */
  maxDirty: number
  /**
   * Records emitted in one transaction that force an early barrier. A reader sees a
   * writer's transaction whole, after the others' before it: bounding it bounds how far
   * one writer's records run ahead of the others' watermarks (and the open windows that
   * takes downstream) during a backlog.
   */
  maxTransactionRecords: number
}

export const defaultActorConfig: ActorConfig = { maxBatch: 2000, cacheEntries: 250_000, maxDirty: 200_000, maxTransactionRecords: 20_000 }

/** Figures an actor reports; read by progress displays, metrics and benchmarks. */
export interface ActorStats {
  recordsIn: number
  recordsOut: number
  errors: number
  deadLettered: number
  lastEpoch: number
  checkpoints: number
  /** Time processing was stopped at each barrier, ms (last 1024). */
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
  log: Logger
  faults: Faults
  config: ActorConfig
}

const KEYED_SEP = '\u0000'
/** Changelog records encoded between two turns of the event loop while sealing a checkpoint. */
const ENCODE_SLICE = 4096
/** Consumed input records are purged every this many checkpoints. */
const PURGE_EVERY = 10
const ACTOR_PREFIX = '\u0002'
const NULL_KEY = '\u0001null'
/** A source's end-of-input mark; '#' is not allowed in user state names, so it cannot collide. */
const SOURCE_FINISHED = '#finished'
/** Input positions committed with the state: topic → next offset of this actor's partition. */
const INPUT_POSITIONS = '#positions'
/** Watermark state matching the committed positions (per-writer marks; a source's newest event time). */
const WATERMARKS = '#watermarks'
/**
 * Between checkpoints, a mark is also written once this many records were emitted and the
 * watermark advanced: a big transaction (a backlog) carries its watermark progress with
 * it, so downstream windows close as it goes. A slow stream's marks come with its
 * checkpoints, so its watermark (and its progress events) move about once an epoch.
 */
const MARK_EVERY_RECORDS = 1000
/** One record in this many has its processing time sampled for the progress channel. */
const SAMPLE_EVERY = 64

/** The cache prefix of a keyed state: its stored keys are `name \0 record key`. */
function keyedPrefix(name: string): string {
  return name + KEYED_SEP
}

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
    recordsIn: 0, recordsOut: 0, errors: 0, deadLettered: 0, lastEpoch: 0, checkpoints: 0, barrierStallsMs: [], commitMs: [], restoreMs: 0, replayedChangelogRecords: 0, lag: 0,
    lagByInput: {}, late: 0, watermark: -Infinity, watermarkChangedAt: undefined, idle: false, ingestHorizon: -Infinity, endToEndMs: undefined, lastCommitAt: undefined, processingUs: [], startedAt: Date.now(),
  }

  private readonly spec: StageSpec
  private readonly pipeline: Pipeline
  readonly partition: number
  private readonly pipe: Pipe
  private readonly log: Logger
  private readonly faults: Faults
  private readonly config: ActorConfig
  private readonly outputTopic: string
  private readonly changelogTopic: string
  private readonly dlqTopic: string
  private readonly group: string
  private readonly outputCodec: Codec<unknown>
  private readonly inputCodecs: Codec<unknown>[]
  /** Per input, the event time of a topic input's records (`timestampOf`), if it has one. */
  private readonly inputTimestamps: Array<((value: unknown, recordTimestamp: number) => number) | undefined>

  private store!: StateStore
  private producer!: TransactionalProducer
  private readers: PartitionReader[] = []
  private processor!: Processor<unknown, unknown>
  private readonly cache: WriteCache
  private timers!: Timers
  private eventTimers!: Timers
  /** A processor's input watermarks, or a source's generated one. */
  private inputWatermarks: InputWatermarks | undefined
  private sourceWatermarks: SourceWatermarks | undefined
  private watermarkStateChanged = false
  /** Partitions this actor writes watermark marks to: outputs some stage of the pipeline reads. */
  private readonly markTargets: Array<{ topic: string; partition: number }> = []
  /** The last mark written: its watermark and idleness, when, and records emitted since. */
  private lastMark = { watermark: -Infinity, idle: false, recordsSince: 0 }
  private readonly sideOutputs = new Map<string, { topic: string; spec: StageSpec; codec: Codec<unknown> }>()

  private current: { key: string | null; timestamp: number } = { key: null, timestamp: 0 }
  private pendingEmits: Array<{ topic: string; partition: number; record: PipeRecord }> = []
  private requestedEpoch = 0
  /** A checkpoint the worker asked for without a new epoch (the coordinator is out of reach). */
  private localBarrierRequested = false
  /** Records emitted since the last barrier. */
  private transactionRecords = 0
  /** Newest epoch whose barrier this actor took (its commit may still be in flight). */
  private barrierEpoch = 0
  private committedEpoch = 0
  /**
   * After a (re)start the first micro-batch is committed at once rather than at the next
   * epoch, so output resumes promptly after recovery.
   */
  private awaitingFirstCommit = true
  private unitsSinceStart = 0
  /** Counts this actor's checkpoints; pins cache entries until their local write is done. */
  private checkpointSeq = 0
  private inflight: Promise<void> = Promise.resolve()
  private inflightError: unknown
  /** Records of the next epoch, held while the previous transaction is being sealed. */
  private deferred: Array<{ topic: string; partition: number; record: PipeRecord }> | undefined
  /** Offset after the last record this actor committed to each partition of its output. */
  private readonly outputEnds = new Map<number, PartitionOffset>()
  /** Input positions of the newest committed checkpoint that carried them. */
  private committedPositions: PartitionOffset[] | undefined
  private positionsChanged = false
  private localWrite: Promise<void> = Promise.resolve()
  private changelogPosition = 0
  private upstreamFinished = false
  private sourceDone = false
  private stopRequested = false
  private abandoned = false
  private wake: (() => void) | undefined
  private readonly ctx: ActorContext
  private readonly lifecycleCtx: LifecycleContext
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
    this.outputTopic = deps.pipeline.outputTopic(deps.spec)
    this.changelogTopic = naming.changelog(p, deps.spec.name)
    this.dlqTopic = naming.deadLetter(p, deps.spec.name)
    this.group = naming.group(p, deps.spec.name)
    this.outputCodec = codecFor(deps.spec.codec)
    this.inputCodecs = deps.spec.inputs.map((i) => codecFor(deps.pipeline.stage(i)!.codec))
    this.inputTimestamps = deps.spec.inputs.map((i) => deps.pipeline.stage(i)!.timestampOf)
    this.cache = new WriteCache(deps.config.cacheEntries)
    this.ctx = new ActorContext(this, deps.spec, deps.partition)
    this.lifecycleCtx = { stage: deps.spec.name, partition: deps.partition, partitions: deps.spec.parallelism, log: this.log, sideOutputs: deps.spec.sideOutputs }
    this.onEpoch = hooks.onEpoch
    this.onFinished = hooks.onFinished
    this.onWatermark = hooks.onWatermark
    this.storePath = join(deps.dataDir, 'state', deps.spec.name, String(deps.partition))
    this.inputTopics = deps.spec.inputs.map((i) => deps.pipeline.outputTopic(deps.pipeline.stage(i)!))
    for (const side of deps.pipeline.sideStagesOf(deps.spec.name)) {
      this.sideOutputs.set(side.sideName!, { topic: deps.pipeline.outputTopic(side), spec: side, codec: codecFor(side.codec) })
    }
    // Marks go only where a stage of this pipeline reads: outputs for other systems stay data-only.
    for (const out of [deps.spec, ...deps.pipeline.sideStagesOf(deps.spec.name)]) {
      if (deps.pipeline.downstreamOf(out.name).length === 0) continue
      const topic = deps.pipeline.outputTopic(out)
      const parts = out.keyedOutput ? Array.from({ length: out.outputPartitions }, (_, p) => p) : [deps.partition % out.outputPartitions]
      for (const partition of parts) this.markTargets.push({ topic, partition })
    }
  }

  private readonly storePath: string
  private readonly inputTopics: string[]

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

  // ---- restore -------------------------------------------------------------------------

  /** Opens state and readers: local RocksDB plus the changelog tail it is missing. */
  async restore(): Promise<void> {
    const started = performance.now()
    // Opening the producer fences the previous instance (on Kafka: aborts or completes its
    // open transaction, which can take a while); the changelog replays meanwhile.
    const opening = this.pipe.producer(naming.transactionalId(this.pipeline.name, this.spec.name, this.partition))
    let replayed: { position: number; records: number }
    try {
      this.store = await StateStore.open(this.storePath)
      const replay = (): Promise<{ position: number; records: number }> => replayChangelog({
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
    this.changelogPosition = replayed.position
    this.stats.replayedChangelogRecords = replayed.records
    this.processor = instantiate(this.spec)
    this.processor.state.bind(this.stateAccess())
    await this.loadActorState()
    this.timers = await Timers.load(this.store, this.cache)
    this.eventTimers = await Timers.load(this.store, this.cache, EVENT_TIMER_PREFIX)
    this.restoreWatermarks()
    const stored = this.cache.get(ACTOR_PREFIX, INPUT_POSITIONS)?.value as Record<string, number> | undefined
    for (const topic of this.inputTopics) {
      const from = stored?.[topic] ?? (await this.pipe.committedOffset(this.group, topic, this.partition)) ?? (await this.pipe.startOffset(topic, this.partition))
      this.readers.push(await this.pipe.reader(topic, this.partition, from))
    }
    this.producer.begin()
    this.stats.restoreMs = performance.now() - started
    this.lifecycle = 'running'
    this.log.debug({ changelogPosition: this.changelogPosition, replayed: replayed.records, ms: this.stats.restoreMs }, 'actor restored')
  }

  private async loadActorState(): Promise<void> {
    const keys = [...this.processor.state.actorNames]
    keys.push(this.isSource ? SOURCE_FINISHED : INPUT_POSITIONS, WATERMARKS)
    const values = await this.store.getMany(keys.map((k) => Buffer.from(ACTOR_PREFIX + k)))
    keys.forEach((k, i) => this.cache.load(ACTOR_PREFIX, k, values[i] ? stateCodec.decode(values[i]!) : undefined, true))
  }

  private restoreWatermarks(): void {
    const now = Date.now()
    const stored = this.cache.get(ACTOR_PREFIX, WATERMARKS)?.value
    if (this.isSource) {
      this.sourceWatermarks = new SourceWatermarks(this.spec.watermarks, now)
      this.sourceWatermarks.restore(stored)
      if (this.cache.get(ACTOR_PREFIX, SOURCE_FINISHED)?.value === true) this.sourceWatermarks.end()
    } else {
      this.inputWatermarks = new InputWatermarks(
        this.spec.inputs.map((name) => {
          const input = this.pipeline.stage(name)!
          return { writers: this.pipeline.writersOf(input, this.partition), strategy: input.watermarks }
        }),
        now,
      )
      this.inputWatermarks.restore(stored, now)
    }
    this.publishWatermark(this.watermarkView(now))
  }

  /** The watermark this actor writes downstream now (sources: generated; processors: of their inputs). */
  private watermarkView(now: number): WatermarkView {
    if (this.sourceWatermarks !== undefined) return this.sourceWatermarks.view(now)
    this.inputWatermarks!.update(now)
    return this.inputWatermarks!.view
  }

  /** Copies the watermark into the stats the progress channel reads. */
  private publishWatermark(view: WatermarkView): void {
    const changedAt = (this.sourceWatermarks ?? this.inputWatermarks)?.changedAt
    const advanced = changedAt !== this.stats.watermarkChangedAt
    this.stats.watermark = view.watermark
    this.stats.idle = view.idle
    this.stats.watermarkChangedAt = changedAt
    if (advanced) this.onWatermark?.()
  }

  /** The actor's current watermark, as `ctx.watermark` shows it. */
  get watermark(): number {
    return this.sourceWatermarks?.watermark ?? this.inputWatermarks?.watermark ?? -Infinity
  }

  private stateAccess(): StateAccess {
    const cache = this.cache
    const current = this.current
    const actorId = this.id
    return {
      keyed(name) {
        // Records of one key often come in runs: remember the last entry until the cache evicts.
        let lastKey: string | null | undefined
        let lastEntry: CacheEntry | undefined
        let lastGeneration = -1
        const space = cache.space(keyedPrefix(name))
        const entryFor = (): CacheEntry => {
          const key = current.key
          if (key === lastKey && lastGeneration === cache.generation && lastEntry !== undefined) return lastEntry
          const entry = space.get(key ?? NULL_KEY)
          if (entry === undefined) {
            // Every key of a micro-batch is prefetched; a miss is a bug in the runtime, not user error.
            throw new WeirError('WEIR_STATE_NOT_PREFETCHED', `state '${name}' for key ${key} was not prefetched`, { actor: actorId })
          }
          lastKey = key
          lastEntry = entry
          lastGeneration = cache.generation
          return entry
        }
        return {
          get: () => entryFor().value,
          set: (v) => cache.set(entryFor(), v),
        }
      },
      actorScoped(name) {
        // Loaded and pinned at restore; a name first used later starts empty.
        const entryFor = (): CacheEntry => cache.getOrCreate(ACTOR_PREFIX, name, true)
        return {
          get: () => entryFor().value,
          set: (v) => cache.set(entryFor(), v),
        }
      },
    }
  }

  // ---- running -------------------------------------------------------------------------

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
    this.wake?.()
  }

  /**
   * Opens the processor, then runs until finished, stopped, fenced or failed. Opening is
   * here, not in restore(): a worker that lost the actor while restoring never opens it.
   */
  async run(): Promise<void> {
    try {
      await this.processor.open?.(this.lifecycleCtx)
      if (this.isSource) await this.runSource()
      else await this.runProcessor()
    } catch (err) {
      if (err instanceof SimulatedCrash) this.abandoned = true
      if (this.abandoned) throw err
      if (err instanceof ActorFencedError) {
        this.lifecycle = 'fenced'
        this.log.warn({ err: describeError(err) }, 'actor fenced: a newer instance owns this partition')
        return
      }
      this.lifecycle = 'failed'
      throw err
    } finally {
      if (!this.abandoned) await this.closeResources()
    }
  }

  private barrierDue(): boolean {
    return this.requestedEpoch > this.barrierEpoch || this.localBarrierRequested || this.cache.dirtyCount >= this.config.maxDirty || this.transactionRecords >= this.config.maxTransactionRecords || (this.awaitingFirstCommit && this.unitsSinceStart > 0)
  }

  private checkInflight(): void {
    if (this.inflightError !== undefined) throw this.inflightError
  }

  private async runProcessor(): Promise<void> {
    let next = 0
    while (!this.abandoned) {
      this.checkInflight()
      if (this.barrierDue()) await this.checkpoint(Math.max(this.requestedEpoch, this.barrierEpoch))
      if (this.stopRequested) break
      let records: StoredRecord[] = []
      let input = next
      await this.producer.whenWritable()
      for (let i = 0; i < this.readers.length && records.length === 0; i++) {
        input = (next + i) % this.readers.length
        records = await this.readers[input]!.poll(this.config.maxBatch, 0)
      }
      if (this.abandoned) return
      if (records.length === 0) {
        await this.fireDueTimers()
        await this.advanceWatermark()
        // A bounded actor ends when its inputs are drained and its pending timers have fired.
        if (this.upstreamFinished && this.timers.size === 0 && (await this.inputsDrained())) {
          // Every upstream writer ended: the watermark is +infinity and every event-time timer fires.
          await this.advanceWatermark(true)
          await this.checkpoint(Math.max(this.requestedEpoch, this.barrierEpoch + 1))
          await this.drainCheckpoints()
          await this.awaitOutputsVisible()
          this.lifecycle = 'finished'
          this.onFinished()
          return
        }
        if (this.barrierDue() || this.stopRequested) continue
        // Wait for data on one input; an append wakes the reader at once.
        const due = this.timers.nextDue()
        const waitMs = Math.max(1, Math.min(50, due === undefined ? 50 : due - Date.now()))
        input = next
        records = await this.readers[input]!.poll(this.config.maxBatch, waitMs)
        if (this.abandoned) return
        if (records.length === 0) {
          next = (next + 1) % this.readers.length
          continue
        }
      }
      next = (input + 1) % this.readers.length
      await this.processBatch(input, records)
      this.markIfDue()
      this.positionsChanged = true
      this.unitsSinceStart++
      // Records already buffered resolve polls without I/O; let timers (epochs) and I/O run.
      await yieldToLoop()
      await this.fireDueTimers()
      this.cache.evict()
    }
    if (this.stopRequested && !this.abandoned) {
      await this.checkpoint(Math.max(this.requestedEpoch, this.barrierEpoch + 1))
      await this.drainCheckpoints()
    }
  }

  private async runSource(): Promise<void> {
    const source = this.processor as Source<unknown>
    this.sourceDone = this.cache.get(ACTOR_PREFIX, SOURCE_FINISHED)?.value === true
    while (!this.abandoned) {
      this.checkInflight()
      if (this.barrierDue()) await this.checkpoint(Math.max(this.requestedEpoch, this.barrierEpoch))
      if (this.stopRequested) break
      if (this.sourceDone) {
        await this.checkpoint(Math.max(this.requestedEpoch, this.barrierEpoch + 1))
        await this.drainCheckpoints()
        await this.awaitOutputsVisible()
        this.lifecycle = 'finished'
        this.onFinished()
        return
      }
      await this.producer.whenWritable()
      let status: SourceStatus = 'more'
      let emitted = 0
      while (status === 'more' && emitted < this.config.maxBatch && !this.barrierDue() && !this.stopRequested) {
        status = await this.pollSource(source)
        emitted += this.flushEmits()
        this.unitsSinceStart++
        this.faults.point('source-poll')
      }
      this.markIfDue()
      if (status === 'done') {
        this.cache.set(this.cache.getOrCreate(ACTOR_PREFIX, SOURCE_FINISHED, true), true)
        this.sourceDone = true
        this.sourceWatermarks!.end()
      } else if (status === 'idle') {
        this.sourceWatermarks!.observeIdle(Date.now())
        await this.idle(50)
      }
      await this.fireDueTimers()
      this.cache.evict()
      // A source whose poll is synchronous would otherwise keep epochs from ever firing.
      await yieldToLoop()
    }
    if (this.stopRequested && !this.abandoned) {
      await this.checkpoint(Math.max(this.requestedEpoch, this.barrierEpoch + 1))
      await this.drainCheckpoints()
    }
  }

  private async pollSource(source: Source<unknown>): Promise<SourceStatus> {
    const attempts = this.spec.onError.kind === 'retry' ? this.spec.onError.attempts : 0
    for (let attempt = 0; ; attempt++) {
      this.beginScope(null, Date.now())
      try {
        const r = source.poll(this.ctx as SourceContext<unknown>)
        const status = r instanceof Promise ? await r : r
        this.cache.endRecord()
        return status
      } catch (err) {
        this.abortScope()
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
      const key = r.key === null ? null : r.key.toString('utf8')
      let value: unknown
      let timestamp = r.timestamp
      try {
        value = r.value === null ? null : codec.decode(r.value)
        if (timestampOf !== undefined) timestamp = timestampOf(value, r.timestamp)
        if (!Number.isFinite(timestamp)) throw new Error(`timestampOf returned ${timestamp}`)
      } catch (cause) {
        const err = new DecodeError(`cannot decode record with codec ${codec.name}: ${(cause as Error).message}`, { topic, partition: this.partition, offset: r.offset, stage: this.spec.name, actor: this.id }, cause)
        this.deadLetter(r, topic, err, 1)
        continue
      }
      decoded[i] = { key, value, timestamp, headers: r.headers ?? EMPTY_HEADERS, topic, partition: this.partition, offset: r.offset }
      keys.add(key)
    }
    await this.prefetch(keys)
    const watermarks = this.inputWatermarks!
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
   * Recomputes the input watermark and fires the event-time timers it makes due (all of
   * them at the end of input).
   */
  private async advanceWatermark(endOfInput = false): Promise<void> {
    const watermarks = this.inputWatermarks
    if (watermarks === undefined) return
    const now = Date.now()
    if (endOfInput) watermarks.end(now)
    else if (!watermarks.update(now) && this.eventTimers.size === 0) return
    this.publishWatermark(watermarks.view)
    await this.fireEventTimers(watermarks.watermark)
  }

  /** Loads the keyed state of `keys` that is not cached, in one batched RocksDB read. */
  private async prefetch(keys: Iterable<string | null>): Promise<void> {
    const names = this.processor.state.keyedNames
    if (names.length === 0) return
    const missing: Array<{ prefix: string; key: string }> = []
    for (const name of names) {
      const prefix = keyedPrefix(name)
      const space = this.cache.space(prefix)
      for (const k of keys) {
        const key = k ?? NULL_KEY
        if (!space.has(key)) missing.push({ prefix, key })
      }
    }
    if (missing.length === 0) return
    const values = await this.store.getMany(missing.map((m) => Buffer.from(m.prefix + m.key)))
    for (let i = 0; i < missing.length; i++) {
      const v = values[i]
      this.cache.load(missing[i]!.prefix, missing[i]!.key, v ? stateCodec.decode(v) : undefined)
    }
  }

  /**
   * Runs one record. The common case (a synchronous onRecord that succeeds) completes
   * without creating a Promise; only async processors and failures take the slow path.
   */
  private processRecord(rec: StreamRecord<unknown>, raw: StoredRecord): Promise<void> | undefined {
    this.beginScope(rec.key, rec.timestamp)
    let result: void | Promise<void>
    try {
      result = this.processor.onRecord(rec, this.ctx)
    } catch (cause) {
      return this.recordFailed(rec, raw, cause, 0)
    }
    if (result instanceof Promise) {
      return result.then(
        () => this.recordSucceeded(),
        (cause: unknown) => this.recordFailed(rec, raw, cause, 0),
      )
    }
    this.recordSucceeded()
    return undefined
  }

  /** Enters one unit of user code (a record, a timer, a poll): state is scoped to `key`, changes can be undone. */
  private beginScope(key: string | null, timestamp: number): void {
    this.current.key = key
    this.current.timestamp = timestamp
    this.cache.beginRecord()
  }

  /** The unit failed: its state changes and emitted records are discarded. */
  private abortScope(): void {
    this.cache.rollbackRecord()
    this.pendingEmits.length = 0
    this.stats.errors++
  }

  private recordSucceeded(): void {
    this.cache.endRecord()
    this.flushEmits()
  }

  /** Rolls the record back, then retries, dead-letters or stops as the stage's policy says. */
  private async recordFailed(rec: StreamRecord<unknown>, raw: StoredRecord, cause: unknown, attempt: number): Promise<void> {
    const policy = this.spec.onError
    for (;;) {
      this.abortScope()
      const attempts = policy.kind === 'retry' ? policy.attempts : 0
      if (attempt >= attempts) break
      await sleep(backoff(policy, attempt))
      attempt++
      this.beginScope(rec.key, rec.timestamp)
      try {
        const r = this.processor.onRecord(rec, this.ctx)
        if (r instanceof Promise) await r
        this.recordSucceeded()
        return
      } catch (err) {
        cause = err
      }
    }
    const err = new ProcessingError(`${this.spec.name} failed on a record: ${(cause as Error)?.message ?? String(cause)}`, { topic: rec.topic, partition: rec.partition, offset: rec.offset, stage: this.spec.name, actor: this.id }, cause)
    const final = policy.kind === 'retry' ? policy.then : policy.kind
    if (final === 'fail-stop') throw new ActorFailedError(this.id, err, err.context)
    this.deadLetter(raw, rec.topic, err, attempt + 1)
  }

  private deadLetter(raw: StoredRecord, topic: string, err: WeirError, attempts: number): void {
    const described = describeError(err)
    const cause = err.cause === undefined ? undefined : describeError(err.cause)
    const body = {
      error: { code: described.code, message: described.message, cause: cause ? { name: cause.name, message: cause.message, stack: cause.stack } : undefined },
      origin: { topic, partition: this.partition, offset: raw.offset, timestamp: raw.timestamp },
      stage: this.spec.name,
      actor: this.id,
      attempts,
      key: raw.key,
      value: raw.value,
      failedAt: Date.now(),
    }
    this.send(this.dlqTopic, this.partition, { key: raw.key, value: stateCodec.encode(body), timestamp: raw.timestamp })
    this.stats.deadLettered++
    this.log.warn({ topic, partition: this.partition, offset: raw.offset, code: described.code, attempts, err: described.message }, 'record sent to dead-letter topic')
  }

  /** @internal Called by the context. */
  emit(key: string | null, value: unknown, options: EmitOptions | undefined): void {
    const keyBuf = key === null ? null : Buffer.from(key)
    const valueBuf = value === undefined ? null : this.outputCodec.encode(value)
    const n = this.spec.outputPartitions
    const partition = this.spec.keyedOutput && keyBuf !== null ? partitionForKey(keyBuf, n) : this.partition % n
    const record: PipeRecord = { key: keyBuf, value: valueBuf, timestamp: options?.timestamp ?? this.current.timestamp }
    if (options?.headers !== undefined) record.headers = options.headers
    this.pendingEmits.push({ topic: this.outputTopic, partition, record })
  }

  /** @internal Called by the context. */
  emitTo(name: string, key: string | null, value: unknown, options: EmitOptions | undefined): void {
    const side = this.sideOutputs.get(name)
    if (side === undefined) throw new WeirError('WEIR_SIDE_OUTPUT_UNKNOWN', `stage ${this.spec.name} has no side output '${name}' (declare it in the stage's sideOutputs option)`, { stage: this.spec.name, actor: this.id })
    const keyBuf = key === null ? null : Buffer.from(key)
    const n = side.spec.outputPartitions
    const partition = side.spec.keyedOutput && keyBuf !== null ? partitionForKey(keyBuf, n) : this.partition % n
    const record: PipeRecord = { key: keyBuf, value: value === undefined ? null : side.codec.encode(value), timestamp: options?.timestamp ?? this.current.timestamp }
    if (options?.headers !== undefined) record.headers = options.headers
    this.pendingEmits.push({ topic: side.topic, partition, record })
  }

  private flushEmits(): number {
    const n = this.pendingEmits.length
    const source = this.sourceWatermarks
    const now = source === undefined || n === 0 ? 0 : Date.now()
    for (let i = 0; i < n; i++) {
      const e = this.pendingEmits[i]!
      source?.observeEmit(e.record.timestamp, now)
      this.send(e.topic, e.partition, e.record)
    }
    if (source !== undefined && n > 0) this.watermarkStateChanged = true
    this.pendingEmits.length = 0
    this.stats.recordsOut += n
    this.lastMark.recordsSince += n
    this.transactionRecords += n
    return n
  }

  // ---- timers --------------------------------------------------------------------------

  /** @internal */
  timerService(): TimerService {
    const checkTime = (time: number): void => {
      if (!Number.isSafeInteger(time) || time < 0) throw new WeirError('WEIR_TIMER_TIME', `a timer's time must be a whole number of ms >= 0, got ${time}`, { actor: this.id })
    }
    return {
      registerProcessingTime: (time) => (checkTime(time), this.timers.register(this.current.key, time)),
      deleteProcessingTime: (time) => this.timers.delete(this.current.key, time),
      currentProcessingTime: () => Date.now(),
      registerEventTime: (time) => (checkTime(time), this.eventTimers.register(this.current.key, time)),
      deleteEventTime: (time) => this.eventTimers.delete(this.current.key, time),
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

  private async runTimers(due: TimerEntry[], domain: Timer['domain']): Promise<void> {
    await this.prefetch(due.map((t) => t.key))
    for (const t of due) {
      const timer: Timer = { key: t.key, time: t.time, domain }
      this.beginScope(t.key, t.time)
      try {
        const r = this.processor.onTimer?.(timer, this.ctx)
        if (r instanceof Promise) await r
        this.cache.endRecord()
        this.flushEmits()
      } catch (cause) {
        this.abortScope()
        throw new ActorFailedError(this.id, cause, { stage: this.spec.name, partition: this.partition, timer: t.time, domain })
      }
    }
  }

  // ---- checkpoint ----------------------------------------------------------------------

  /**
   * Barrier `epoch`: one pipe transaction with the outputs since the last barrier (already
   * in the producer), the changelog of the dirty keys and the input positions at the
   * barrier. The barrier itself only snapshots (the dirty list, the positions); encoding
   * the changelog, the commit and the local RocksDB write run in the background while the
   * next epoch is processed, its records held back until this transaction is committed.
   * The next barrier waits for all of it, so commits stay in order and none is attempted
   * after one failed.
   */
  private async checkpoint(epoch: number): Promise<void> {
    const stallStart = performance.now()
    this.lifecycle = 'committing'
    await this.inflight
    this.checkInflight()
    this.barrierEpoch = Math.max(this.barrierEpoch, epoch)
    await this.processor.onCheckpoint?.(this.lifecycleCtx)
    this.faults.point('before-commit')
    // Pinning uses this actor's own checkpoint sequence: an early barrier (full cache, first
    // batch) reuses the coordinator's epoch number, and pins must not be released by an older write.
    const seq = ++this.checkpointSeq
    this.awaitingFirstCommit = false
    this.localBarrierRequested = false
    this.transactionRecords = 0
    const offsets = this.positionsChanged ? this.readers.map((r) => ({ topic: r.topic, partition: r.partition, offset: r.position })) : undefined
    this.positionsChanged = false
    // The positions also go into the actor's own changelog: restore reads them from there,
    // where they are certain to match the outputs (Kafka shows a transaction's group offsets
    // a moment after its data, and kafkajs cannot ask for stable offsets).
    if (offsets !== undefined) this.cache.set(this.cache.getOrCreate(ACTOR_PREFIX, INPUT_POSITIONS, true), Object.fromEntries(offsets.map((o) => [o.topic, o.offset])))
    const ingest = this.writeWatermarks(offsets !== undefined)
    const dirty = this.cache.takeDirty(seq)
    this.deferred = []
    this.inflight = this.sealAndCommit(dirty, offsets, epoch, seq, ingest)
    this.inflight.catch((err: unknown) => {
      this.inflightError = err
      this.wake?.()
    })
    pushBounded(this.stats.barrierStallsMs, performance.now() - stallStart)
    this.lifecycle = 'running'
  }

  /**
   * At the barrier: a watermark mark into every partition this actor writes that a stage
   * reads (after this epoch's records, in the same transaction), and the watermark state
   * into the checkpoint. Returns the ingest horizon the checkpoint carries.
   */
  private writeWatermarks(positionsChanged: boolean): number {
    const now = Date.now()
    const view = this.watermarkView(now)
    this.publishWatermark(view)
    this.writeMark(view, now)
    if (positionsChanged || this.watermarkStateChanged) {
      const state = (this.sourceWatermarks ?? this.inputWatermarks)!.snapshot()
      this.cache.set(this.cache.getOrCreate(ACTOR_PREFIX, WATERMARKS, true), state)
      this.watermarkStateChanged = false
    }
    return view.ingest
  }

  /** A mark after the records emitted so far, into every partition a stage reads. */
  private writeMark(view: WatermarkView, now: number): void {
    this.lastMark = { watermark: view.watermark, idle: view.idle, recordsSince: 0 }
    if (this.markTargets.length === 0) return
    const mark = encodeMark({ writer: this.id, watermark: view.watermark, idle: view.idle, ingest: view.ingest }, now)
    for (const t of this.markTargets) this.send(t.topic, t.partition, mark)
  }

  /** Between checkpoints: a mark when the watermark moved and enough was emitted since the last. */
  private markIfDue(): void {
    if (this.markTargets.length === 0 || this.lastMark.recordsSince < MARK_EVERY_RECORDS) return
    const now = Date.now()
    const view = this.watermarkView(now)
    if (view.watermark <= this.lastMark.watermark && view.idle === this.lastMark.idle) return
    this.publishWatermark(view)
    this.writeMark(view, now)
  }

  /** Sends a record into the open transaction, or holds it while the previous one is sealed. */
  private send(topic: string, partition: number, record: PipeRecord): void {
    if (this.deferred !== undefined) this.deferred.push({ topic, partition, record })
    else this.producer.send(topic, partition, record)
  }

  /** Encodes the changelog into the sealed transaction in slices, commits it, and opens the next. */
  private async sealAndCommit(dirty: DirtyEntry[], offsets: PartitionOffset[] | undefined, epoch: number, seq: number, ingest: number): Promise<void> {
    const now = Date.now()
    const writes: StoreWrite[] = new Array(dirty.length)
    for (let i = 0; i < dirty.length; i++) {
      const d = dirty[i]!
      const key = Buffer.from(d.key)
      const value = d.value === undefined ? null : stateCodec.encode(d.value)
      writes[i] = { key, value }
      this.producer.send(this.changelogTopic, this.partition, { key, value, timestamp: now })
      // Let the next epoch's records through between slices.
      if ((i + 1) % ENCODE_SLICE === 0) await yieldToLoop()
    }
    if (offsets !== undefined) this.producer.sendOffsets(this.group, offsets)
    const commitStart = performance.now()
    const committing = this.producer.commit()
    committing.catch(() => undefined)
    this.producer.begin()
    const held = this.deferred ?? []
    this.deferred = undefined
    for (const h of held) this.producer.send(h.topic, h.partition, h.record)
    await this.completeCheckpoint(committing, writes, epoch, seq, commitStart, offsets, ingest)
  }

  /** The background half of a checkpoint: pipe commit, then local state, then the ack. */
  private async completeCheckpoint(committing: Promise<PartitionOffset[]>, writes: StoreWrite[], epoch: number, seq: number, commitStart: number, offsets: PartitionOffset[] | undefined, ingest: number): Promise<void> {
    const ends = await committing
    const committedAt = Date.now()
    this.stats.lastCommitAt = committedAt
    this.stats.ingestHorizon = ingest
    if (Number.isFinite(ingest)) this.stats.endToEndMs = Math.max(0, committedAt - ingest)
    if (offsets !== undefined) this.committedPositions = offsets
    for (const e of ends) {
      if (e.topic === this.outputTopic && (this.outputEnds.get(e.partition)?.offset ?? -1) < e.offset) this.outputEnds.set(e.partition, e)
    }
    pushBounded(this.stats.commitMs, performance.now() - commitStart)
    this.faults.point('after-pipe-commit')
    const changelogEnd = ends.find((e) => e.topic === this.changelogTopic)?.offset
    if (changelogEnd !== undefined) this.changelogPosition = changelogEnd
    const position = this.changelogPosition
    // One local write at a time; its entries stay pinned in the cache until it is done.
    await this.localWrite
    if (writes.length > 0) {
      this.localWrite = this.store.apply(writes, position).then(() => {
        this.cache.markFlushed(seq)
        this.faults.point('after-local-write')
      })
      this.localWrite.catch(() => undefined)
    } else {
      this.cache.markFlushed(seq)
    }
    this.committedEpoch = Math.max(this.committedEpoch, epoch)
    this.stats.lastEpoch = this.committedEpoch
    this.stats.checkpoints++
    this.onEpoch(this.committedEpoch)
    if (this.stats.checkpoints % PURGE_EVERY === 0) this.purgeConsumed()
  }

  /**
   * Before an actor reports that it finished, its last output must be readable: on Kafka a
   * transaction's records become visible when its commit markers are written, just after
   * EndTxn returns. A downstream actor told "upstream finished" compares its position
   * with the end offset, which must already include these records.
   */
  private async awaitOutputsVisible(): Promise<void> {
    const deadline = Date.now() + 60_000
    for (const { topic, partition, offset } of this.outputEnds.values()) {
      while ((await this.pipe.endOffset(topic, partition)) < offset) {
        if (Date.now() > deadline) throw new PipeError(`committed records of ${topic}/${partition} up to ${offset} are still not visible after 60 s`, { topic, partition, offset, actor: this.id }, { retriable: true })
        await new Promise((r) => setTimeout(r, 5))
      }
    }
  }

  /** Waits until every barrier taken so far has committed; rethrows a failed commit. */
  private async drainCheckpoints(): Promise<void> {
    await this.inflight
    await this.localWrite
  }

  /**
   * Retention by committed position: deletes input records every reading stage has
   * committed past (this one included: its last committed position, not its reader's).
   * Runs in the background; a failure only delays the purge.
   */
  private purgeConsumed(): void {
    if (!this.pipeline.options.purgeConsumedRecords) return
    for (const [i, reader] of this.readers.entries()) {
      // Topics with a user-given name (topic inputs, named outputs) belong to the user: never purged.
      if (this.pipeline.stage(this.spec.inputs[i]!)!.topic !== undefined) continue
      const readers = this.pipeline.downstreamOf(this.spec.inputs[i]!)
      const topic = reader.topic
      const partition = reader.partition
      // Up to the committed position, not the reader's: records read since the last commit
      // are read again after a crash, so they must still be there.
      const committed = this.committedPositions?.find((o) => o.topic === topic && o.partition === partition)?.offset
      if (committed === undefined) continue
      void (async () => {
        let upTo = committed
        for (const s of readers) {
          if (s.name === this.spec.name) continue
          const committed = await this.pipe.committedOffset(naming.group(this.pipeline.name, s.name), topic, partition)
          upTo = Math.min(upTo, committed ?? 0)
        }
        if (upTo > 0) await this.pipe.deleteRecordsBefore(topic, partition, upTo)
      })().catch((err: unknown) => this.log.warn({ topic, partition, err: describeError(err) }, 'purging consumed records failed; will retry'))
    }
  }

  private async closeResources(): Promise<void> {
    if (this.lifecycle !== 'failed' && this.lifecycle !== 'fenced') {
      try {
        await this.inflight
        await this.localWrite
      } catch (err) {
        this.log.error({ err: describeError(err) }, 'local state write failed; the changelog replays it on restart')
      }
    }
    for (const r of this.readers) r.close()
    await Promise.resolve(this.processor?.close?.()).catch((err: unknown) => this.log.error({ err: describeError(err) }, 'processor close failed'))
    await this.producer?.close().catch(() => undefined)
    await this.localWrite.catch(() => undefined)
    await this.store?.close().catch(() => undefined)
    if (this.lifecycle !== 'finished' && this.lifecycle !== 'failed' && this.lifecycle !== 'fenced') this.lifecycle = 'closed'
  }

  /** Waits for in-flight local writes and closes files; for an abandoned (crashed) actor. */
  async release(): Promise<void> {
    await this.inflight.catch(() => undefined)
    await this.localWrite.catch(() => undefined)
    await this.producer?.close().catch(() => undefined)
    await this.store?.close().catch(() => undefined)
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

  /** @internal For the context. */
  get currentKey(): string | null {
    return this.current.key
  }
  /** @internal */
  get currentTimestamp(): number {
    return this.current.timestamp
  }
  /** @internal */
  get logger(): Logger {
    return this.log
  }
}

const EMPTY_HEADERS: Readonly<Record<string, Buffer>> = Object.freeze({})

function yieldToLoop(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve))
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms))
}

function backoff(policy: StageSpec['onError'], attempt: number): number {
  return policy.kind === 'retry' ? Math.min(30_000, policy.backoffMs * 2 ** attempt) : 0
}

class ActorContext implements SourceContext<unknown>, Context<unknown> {
  readonly timers: TimerService
  constructor(private readonly actor: Actor, private readonly spec: StageSpec, readonly partition: number) {
    this.timers = actor.timerService()
  }
  get key(): string | null {
    return this.actor.currentKey
  }
  get timestamp(): number {
    return this.actor.currentTimestamp
  }
  get stage(): string {
    return this.spec.name
  }
  get partitions(): number {
    return this.spec.parallelism
  }
  get log(): Logger {
    return this.actor.logger
  }
  get watermark(): number {
    return this.actor.watermark
  }
  get sideOutputs(): readonly string[] {
    return this.spec.sideOutputs
  }
  emit(key: string | null, value: unknown, options?: EmitOptions): void {
    this.actor.emit(key, value, options)
  }
  emitTo(name: string, key: string | null, value: unknown, options?: EmitOptions): void {
    this.actor.emitTo(name, key, value, options)
  }
}
