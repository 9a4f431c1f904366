/**
 * The processor API: what users write. Processors never see transactions, offsets or
 * RocksDB handles; they see records, keyed state, timers and `ctx.emit`.
 */
import type { Logger } from 'pino'
import { WeirError } from './errors.ts'

/** A record handed to `onRecord`. */
export interface StreamRecord<T> {
  /** The record key (UTF-8), or null for unkeyed records. */
  readonly key: string | null
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
  readonly key: string | null
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
   */
  emit(key: string | null, value: Out, options?: EmitOptions): void
  /**
   * Sends a record to side output `name` (declared in the stage's `sideOutputs`), with
   * the same guarantees as `emit`.
   *
   * @example
   * if (r.timestamp <= ctx.watermark) ctx.emitTo('late', r.key, r.value)
   */
  emitTo(name: string, key: string | null, value: unknown, options?: EmitOptions): void
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

/** @internal How state handles reach the actor's cache. */
export interface StateAccess {
  keyed(name: string): { get(): unknown; set(value: unknown): void }
  actorScoped(name: string): { get(): unknown; set(value: unknown): void }
}

abstract class StateHandle {
  protected access: { get(): unknown; set(value: unknown): void } | undefined
  constructor(readonly name: string) {}
  /** @internal */
  abstract bind(state: StateAccess): void
  protected slot(): { get(): unknown; set(value: unknown): void } {
    if (this.access === undefined) {
      throw new WeirError('WEIR_STATE_UNBOUND', `state '${this.name}' is used outside the runtime (construct processors through a pipeline)`, {})
    }
    return this.access
  }
}

/**
 * One value per key (Flink's ValueState). Values are encoded with msgpack at the next
 * checkpoint, in the background: treat a value as immutable once `set` (set a new object
 * instead of changing the one stored), or the checkpoint may see a half-made change.
 *
 * @example
 * count = this.state.value<number>('count')
 * onRecord(r) { this.count.set((this.count.get() ?? 0) + 1) }
 */
export class ValueState<T> extends StateHandle {
  /** @internal */
  bind(state: StateAccess): void {
    this.access = state.keyed(this.name)
  }
  get(): T | undefined {
    return this.slot().get() as T | undefined
  }
  set(value: T): void {
    if (value === undefined) throw new WeirError('WEIR_STATE_VALUE', `state '${this.name}': set(undefined) is not allowed, use clear()`, {})
    this.slot().set(value)
  }
  clear(): void {
    this.slot().set(undefined)
  }
}

/**
 * A map per key (Flink's MapState). Stored as one value per key: best for small maps.
 *
 * @example
 * seen = this.state.map<number>('seen')
 * onRecord(r) { this.seen.set(r.value.id, r.timestamp) }
 */
export class MapState<V> extends StateHandle {
  /** @internal */
  bind(state: StateAccess): void {
    this.access = state.keyed(this.name)
  }
  private current(): Readonly<Record<string, V>> {
    return (this.slot().get() as Record<string, V> | undefined) ?? {}
  }
  get(mapKey: string): V | undefined {
    return this.current()[mapKey]
  }
  has(mapKey: string): boolean {
    return Object.prototype.hasOwnProperty.call(this.current(), mapKey)
  }
  set(mapKey: string, value: V): void {
    this.slot().set({ ...this.current(), [mapKey]: value })
  }
  delete(mapKey: string): void {
    const next = { ...this.current() }
    delete next[mapKey]
    this.slot().set(Object.keys(next).length === 0 ? undefined : next)
  }
  entries(): Array<[string, V]> {
    return Object.entries(this.current())
  }
  keys(): string[] {
    return Object.keys(this.current())
  }
  get size(): number {
    return Object.keys(this.current()).length
  }
  clear(): void {
    this.slot().set(undefined)
  }
}

/**
 * A list per key (Flink's ListState).
 *
 * @example
 * recent = this.state.list<number>('recent')
 * onRecord(r) { this.recent.add(r.value.price) }
 */
export class ListState<T> extends StateHandle {
  /** @internal */
  bind(state: StateAccess): void {
    this.access = state.keyed(this.name)
  }
  get(): readonly T[] {
    return (this.slot().get() as T[] | undefined) ?? []
  }
  add(value: T): void {
    this.slot().set([...this.get(), value])
  }
  update(values: readonly T[]): void {
    this.slot().set(values.length === 0 ? undefined : [...values])
  }
  clear(): void {
    this.slot().set(undefined)
  }
}

/**
 * One value per actor (per partition), not per key: a source's read position, a sink's
 * committed file length. Flink calls this operator state.
 *
 * @example
 * position = this.state.actorValue<number>('position')
 */
export class ActorValueState<T> extends StateHandle {
  /** @internal */
  bind(state: StateAccess): void {
    this.access = state.actorScoped(this.name)
  }
  get(): T | undefined {
    return this.slot().get() as T | undefined
  }
  set(value: T): void {
    this.slot().set(value)
  }
  clear(): void {
    this.slot().set(undefined)
  }
}

const STATE_NAME = /^[A-Za-z0-9_.-]{1,128}$/

/** Declares a processor's state; handles are bound to the actor's store by the runtime. */
export class StateRegistry {
  /** @internal */
  readonly handles: StateHandle[] = []
  /** @internal Names of keyed states, prefetched for every key of a micro-batch. */
  readonly keyedNames: string[] = []
  /** @internal */
  readonly actorNames: string[] = []

  private declare<H extends StateHandle>(handle: H, keyed: boolean): H {
    if (!STATE_NAME.test(handle.name)) {
      throw new WeirError('WEIR_STATE_NAME', `state name '${handle.name}' must match ${STATE_NAME}`, { field: 'state' })
    }
    if (this.handles.some((h) => h.name === handle.name)) {
      throw new WeirError('WEIR_STATE_NAME', `state '${handle.name}' is declared twice`, { field: 'state' })
    }
    this.handles.push(handle)
    ;(keyed ? this.keyedNames : this.actorNames).push(handle.name)
    return handle
  }

  value<T>(name: string): ValueState<T> {
    return this.declare(new ValueState<T>(name), true)
  }
  map<V>(name: string): MapState<V> {
    return this.declare(new MapState<V>(name), true)
  }
  list<T>(name: string): ListState<T> {
    return this.declare(new ListState<T>(name), true)
  }
  actorValue<T>(name: string): ActorValueState<T> {
    return this.declare(new ActorValueState<T>(name), false)
  }

  /** @internal */
  bind(access: StateAccess): void {
    for (const h of this.handles) h.bind(access)
  }
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
