import { createRequire } from 'node:module'
import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { groupMessagesPerPartition } from '../../../../runtime/pipe/kafka/kafkajs-fixes.ts'

const requireFromKafkajs = createRequire(createRequire(import.meta.url).resolve('kafkajs'))

describe('kafkajs fix 5: grouping a produce request by partition', () => {
  it('is what kafkajs loads, so its producer groups through it', () => {
    expect(requireFromKafkajs('./src/producer/groupMessagesPerPartition.js')).toBe(groupMessagesPerPartition)
  })

  it('keeps every message once, in its order, under the partition the partitioner gives (300 cases)', () => {
    const partitioner = ({ message }: { message: { partition: number } }): number => message.partition
    fc.assert(fc.property(fc.array(fc.record({ partition: fc.integer({ min: 0, max: 5 }), n: fc.nat() }), { maxLength: 200, size: 'max' }), (messages) => {
      const grouped = groupMessagesPerPartition({ topic: 't', partitionMetadata: [{}], messages, partitioner })
      const expected: Record<number, typeof messages> = {}
      for (const p of new Set(messages.map((m) => m.partition))) expected[p] = messages.filter((m) => m.partition === p)
      expect(grouped).toEqual(expected)
    }), { numRuns: 300 })
    expect(groupMessagesPerPartition({ topic: 't', partitionMetadata: [], messages: [{ partition: 0 }], partitioner })).toEqual({})
  })
})
