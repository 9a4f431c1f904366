/**
 * One unit of user code at a time: a record, a timer or a source poll. Keyed state is
 * scoped to the unit's key; the unit's state changes and the records it emitted are kept
 * when it succeeds and undone together when it fails, as if it never ran. State handles
 * reach the actor's write cache only through here.
 */
import type { StateAccess } from '../api/state.ts'
import { ScopeError, ValueError, WeirError } from '../errors.ts'
import type { OutgoingRecord } from '../pipe/pipe.ts'
import { stateCodec } from '../codec.ts'
import type { StateStore } from '../state/state-store.ts'
import type { CacheEntry, WriteCache } from '../state/write-cache.ts'
import { storeKeyBytes } from '../record-keys.ts'
import { fieldPath, freezeLoaded, freezeStateValue, PROTO_KEY_REASON } from '../values.ts'
import { ACTOR_PREFIX, keyedPrefix, NULL_KEY } from './state-keys.ts'

/**
 * What user code may touch now: in a unit (a record, a timer, a poll) everything, scoped to
 * its key; in a lifecycle hook (open, onCheckpoint, close) actor state only; otherwise
 * (a callback that runs after the unit or hook returned) nothing.
 */
export type ScopePhase = { kind: 'unit' } | { kind: 'hook'; hook: string } | { kind: 'none' }

const NONE: ScopePhase = { kind: 'none' }
const UNIT: ScopePhase = { kind: 'unit' }

/** A record emitted by the current unit, held until the unit succeeds. */
export interface PendingEmit {
  topic: string
  partition: number
  record: OutgoingRecord
}

export class UnitScope {
  /** The current unit's key: the scope of keyed state. */
  key: string | null = null
  /**
   * The bytes `key` came from (the record's key), or null when the unit has none at hand (a
   * timer's): an emit under the same key reuses them instead of encoding the string again.
   */
  keyBytes: Buffer | null = null
  /** The current unit's event time (a record's timestamp, a timer's time). */
  timestamp = 0
  /** Records the current unit emitted. */
  readonly emits: PendingEmit[] = []
  phase: ScopePhase = NONE

  constructor(private readonly cache: WriteCache, readonly stage: string, readonly actor: string) {}

  /** Enters a unit: state is scoped to `key`, changes are journaled so they can be undone. */
  begin(key: string | null, timestamp: number, keyBytes: Buffer | null = null): void {
    this.key = key
    this.keyBytes = keyBytes
    this.timestamp = timestamp
    this.phase = UNIT
    this.cache.beginRecord()
  }

  /** The unit succeeded: its state changes stay; its emitted records are handed over. */
  succeed(): void {
    this.phase = NONE
    this.cache.endRecord()
  }

  /** The unit failed: its state changes and emitted records are discarded. */
  fail(): void {
    this.phase = NONE
    this.cache.rollbackRecord()
    this.emits.length = 0
  }

  /** Runs a lifecycle hook (open, onCheckpoint, close): actor state only. */
  async hook<T>(hook: string, run: () => T | Promise<T>): Promise<T> {
    this.phase = { kind: 'hook', hook }
    try {
      // Only a Promise is awaited: a returned value with a `then` (a staged object) is not adopted as one.
      const r = run()
      return r instanceof Promise ? await r : r
    } finally {
      this.phase = NONE
    }
  }

  /** Throws unless a record, timer or poll is running: `what` is the operation (`ctx.emit`, `state 'x'`). */
  requireUnit(what: string): void {
    if (this.phase.kind === 'unit') return
    const where = this.phase.kind === 'hook' ? `in ${this.phase.hook}` : 'after the record, timer or hook it belongs to returned'
    throw new ScopeError(`stage ${this.stage}: ${what} was used ${where}: it belongs to the record or timer being processed (use it in onRecord or onTimer, synchronously or before the Promise onRecord returned settles)`, { stage: this.stage, actor: this.actor, rule: 'unit-only' })
  }

  /** Throws unless a unit or a lifecycle hook is running. */
  requireUnitOrHook(what: string): void {
    if (this.phase.kind !== 'none') return
    throw new ScopeError(`stage ${this.stage}: ${what} was used after the record, timer or hook it belongs to returned: a change there would be part of no checkpoint (finish state changes before onRecord, onTimer or the hook returns, or before the Promise it returned settles)`, { stage: this.stage, actor: this.actor, rule: 'no-late-access' })
  }
}

/** A state value checked and frozen for storing; a value msgpack would not give back is refused. */
function storable(scope: UnitScope, name: string, value: unknown, keyed: boolean, within = ''): unknown {
  if (value === undefined) return undefined
  const r = freezeStateValue(value)
  if ('value' in r) return r.value
  // `within`: where in the stored value this part goes (a map entry's `.key` or `["a.b"]`), for the path.
  const path = within === '' ? r.problem.path : `value${within}${r.problem.path.slice('value'.length)}`
  throw new ValueError(`state '${name}'.set`, r.problem.reason, { stage: scope.stage, actor: scope.actor, ...(keyed ? { key: scope.key } : {}), path })
}

/**
 * The binding of state handles to the actor's cache, scoped to the current unit's key.
 * Keyed state is usable only in a unit; actor state also in lifecycle hooks. Values are
 * checked and frozen when set.
 */
