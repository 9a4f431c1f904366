/**
 * The processor API: what users write. Processors never see transactions, offsets or
 * RocksDB handles; they see records, keyed state, timers and `ctx.emit`.
 */
import type { Logger } from 'pino'
import { WeirError } from '../errors.ts'
import { StateRegistry } from './state.ts'

/** A record handed to `onRecord`. */
export interface StreamRecord<T> {
  /**
   * The record key as a string, or null for unkeyed records: the key itself when its bytes
   * are UTF-8; otherwise an opaque string (starting with U+D800) that stands for the bytes
   * exactly, so passing it to `ctx.emit` writes the same bytes and state is never shared
   * between two keys. `keyBytes` has the bytes.
   */
  readonly key: string | null
  /** The record key's bytes as written to the pipe, or null. */
  readonly keyBytes: Buffer | null
  readonly value: T
  /** Event timestamp, ms since the epoch. */
  readonly timestamp: number
  readonly headers: Readonly<Record<string, Buffer>>
  /** Where the record came from. */
  readonly topic: string
  readonly partition: number
  readonly offset: number
  /**
   * Which input of the stage the record came from: 0 for the stream `connect` was called on
   * (and for every single-input stage), 1 for its argument; for `union`, the index of the
   * stream in `a.union(b, c)` order (a = 0).
   *
   * @example
   * onRecord(r: StreamRecord<Bid | Auction>) {
   *   if (r.input === 0) this.bids.add(r.value as Bid)
   *   else this.auctions.set(r.value as Auction)
   * }
   */
  readonly input: number
}

export interface EmitOptions {
  /** Event timestamp of the output; defaults to the input record's. */
  timestamp?: number
  headers?: Record<string, Buffer>
}

/** A timer that fired; state accessed in `onTimer` is scoped to `timer.key`. */
export interface Timer {
  /** The key it was registered for, in the same form as `StreamRecord.key`. */
  readonly key: string | null
  readonly keyBytes: Buffer | null
  /** When it was due, ms since the epoch (event time for 'event-time' timers). */
  readonly time: number
  readonly domain: 'processing-time' | 'event-time'
}

/**
 * Timers of the current key. Timers are state: they are checkpointed with everything
 * else and fire once, also across crashes and restarts.
 *
 * @example
 * onRecord(r, ctx) {
 *   const end = r.timestamp - (r.timestamp % 60_000) + 60_000
 *   ctx.timers.registerEventTime(end - 1) // fires when the watermark passes the window
 * }
 */
export interface TimerService {
  /** Fires `onTimer` for the current key once wall-clock time passes `time`. Idempotent per (key, time). */
  registerProcessingTime(time: number): void
  deleteProcessingTime(time: number): void
  currentProcessingTime(): number
  /**
   * Fires `onTimer` for the current key once the watermark reaches `time` (at the end of
   * a bounded input at the latest). Idempotent per (key, time). Records emitted from the
   * timer carry `time` as their event time.
   */
  registerEventTime(time: number): void
  deleteEventTime(time: number): void
  /** The actor's watermark: -Infinity before the first, +Infinity once every input ended. */
  currentWatermark(): number
}

/**
 * A record for the dead-letter topic that is not a `StreamRecord` as read: what a sink
 * made of records (an HTTP request, say) and could not deliver.
 */
export interface DeadLetterRecord {
  key: string | Uint8Array | null
  /** The bytes (or text) to keep: what was sent, or the records it was made of. */
  value: Uint8Array | string
  /** Event time, ms since the epoch. */
  timestamp: number
  /** The input records it came from, when it came from a range of them. */
  origin?: { topic: string; partition: number; offset: number; lastOffset?: number }
}

/**
 * What every hook and unit can report besides records: dead letters and waiting on an
 * outside system. A sink uses both (docs/sinks.md).
 */
