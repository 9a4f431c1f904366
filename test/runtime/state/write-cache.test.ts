import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { CacheEntry, SealedEntries, WriteCache } from '../../../runtime/state/write-cache.ts'

const RUNS = Number(process.env.WEIR_WRITE_CACHE_RUNS ?? 200)

describe('write cache', () => {
  it('a failed record is rolled back: values and dirtiness return to what they were', () => {
    const cache = new WriteCache(100)
    const a = cache.load('p:', 'a', 1)
    const b = cache.load('p:', 'b', undefined)
    cache.beginRecord()
    cache.set(a, 2)
    cache.endRecord()
    cache.beginRecord()
    cache.set(a, 3)
    cache.set(a, 4)
    cache.set(b, 'new')
    cache.rollbackRecord()
    expect(a.value).toBe(2)
    expect(cache.isDirty(a)).toBe(true)
    expect(b.value).toBeUndefined()
    expect(cache.takeDirty(1).map((d) => [d.key, d.value])).toEqual([['p:a', 2]])
  })

  it('takes each dirty entry once per checkpoint, with its value at the barrier', () => {
    const cache = new WriteCache(100)
    const a = cache.load('p:', 'a', undefined)
    cache.set(a, 1)
    cache.set(a, 2)
    expect(cache.takeDirty(1)).toEqual([{ key: 'p:a', value: 2 }])
    expect(cache.takeDirty(2)).toEqual([])
    cache.set(a, undefined)
    expect(cache.takeDirty(3)).toEqual([{ key: 'p:a', value: undefined }])
  })

  it('a seal read after the next epoch changed an entry gets the value as of its barrier, and the next barrier the new one', () => {
    const cache = new WriteCache(100)
    const a = cache.load('p:', 'a', undefined)
    const b = cache.load('p:', 'b', undefined)
    cache.set(a, 1)
    cache.set(b, 1)
    const sealed = cache.seal(1)
    // The next epoch runs before the seal reads: a changes twice, a failed record's change to b is undone.
    cache.beginRecord()
    cache.set(a, 2)
    cache.endRecord()
    cache.beginRecord()
    cache.set(a, 3)
    cache.set(b, 9)
    cache.rollbackRecord()
    expect(Array.from({ length: sealed.length }, (_, i) => sealed.at(i)).filter((d) => d !== undefined)).toEqual([{ key: 'p:a', value: 1 }, { key: 'p:b', value: 1 }])
    expect(cache.takeDirty(2)).toEqual([{ key: 'p:a', value: 2 }])
    cache.set(a, 4)
    expect(cache.takeDirty(3)).toEqual([{ key: 'p:a', value: 4 }])
  })

  it('never evicts a dirty entry or one whose local write has not finished', () => {
    const cache = new WriteCache(2)
    const a = cache.load('p:', 'a', 1)
    const b = cache.load('p:', 'b', 1)
    cache.load('p:', 'c', 1)
    cache.load('p:', 'd', 1)
    cache.set(a, 2)
    cache.set(b, 2)
    cache.takeDirty(5) // a, b now wait for the local write of epoch 5
    cache.evict()
    expect(cache.has('p:', 'a') && cache.has('p:', 'b')).toBe(true)
    expect(cache.size).toBe(2)
    cache.load('p:', 'e', 1)
    cache.markFlushed(5)
    cache.evict()
    expect(cache.size).toBe(2)
    expect(cache.has('p:', 'e')).toBe(true)
  })

  // Each barrier's seal, read in slices while the next epoch's records (some failing) run, against a model.
  it(`a seal reads exactly the entries changed before its barrier, once each, with their values at the barrier (${RUNS} cases)`, () => {
    const op = fc.oneof(
      { arbitrary: fc.record({ op: fc.constant('record' as const), sets: fc.array(fc.tuple(fc.integer({ min: 0, max: 15 }), fc.integer({ min: 0, max: 99 })), { minLength: 1, maxLength: 4 }), fails: fc.integer({ min: 0, max: 4 }).map((n) => n === 0) }), weight: 12 },
      { arbitrary: fc.record({ op: fc.constant('barrier' as const) }), weight: 2 },
      { arbitrary: fc.record({ op: fc.constant('read' as const), n: fc.integer({ min: 1, max: 8 }) }), weight: 4 },
    )
    let barriers = 0
    let readWhileChanging = 0
    let skipped = 0
    fc.assert(fc.property(fc.array(op, { minLength: 20, maxLength: 400, size: 'max' }), (ops) => {
      const cache = new WriteCache(1000)
      const committed = new Map<number, number>()
      let changed = new Set<number>()
      let pending: { sealed: SealedEntries; next: number; got: Map<string, unknown>; expected: Map<string, unknown> } | undefined
      let epoch = 0
      const read = (n: number): void => {
        if (pending === undefined) return
        for (; n > 0 && pending.next < pending.sealed.length; n--) {
          const d = pending.sealed.at(pending.next++)
          if (d === undefined) {
            skipped++
            continue
          }
          expect(pending.got.has(d.key), `${d.key} read twice`).toBe(false)
          pending.got.set(d.key, d.value)
        }
        if (pending.next === pending.sealed.length) {
          expect(pending.got).toEqual(pending.expected)
          pending = undefined
        }
      }
      for (const o of ops) {
        if (o.op === 'record') {
          if (pending !== undefined) readWhileChanging++
          cache.beginRecord()
          for (const [k, v] of o.sets) cache.set(cache.getOrCreate('p:', String(k)), v)
          if (o.fails) cache.rollbackRecord()
          else {
            cache.endRecord()
            for (const [k, v] of o.sets) {
              committed.set(k, v)
              changed.add(k)
            }
          }
        } else if (o.op === 'barrier') {
          // The checkpointer takes a barrier only once the previous seal was read.
          read(Infinity)
          const expected = new Map([...changed].map((k) => [`p:${k}`, committed.get(k)]))
          pending = { sealed: cache.seal(++epoch), next: 0, got: new Map(), expected }
          changed = new Set()
          barriers++
        } else read(o.n)
      }
      read(Infinity)
      for (const [k, v] of committed) expect(cache.get('p:', String(k))?.value).toBe(v)
    }), { numRuns: RUNS })
    console.log(`write cache seal property: ${JSON.stringify({ cases: RUNS, barriers, readWhileChanging, skipped })}`)
    expect(readWhileChanging).toBeGreaterThan(RUNS)
    expect(skipped).toBeGreaterThan(0)
  })

  // Eviction against a model of what each entry is: never an entry the store does not have yet.
  it(`evicts only clean, flushed, unpinned entries, down to the capacity whenever enough of them are evictable (${RUNS} cases)`, () => {
    const op = fc.oneof(
      { arbitrary: fc.record({ op: fc.constant('load' as const), key: fc.integer({ min: 0, max: 30 }), pinned: fc.integer({ min: 0, max: 9 }).map((n) => n === 0) }), weight: 10 },
      { arbitrary: fc.record({ op: fc.constant('set' as const), key: fc.integer({ min: 0, max: 30 }) }), weight: 10 },
      { arbitrary: fc.record({ op: fc.constant('barrier' as const) }), weight: 2 },
      { arbitrary: fc.record({ op: fc.constant('flushed' as const) }), weight: 2 },
      { arbitrary: fc.record({ op: fc.constant('evict' as const) }), weight: 5 },
      { arbitrary: fc.record({ op: fc.constant('clear' as const) }), weight: 1 },
    )
    let evictions = 0
    let passedOver = 0
    fc.assert(fc.property(fc.integer({ min: 1, max: 12 }), fc.array(op, { minLength: 50, maxLength: 600, size: 'max' }), (capacity, ops) => {
      const cache = new WriteCache(capacity)
      let epoch = 0
      let flushed = 0
      const sealed: number[] = []
      // The model: entries changed since the last barrier, and the barrier that last took each entry.
      let dirty = new Set<CacheEntry>()
      const takenAt = new Map<CacheEntry, number>()
      const mayLeave = (e: CacheEntry): boolean => !dirty.has(e) && !e.pinned && (takenAt.get(e) ?? 0) <= flushed
      const space = (k: number): string => `p${k % 2}:`
      for (const o of ops) {
        switch (o.op) {
          case 'load':
            if (!cache.has(space(o.key), String(o.key))) cache.load(space(o.key), String(o.key), 0, o.pinned)
            break
          case 'set': {
            const e = cache.get(space(o.key), String(o.key))
            if (e !== undefined) {
              cache.set(e, ((e.value as number | undefined) ?? 0) + 1)
              dirty.add(e)
            }
            break
          }
          case 'barrier':
            cache.takeDirty(++epoch)
            for (const e of dirty) takenAt.set(e, epoch)
            dirty = new Set()
            sealed.push(epoch)
            break
          case 'flushed':
            if (sealed.length > 0) {
              flushed = sealed.shift()!
              cache.markFlushed(flushed)
            }
            break
          case 'clear':
            cache.clear()
            dirty = new Set()
            break
          case 'evict': {
            const before = entriesOf(cache)
            cache.evict()
            const after = new Set(entriesOf(cache))
            const gone = before.filter((e) => !after.has(e))
            evictions += gone.length
            for (const e of gone) expect(mayLeave(e), `evicted ${e.storeKey}`).toBe(true)
            expect(cache.size).toBe(after.size)
            const evictable = [...after].filter(mayLeave)
            if (before.length > capacity) {
              // Down to the capacity, or nothing evictable is left.
              expect(after.size <= capacity || evictable.length === 0, `${after.size} entries over a capacity of ${capacity} with ${evictable.length} evictable`).toBe(true)
              passedOver += before.length - gone.length - evictable.length
            } else expect(gone).toEqual([])
            break
          }
        }
      }
    }), { numRuns: RUNS })
    console.log(`write cache eviction property: ${JSON.stringify({ cases: RUNS, evictions, passedOver })}`)
    expect(evictions).toBeGreaterThan(RUNS)
    expect(passedOver).toBeGreaterThan(0)
  })
})

/** Every entry the cache holds, read through its public lookups (the spaces are private). */
function entriesOf(cache: WriteCache): CacheEntry[] {
  const out: CacheEntry[] = []
  for (const prefix of ['p0:', 'p1:']) for (const e of cache.space(prefix).values()) out.push(e)
  return out
}
