import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { WriteArena } from '../../../runtime/state/write-arena.ts'

describe('WriteArena', () => {
  it('gives back every entry in order, puts and deletes, across its buffers growing (300 cases)', () => {
    const entry = fc.record({
      key: fc.uint8Array({ maxLength: 60, size: 'max' }).map((a) => Buffer.from(a)),
      value: fc.option(fc.uint8Array({ maxLength: 300, size: 'max' }).map((a) => Buffer.from(a)), { nil: null }),
    })
    fc.assert(
      fc.property(fc.array(entry, { maxLength: 200, size: 'max' }), fc.integer({ min: 1, max: 64 }), fc.integer({ min: 1, max: 8 }), (entries, bytes, slots) => {
        const keys = entries.map((e) => [...e.key])
        const arena = new WriteArena(bytes, slots)
        for (const e of entries) arena.add(e.key, e.value)
        // The arena holds copies: changing what was added changes nothing.
        for (const e of entries) e.key.fill(0xee)
        const seen: Array<{ key: number[]; value: number[] | null }> = []
        arena.each((key, value) => seen.push({ key: [...key], value: value === null ? null : [...value] }))
        expect(arena.length).toBe(entries.length)
        expect(seen.map((s) => s.value)).toEqual(entries.map((e) => (e.value === null ? null : [...e.value])))
        expect(seen.map((s) => s.key)).toEqual(keys)
      }),
      { numRuns: 300 },
    )
  })
})
