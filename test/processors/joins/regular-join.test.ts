/**
 * RegularJoin through a real embedded pipeline: without retention it emits every pair of a
 * key a plain loop finds, once, at the later of their times, whatever the arrival order and
 * across crashes; with retention it still emits every pair at most retainMs apart, frees its
 * state as the watermark passes, and sends records behind the retention to the late output.
 */
import { describe, expect, it } from 'vitest'
import { RegularJoin } from '../../../processors/index.ts'
import { fc } from '../../../testing/index.ts'
import { all, expectSameLines, JOIN_CRASHES, joinPipeline, keyedLeft, line, RATE, RUNS, runJoin, SEED, side, type Item, type Side } from './fixtures/two-sides.ts'

interface Pair {
  l: string
  r: string
  times: [number, number]
}

/** The pairs of the same key whose times are at most `apart` ms apart (all of them by default). */
function reference(left: Side, right: Side, apart = Infinity): string[] {
  const out: string[] = []
  for (const l of all(left)) {
    for (const r of all(right)) {
      if (l.key === r.key && Math.abs(l.t - r.t) <= apart) out.push(line(l.key, Math.max(l.t, r.t), { l: l.id, r: r.id, times: [l.t, r.t] }))
    }
  }
  return out
}

const regularJoin = (retainMs?: number) => () => new RegularJoin<Item, Item, Pair>({ retainMs, join: (l, r, times) => ({ l: l.id, r: r.id, times: [times.left, times.right] }) })

/** Whether every line of `inner` is in `outer` as often or less (multisets). */
function contained(inner: string[], outer: string[]): string[] {
  const left = new Map<string, number>()
  for (const x of outer) left.set(x, (left.get(x) ?? 0) + 1)
  const missing: string[] = []
  for (const x of inner) {
    const n = left.get(x) ?? 0
    if (n === 0) missing.push(x)
    else left.set(x, n - 1)
  }
  return missing
}

describe('RegularJoin', () => {
  it('emits every pair of a key of a plain loop once, at the later time of each pair, whatever the arrival order', async () => {
    await fc.assert(
      fc.asyncProperty(side('L', 4, 40), side('R', 4, 40), async (left, right) => {
        const { out, state, late } = await runJoin<Pair>(joinPipeline('regular-join', left, right, regularJoin(), { ratePerSecond: RATE }))
        expectSameLines(out.map((r) => line(r.key, r.timestamp, r.value)), reference(left, right))
        expect(late).toBe(0)
        // Nothing is freed without retention: every record stays stored.
        const stored = Object.values(keyedLeft(state, ['regular-join.left', 'regular-join.right'])).flatMap((byTime) => Object.values(byTime as Record<string, unknown[]>).flat())
        expect(stored.length).toBe(all(left).length + all(right).length)
      }),
      { numRuns: RUNS, seed: SEED, endOnFailure: true },
    )
  }, 600_000)

  it('with retainMs emits every pair at most retainMs apart, only real pairs, and frees its state', async () => {
    await fc.assert(
      fc.asyncProperty(side('L', 4, 40), side('R', 4, 40), fc.nat(60), async (left, right, retainMs) => {
        const { out, state, late } = await runJoin<Pair>(joinPipeline('regular-join-retain', left, right, regularJoin(retainMs), { ratePerSecond: RATE }))
        const lines = out.map((r) => line(r.key, r.timestamp, r.value))
        expect(contained(reference(left, right, retainMs), lines)).toEqual([])
        expect(contained(lines, reference(left, right))).toEqual([])
        expect(late).toBe(0)
        expect(keyedLeft(state, ['regular-join.left', 'regular-join.right'])).toEqual({})
      }),
      { numRuns: RUNS, seed: SEED, endOnFailure: true },
    )
  }, 600_000)

  it('is exactly-once across crashes at every point of the checkpoint protocol', async () => {
    const [left, right] = fc.sample(fc.tuple(side('L', 3, 150, { min: 150 }), side('R', 3, 150, { min: 150 })), { seed: 9, numRuns: 1 })[0]!
    const expected = reference(left, right)
    const { out, planned, crashed } = await runJoin<Pair>(joinPipeline('regular-join-crash', left, right, regularJoin(), { ratePerSecond: 2 * RATE }), JOIN_CRASHES)
    expect(crashed).toEqual(planned)
    expect(expected.length).toBeGreaterThan(1_000)
    expectSameLines(out.map((r) => line(r.key, r.timestamp, r.value)), expected)
  }, 300_000)

  it('with retainMs drops a record that comes when the watermark passed its retention, counts it, and sends it to the late side output', async () => {
    // Left partition 0 pauses before a record 300 ms behind the others, until the watermark has passed it by more than retainMs;
    // the other records are all within retainMs of each other, so all their pairs are joined.
    const left: Side = [[{ key: 'k0', id: 'L:0:0', t: 1_000 }, { key: 'k0', id: 'L:0:1', t: 1_080 }, { key: 'k0', id: 'L:0:2', t: 700 }], []]
    const right: Side = [[{ key: 'k0', id: 'R:0:0', t: 1_005 }, { key: 'k0', id: 'R:0:1', t: 1_095 }], []]
    const p = joinPipeline('regular-join-late', left, right, regularJoin(100), { stage: { sideOutputs: ['late'] }, pause: { side: 'left', partition: 0, index: 2, ms: 600 } })
    const { out, state, late, lateRecords } = await runJoin<Pair>(p)
    expect(out.map((r) => `${r.value.l}+${r.value.r}`).sort()).toEqual(['L:0:0+R:0:0', 'L:0:0+R:0:1', 'L:0:1+R:0:0', 'L:0:1+R:0:1'])
    expect(late).toBe(1)
    expect(Object.values(state.actor).map((a) => a['regular-join.dropped']).filter((n) => n !== undefined)).toEqual([1])
    expect(lateRecords.map((r) => [r.key, r.timestamp, r.value.id])).toEqual([['k0', 700, 'L:0:2']])
  }, 60_000)

  it('refuses a retention that is not whole ms ≥ 0, and a late output without retention', () => {
    expect(() => new RegularJoin({ retainMs: -1, join: () => 1 })).toThrow(/retainMs: must be a whole number of ms ≥ 0, got -1/)
    expect(() => new RegularJoin({ retainMs: 1.5, join: () => 1 })).toThrow(/retainMs: must be a whole number of ms ≥ 0, got 1.5/)
    expect(() => new RegularJoin({ lateOutput: 'late', join: () => 1 })).toThrow(/lateOutput: needs retainMs/)
  })
})