export interface ActorReports {
  /**
   * Sends a record to the stage's dead-letter topic with the error and `detail` (plain data:
   * a database's error fields, an HTTP response), in the open checkpoint: it commits with
   * the checkpoint's outputs and state, so a crash neither loses nor doubles it. From
   * `onCheckpointCommitted` it goes into the checkpoint after the one being published (a
   * crash before that commits publishes the checkpoint again, and the dead letter is sent
   * again); an actor's last checkpoint is followed by one more if its publish sent any. A
   * `StreamRecord` keeps its key and value bytes and where it was read; `weir/testing`'s
   * `readDeadLetters` reads them back.
   *
   * @example
   * ctx.deadLetter(record, err, { sqlState: err.code, constraint: err.constraint })
   */
  deadLetter(record: StreamRecord<unknown> | DeadLetterRecord, error: unknown, detail?: unknown): void
  /**
   * Tells the progress channel that this actor waits on an outside system (a database that
   * is down, an endpoint that answers 503): the monitor shows the stage holding its outputs
   * back, with `on` and the error. Call with `undefined` once it answers again.
   *
   * @example
   * ctx.waitingOn('PostgreSQL 127.0.0.1:5432', err)  // while retrying
   * ctx.waitingOn(undefined)                          // it answered
   */
  waitingOn(on: string | undefined, error?: unknown): void
  /**
   * Sets figures of the stage's own for the progress channel: every progress event of the
   * actor carries the latest ones under `stats` (the monitor and `weir status` show them).
   * Names are plain (`requests`, `rejected.413`, `ackMs.p99`); values are numbers. Each call
   * replaces the names it gives and keeps the others; they reset when the actor restarts,
   * as the runtime's own counters do.
   *
   * @example
   * ctx.reportStats({ requests: this.requests, 'ackMs.p99': p99 })
   */
  reportStats(stats: Readonly<Record<string, number>>): void
}

/** What a processor can do while handling a record or a timer. */
export interface Context<Out> extends ActorReports {
  /** The current record's (or timer's) key: the scope of keyed state. */
  readonly key: string | null
  /** The current record's event timestamp (a timer's time in onTimer). */
  readonly timestamp: number
  readonly stage: string
  readonly partition: number
  readonly timers: TimerService
  readonly log: Logger
  /**
   * The actor's event-time watermark (minimum over every upstream writer of every input
   * partition): no more records at or below it are expected; one that comes is late.
   */
  readonly watermark: number
  /** The side outputs this stage declared (`sideOutputs` option), for `emitTo`. */
  readonly sideOutputs: readonly string[]
  /**
   * Sends a record to this stage's output. Emitted records become visible downstream
   * when the actor's next checkpoint commits, atomically with its state and offsets.
   * The value is encoded at once; one the stage's codec would not give back unchanged (a
   * function, Map or class instance for msgpack; NaN or a Date for JSON) is refused with
   * `WEIR_VALUE_UNSUPPORTED` naming the field. `undefined` writes a record without a value
   * (a tombstone in a compacted topic). Only while a record or timer is processed.
   *
   * @example
   * ctx.emit(r.key, { word: r.value, n })
   */
  emit(key: string | Uint8Array | null, value: Out, options?: EmitOptions): void
  /**
   * Sends a record to side output `name` (declared in the stage's `sideOutputs`), with
   * the same guarantees as `emit`.
   *
   * @example
   * if (r.timestamp <= ctx.watermark) ctx.emitTo('late', r.key, r.value)
   */
  emitTo(name: string, key: string | Uint8Array | null, value: unknown, options?: EmitOptions): void
}

/** What a source sees in `poll`. */
export interface SourceContext<Out> extends Context<Out> {
  /** This actor's share of the source: partition `partition` of `partitions`. */
  readonly partitions: number
  /**
   * Loads the keyed state of `keys` for `withKey` in this poll, in one batched read. A
   * source's records do not come with keys the runtime could load state for beforehand, as
   * it does for a processor's input; a source that keeps state per key of its own (an
   * idempotency key, a device id) names the keys it is about to use.
   *
   * @example
   * await ctx.loadKeys(batch.map((b) => b.id))
   * for (const b of batch) ctx.withKey(b.id, () => this.seen.set(true))
   */
  loadKeys(keys: Iterable<string>): Promise<void>
  /**
   * Runs `fn` with keyed state and timers scoped to `key`, whose state `loadKeys` loaded in
   * this poll (else it throws `WEIR_STATE_NOT_LOADED`). Timers registered in it fire
   * `onTimer` with that key. Synchronous: state changes belong to the poll, committed or
   * undone with what it emitted.
   */
  withKey<R>(key: string, fn: () => R): R
}

/** Hooks outside record processing. */
export interface LifecycleContext extends ActorReports {
  /** The pipeline's name: with `stage` and `partition` it names the actor across runs and machines. */
  readonly pipeline: string
  readonly stage: string
  readonly partition: number
  readonly partitions: number
  readonly log: Logger
  /** The side outputs this stage declared. */
  readonly sideOutputs: readonly string[]
  /**
   * The directory relative paths of this run resolve against (a file sink's path, say): the
   * process's working directory unless the run was given another (`RunOptions.workDir`;
   * weir/testing gives each test run its data dir, so a test never writes into the project).
   *
   * @example
   * this.target = resolve(ctx.workDir, this.options.path)
   */
  readonly workDir: string
  /**
   * Asks the actor to run now: a source that returned 'idle' from `poll` is polled again
   * at once instead of after its back-off. For a source fed by callbacks outside `poll` (an
   * HTTP server that got a request), so records do not wait out the back-off.
   *
   * @example
   * server.on('request', (req) => { this.inbox.push(req); ctx.wake() })
   */
  wake(): void
}

