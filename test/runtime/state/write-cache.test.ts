import { describe, expect, it } from 'vitest'
import { WriteCache } from '../../../runtime/state/write-cache.ts'

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
})
