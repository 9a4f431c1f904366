import { randomUUID } from 'node:crypto'
import { createRequire } from 'node:module'
import { Kafka, logLevel } from 'kafkajs'
import { afterAll, describe, expect, it } from 'vitest'
import { KafkaPipe, parseKafkaUrl } from '../../../runtime/pipe/kafka/kafka-pipe.ts'
import { requireService } from '../../support/services.ts'
import { pipeContract } from './pipe-contract.ts'

const kafka = await requireService('kafka')
const brokers = kafka.url.split(',')
const run = randomUUID().slice(0, 8)
let n = 0

describe.skipIf(!kafka.available)('kafka', () => {
  pipeContract('kafka', {
    open: () => KafkaPipe.connect({ brokers }),
    async reopen(pipe) {
      await pipe.close()
      return KafkaPipe.connect({ brokers })
    },
    topicPrefix: () => `test-${run}-${n++}-`,
  })

  describe('kafka pipe', () => {
    const opened: KafkaPipe[] = []
    afterAll(async () => {
      for (const p of opened) await p.close()
    })

    it('refuses unreachable brokers with a retriable pipe error naming them', async () => {
      await expect(KafkaPipe.connect({ brokers: ['127.0.0.1:1'], retries: 0, connectionTimeoutMs: 500 })).rejects.toMatchObject({ code: 'WEIR_PIPE_UNAVAILABLE', retriable: true, message: expect.stringContaining('127.0.0.1:1') })
    })

    it('rejects invalid options naming the field', async () => {
      await expect(KafkaPipe.connect({ brokers: ['no-port'] })).rejects.toMatchObject({ code: 'WEIR_CONFIG_INVALID', message: expect.stringContaining('pipe.kafka.brokers.0') })
      expect(() => parseKafkaUrl('kafka://h:1?password=x')).toThrow(/pipe.password/)
      expect(() => parseKafkaUrl('kafka://h:1?sasl=plain&user=u', {})).toThrow(/WEIR_KAFKA_PASSWORD/)
      expect(parseKafkaUrl('kafka://a:1,b:2?tls=true&sasl=scram-sha-512&user=u', { WEIR_KAFKA_PASSWORD: 'p' })).toEqual({
        brokers: ['a:1', 'b:2'],
        ssl: true,
        sasl: { mechanism: 'scram-sha-512', username: 'u', password: 'p' },
      })
    })

    it('creates changelog topics compacted, and a transaction larger than one produce request', async () => {
      const pipe = await KafkaPipe.connect({ brokers })
      opened.push(pipe)
      const topic = `test-${run}-big`
      await pipe.ensureTopic({ name: topic, partitions: 2, compacted: true })
      expect(await pipe.describeTopic(topic)).toMatchObject({ partitions: 2, compacted: true })
      const p = await pipe.producer(`test-${run}-big-tx`)
      p.begin()
      const value = Buffer.alloc(1000, 7)
      for (let i = 0; i < 3000; i++) p.send(topic, i % 2, { key: Buffer.from(`k${i}`), value, timestamp: Date.now() })
      const ends = await p.commit()
      expect(ends.find((e) => e.partition === 0)?.offset).toBe(1500)
      expect(ends.find((e) => e.partition === 1)?.offset).toBe(1500)
      await p.close()
      // Split into several batches per partition (1.5 MB each, above the request's batch limit), read back in send order.
      for (const partition of [0, 1]) {
        const reader = await pipe.reader(topic, partition, 0)
        const keys: string[] = []
        while (keys.length < 1500) for (const r of await reader.poll(1000, 1000)) keys.push(r.key!.toString())
        reader.close()
        expect(keys).toEqual(Array.from({ length: 1500 }, (_, i) => `k${2 * i + partition}`))
      }
    })

    // kafkajs alone re-checks each connection's request queue every millisecond for as long
    // as the connection is open (a negative timeout when nothing is pending; kafkajs-fixes.ts, fix 4).
    it('an idle pipe leaves its connections\' request queues without timers: no queue check a millisecond', async () => {
      const RequestQueue = createRequire(createRequire(import.meta.url).resolve('kafkajs'))('./src/network/requestQueue/index.js') as { prototype: { checkPendingRequests(): void } }
      const original = RequestQueue.prototype.checkPendingRequests
      let checks = 0
      RequestQueue.prototype.checkPendingRequests = function (this: unknown) {
        checks++
        original.call(this)
      }
      try {
        const pipe = await KafkaPipe.connect({ brokers })
        opened.push(pipe)
        const topic = `test-${run}-idle`
        await pipe.ensureTopic({ name: topic, partitions: 2, compacted: false })
        const p = await pipe.producer(`test-${run}-idle-tx`)
        p.begin()
        for (let i = 0; i < 10; i++) p.send(topic, i % 2, { key: Buffer.from(`k${i}`), value: Buffer.from('v'), timestamp: Date.now() })
        await p.commit()
        await pipe.endOffset(topic, 0)
        const before = checks
        await new Promise((r) => setTimeout(r, 1000))
        // Each check of a spinning queue runs once a millisecond: ~1,000 a second per connection.
        expect(checks - before).toBeLessThan(50)
        await p.close()
      } finally {
        RequestQueue.prototype.checkPendingRequests = original
      }
    })

    // Found by the cluster chaos property with consumed-record purging on: a worker paused
    // past its timeout got its actor back without noticing it had moved; meanwhile the
    // actor's new instance had committed further and purged its input. The woken instance's
    // reader sat below the partition's start: kafkajs reset it to the start, the reader
    // sought back, and so on, forever; with nothing read, the actor never committed, so it
    // never learnt it was fenced, and the run hung.
    it('a reader whose position was deleted (purged or expired) fails with a retriable error naming the range, instead of spinning', async () => {
      const pipe = await KafkaPipe.connect({ brokers })
      opened.push(pipe)
      const topic = `test-${run}-gone`
      await pipe.ensureTopic({ name: topic, partitions: 1 })
      const p = await pipe.producer(`test-${run}-gone-tx`)
      p.begin()
      for (let i = 0; i < 20; i++) p.send(topic, 0, { key: null, value: Buffer.from(String(i)), timestamp: Date.now() })
      await p.commit()
      await p.close()
      await pipe.deleteRecordsBefore(topic, 0, 10)
      const reader = await pipe.reader(topic, 0, 3)
      const failed = await (async () => {
        const deadline = Date.now() + 15_000
        while (Date.now() < deadline) {
          try {
            await reader.poll(100, 200)
          } catch (err) {
            return err
          }
        }
        return undefined
      })()
      reader.close()
      expect(failed, 'the reader never failed: it kept spinning below the start offset').toMatchObject({ code: 'WEIR_PIPE_UNAVAILABLE', retriable: true, context: { topic, partition: 0, offset: 3 } })
      expect((failed as Error).message).toMatch(/offsets 3 to 10 .*deleted/)
    }, 60_000)

    // kafkajs (2.2.4) filters aborted records assuming the broker lists aborted transactions
    // by first offset; the broker lists them by abort marker. Two writers of one partition
    // whose transactions overlap and abort in the other order (both actors of a stage
    // restarting after a broker outage) leaked the earlier one's records to read_committed
    // readers: a word counted twice.
    it('hides overlapping transactions of several writers that abort out of order', async () => {
      const pipe = await KafkaPipe.connect({ brokers })
      opened.push(pipe)
      const topic = `test-${run}-aborts`
      await pipe.ensureTopic({ name: topic, partitions: 1, compacted: false })
      const client = new Kafka({ clientId: `test-${run}`, brokers, logLevel: logLevel.NOTHING })
      const writer = async (name: string) => {
        const producer = client.producer({ transactionalId: `test-${run}-${name}`, idempotent: true, maxInFlightRequests: 1 })
        await producer.connect()
        return producer
      }
      const [a, b, c] = await Promise.all([writer('a'), writer('b'), writer('c')])
      try {
        const send = (t: Awaited<ReturnType<typeof a.transaction>>, value: string) => t.send({ topic, messages: [{ key: value, value, partition: 0 }] })
        // b opens first, a second; a aborts before b: the broker lists [a, b], b's records come first.
        const tb = await b.transaction()
        await send(tb, 'b1')
        const ta = await a.transaction()
        await send(ta, 'a1')
        await send(tb, 'b2')
        await ta.abort()
        const tc = await c.transaction()
        await send(tc, 'c1')
        await tc.commit()
        await send(tb, 'b3')
        await tb.abort()
        const tc2 = await c.transaction()
        await send(tc2, 'c2')
        await tc2.commit()
        const read = async (from: number, end: number): Promise<Array<{ value: string; offset: number }>> => {
          const reader = await pipe.reader(topic, 0, from)
          const seen: Array<{ value: string; offset: number }> = []
          while (reader.position < end) for (const r of await reader.poll(100, 200)) seen.push({ value: r.value!.toString(), offset: r.offset })
          reader.close()
          return seen
        }
        const end = await pipe.endOffset(topic, 0)
        const all = await read(0, end)
        expect(all.map((r) => r.value)).toEqual(['c1', 'c2'])
        // A fetch that starts inside an aborted transaction hides the rest of it too.
        for (let from = 1; from < end; from++) expect(await read(from, end), `read from offset ${from}`).toEqual(all.filter((r) => r.offset >= from))
      } finally {
        await Promise.all([a, b, c].map((p) => p.disconnect()))
      }
    }, 120_000)
  })
})
