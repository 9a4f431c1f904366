import { randomUUID } from 'node:crypto'
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
    })
  })
})
