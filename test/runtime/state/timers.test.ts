/**
 * The timer index against a generated model: registrations, deletions, rolled-back units and
 * due checks in any order fire each live timer once, in (time, key) order; a store reloaded
 * from what the cache wrote holds the same timers.
 */
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { StateStore } from '../../../runtime/state/state-store.ts'
import { Timers } from '../../../runtime/state/timers.ts'
import { WriteCache } from '../../../runtime/state/write-cache.ts'
import { storeKeyBytes } from '../../../runtime/record-keys.ts'

type Op = { op: 'register' | 'delete'; key: string; time: number; rollback: boolean } | { op: 'due'; now: number }

const op: fc.Arbitrary<Op> = fc.oneof(
  { weight: 4, arbitrary: fc.record({ op: fc.constant('register' as const), key: fc.constantFrom('a', 'b', 'c', 'd', 'e'), time: fc.integer({ min: 0, max: 60 }), rollback: fc.boolean() }) },
  { weight: 2, arbitrary: fc.record({ op: fc.constant('delete' as const), key: fc.constantFrom('a', 'b', 'c', 'd', 'e'), time: fc.integer({ min: 0, max: 60 }), rollback: fc.boolean() }) },
  { weight: 1, arbitrary: fc.record({ op: fc.constant('due' as const), now: fc.integer({ min: 0, max: 70 }) }) },
)

describe('timers', () => {
  it('fire each live timer once, in time then key order, whatever the registrations, deletions and rollbacks before', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'weir-timers-'))
    const store = await StateStore.open(join(dir, 'db'))
    try {
      await fc.assert(fc.asyncProperty(fc.array(op, { minLength: 1, maxLength: 400, size: 'max' }), async (ops) => {
        const cache = new WriteCache(100_000)
        const timers = await Timers.load(store, cache, '\u0009')
        const model = new Map<string, { key: string; time: number }>()
        const id = (key: string, time: number): string => `${String(time).padStart(3, '0')}/${key}`
        for (const o of ops) {
          if (o.op === 'due') {
            const want = [...model.entries()].filter(([, t]) => t.time <= o.now).sort(([a], [b]) => (a < b ? -1 : 1))
            for (const [k] of want) model.delete(k)
            expect(timers.takeDue(o.now).map((t) => id(t.key!, t.time))).toEqual(want.map(([k]) => k))
            continue
          }
          cache.beginRecord()
          if (o.op === 'register') timers.register(o.key, o.time)
          else timers.delete(o.key, o.time)
          if (o.rollback) {
            cache.rollbackRecord()
            continue
          }
          cache.endRecord()
          if (o.op === 'register') model.set(id(o.key, o.time), { key: o.key, time: o.time })
          else model.delete(id(o.key, o.time))
          expect(timers.size).toBe(model.size)
        }
        const next = [...model.values()].reduce<number | undefined>((m, t) => (m === undefined || t.time < m ? t.time : m), undefined)
        expect(timers.nextDue()).toBe(next)
        // What the cache would write, reloaded from RocksDB, is the same set of timers.
        const dirty = cache.takeDirty(1)
        await store.apply(dirty.map((d) => ({ key: storeKeyBytes(d.key), value: d.value === undefined ? null : Buffer.from([1]) })), 0)
        const reloaded = await Timers.load(store, new WriteCache(100_000), '\u0009')
        expect(reloaded.takeDue(Number.MAX_SAFE_INTEGER).map((t) => id(t.key!, t.time))).toEqual([...model.keys()].sort())
        await store.apply(dirty.map((d) => ({ key: storeKeyBytes(d.key), value: null })), 0)
      }), { numRuns: Number(process.env.WEIR_TIMERS_PROPERTY_RUNS ?? 200) })
    } finally {
      await store.close()
      rmSync(dir, { recursive: true, force: true })
    }
  })
})
