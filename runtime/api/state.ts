/**
 * Keyed and actor-scoped state handles (Flink's ValueState, MapState, ListState and
 * operator state). A processor declares them as fields; the runtime binds them to the
 * actor's write cache, scoped to the key of the record or timer being processed.
 */
import { WeirError } from '../errors.ts'

/** @internal How state handles reach the actor's cache. */
export interface StateAccess {
  keyed(name: string): { get(): unknown; set(value: unknown): void }
  actorScoped(name: string): { get(): unknown; set(value: unknown): void }
}

/** The stage whose processor the runtime is constructing right now (construction is synchronous). */
let constructing: string | undefined

/**
 * @internal Runs `make`, a stage's processor factory, so that state used while the processor
 * is constructed (in its constructor or a field initializer) is reported naming the stage.
 */
export function constructProcessor<T>(stage: string, make: () => T): T {
  const outer = constructing
  constructing = stage
  try {
    return make()
  } finally {
    constructing = outer
  }
}

/** Why a handle has no access to the actor's state, and what to do instead. */
function unbound(name: string, declaredLate: boolean): WeirError {
  if (constructing !== undefined) {
    return new WeirError(
      'WEIR_STATE_UNBOUND',
      `stage ${constructing}: state '${name}' was used in the processor's constructor or a field initializer; state exists only once the actor runs ` +
        `(keyed state while a record or timer is handled, actor state from open on): declare the handle as a field (${name} = this.state.value('${name}')) and use it in onRecord or onTimer (actorValue also in open)`,
      { stage: constructing, field: 'state', state: name },
    )
  }
  if (declaredLate) {
    return new WeirError(
      'WEIR_STATE_UNBOUND',
      `state '${name}' was declared after the actor started (in open, onRecord or a method they call), so the runtime never bound it: declare every state handle as a class field (${name} = this.state.value('${name}'))`,
      { field: 'state', state: name },
    )
  }
  return new WeirError(
    'WEIR_STATE_UNBOUND',
    `state '${name}' was used on a processor the runtime did not start (created with new outside a pipeline?): state works only in a running stage: ` +
      `add the processor to a pipeline (stream.process('name', () => new MyProcessor())) and run it (weir run, or runToCompletion from weir/testing to test it)`,
    { field: 'state', state: name },
  )
}

abstract class StateHandle {
  protected access: { get(): unknown; set(value: unknown): void } | undefined
  /** @internal Set when the handle was declared after its registry was bound. */
  declaredLate = false
  constructor(readonly name: string) {}
  /** @internal */
  abstract bind(state: StateAccess): void
  protected slot(): { get(): unknown; set(value: unknown): void } {
    if (this.access === undefined) throw unbound(this.name, this.declaredLate)
    return this.access
  }
}

/**
 * One value per key (Flink's ValueState), scoped to the key of the record or timer being
 * processed: use it in `onRecord` and `onTimer` only (elsewhere it throws
 * `WEIR_OUT_OF_SCOPE`).
 *
 * Values are immutable once stored: `set` freezes objects and arrays deeply (Buffers and
 * Dates are copied), and values read back are frozen too, so a stored value can never
 * change behind the checkpoint's back. To change one, set a new object
 * (`state.set({ ...old, n: old.n + 1 })`); changing one in place throws a TypeError.
 * Values must survive msgpack unchanged: plain objects, arrays, strings, numbers,
 * booleans, null, BigInts within 64 bits, Dates and Buffers; a function, Map, Set or class
 * instance is refused by `set` (`WEIR_VALUE_UNSUPPORTED`, naming the field).
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
    const where = constructing === undefined ? '' : `stage ${constructing}: `
    if (!STATE_NAME.test(handle.name)) {
      throw new WeirError('WEIR_STATE_NAME', `${where}state name '${handle.name}' must be 1 to 128 letters, digits, _ . or - (it names the state in the store and the changelog)`, { stage: constructing, field: 'state', state: handle.name })
    }
    if (this.handles.some((h) => h.name === handle.name)) {
      throw new WeirError('WEIR_STATE_NAME', `${where}state '${handle.name}' is declared twice in one processor: give each state handle its own name`, { stage: constructing, field: 'state', state: handle.name })
    }
    handle.declaredLate = this.bound
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

  private bound = false

  /** @internal */
  bind(access: StateAccess): void {
    this.bound = true
    for (const h of this.handles) h.bind(access)
  }
}

