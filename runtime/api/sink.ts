/**
 * Exactly-once sinks into stores that have transactions of their own (a database, Redis):
 * the store is the truth about what it holds. Every write puts a batch of rows and the
 * actor's progress (the input positions the rows reach, the dead letters not yet committed
 * in the pipe, the writing instance's generation) into the store in one store transaction.
 * On start an instance claims the actor's progress with a new generation (so an older
 * instance's writes are refused from then on) and passes over the input the store already
 * holds. Appends are exactly-once, not only upserts; nothing waits on a two-phase commit and
 * nothing is left in doubt: a write whose acknowledgement was lost is recognised by the
 * progress it wrote.
 */
import { ConfigError, SinkError, SinkFencedError, StateCorruptedError, WeirError, describeError } from '../errors.ts'
import { Processor, type CheckpointContext, type CommitContext, type Context, type LifecycleContext, type StreamRecord } from './processor.ts'

/** The actor a sink writes for: the key of its progress in the store. */
export interface SinkActor {
  readonly pipeline: string
  readonly stage: string
  readonly partition: number
}

/**
 * Input positions: per input topic (of the actor's partition), the offset after the newest
 * record the store holds the outcome of (written, or dead-lettered).
 */
export type InputPositions = Readonly<Record<string, number>>

/** A dead letter whose record the store's progress passed: kept there until a pipe checkpoint holds it. */
export interface PendingDeadLetter {
  topic: string
  offset: number
  code: string
  message: string
  detail?: unknown
}

/** What the store keeps per actor, written in the transaction of the rows it describes. */
export interface SinkProgress {
  /** The generation of the instance that wrote it: a write of an older one is refused. */
  generation: number
  positions: InputPositions
  /** The pipe checkpoint the rows commit with (CheckpointContext.checkpoint). */
  checkpoint: number
  /** The newest barrier's epoch the writer had taken. */
  epoch: number
  deadLetters: readonly PendingDeadLetter[]
}

/** What `claim` found: the new instance's generation, and the progress the store held (undefined: none yet). */
export interface SinkClaim {
  generation: number
  progress: SinkProgress | undefined
}

/** A row to write and the record it was made from. */
export interface SinkRow<Row> {
  readonly row: Row
  readonly record: StreamRecord<unknown>
}

/** A row the store refused (a constraint, a value it cannot take): the record goes to the dead-letter topic. */
export interface RejectedRow {
  /** Index into `SinkBatch.rows`. */
  index: number
  error: unknown
  /** Plain data kept with the dead letter: the store's error fields. */
  detail?: unknown
}

/**
 * One write: rows and the progress after them, to be applied in one store transaction, and
 * only if the store's progress still has generation `generation` and positions `from`.
 */
export interface SinkBatch<Row> {
  readonly actor: SinkActor
  readonly generation: number
  readonly checkpoint: number
  readonly epoch: number
  /** The positions the store's progress must have for the write to apply. */
  readonly from: InputPositions
  /** The positions the write moves the progress to. */
  readonly to: InputPositions
  readonly rows: readonly SinkRow<Row>[]
  /** The progress to write with the rows, given the rows the store refused (their dead letters are kept in it). */
  progress(rejected: readonly RejectedRow[]): SinkProgress
}

/**
 * What a write did: `written` (with the rows the store refused), or `already-written` when
 * the store's progress is `to` already (an earlier attempt committed, and its answer was
 * lost): `progress` is what the store holds, so the dead letters that attempt kept are sent.
 */
export type WriteResult = { outcome: 'written'; rejected: readonly RejectedRow[] } | { outcome: 'already-written'; progress: SinkProgress }

export interface StoreSinkOptions {
  /** Rows per write; a barrier writes what is buffered whatever its size. Default 500. */
  batchRows?: number
  /** The first wait before retrying a store that does not answer, ms; doubles up to `maxRetryDelayMs`. Default 100. */
  retryDelayMs?: number
  /** Default 5000. */
  maxRetryDelayMs?: number
}

