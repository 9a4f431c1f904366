/**
 * Keyed and actor-scoped state handles (Flink's ValueState, MapState, ListState and
 * operator state). A processor declares them as fields; the runtime binds them to the
 * actor's write cache, scoped to the key of the record or timer being processed.
 */
import { ConfigError, WeirError } from '../errors.ts'

/** @internal One state of the current key (keyed) or of the actor. */
export interface StateSlot {
  get(): unknown
  /** Checks and freezes `value` (deeply) and stores it. */
  set(value: unknown): void
}

/** @internal A keyed slot that also updates a stored map (a plain object) one entry at a time. */
export interface KeyedSlot extends StateSlot {
  /** Stores the current map with `mapKey` set to `value`: only `value` is checked and frozen, the rest is checked already. */
  setEntry(mapKey: string, value: unknown): void
  /** Stores the current map without `mapKey` (nothing when that leaves it empty). */
  deleteEntry(mapKey: string): void
}

/** @internal How state handles reach the actor's cache. */
export interface StateAccess {
  keyed(name: string): KeyedSlot
  actorScoped(name: string): StateSlot
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
    const processor = make()
    refuseFieldsShadowingHooks(stage, processor)
    return processor
  } finally {
    constructing = outer
  }
}

/**
 * A field named like a hook (`open = this.state.value('open')`) replaces the hook on the
 * instance, and the runtime would fail calling it with "is not a function"; refused here,
 * naming the field. A field holding a function (`onRecord = (r, ctx) => …`) is a hook.
 * The hook names are the class's `lifecycleHooks` (Processor's, and a Source's poll).
 */