/** What `onCheckpoint` sees: the barrier being taken. */
export interface CheckpointContext extends LifecycleContext {
  /**
   * The number this checkpoint gets if it commits: one more than this actor's newest
   * committed checkpoint. For a processor with `onCheckpointCommitted` the count is kept
   * in its checkpoints, so it goes on across restarts and moves; two instances of one
   * actor (a zombie and its successor) may stage the same number, but only one commits it.
   */
  readonly checkpoint: number
  /** The coordinator's epoch of the barrier (an early barrier reuses the current one). */
  readonly epoch: number
}

/**
 * What `onCheckpointCommitted` receives: a checkpoint that committed in the pipe, and
 * what `onCheckpoint` staged for it.
 */
export interface CommitContext<Staged = unknown> extends LifecycleContext {
  /** The committed checkpoint's number (`CheckpointContext.checkpoint` at its barrier). */
  readonly checkpoint: number
  /** Its epoch. */
  readonly epoch: number
  /**
   * What `onCheckpoint` returned for this checkpoint, as committed with it (undefined if it
   * returned nothing). At start this is read back from the checkpoint's state.
   */
  readonly staged: Staged | undefined
  /**
   * True for the call at start, for the newest committed checkpoint: a previous instance
   * may have published it already, or crashed before or while doing so.
   */
  readonly recovering: boolean
  /**
   * Where the checkpoint's records end in the topics the stage writes: for each partition
   * it wrote, the offset after its last record there (Kafka's produce offset + 1). A reader
   * whose position reached it has read everything the checkpoint emitted there, so this is
   * what a view's `atLeast` takes for read-your-writes (docs/views.md). Empty at start
   * (`recovering`) and when the checkpoint emitted nothing.
   *
   * @example
   * const atLeast = commit.outputPositions.map((p) => `${p.topic}:${p.partition}:${p.offset}`).join(',')
   */
  readonly outputPositions: ReadonlyArray<{ topic: string; partition: number; offset: number }>
}

/**
 * A processor: one instance runs per partition of its input (an actor). Records arrive
 * strictly in order; state access is synchronous. Return a Promise from `onRecord` only
 * when you do I/O: the runtime awaits only what is a Promise.
 *
 * @example
 * class Count extends Processor<string, number> {
 *   count = this.state.value<number>('count')
 *   onRecord(r: StreamRecord<string>, ctx: Context<number>) {
 *     const n = (this.count.get() ?? 0) + 1
 *     this.count.set(n)
 *     ctx.emit(r.key, n)
 *   }
 * }
 *
 * `Staged` is what `onCheckpoint` hands to `onCheckpointCommitted` (a two-phase sink's
 * staged output; docs/sinks.md).
 */
export abstract class Processor<In = unknown, Out = unknown, Staged = unknown> {
  /** @internal The methods the runtime calls; a field of one of these names is refused at start (it would hide the method). */
  static readonly lifecycleHooks: readonly string[] = ['open', 'onRecord', 'onTimer', 'onCheckpoint', 'onCheckpointCommitted', 'close']

  /** Declare state as class fields: `total = this.state.value<number>('total')`. */
  readonly state = new StateRegistry()

  /**
   * Type only, never set. TypeScript compares methods' parameters both ways, so without it
   * a processor of `string` would type-check where a stream of `string | number` is read;
   * a function-typed property is compared strictly: a stage must take every record its input holds.
   */
  declare readonly '~input'?: (record: In) => void
  /** Type only, never set: lets `Stream.process` know what a processor emits even when its methods do not name `Context<Out>`. */
  declare readonly '~output'?: () => Out

