import { describe, expect, it } from 'vitest'
import { murmur2, partitionForKey } from '../../runtime/partitioner.ts'

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
})