/** What a checkpoint records for the sink: the positions its writes reached at the barrier. */
interface StagedPositions {
  positions: Record<string, number>
  /**
   * Per input topic, the offset after the newest record this instance had handled at the
   * barrier: the dead letters of records before it are in the checkpoint (or an earlier one).
   * Not `positions`: after a restart those start where the store's progress is, ahead of
   * the records the pipe gives again, whose kept dead letters are sent only when they come.
   */
  handled?: Record<string, number>
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms))

/** The same positions give the same text (keys sorted): stores compare progress by it. */
export function encodePositions(positions: InputPositions): string {
  return JSON.stringify(Object.fromEntries(Object.entries(positions).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))))
}

/**
 * The base of an exactly-once sink into a store with transactions (see the file's first
 * comment; docs/sinks.md has the contract and a worked example). A subclass says how to
 * connect, claim the actor's progress, and write a batch with its progress atomically; this
 * class buffers rows, writes batches while the epoch runs (one in flight), flushes at every
 * barrier, retries a store that does not answer (holding the actor back and telling the
 * monitor), sends refused rows to the dead-letter topic, and passes over what the store holds
 * after a restart.
 *
 * @example
 * class AuditSink extends StoreSink<Event, Event> {
 *   protected describeStore() { return 'the audit log' }
 *   protected async connect() { await log.open() }
 *   protected toRow(r: StreamRecord<Event>) { return r.value }
 *   protected async claim(actor: SinkActor) { return log.claim(actor) }           // generation + 1, read progress
 *   protected async write(batch: SinkBatch<Event>) { return log.append(batch) }   // rows + batch.progress([]) at once
 *   protected async disconnect() { await log.close() }
 * }
 */
export abstract class StoreSink<In, Row> extends Processor<In, never, StagedPositions> {
  private readonly batchRows: number
  private readonly retryDelayMs: number
  private readonly maxRetryDelayMs: number
  private ctx: LifecycleContext | undefined
  private actor: SinkActor | undefined
  private generation = 0
  /** The store's progress positions as of our last write (or the claim). */
  private storePositions: Record<string, number> = {}
  /** Records below these offsets have their outcome in the store already (found at the claim). */
  private claimed: Record<string, number> = {}
  /** Dead letters the store's progress passed, per `topic:offset`, found at the claim: sent again when their record comes. */
  private claimedDeadLetters = new Map<string, PendingDeadLetter>()
  /** Where this instance's records reached. */
  private positions: Record<string, number> = {}
  /** The offset after the newest record onRecord was given, per topic (see StagedPositions.handled). */
  private handled: Record<string, number> = {}
  /** Dead letters not yet in a committed pipe checkpoint. */
  private pendingDeadLetters: PendingDeadLetter[] = []
  private deadLettersChanged = false
  private buffer: SinkRow<Row>[] = []
  private inflight: Promise<void> | undefined
  private failure: unknown
  private checkpointNo = 1
  private epoch = 0
  /** The progress the claim found. */
  private claimedProgress: SinkProgress | undefined
  /** The pipe had a committed checkpoint of this actor at start. */
  private pipeHistory = false
  private foreignChecked = false

  constructor(options: StoreSinkOptions = {}) {
    super()
    this.batchRows = options.batchRows ?? 500
    this.retryDelayMs = options.retryDelayMs ?? 100
    this.maxRetryDelayMs = options.maxRetryDelayMs ?? 5000
    if (!Number.isSafeInteger(this.batchRows) || this.batchRows < 1) throw new ConfigError('batchRows', `must be a whole number >= 1, got ${String(options.batchRows)}`)
    if (!(this.retryDelayMs > 0) || !(this.maxRetryDelayMs >= this.retryDelayMs)) throw new ConfigError('retryDelayMs', `must be > 0 and at most maxRetryDelayMs, got ${String(options.retryDelayMs)} and ${String(options.maxRetryDelayMs)}`)
  }

