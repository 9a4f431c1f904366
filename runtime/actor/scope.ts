/**
 * One unit of user code at a time: a record, a timer or a source poll. Keyed state is
 * scoped to the unit's key; the unit's state changes and the records it emitted are kept
 * when it succeeds and undone together when it fails, as if it never ran. State handles
 * reach the actor's write cache only through here.
 */
import type { StateAccess } from '../api/state.ts'
import { WeirError } from '../errors.ts'
import type { PipeRecord } from '../pipe/pipe.ts'
import { stateCodec } from '../codec.ts'
import type { StateStore } from '../state/state-store.ts'
import type { CacheEntry, WriteCache } from '../state/write-cache.ts'
import { ACTOR_PREFIX, keyedPrefix, NULL_KEY } from './state-keys.ts'

/** A record emitted by the current unit, held until the unit succeeds. */
export interface PendingEmit {
  topic: string
  partition: number
  record: PipeRecord
}

export class UnitScope {
  /** The current unit's key: the scope of keyed state. */
  key: string | null = null
  /** The current unit's event time (a record's timestamp, a timer's time). */
  timestamp = 0
  /** Records the current unit emitted. */
  readonly emits: PendingEmit[] = []

  constructor(private readonly cache: WriteCache) {}

  /** Enters a unit: state is scoped to `key`, changes are journaled so they can be undone. */
  begin(key: string | null, timestamp: number): void {
    this.key = key
    this.timestamp = timestamp
    this.cache.beginRecord()
  }

  /** The unit succeeded: its state changes stay; its emitted records are handed over. */
  succeed(): void {
    this.cache.endRecord()
  }

  /** The unit failed: its state changes and emitted records are discarded. */
  fail(): void {
    this.cache.rollbackRecord()
    this.emits.length = 0
  }
}

/** The binding of state handles to the actor's cache, scoped to the current unit's key. */
export function stateAccess(cache: WriteCache, scope: UnitScope, actor: string): StateAccess {
  return {
    keyed(name) {
      // Records of one key often come in runs: remember the last entry until the cache evicts.
      let lastKey: string | null | undefined
      let lastEntry: CacheEntry | undefined
      let lastGeneration = -1
      const space = cache.space(keyedPrefix(name))
      const entryFor = (): CacheEntry => {
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
  const values = await store.getMany(missing.map((m) => Buffer.from(m.prefix + m.key)))
  for (let i = 0; i < missing.length; i++) {
    const v = values[i]
    cache.load(missing[i]!.prefix, missing[i]!.key, v ? stateCodec.decode(v) : undefined)
  }
}