  /** Called once when the actor starts, after its state is restored. */
  open?(ctx: LifecycleContext): void | Promise<void>
  abstract onRecord(record: StreamRecord<In>, ctx: Context<Out>): void | Promise<void>
  onTimer?(timer: Timer, ctx: Context<Out>): void | Promise<void>
  /**
   * Called at every barrier, before the checkpoint commits. State set here is part of the
   * checkpoint. A sink stages here what the checkpoint's records make it write (the first
   * phase of a two-phase commit: write it where it is not visible yet) and returns what
   * `onCheckpointCommitted` needs to publish it: plain data (msgpack), stored in the
   * checkpoint, so keep it small (a file name, an offset, a transaction id) and do not
   * change it after returning it. Anything written to the outside world here can belong
   * to a checkpoint that never commits (a crash, a zombie that was fenced).
   */
  onCheckpoint?(ctx: CheckpointContext): Staged | void | Promise<Staged | void>
  /**
   * Called after a checkpoint committed in the pipe, once per checkpoint and in order, with
   * what `onCheckpoint` staged for it; and at start (after `open`, before any record) for
   * the newest committed checkpoint, so that a crash between the pipe commit and the
   * publish is finished by the next instance. This is where a two-phase sink publishes.
   *
   * The contract:
   * - **Idempotent.** It can run more than once for one checkpoint: at start after a crash,
   *   after a failed attempt, and on a zombie (a paused instance whose actor moved) next to
   *   its successor. Publishing the same checkpoint twice must leave what once does.
   * - **Only what the checkpoint says.** Publish `commit.staged`, nothing else, and leave
   *   state alone: the next epoch is processed meanwhile, so state is not the checkpoint's
   *   any more (state handles throw `ScopeError` here; `onCheckpoint` is where the
   *   checkpoint's state can go into what is staged).
   * - **Failures.** A throw is retried with backoff (about 3 s in all); when it keeps
   *   failing the actor fails, and its restart publishes again. A `WeirError` that is not
   *   `retriable` (e.g. `StateCorruptedError`) fails the actor at once. The next
   *   checkpoint does not commit before this one is published.
   *
   * @example
   * // Each checkpoint's lines become one object: uploaded under a temporary key at the
   * // barrier, copied to their final key (named by the checkpoint) once it committed.
   * class UploadSink extends Processor<string, never, { tmp: string }> {
   *   private lines: string[] = []
   *   onRecord(r: StreamRecord<string>) { this.lines.push(r.value) }
   *   async onCheckpoint(ctx: CheckpointContext) {
   *     if (this.lines.length === 0) return
   *     const tmp = `tmp/${ctx.partition}/${ctx.checkpoint}-${randomUUID()}`
   *     await bucket.put(tmp, this.lines.splice(0).join('\n'))
   *     return { tmp }
   *   }
   *   async onCheckpointCommitted(commit: CommitContext<{ tmp: string }>) {
   *     // Copying again writes the same object to the same key.
   *     if (commit.staged) await bucket.copy(commit.staged.tmp, `out/${commit.partition}/${commit.checkpoint}`)
   *   }
   * }
   */
  onCheckpointCommitted?(commit: CommitContext<Staged>): void | Promise<void>
  /** Called when the actor stops (end of input, shutdown, or moving elsewhere). */
  close?(): void | Promise<void>
}

/** What a source's `poll` reports. */
export type SourceStatus = 'more' | 'idle' | 'done'

/**
 * A source: brings records from outside into the pipe. Its progress is not a pipe offset
 * (the seed explains why), so it keeps its position in `actorValue` state, which commits
 * atomically with what it emitted: a deterministic source is exactly-once on restart.
 *
 * @example
 * class Numbers extends Source<number> {
 *   next = this.state.actorValue<number>('next')
 *   poll(ctx: SourceContext<number>) {
 *     const n = this.next.get() ?? 0
 *     if (n >= 1000) return 'done'
 *     ctx.emit(String(n), n)
 *     this.next.set(n + 1)
 *     return 'more'
 *   }
 * }
 */
export abstract class Source<Out = unknown> extends Processor<never, Out> {
  /** @internal */
  static override readonly lifecycleHooks: readonly string[] = [...Processor.lifecycleHooks, 'poll', 'reopen']

  /** Emits the next records; 'idle' backs off briefly, 'done' ends this actor's share. */
  abstract poll(ctx: SourceContext<Out>): SourceStatus | Promise<SourceStatus>
  /**
   * Called at start (after `open`) when this actor's share finished in an earlier run: its
   * 'done' committed, so by default it is not polled again and ends at once. A batch source
   * given a new job (a new run id) returns true to be polled again; its end is then undone
   * in the next checkpoint. Its watermark starts again from its own state, but a stage
   * downstream that saw this actor end keeps its watermark at +∞ for it (watermarks never
   * move back): records of the new job are late for event-time operators there.
   *
   * @example
   * reopen() { return this.finishedRuns.get()?.includes(this.run) !== true }
   */
  reopen?(ctx: LifecycleContext): boolean | Promise<boolean>
  onRecord(): void {
    throw new WeirError('WEIR_SOURCE_INPUT', 'a source has no input records', {})
  }
}