function refuseFieldsShadowingHooks(stage: string, processor: unknown): void {
  if (typeof processor !== 'object' || processor === null) return
  const hooks = (processor.constructor as { lifecycleHooks?: readonly string[] }).lifecycleHooks ?? []
  for (const hook of hooks) {
    if (!Object.prototype.hasOwnProperty.call(processor, hook)) continue
    const value: unknown = Reflect.get(processor, hook)
    if (typeof value === 'function') continue
    const state = value instanceof StateHandle ? value.name : undefined
    throw new ConfigError(
      `stages.${stage}.${hook}`,
      `the processor's field '${hook}' ${state === undefined ? '' : `holds state '${state}' and `}clashes with the lifecycle hook ${hook}() the runtime calls on it: rename the field (${hook}State, say)`,
      { stage, state },
    )
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
  protected access: StateSlot | undefined
  /** @internal Set when the handle was declared after its registry was bound. */
  declaredLate = false
  constructor(readonly name: string) {}
  /** @internal */
  abstract bind(state: StateAccess): void
  protected slot(): StateSlot {
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
 * A map per key (Flink's MapState). Stored as one value per key: `get`, `set` and `delete`
 * cost the same whatever the map's size (the first change to a key's map after a checkpoint
 * copies it once), but each checkpoint writes the whole map of every key it changed, and a
 * key's map is loaded whole. Keep a map to what one key needs (pending instants, a window's
 * entries), not an unbounded index.
 *
 * @example
 * seen = this.state.map<number>('seen')
 * onRecord(r) { this.seen.set(r.value.id, r.timestamp) }
 */
export class MapState<V> extends StateHandle {
  private keyedAccess: KeyedSlot | undefined
  /** @internal */
  bind(state: StateAccess): void {
    this.access = this.keyedAccess = state.keyed(this.name)
  }
  private keyedSlot(): KeyedSlot {
    if (this.keyedAccess === undefined) throw unbound(this.name, this.declaredLate)
    return this.keyedAccess
  }
  private current(): Readonly<Record<string, V>> {
    return (this.slot().get() as Record<string, V> | undefined) ?? {}
  }
  get(mapKey: string): V | undefined {
    const current = this.current()
    // Not `current[mapKey]` alone: 'constructor' or 'toString' would read Object.prototype's.
    return Object.prototype.hasOwnProperty.call(current, mapKey) ? current[mapKey] : undefined
  }
  has(mapKey: string): boolean {
    return Object.prototype.hasOwnProperty.call(this.current(), mapKey)
  }
  set(mapKey: string, value: V): void {
    this.keyedSlot().setEntry(mapKey, value)
  }
  delete(mapKey: string): void {
    this.keyedSlot().deleteEntry(mapKey)
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

/**
 * How a state's stored values evolve. A savepoint records each state's `version`; restoring
 * one whose version is older runs `migrate` on every stored value of that state (Flink's
 * state schema evolution, done for any value shape rather than for POJO and Avro only).
 * Keys never change: they are the record keys the stage is partitioned by.
 *
 * @example
 * // version 1 stored a plain count; version 2 stores { n, since }
 * counts = this.state.value<{ n: number; since: number }>('counts', {
 *   version: 2,
 *   migrate: (old, from) => (from === 1 ? { n: old as number, since: 0 } : (old as { n: number; since: number })),
 * })
 */
export interface StateOptions<T> {
  /** The schema version of the values this code stores (a whole number ≥ 1). Default 1. */
  version?: number
  /**
   * Turns a value stored by an older version (`fromVersion`) into this version's shape.
   * Without it, restoring a savepoint whose state has an older version is refused.
   */
  migrate?: (value: unknown, fromVersion: number) => T
  /**
   * Of actor state (`actorValue`): how the values of the old actors become those of the new
   * ones when a savepoint is restored at another parallelism (Flink's operator state
   * redistribution). Gets one value per old actor (by partition) and returns one per new
   * actor. Without it, a stage with actor state keeps its parallelism.
   *
   * @example
   * // a counter: the sum goes to the first actor
   * dropped = this.state.actorValue<number>('dropped', { rescale: (old, actors) => [old.reduce((a, b) => (a ?? 0) + (b ?? 0), 0), ...Array(actors - 1).fill(undefined)] })
   */
  rescale?: (values: Array<T | undefined>, actors: number) => Array<T | undefined>
}

/** @internal What a savepoint records about one declared state. */
export interface StateSchema {
  name: string
  kind: 'value' | 'map' | 'list' | 'actorValue'
  keyed: boolean
  version: number
  migrate?: (value: unknown, fromVersion: number) => unknown
  rescale?: (values: unknown[], actors: number) => unknown[]
}

/** Declares a processor's state; handles are bound to the actor's store by the runtime. */
export class StateRegistry {
  /** @internal */
  readonly handles: StateHandle[] = []
  /** @internal Names of keyed states, prefetched for every key of a micro-batch. */
  readonly keyedNames: string[] = []
  /** @internal */
  readonly actorNames: string[] = []

  /** @internal Each declared state's kind, version and migration, in declaration order. */
  readonly schemas: StateSchema[] = []

  private declare<H extends StateHandle>(handle: H, keyed: boolean, kind: StateSchema['kind'], options: { version?: number; migrate?: unknown; rescale?: unknown } | undefined): H {
    const where = constructing === undefined ? '' : `stage ${constructing}: `
    const version = options?.version ?? 1
    if (!Number.isInteger(version) || version < 1) {
      throw new WeirError('WEIR_STATE_VERSION', `${where}state '${handle.name}': version must be a whole number ≥ 1, got ${String(version)}`, { stage: constructing, field: 'state.version', state: handle.name })
    }
    if (options?.migrate !== undefined && typeof options.migrate !== 'function') {
      throw new WeirError('WEIR_STATE_VERSION', `${where}state '${handle.name}': migrate must be a function (value, fromVersion) => value`, { stage: constructing, field: 'state.migrate', state: handle.name })
    }
    if (!STATE_NAME.test(handle.name)) {
      throw new WeirError('WEIR_STATE_NAME', `${where}state name '${handle.name}' must be 1 to 128 letters, digits, _ . or - (it names the state in the store and the changelog)`, { stage: constructing, field: 'state', state: handle.name })
    }
    if (this.handles.some((h) => h.name === handle.name)) {
      throw new WeirError('WEIR_STATE_NAME', `${where}state '${handle.name}' is declared twice in one processor: give each state handle its own name`, { stage: constructing, field: 'state', state: handle.name })
    }
    handle.declaredLate = this.bound
    this.handles.push(handle)
    ;(keyed ? this.keyedNames : this.actorNames).push(handle.name)
    if (options?.rescale !== undefined && (keyed || typeof options.rescale !== 'function')) {
      throw new WeirError('WEIR_STATE_VERSION', `${where}state '${handle.name}': rescale is for actor state (actorValue), as a function (values, actors) => values; keyed state is re-keyed by the runtime`, { stage: constructing, field: 'state.rescale', state: handle.name })
    }
    this.schemas.push({ name: handle.name, kind, keyed, version, migrate: options?.migrate as StateSchema['migrate'], rescale: options?.rescale as StateSchema['rescale'] })
    return handle
  }

  value<T>(name: string, options?: StateOptions<T>): ValueState<T> {
    return this.declare(new ValueState<T>(name), true, 'value', options)
  }
  map<V>(name: string, options?: StateOptions<Record<string, V>>): MapState<V> {
    return this.declare(new MapState<V>(name), true, 'map', options)
  }
  list<T>(name: string, options?: StateOptions<T[]>): ListState<T> {
    return this.declare(new ListState<T>(name), true, 'list', options)
  }
  actorValue<T>(name: string, options?: StateOptions<T>): ActorValueState<T> {
    return this.declare(new ActorValueState<T>(name), false, 'actorValue', options)
  }

  private bound = false

  /** @internal */
  bind(access: StateAccess): void {
    this.bound = true
    for (const h of this.handles) h.bind(access)
  }
}

