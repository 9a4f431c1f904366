import { randomUUID } from 'node:crypto'
import { createRequire } from 'node:module'
import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { groupMessagesPerPartition, READER_GROUP_PREFIX, weirCursorOf } from '../../../../runtime/pipe/kafka/kafkajs-fixes.ts'
import { Kafka, logLevel } from 'kafkajs'
import type { StoredRecord } from '../../../../runtime/pipe/pipe.ts'
import { requireService } from '../../../support/services.ts'

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

const kafka = await requireService('kafka')

describe.skipIf(!kafka.available)('kafkajs fix 6: a weir reader\'s batches are decoded by its poll, not on arrival', () => {
  const brokers = kafka.url.split(',')
  const run = randomUUID().slice(0, 8)

  it('the runner gives a reader\'s batch its last message alone, the cursor every record; another group gets every message', async () => {
    const client = new Kafka({ clientId: `fix6-${run}`, brokers, logLevel: logLevel.NOTHING })
    const topic = `fix6-${run}`
    const admin = client.admin()
    await admin.connect()
    await admin.createTopics({ topics: [{ topic, numPartitions: 1 }] })
    await admin.disconnect()
    const producer = client.producer()
    await producer.connect()
    await producer.send({ topic, messages: Array.from({ length: 50 }, (_, i) => ({ key: `k${i}`, value: `v${i}` })) })
    await producer.disconnect()

    const read = async (groupId: string): Promise<{ messages: string[]; cursor: string[] }> => {
      const consumer = client.consumer({ groupId })
      await consumer.connect()
      await consumer.subscribe({ topic, fromBeginning: true })
      const seen = { messages: [] as string[], cursor: [] as string[] }
      await new Promise<void>((resolve) => {
        void consumer.run({
          eachBatch: async ({ batch }) => {
            for (const m of batch.messages) seen.messages.push(m.value!.toString())
            const records: StoredRecord[] = []
            const cursor = weirCursorOf(batch)
            while (cursor.nextOffset() !== undefined) cursor.take(records, 7)
            for (const r of records) seen.cursor.push(r.value!.toString())
            if (seen.cursor.length >= 50) resolve()
          },
        })
      })
      await consumer.disconnect()
      return seen
    }
    const all = Array.from({ length: 50 }, (_, i) => `v${i}`)
    const reader = await read(`${READER_GROUP_PREFIX}fix6-${run}`)
    expect(reader.cursor).toEqual(all)
    // One message per batch: its last one.
    expect(reader.messages.length).toBeLessThan(50)
    expect(reader.messages[reader.messages.length - 1]).toBe('v49')
    const other = await read(`fix6-other-${run}`)
    expect(other.messages).toEqual(all)
    expect(other.cursor).toEqual(all)
  }, 60_000)
})