  /** The store, for messages and the monitor: `PostgreSQL 127.0.0.1:5432 table signals`. */
  protected abstract describeStore(): string
  /** Opens connections; called once at start (retried while the store does not answer). */
  protected abstract connect(ctx: LifecycleContext): Promise<void>
  /**
   * In one store transaction: reads the actor's progress and moves its generation to one
   * above any before (writing a progress row if there was none), so a write of an older
   * instance is refused from now on.
   */
  protected abstract claim(actor: SinkActor): Promise<SinkClaim>
  /**
   * In one store transaction: checks the progress (generation `batch.generation`, else throw
   * `SinkFencedError`; positions `batch.to` already: `already-written`; positions other than
   * `batch.from`: throw `StateCorruptedError`), writes the rows, refusing only the ones the
   * store rejects, and writes `batch.progress(rejected)`. Must leave nothing when it throws.
   */
  protected abstract write(batch: SinkBatch<Row>): Promise<WriteResult>
  /** Closes connections. */
  protected abstract disconnect(): Promise<void>
  /** What to write for a record; a throw sends the record to the dead-letter topic. */
  protected abstract toRow(record: StreamRecord<In>): Row
  /**
   * Whether an error of `connect`, `claim` or `write` means the store did not answer (retried,
   * the actor held back) rather than refused (the actor stops). Default: Node's network errors.
   */
  protected isUnavailable(err: unknown): boolean {
    const code = (err as { code?: unknown })?.code
    return typeof code === 'string' && NETWORK_ERRORS.has(code)
  }

  override async open(ctx: LifecycleContext): Promise<void> {
    this.ctx = ctx
    this.actor = { pipeline: ctx.pipeline, stage: ctx.stage, partition: ctx.partition }
    await this.retrying('connect', () => this.connect(ctx))
    const claim = await this.retrying('claim', () => this.claim(this.actor!))
    this.generation = claim.generation
    const progress = claim.progress
    this.claimedProgress = progress
    if (progress !== undefined) {
      this.storePositions = { ...progress.positions }
      this.claimed = { ...progress.positions }
      this.positions = { ...progress.positions }
      this.checkpointNo = progress.checkpoint
      this.epoch = progress.epoch
      this.pendingDeadLetters = [...progress.deadLetters]
      for (const d of progress.deadLetters) this.claimedDeadLetters.set(`${d.topic}:${d.offset}`, d)
    }
    ctx.log.info({ store: this.describeStore(), generation: this.generation, positions: this.storePositions, pendingDeadLetters: this.pendingDeadLetters.length }, 'sink claimed its progress')
  }

  override onRecord(record: StreamRecord<In>, ctx: Context<never>): void | Promise<void> {
    this.throwIfFailed()
    if (!this.foreignChecked) this.checkForeignProgress()
    this.handled[record.topic] = record.offset + 1
    if (record.offset < (this.claimed[record.topic] ?? 0)) {
      // The store holds this record's outcome: a previous instance wrote it after the pipe's checkpoint.
      const dead = this.claimedDeadLetters.get(`${record.topic}:${record.offset}`)
      if (dead !== undefined) ctx.deadLetter(record, new SinkError(dead.message, { topic: dead.topic, offset: dead.offset, stage: ctx.stage, partition: ctx.partition, rejectedCode: dead.code }), dead.detail)
      return
    }
    let row: Row
    try {
      row = this.toRow(record)
    } catch (err) {
      this.rejectRecord(record, err, undefined, ctx)
      return
    }
    this.buffer.push({ row, record: record as StreamRecord<unknown> })
    if (this.buffer.length < this.batchRows) {
      this.positions[record.topic] = record.offset + 1
      return
    }
    this.positions[record.topic] = record.offset + 1
    // One write in flight: the next full batch waits for it, which holds the actor back while the store is slow.
    if (this.inflight !== undefined) return this.inflight.then(() => this.startWrite())
    this.startWrite()
  }

