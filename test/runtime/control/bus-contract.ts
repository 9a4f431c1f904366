/**
 * The ControlBus port's contract, run against every adapter (local.test.ts, nats.test.ts).
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { BusNoResponderError, BusTimeoutError, type ControlBus } from '../../../runtime/control/bus.ts'

export interface BusHarness {
  open(): Promise<ControlBus>
  /** A second connection to what `bus` reaches (its own subscriptions; closing it leaves `bus` open). */
  peer(bus: ControlBus): Promise<ControlBus>
  /** A prefix so tests sharing a server do not hear each other. */
  prefix(): string
}

/** Resolves once `n` messages arrived, or rejects after `ms`. */
function collect(bus: ControlBus, subject: string, n: number, ms = 3000): { got: Array<[string, unknown]>; done: Promise<void> } {
  const got: Array<[string, unknown]> = []
  let resolveDone!: () => void
  const done = new Promise<void>((resolve, reject) => {
    resolveDone = resolve
    setTimeout(() => reject(new Error(`only ${got.length} of ${n} messages on ${subject}`)), ms)
  })
  bus.subscribe(subject, (m, s) => {
    got.push([s, m])
    if (got.length === n) resolveDone()
  })
  return { got, done }
}

/** Gives subscriptions time to reach a server before publishing. */
const settle = (): Promise<void> => new Promise((r) => setTimeout(r, 100))

