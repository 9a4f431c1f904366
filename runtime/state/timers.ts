/**
 * Timers of one actor, one instance per time domain (processing time, event time). Timers are state: each is a cache entry, so
 * registering or firing one is checkpointed with everything else and survives a crash.
 * The in-memory index (a min-heap by time, then key) is rebuilt from local RocksDB on
 * restore. A heap, not a sorted array: a source that registers a timer per key (an
 * idempotency key's expiry) has as many live timers as keys, and re-sorting them all after
 * each registration cost 10 ms at 100k timers and 190 ms at 1M (bench:ingest's notes).
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

/** A binary min-heap of timers by cache key (which sorts by time, then record key). */
class TimerHeap {
  private readonly items: Array<[string, TimerEntry]> = []

  get length(): number {
    return this.items.length
  }

  clear(): void {
    this.items.length = 0
  }

  peek(): [string, TimerEntry] | undefined {
    return this.items[0]
  }

  push(item: [string, TimerEntry]): void {
    const a = this.items
    a.push(item)
    let i = a.length - 1
    while (i > 0) {
      const parent = (i - 1) >> 1
      if (a[parent]![0] <= item[0]) break
      a[i] = a[parent]!
      i = parent
    }
    a[i] = item
  }

  pop(): [string, TimerEntry] | undefined {
    const a = this.items
    const top = a[0]
    const last = a.pop()
    if (top === undefined || last === undefined || a.length === 0) return top
    let i = 0
    for (;;) {
      const l = 2 * i + 1
      if (l >= a.length) break
      const r = l + 1
      const c = r < a.length && a[r]![0] < a[l]![0] ? r : l
      if (last[0] <= a[c]![0]) break
      a[i] = a[c]!
      i = c
    }
    a[i] = last
    return top
  }
}

export class Timers {
  /** Registered timers by cache key: the truth. The heap may hold entries deleted since (skipped when they come up). */
  private readonly byKey = new Map<string, TimerEntry>()
  private readonly heap = new TimerHeap()

  private constructor(private readonly cache: WriteCache, private readonly prefix: string) {}

  static async load(store: StateStore, cache: WriteCache, prefix = TIMER_PREFIX): Promise<Timers> {
    const timers = new Timers(cache, prefix)
    for (const { key } of await store.scan(prefix)) {
      const entry = parseStored(key, Buffer.byteLength(prefix))
      const k = cacheKey(entry.key, entry.time)
      timers.byKey.set(k, entry)
      timers.heap.push([k, entry])
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
    this.heap.push([k, entry])
    this.cache.set(this.cache.getOrCreate(this.prefix, k), 1)
    this.cache.onRollback(() => {
      this.byKey.delete(k)
    })
  }

  delete(key: string | null, time: number): void {
    const k = cacheKey(key, time)
    const entry = this.byKey.get(k)
    if (entry === undefined) return
    this.byKey.delete(k)
    // Deleted timers stay in the heap until they come up: rebuild once they are most of it.
    if (this.heap.length > 2 * this.byKey.size + 1024) this.rebuild()
    this.cache.set(this.cache.getOrCreate(this.prefix, k), undefined)
    this.cache.onRollback(() => {
      this.byKey.set(k, entry)
      this.heap.push([k, entry])
    })
  }

  nextDue(): number | undefined {
    return this.top()?.[1].time
  }

  /** Removes and returns the timers due at `now` (time <= now), in time order. */
  takeDue(now: number): TimerEntry[] {
    const due: TimerEntry[] = []
    for (let top = this.top(); top !== undefined && top[1].time <= now; top = this.top()) {
      this.heap.pop()
      const [k, entry] = top
      this.byKey.delete(k)
      this.cache.set(this.cache.getOrCreate(this.prefix, k), undefined)
      due.push(entry)
    }
    return due
  }

  private rebuild(): void {
    this.heap.clear()
    for (const item of this.byKey) this.heap.push(item)
  }

  /** The earliest live timer: heap entries deleted (or registered twice) since they were pushed are dropped on the way. */
  private top(): [string, TimerEntry] | undefined {
    for (;;) {
      const top = this.heap.peek()
      if (top === undefined) return undefined
      if (this.byKey.get(top[0]) === top[1]) return top
      this.heap.pop()
    }
  }
}
