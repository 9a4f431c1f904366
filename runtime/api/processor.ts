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

/** What a processor can do while handling a record or a timer. */
export interface Context<Out> {
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
}

/** Hooks outside record processing. */
export interface LifecycleContext {
  readonly stage: string
  readonly partition: number
  readonly partitions: number
  readonly log: Logger
  /** The side outputs this stage declared. */
  readonly sideOutputs: readonly string[]
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
 */
export abstract class Processor<In = unknown, Out = unknown> {
  /** Declare state as class fields: `total = this.state.value<number>('total')`. */
  readonly state = new StateRegistry()

  /** Called once when the actor starts, after its state is restored. */
  open?(ctx: LifecycleContext): void | Promise<void>
  abstract onRecord(record: StreamRecord<In>, ctx: Context<Out>): void | Promise<void>
  onTimer?(timer: Timer, ctx: Context<Out>): void | Promise<void>
  /**
   * Called at every barrier before the checkpoint commits: flush external writes here
   * (a sink's file, a database transaction). State set here is part of the checkpoint.
   */
  onCheckpoint?(ctx: LifecycleContext): void | Promise<void>
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
  /** Emits the next records; 'idle' backs off briefly, 'done' ends this actor's share. */
  abstract poll(ctx: SourceContext<Out>): SourceStatus | Promise<SourceStatus>
  onRecord(): void {
    throw new WeirError('WEIR_SOURCE_INPUT', 'a source has no input records', {})
  }
}
