/**
 * IntervalJoin through a real embedded pipeline: on generated input with disorder within
 * the sources' bound, it emits exactly the pairs a plain loop finds (same key, right time
 * in [left + lower, left + upper]) at the later of their times, whatever order they
 * arrive in, also across crashes; it frees its state once the watermark passes; and late
 * records go to the late side output.
 */
import { describe, expect, it } from 'vitest'
import { IntervalJoin } from '../../../processors/index.ts'
import { fc } from '../../../testing/index.ts'
import { all, expectSameLines, JOIN_CRASHES, joinPipeline, keyedLeft, RATE, line, RUNS, runJoin, SEED, side, type Item, type Side } from './fixtures/two-sides.ts'

interface Pair {
  l: string
  r: string
  times: [number, number]
}

function reference(left: Side, right: Side, lower: number, upper: number): string[] {
  const out: string[] = []
  for (const l of all(left)) {
    for (const r of all(right)) {
      if (r.key === l.key && r.t >= l.t + lower && r.t <= l.t + upper) out.push(line(l.key, Math.max(l.t, r.t), { l: l.id, r: r.id, times: [l.t, r.t] }))
    }
  }
  return out
}

const intervalJoin = (lower: number, upper: number) => () => new IntervalJoin<Item, Item, Pair>({ lowerBoundMs: lower, upperBoundMs: upper, join: (l, r, times) => ({ l: l.id, r: r.id, times: [times.left, times.right] }) })

describe('IntervalJoin', () => {
  it('emits exactly the pairs of a plain loop, at the later time of each pair, whatever the arrival order', async () => {
    const bounds = fc.tuple(fc.integer({ min: -60, max: 30 }), fc.nat(80)).map(([lower, width]) => ({ lower, upper: lower + width }))
    await fc.assert(
      fc.asyncProperty(side('L', 4, 40), side('R', 4, 40), bounds, async (left, right, { lower, upper }) => {
        const p = joinPipeline('interval-join', left, right, intervalJoin(lower, upper), { ratePerSecond: RATE })
        const { out, state, late } = await runJoin<Pair>(p)
        expectSameLines(out.map((r) => line(r.key, r.timestamp, r.value)), reference(left, right, lower, upper))
        expect(late).toBe(0)
        expect(keyedLeft(state, ['interval-join.left', 'interval-join.right'])).toEqual({})
      }),
      { numRuns: RUNS, seed: SEED, endOnFailure: true },
    )
  }, 600_000)

  it('is exactly-once across crashes at every point of the checkpoint protocol', async () => {
    const [left, right] = fc.sample(fc.tuple(side('L', 3, 150, { min: 150 }), side('R', 3, 150, { min: 150 })), { seed: 7, numRuns: 1 })[0]!
    const expected = reference(left, right, -20, 25)
    const { out, planned, crashed } = await runJoin<Pair>(joinPipeline('interval-join-crash', left, right, intervalJoin(-20, 25), { ratePerSecond: 2 * RATE }), JOIN_CRASHES)
    expect(crashed).toEqual(planned)
    expect(expected.length).toBeGreaterThan(20)
    expectSameLines(out.map((r) => line(r.key, r.timestamp, r.value)), expected)
  }, 300_000)

  it('drops a record that comes at or below the watermark, counts it, and sends it to the late side output', async () => {
    // Left partition 0 pauses before a record 500 ms behind the others, until the watermark has passed it.
    const left: Side = [[{ key: 'k0', id: 'L:0:0', t: 1_000 }, { key: 'k0', id: 'L:0:1', t: 1_200 }, { key: 'k0', id: 'L:0:2', t: 700 }], []]
    const right: Side = [[{ key: 'k0', id: 'R:0:0', t: 705 }, { key: 'k0', id: 'R:0:1', t: 1_205 }], []]
    const p = joinPipeline('interval-join-late', left, right, intervalJoin(0, 10), { stage: { sideOutputs: ['late'] }, pause: { side: 'left', partition: 0, index: 2, ms: 600 } })
    const { out, state, late, lateRecords } = await runJoin<Pair>(p)
    expect(out.map((r) => `${r.value.l}+${r.value.r}`)).toEqual(['L:0:1+R:0:1'])
    expect(late).toBe(1)
    expect(Object.values(state.actor).map((a) => a['interval-join.dropped']).filter((n) => n !== undefined)).toEqual([1])
    expect(lateRecords.map((r) => [r.key, r.timestamp, r.value.id])).toEqual([['k0', 700, 'L:0:2']])
  }, 60_000)

  it('refuses bounds that join nothing or are not whole ms', () => {
    expect(() => new IntervalJoin({ lowerBoundMs: 5, upperBoundMs: 4, join: () => 1 })).toThrow(/lowerBoundMs: must not exceed upperBoundMs \(4\), got 5/)
    expect(() => new IntervalJoin({ lowerBoundMs: 0.5, upperBoundMs: 4, join: () => 1 })).toThrow(/lowerBoundMs: must be a whole number of ms/)
  })
})