  /** At the barrier: everything buffered goes to the store before the pipe commits the checkpoint. */
  override async onCheckpoint(ctx: CheckpointContext): Promise<StagedPositions> {
    if (!this.foreignChecked) this.checkForeignProgress()
    await this.inflight
    this.throwIfFailed()
    this.checkpointNo = ctx.checkpoint
    this.epoch = Math.max(this.epoch, ctx.epoch)
    if (this.buffer.length > 0 || this.deadLettersChanged || encodePositions(this.positions) !== encodePositions(this.storePositions)) {
      this.startWrite()
      await this.inflight
      this.throwIfFailed()
    }
    // Writes from here on commit with the next checkpoint.
    this.checkpointNo = ctx.checkpoint + 1
    return { positions: { ...this.storePositions }, handled: { ...this.handled } }
  }

  /**
   * The pipe committed a checkpoint: its dead letters are in the pipe now, so the store's
   * progress need not keep them. At start: the store must hold at least what the pipe's
   * newest checkpoint says was written.
   */
  override onCheckpointCommitted(commit: CommitContext<StagedPositions>): void {
    const committed = commit.staged?.positions ?? {}
    if (commit.recovering) {
      this.pipeHistory = true
      this.checkpointNo = Math.max(this.checkpointNo, commit.checkpoint + 1)
      for (const [topic, offset] of Object.entries(committed)) {
        if ((this.storePositions[topic] ?? 0) < offset) {
          throw new SinkError(`${this.describeStore()} holds ${this.actor!.stage}/${this.actor!.partition}'s rows of ${topic} up to offset ${this.storePositions[topic] ?? 0}, but the pipe's checkpoint ${commit.checkpoint} says they were written up to ${offset}: the store lost rows (restored from an older backup, or its progress was deleted); restore it, or start the pipeline on a new data dir`, { stage: commit.stage, partition: commit.partition, topic, storeOffset: this.storePositions[topic] ?? 0, pipeOffset: offset })
        }
      }
    }
    // Dead letters of the records the checkpoint had handled are in the pipe now (a checkpoint
    // staged before `handled` existed says nothing: its dead letters stay until a later one).
    const inPipe = commit.staged?.handled ?? {}
    const before = this.pendingDeadLetters.length
    this.pendingDeadLetters = this.pendingDeadLetters.filter((d) => d.offset >= (inPipe[d.topic] ?? 0))
    if (this.pendingDeadLetters.length !== before) this.deadLettersChanged = true
  }

  override async close(): Promise<void> {
    await this.inflight?.catch(() => undefined)
    await this.disconnect()
  }

  private rejectRecord(record: StreamRecord<unknown>, error: unknown, detail: unknown, ctx: { deadLetter: LifecycleContext['deadLetter'] }): void {
    const described = describeError(error)
    this.pendingDeadLetters.push({ topic: record.topic, offset: record.offset, code: described.code, message: described.message, ...(detail === undefined ? {} : { detail }) })
    this.deadLettersChanged = true
    this.positions[record.topic] = Math.max(this.positions[record.topic] ?? 0, record.offset + 1)
    ctx.deadLetter(record, error, detail)
  }

  /**
   * Progress in the store while the pipe has no checkpoint of this actor: a previous instance
   * may have written during the first checkpoint and crashed before the pipe committed it (the
   * rows are this input's: pass over them), or the store holds another history of the pipeline
   * (a new data dir or new topics: its offsets mean other records). Only the first checkpoint
   * can have written without the pipe committing it, so progress of a later one is foreign.
   */
  private checkForeignProgress(): void {
    this.foreignChecked = true
    const p = this.claimedProgress
    if (this.pipeHistory || p === undefined || p.checkpoint <= 1) return
    const actor = this.actor!
    const reset = this.resetHint(actor)
    throw new SinkError(`${this.describeStore()} holds progress of ${actor.pipeline} ${actor.stage}/${actor.partition} up to checkpoint ${p.checkpoint} (positions ${encodePositions(p.positions)}), but this run's pipe has no checkpoint of it: the store belongs to another run of the pipeline (a new data dir or new topics), whose offsets mean other records. Give this run a pipeline name or table of its own, or remove that progress to write this run's rows after the old ones${reset === '' ? '' : ` (${reset})`}`, { stage: actor.stage, partition: actor.partition, pipeline: actor.pipeline, storeCheckpoint: p.checkpoint })
  }

