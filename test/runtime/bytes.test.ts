/** copyInto writes what Buffer#copy writes, on both sides of its loop/set threshold, and leaves the rest alone. */
import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { copyInto } from '../../runtime/bytes.ts'

const RUNS = Number(process.env.WEIR_BYTES_RUNS ?? 300)

describe('copyInto', () => {
  it('copies like Buffer#copy and returns the position after the copy', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 100, size: 'max' }), fc.nat(40), fc.nat(40), (src, at, slack) => {
        const dst = Buffer.alloc(at + src.length + slack, 0xaa)
        const expected = Buffer.alloc(dst.length, 0xaa)
        Buffer.from(src).copy(expected, at)
        expect(copyInto(src, dst, at)).toBe(at + src.length)
        expect([...dst]).toEqual([...expected])
      }),
      { numRuns: RUNS },
    )
  })
})