export function stateAccess(cache: WriteCache, scope: UnitScope): StateAccess {
  const actor = scope.actor
  const openMaps = new OpenMaps(cache)
  return {
    keyed(name) {
      const what = `keyed state '${name}'`
      // Records of one key often come in runs: remember the last entry until the cache evicts.
      let lastKey: string | null | undefined
      let lastEntry: CacheEntry | undefined
      let lastGeneration = -1
      const space = cache.space(keyedPrefix(name))
      const entryFor = (): CacheEntry => {
        if (scope.phase !== UNIT) scope.requireUnit(what)
        const key = scope.key
        if (key === lastKey && lastGeneration === cache.generation && lastEntry !== undefined) return lastEntry
        const entry = space.get(key ?? NULL_KEY)
        if (entry === undefined) {
          // Every key of a micro-batch is prefetched; a miss is a bug in the runtime, not user error.
          throw new WeirError('WEIR_STATE_NOT_PREFETCHED', `state '${name}' for key ${key} was not prefetched`, { actor })
        }
        lastKey = key
        lastEntry = entry
        lastGeneration = cache.generation
        return entry
      }
      return {
        get: () => entryFor().value,
        set: (v) => cache.set(entryFor(), storable(scope, name, v, true)),
        setEntry: (mapKey, v) => {
          if (mapKey === '__proto__') throw new ValueError(`state '${name}'.set`, PROTO_KEY_REASON, { stage: scope.stage, actor: scope.actor, key: scope.key, path: 'value.__proto__' })
          const entry = entryFor()
          // The stored map and what it holds are checked already: only the new value is walked.
          const stored = storable(scope, name, v, true, fieldPath(mapKey))
          openMaps.put(openMaps.writable(entry), mapKey, stored)
        },
        deleteEntry: (mapKey) => {
          const entry = entryFor()
          const current = entry.value as Readonly<Record<string, unknown>> | undefined
          if (current === undefined || !Object.prototype.hasOwnProperty.call(current, mapKey)) return
          if (openMaps.remove(openMaps.writable(entry), mapKey) === 0) cache.set(entry, undefined)
        },
      }
    },
    actorScoped(name) {
      const what = `actor state '${name}'`
      // Loaded and pinned at restore; a name first used later starts empty.
      const entryFor = (): CacheEntry => {
        scope.requireUnitOrHook(what)
        return cache.getOrCreate(ACTOR_PREFIX, name, true)
      }
      return {
        get: () => entryFor().value,
        set: (v) => cache.set(entryFor(), storable(scope, name, v, false)),
      }
    },
  }
}

/** Loads the keyed state of `keys` that is not cached, in one batched RocksDB read. */
export async function prefetch(store: StateStore, cache: WriteCache, names: readonly string[], keys: Iterable<string | null>): Promise<void> {
  if (names.length === 0) return
  const missing: Array<{ prefix: string; key: string }> = []
  for (const name of names) {
    const prefix = keyedPrefix(name)
    const space = cache.space(prefix)
    for (const k of keys) {
      const key = k ?? NULL_KEY
      if (!space.has(key)) missing.push({ prefix, key })
    }
  }
  if (missing.length === 0) return
  const values = await store.getMany(missing.map((m) => storeKeyBytes(m.prefix + m.key)))
  for (let i = 0; i < missing.length; i++) {
    const v = values[i]
    cache.load(missing[i]!.prefix, missing[i]!.key, v ? freezeLoaded(stateCodec.decode(v)) : undefined)
  }
}

/**
 * Map state changed in place. A stored map is one value (one store key, one changelog
 * record per checkpoint), and a copy per `set` made a map of n entries cost O(n) a change:
 * a map keyed by time that grows between barriers (pending windows, closing instants) went
 * quadratic. So the first change to a key's map in a change set copies it, and later
 * changes in the same set write into that copy: nothing else holds it (a barrier's seal
 * holds the value it took, and the next change after a barrier copies again; user code sees
 * entries, never the map), and each in-place change registers its own undo for a failed
 * record. A copy is known by its entry count kept here; a map loaded from the store or set
 * whole is frozen and never changed.
 */
class OpenMaps {
  /** Entry counts of the copies made this way, kept so a delete knows when the map is empty. */
  private readonly sizes = new WeakMap<object, number>()

  constructor(private readonly cache: WriteCache) {}

  /**
   * The entry's map as this change set's copy, to change in place: the copy made earlier in
   * the set, or a new one stored now (its journal step gives the old map back to a failed record).
   */
  writable(entry: CacheEntry): Record<string, unknown> {
    const current = entry.value as Record<string, unknown> | undefined
    if (current !== undefined && this.cache.isDirty(entry) && this.sizes.has(current)) return current
    const next: Record<string, unknown> = {}
    let size = 0
    // No stored map holds a '__proto__' key (refused when set; msgpack gives it back as '__proto_'): plain assignment is safe.
    for (const k in current) {
      next[k] = current[k]
      size++
    }
    this.sizes.set(next, size)
    this.cache.set(entry, next)
    return next
  }

  /** Sets `mapKey` in `map`, a writable copy. */
  put(map: Record<string, unknown>, mapKey: string, value: unknown): void {
    const had = Object.prototype.hasOwnProperty.call(map, mapKey)
    const old = map[mapKey]
    const size = this.sizes.get(map)!
    map[mapKey] = value
    if (!had) this.sizes.set(map, size + 1)
    this.cache.onRollback(() => this.restore(map, mapKey, had, old, size))
  }

  /** Removes `mapKey` (present) from `map`, a writable copy; returns the entries left. */
  remove(map: Record<string, unknown>, mapKey: string): number {
    const old = map[mapKey]
    const size = this.sizes.get(map)!
    delete map[mapKey]
    this.sizes.set(map, size - 1)
    this.cache.onRollback(() => this.restore(map, mapKey, true, old, size))
    return size - 1
  }

  private restore(map: Record<string, unknown>, mapKey: string, had: boolean, old: unknown, size: number): void {
    if (had) map[mapKey] = old
    else delete map[mapKey]
    this.sizes.set(map, size)
  }
}
