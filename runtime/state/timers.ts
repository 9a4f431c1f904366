/**
 * Timers of one actor, one instance per time domain (processing time, event time). Timers are state: each is a cache entry, so
 * registering or firing one is checkpointed with everything else and survives a crash.
 * The in-memory index (sorted by time) is rebuilt from local RocksDB on restore.
 */
import type { StateStore } from './state-store.ts'
import type { WriteCache } from './write-cache.ts'
import { keyString } from '../record-keys.ts'

/** Cache prefixes of the two domains' timers. */
export const TIMER_PREFIX = '\u0001'
export const EVENT_TIMER_PREFIX = '\u0003'
const NULL_KEY = '\u0001null'
const NULL_KEY_BYTES = Buffer.from(NULL_KEY)

export interface TimerEntry {
  key: string | null
  time: number
}

/** A timer's cache key (after the prefix): the time, sortable, then the record key. */
function cacheKey(key: string | null, time: number): string {
  return time.toString(36).padStart(11, '0') + '\u0000' + (key ?? NULL_KEY)
}

/** A timer from its stored key: prefix, the time in base 36, \0, the record key's own bytes. */
function parseStored(stored: Buffer, prefixBytes: number): TimerEntry {
  const sep = stored.indexOf(0, prefixBytes)
  const key = stored.subarray(sep + 1)
  return { time: parseInt(stored.toString('latin1', prefixBytes, sep), 36), key: key.equals(NULL_KEY_BYTES) ? null : keyString(key) }
}

export class Timers {
  /** Registered timers by cache key, with a lazily sorted view for due checks. */
  private readonly byKey = new Map<string, TimerEntry>()
  private sorted: Array<[string, TimerEntry]> | undefined

  private constructor(private readonly cache: WriteCache, private readonly prefix: string) {}

  static async load(store: StateStore, cache: WriteCache, prefix = TIMER_PREFIX): Promise<Timers> {
    const timers = new Timers(cache, prefix)
    for (const { key } of await store.scan(prefix)) {
      const entry = parseStored(key, Buffer.byteLength(prefix))
      timers.byKey.set(cacheKey(entry.key, entry.time), entry)
    }
    return timers
  }

  get size(): number {
    return this.byKey.size
  }

  /** Registered by the current unit of user code: undone with its state if the unit fails. */
  register(key: string | null, time: number): void {
    const k = cacheKey(key, time)
    if (this.byKey.has(k)) return
    const entry: TimerEntry = { key, time }
    this.byKey.set(k, entry)
    this.sorted = undefined
    this.cache.set(this.cache.getOrCreate(this.prefix, k), 1)
    this.cache.onRollback(() => {
      this.byKey.delete(k)
      this.sorted = undefined
    })
  }

  delete(key: string | null, time: number): void {
    const k = cacheKey(key, time)
    const entry = this.byKey.get(k)
    if (entry === undefined) return
    this.byKey.delete(k)
    this.sorted = undefined
    this.cache.set(this.cache.getOrCreate(this.prefix, k), undefined)
    this.cache.onRollback(() => {
      this.byKey.set(k, entry)
      this.sorted = undefined
    })
  }

  nextDue(): number | undefined {
    if (this.byKey.size === 0) return undefined
    return this.view()[0]![1].time
  }

  /** Removes and returns the timers due at `now` (time <= now), in time order. */
  takeDue(now: number): TimerEntry[] {
    if (this.byKey.size === 0) return []
    const view = this.view()
    let n = 0
    while (n < view.length && view[n]![1].time <= now) n++
    if (n === 0) return []
    const due = view.splice(0, n)
    for (const [k] of due) {
      this.byKey.delete(k)
      this.cache.set(this.cache.getOrCreate(this.prefix, k), undefined)
    }
    return due.map(([, t]) => t)
  }

  private view(): Array<[string, TimerEntry]> {
    if (this.sorted === undefined) this.sorted = [...this.byKey.entries()].sort((a, b) => a[1].time - b[1].time)
    return this.sorted
  }
}
