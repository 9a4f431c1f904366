/**
 * The ControlBus port's contract, run against every adapter (local.test.ts, nats.test.ts).
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import type { ControlBus } from '../../../runtime/control/bus.ts'

export interface BusHarness {
  open(): Promise<ControlBus>
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

    it('publishing after close is a no-op, not an error', async () => {
      await bus.close()
      expect(() => bus.publish(`${p}.closed`, { v: 1 })).not.toThrow()
    })
  })
}