export function busContract(name: string, harness: BusHarness): void {
  describe(`ControlBus contract: ${name}`, () => {
    let bus: ControlBus
    let p: string
    beforeEach(async () => {
      bus = await harness.open()
      p = harness.prefix()
    })
    afterEach(async () => {
      await bus.close()
    })

    it('delivers messages to matching subscriptions, with * and > wildcards, in publish order', async () => {
      const exact = collect(bus, `${p}.a.b`, 3)
      const star = collect(bus, `${p}.*.b`, 3)
      const rest = collect(bus, `${p}.>`, 4)
      await settle()
      for (let i = 0; i < 3; i++) bus.publish(`${p}.a.b`, { v: 1, i })
      bus.publish(`${p}.c.d.e`, { v: 1, other: true })
      await Promise.all([exact.done, star.done, rest.done])
      expect(exact.got.map(([, m]) => (m as { i: number }).i)).toEqual([0, 1, 2])
      expect(star.got).toHaveLength(3)
      expect(rest.got.map(([s]) => s)).toEqual([`${p}.a.b`, `${p}.a.b`, `${p}.a.b`, `${p}.c.d.e`])
    })

    it('says it is connected while open and closed once closed (health probes read it)', async () => {
      const other = await harness.open()
      expect(other.state).toBe('connected')
      // It never lost its server: no reconnect for the coordinator's liveness probes to wait out.
      expect(other.reconnectedAt).toBe(0)
      await other.close()
      expect(other.state).toBe('closed')
    })

    it('delivers asynchronously: publish returns before any handler runs', async () => {
      let ran = false
      const got = collect(bus, `${p}.async`, 1)
      bus.subscribe(`${p}.async`, () => { ran = true })
      await settle()
      bus.publish(`${p}.async`, { v: 1 })
      expect(ran).toBe(false)
      await got.done
      expect(ran).toBe(true)
    })

    it('stops delivering after unsubscribe, and a throwing handler does not stop the others', async () => {
      const heard: number[] = []
      const sub = bus.subscribe(`${p}.u`, (m) => heard.push((m as { i: number }).i))
      bus.subscribe(`${p}.u`, () => { throw new Error('handler bug') })
      const other = collect(bus, `${p}.u`, 2)
      await settle()
      bus.publish(`${p}.u`, { v: 1, i: 1 })
      await new Promise((r) => setTimeout(r, 200))
      sub.unsubscribe()
      await settle()
      bus.publish(`${p}.u`, { v: 1, i: 2 })
      await other.done
      expect(heard).toEqual([1])
    })

    it('a request gets its responder\'s reply, with binary values intact (Buffer, BigInt, Date, nested)', async () => {
      const at = new Date('2026-01-02T03:04:05.678Z')
      bus.respond(`${p}.rr`, async (m, subject) => {
        const req = m as { key: Buffer; n: bigint; at: Date }
        return { subject, key: Buffer.concat([req.key, Buffer.from([0xff])]), n: req.n * 2n, at: new Date(req.at.getTime() + 1), nested: [{ big: 2n ** 62n, bytes: Buffer.from([0, 1, 2]) }], none: null }
      })
      await settle()
      const reply = (await bus.request(`${p}.rr`, { key: Buffer.from([0, 0xfe]), n: 21n, at }, { timeoutMs: 2000 })) as Record<string, unknown>
      expect(reply.subject).toBe(`${p}.rr`)
      expect(Buffer.isBuffer(reply.key), 'a Buffer comes back as a Buffer').toBe(true)
      expect(reply.key).toEqual(Buffer.from([0, 0xfe, 0xff]))
      expect(reply.n).toBe(42n)
      expect(reply.at).toBeInstanceOf(Date)
      expect((reply.at as Date).getTime()).toBe(at.getTime() + 1)
      const nested = (reply.nested as Array<{ big: bigint; bytes: Buffer }>)[0]!
      expect(nested.big).toBe(2n ** 62n)
      expect(Buffer.isBuffer(nested.bytes)).toBe(true)
      expect(nested.bytes).toEqual(Buffer.from([0, 1, 2]))
      expect(reply.none).toBeNull()
    })

    it('a request nobody answers fails at once with BusNoResponderError, not a timeout', async () => {
      const started = Date.now()
      const err = await bus.request(`${p}.nobody`, { v: 1 }, { timeoutMs: 5000 }).catch((e: unknown) => e)
      expect(err).toBeInstanceOf(BusNoResponderError)
      expect(err).toMatchObject({ code: 'WEIR_BUS_NO_RESPONDER', retriable: true })
      expect(Date.now() - started).toBeLessThan(1000)
    })

    it('a responder slower than the timeout: the request fails with BusTimeoutError after about the timeout', async () => {
      bus.respond(`${p}.slow`, async () => {
        await new Promise((r) => setTimeout(r, 1500))
        return { late: true }
      })
      await settle()
      const started = Date.now()
      const err = await bus.request(`${p}.slow`, { v: 1 }, { timeoutMs: 300 }).catch((e: unknown) => e)
      const took = Date.now() - started
      expect(err).toBeInstanceOf(BusTimeoutError)
      expect(err).toMatchObject({ code: 'WEIR_BUS_TIMEOUT', retriable: true })
      expect(took).toBeGreaterThanOrEqual(250)
      expect(took).toBeLessThan(1200)
    })

    it('a responder that throws answers nothing: the requester times out (the error stays with the responder)', async () => {
      let calls = 0
      bus.respond(`${p}.throws`, () => {
        calls++
        throw new Error('responder bug')
      })
      bus.respond(`${p}.rejects`, async () => {
        calls++
        throw new Error('async responder bug')
      })
      await settle()
      for (const s of [`${p}.throws`, `${p}.rejects`]) {
        const err = await bus.request(s, { v: 1 }, { timeoutMs: 300 }).catch((e: unknown) => e)
        expect(err, s).toBeInstanceOf(BusTimeoutError)
      }
      expect(calls).toBe(2)
      // The responder keeps answering later requests (it is not unsubscribed by a failure).
      const ok = bus.respond(`${p}.after`, () => ({ fine: true }))
      await settle()
      expect(await bus.request(`${p}.after`, {}, { timeoutMs: 2000 })).toEqual({ fine: true })
      ok.unsubscribe()
    })

    it('two responders on one subject (two connections): each request is answered by exactly one of them, and both get a share', async () => {
      const other = await harness.peer(bus)
      try {
        const heard: Record<string, number[]> = { a: [], b: [] }
        bus.respond(`${p}.q`, (m) => {
          heard.a!.push((m as { i: number }).i)
          return { by: 'a', i: (m as { i: number }).i }
        })
        other.respond(`${p}.q`, (m) => {
          heard.b!.push((m as { i: number }).i)
          return { by: 'b', i: (m as { i: number }).i }
        })
        await settle()
        const n = 40
        const replies = (await Promise.all(Array.from({ length: n }, (_, i) => bus.request(`${p}.q`, { i }, { timeoutMs: 3000 })))) as Array<{ by: string; i: number }>
        expect(replies.map((r) => r.i)).toEqual(Array.from({ length: n }, (_, i) => i))
        const all = [...heard.a!, ...heard.b!].sort((x, y) => x - y)
        expect(all, 'every request reached exactly one responder').toEqual(Array.from({ length: n }, (_, i) => i))
        for (const r of replies) expect(heard[r.by]).toContain(r.i)
        expect(heard.a!.length, 'a got a share').toBeGreaterThan(0)
        expect(heard.b!.length, 'b got a share').toBeGreaterThan(0)
      } finally {
        await other.close()
      }
    })

    it('two responders on one subject of one connection: each request is answered once', async () => {
      let calls = 0
      bus.respond(`${p}.q1`, () => ({ n: ++calls }))
      bus.respond(`${p}.q1`, () => ({ n: ++calls }))
      await settle()
      const replies = await Promise.all(Array.from({ length: 20 }, () => bus.request(`${p}.q1`, {}, { timeoutMs: 3000 })))
      await new Promise((r) => setTimeout(r, 100))
      expect(calls).toBe(20)
      expect(new Set(replies.map((r) => (r as { n: number }).n)).size).toBe(20)
    })

    it('after unsubscribe a responder answers no more: with no other responder the request fails with BusNoResponderError', async () => {
      let calls = 0
      const sub = bus.respond(`${p}.un`, () => ({ n: ++calls }))
      const other = bus.respond(`${p}.un`, () => ({ other: true }))
      await settle()
      expect(await bus.request(`${p}.un`, {}, { timeoutMs: 2000 })).toBeDefined()
      sub.unsubscribe()
      await settle()
      const before = calls
      for (let i = 0; i < 5; i++) expect(await bus.request(`${p}.un`, {}, { timeoutMs: 2000 })).toEqual({ other: true })
      expect(calls).toBe(before)
      other.unsubscribe()
      await settle()
      await expect(bus.request(`${p}.un`, {}, { timeoutMs: 2000 })).rejects.toBeInstanceOf(BusNoResponderError)
    })

    it('requests already on their way to a responder that unsubscribes are still answered, none is left to time out', async () => {
      const other = await harness.peer(bus)
      try {
        let answeredByLeaving = 0
        const leaving = bus.respond(`${p}.leave`, async () => {
          answeredByLeaving++
          return { by: 'leaving' }
        })
        other.respond(`${p}.leave`, () => ({ by: 'staying' }))
        await settle()
        const n = 60
        const started = Date.now()
        const pending = Array.from({ length: n }, () => bus.request(`${p}.leave`, {}, { timeoutMs: 3000 }).then(() => Date.now() - started, (e: unknown) => e))
        leaving.unsubscribe()
        const outcomes = await Promise.all(pending)
        expect(outcomes.filter((o) => typeof o !== 'number'), 'every request answered').toEqual([])
        expect(Math.max(...(outcomes as number[])), 'none waited for a timeout').toBeLessThan(2000)
        // Afterwards only the one staying answers.
        await settle()
        const before = answeredByLeaving
        for (let i = 0; i < 10; i++) expect(await bus.request(`${p}.leave`, {}, { timeoutMs: 2000 })).toEqual({ by: 'staying' })
        expect(answeredByLeaving).toBe(before)
      } finally {
        await other.close()
      }
    })

    it('a reply is a copy of what the responder returned: neither side sees the other\'s later changes', async () => {
      const kept = { list: [1, 2], inner: { n: 1 } }
      bus.respond(`${p}.copy`, () => kept)
      await settle()
      const reply = (await bus.request(`${p}.copy`, {}, { timeoutMs: 2000 })) as typeof kept
      expect(reply).toEqual({ list: [1, 2], inner: { n: 1 } })
      reply.list.push(3)
      reply.inner.n = 2
      expect(kept).toEqual({ list: [1, 2], inner: { n: 1 } })
    })

    it('a request after close is refused, not left hanging; a responder stops answering when its bus closes', async () => {
      const other = await harness.peer(bus)
      other.respond(`${p}.closing`, () => ({ ok: true }))
      await settle()
      expect(await bus.request(`${p}.closing`, {}, { timeoutMs: 2000 })).toEqual({ ok: true })
      await other.close()
      await settle()
      await expect(bus.request(`${p}.closing`, {}, { timeoutMs: 2000 })).rejects.toBeInstanceOf(BusNoResponderError)
      const started = Date.now()
      await expect(other.request(`${p}.closing`, {}, { timeoutMs: 2000 })).rejects.toThrow()
      expect(Date.now() - started).toBeLessThan(1000)
    })

    it('publishing after close is a no-op, not an error', async () => {
      await bus.close()
      expect(() => bus.publish(`${p}.closed`, { v: 1 })).not.toThrow()
    })
  })
}