  /** How an operator removes the actor's progress from the store, for the message above (`DELETE FROM … WHERE …`). */
  protected resetHint(actor: SinkActor): string {
    void actor
    return ''
  }

  private throwIfFailed(): void {
    if (this.failure !== undefined) throw this.failure
  }

  /** Writes the buffer and the progress it reaches, in the background; a failure surfaces at the next record or barrier. */
  private startWrite(): void {
    const rows = this.buffer
    this.buffer = []
    const to = { ...this.positions }
    const from = { ...this.storePositions }
    const pending = [...this.pendingDeadLetters]
    this.deadLettersChanged = false
    const actor = this.actor!
    const batch: SinkBatch<Row> = {
      actor,
      generation: this.generation,
      checkpoint: this.checkpointNo,
      epoch: this.epoch,
      from,
      to,
      rows,
      progress: (rejected) => ({
        generation: this.generation,
        positions: to,
        checkpoint: this.checkpointNo,
        epoch: this.epoch,
        deadLetters: [...pending, ...rejected.map((r) => pendingOf(rows[r.index]!.record, r.error, r.detail))],
      }),
    }
    this.inflight = this.retrying('write', () => this.write(batch)).then(
      (result) => {
        this.storePositions = to
        const ctx = this.ctx!
        if (result.outcome === 'written') {
          for (const r of result.rejected) {
            const record = rows[r.index]!.record
            this.pendingDeadLetters.push(pendingOf(record, r.error, r.detail))
            ctx.deadLetter(record, r.error, r.detail)
          }
        } else {
          // An earlier attempt committed: its dead letters are in the progress it wrote.
          const written = new Map(result.progress.deadLetters.map((d) => [`${d.topic}:${d.offset}`, d]))
          for (const { record } of rows) {
            const d = written.get(`${record.topic}:${record.offset}`)
            if (d === undefined) continue
            this.pendingDeadLetters.push(d)
            ctx.deadLetter(record, new SinkError(d.message, { topic: d.topic, offset: d.offset, stage: actor.stage, partition: actor.partition, rejectedCode: d.code }), d.detail)
          }
        }
      },
      (err: unknown) => {
        this.failure = err
      },
    ).finally(() => {
      this.inflight = undefined
    })
  }

  /** Runs `op` until it succeeds, waiting while the store does not answer; other errors stop the actor. */
  private async retrying<T>(what: string, op: () => Promise<T>): Promise<T> {
    const ctx = this.ctx!
    let delay = this.retryDelayMs
    for (let attempt = 1; ; attempt++) {
      try {
        const result = await op()
        if (attempt > 1) ctx.waitingOn(undefined)
        return result
      } catch (err) {
        if (err instanceof SinkFencedError || err instanceof StateCorruptedError || err instanceof SinkError) throw err
        if (!this.isUnavailable(err)) {
          if (err instanceof WeirError) throw err
          throw new SinkError(`${ctx.stage}/${ctx.partition}: ${what} on ${this.describeStore()} failed: ${(err as Error)?.message ?? String(err)}`, { stage: ctx.stage, partition: ctx.partition, store: this.describeStore(), operation: what }, { cause: err })
        }
        ctx.waitingOn(this.describeStore(), err)
        if (attempt === 1 || attempt % 10 === 0) ctx.log.warn({ store: this.describeStore(), operation: what, attempt, delayMs: delay, err: (err as Error)?.message ?? String(err) }, 'sink store does not answer; retrying')
        await sleep(delay)
        delay = Math.min(this.maxRetryDelayMs, delay * 2)
      }
    }
  }
}

function pendingOf(record: StreamRecord<unknown>, error: unknown, detail: unknown): PendingDeadLetter {
  const described = describeError(error)
  return { topic: record.topic, offset: record.offset, code: described.code, message: described.message, ...(detail === undefined ? {} : { detail }) }
}

/** Errors of a connection that failed or was cut: the store may answer again. */
const NETWORK_ERRORS = new Set(['ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'EPIPE', 'EHOSTUNREACH', 'ENETUNREACH', 'EAI_AGAIN', 'ENOTFOUND', 'ECONNABORTED'])
