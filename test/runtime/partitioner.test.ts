import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { murmur2, partitionForKey, partitionForTextKey } from '../../runtime/partitioner.ts'

const RUNS = Number(process.env.WEIR_PARTITIONER_RUNS ?? 500)

describe('Kafka default partitioner', () => {
  // Vectors from Kafka's UtilsTest.testMurmur2 (the Java client's expected hashes).
  it('hashes like org.apache.kafka.common.utils.Utils.murmur2', () => {
    const cases: Array<[string, number]> = [
      ['21', -973932308],
      ['foobar', -790332482],
      ['a-little-bit-long-string', -985981536],
      ['a-little-bit-longer-string', -1486304829],
      ['lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8', -58897971],
      ['abc', 479470107],
    ]
    for (const [s, h] of cases) expect(murmur2(Buffer.from(s))).toBe(h)
  })

  it('spreads keys over every partition', () => {
    const seen = new Set<number>()
    for (let i = 0; i < 1000; i++) seen.add(partitionForKey(Buffer.from(`key-${i}`), 8))
    expect([...seen].sort()).toEqual([0, 1, 2, 3, 4, 5, 6, 7])
  })

  it('puts an ASCII key given as a string where its bytes go, and hands any other string back (-1)', () => {
    for (const [s] of [['21'], ['foobar'], ['a-little-bit-longer-string'], ['']]) {
      for (const n of [1, 4, 7, 64]) expect(partitionForTextKey(s!, n)).toBe(partitionForKey(Buffer.from(s!), n))
    }
    fc.assert(
      fc.property(fc.string({ unit: 'binary-ascii', maxLength: 80, size: 'max' }), fc.integer({ min: 1, max: 1000 }), (s, n) => {
        expect(partitionForTextKey(s, n)).toBe(partitionForKey(Buffer.from(s, 'utf8'), n))
      }),
      { numRuns: RUNS },
    )
    fc.assert(
      fc.property(fc.string({ maxLength: 20 }), fc.string({ unit: fc.constantFrom('é', '€', '\uD800', '\u0080'), minLength: 1, maxLength: 3 }), fc.string({ maxLength: 20 }), (a, wide, b) => {
        expect(partitionForTextKey(a + wide + b, 8)).toBe(-1)
      }),
      { numRuns: RUNS },
    )
  })
})
