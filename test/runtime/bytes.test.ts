/**
 * copyInto writes what Buffer#copy writes, on both sides of its loop/set threshold, and leaves the rest alone;
 * utf8Length and writeUtf8 measure and write what Buffer.from(s) holds, short ASCII or not.
 */
import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { copyInto, utf8Length, writeUtf8 } from '../../runtime/bytes.ts'

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

describe('utf8Length and writeUtf8', () => {
  it("give a string's UTF-8 bytes as Buffer.from does, on both sides of the short ASCII path", () => {
    const text = fc.oneof(fc.string({ unit: 'binary-ascii', maxLength: 100, size: 'max' }), fc.string({ unit: 'binary', maxLength: 100, size: 'max' }), fc.string({ unit: 'grapheme', maxLength: 30, size: 'max' }))
    fc.assert(
      fc.property(text, fc.nat(20), (s, at) => {
        const expected = Buffer.from(s, 'utf8')
        expect(utf8Length(s)).toBe(expected.length)
        const dst = Buffer.alloc(at + expected.length + 4, 0xaa)
        expect(writeUtf8(s, dst, at)).toBe(at + expected.length)
        expect([...dst.subarray(at, at + expected.length)]).toEqual([...expected])
        expect([...dst.subarray(0, at), ...dst.subarray(at + expected.length)].every((b) => b === 0xaa)).toBe(true)
      }),
      { numRuns: RUNS },
    )
  })
})

