import { randomUUID } from 'node:crypto'
import { describe, expect, it } from 'vitest'
import { NatsBus } from '../../../runtime/control/nats/nats-bus.ts'
import { requireService } from '../../support/services.ts'
import { busContract } from './bus-contract.ts'

const nats = await requireService('nats')
const run = randomUUID().slice(0, 8)
let n = 0

describe.skipIf(!nats.available)('nats', () => {
  busContract('nats', { open: () => NatsBus.connect({ servers: [nats.url] }), peer: () => NatsBus.connect({ servers: [nats.url] }), prefix: () => `test.${run}.${n++}` })

  describe('nats bus', () => {
    it('refuses bad configuration naming the field, and an unreachable server with a retriable error naming it', async () => {
      await expect(NatsBus.connect({ servers: ['localhost'] })).rejects.toMatchObject({ code: 'WEIR_CONFIG_INVALID', message: expect.stringContaining('bus.servers.0') })
      await expect(NatsBus.connect({ servers: ['nats://127.0.0.1:1'], connectTimeoutMs: 500 })).rejects.toMatchObject({ code: 'WEIR_BUS_UNAVAILABLE', retriable: true, message: expect.stringContaining('nats://127.0.0.1:1') })
    })

    it('drops a malformed message on a subscribed subject and keeps delivering', async () => {
      const bus = await NatsBus.connect({ servers: [nats.url] })
      const raw = await NatsBus.connect({ servers: [nats.url] })
      try {
        const got: unknown[] = []
        bus.subscribe(`test.${run}.mal`, (m) => got.push(m))
        await new Promise((r) => setTimeout(r, 100))
        // Not JSON: published through the raw connection underneath.
        ;(raw as unknown as { nc: { publish(s: string, d: Uint8Array): void } }).nc.publish(`test.${run}.mal`, new TextEncoder().encode('{not json'))
        raw.publish(`test.${run}.mal`, { v: 1, ok: true })
        for (let i = 0; i < 50 && got.length === 0; i++) await new Promise((r) => setTimeout(r, 20))
        expect(got).toEqual([{ v: 1, ok: true }])
      } finally {
        await bus.close()
        await raw.close()
      }
    })

    it('refuses an oversized message without throwing into the publisher', async () => {
      const bus = await NatsBus.connect({ servers: [nats.url] })
      try {
        expect(() => bus.publish(`test.${run}.big`, { v: 1, blob: 'x'.repeat(2 << 20) })).not.toThrow()
        expect(bus.droppedMessages).toBe(1)
      } finally {
        await bus.close()
      }
    })
  })
})
