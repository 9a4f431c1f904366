import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { CacheEntry, WriteCache } from '../../../runtime/state/write-cache.ts'

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
    expect(a.dirty).toBe(true)
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
    expect(Array.from({ length: sealed.length }, (_, i) => sealed.at(i))).toEqual([{ key: 'p:a', value: 1 }, { key: 'p:b', value: 1 }])
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

  // Eviction against what the maps hold after each call: never an entry the store does not have yet.
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
      const sealed: number[] = []
      const space = (k: number): string => `p${k % 2}:`
      for (const o of ops) {
        switch (o.op) {
          case 'load':
            if (!cache.has(space(o.key), String(o.key))) cache.load(space(o.key), String(o.key), 0, o.pinned)
            break
          case 'set': {
            const e = cache.get(space(o.key), String(o.key))
            if (e !== undefined) cache.set(e, ((e.value as number | undefined) ?? 0) + 1)
            break
          }
          case 'barrier':
            cache.takeDirty(++epoch)
            sealed.push(epoch)
            break
          case 'flushed':
            if (sealed.length > 0) cache.markFlushed(sealed.shift()!)
            break
          case 'clear':
            cache.clear()
            break
          case 'evict': {
            const before = entriesOf(cache)
            cache.evict()
            const after = new Set(entriesOf(cache))
            const gone = before.filter((e) => !after.has(e))
            evictions += gone.length
            for (const e of gone) expect(e.dirty || e.pinned || e.flushEpoch > cache.flushedEpoch, `evicted ${e.storeKey}`).toBe(false)
            expect(cache.size).toBe(after.size)
            const evictable = [...after].filter((e) => !(e.dirty || e.pinned || e.flushEpoch > cache.flushedEpoch))
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
