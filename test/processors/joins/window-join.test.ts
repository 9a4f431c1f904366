/**
 * WindowJoin through a real embedded pipeline: for tumbling and sliding windows it emits
 * exactly the pairs of a plain loop (same key, both in the window), at the window's last
 * instant, whatever the arrival order and across crashes; windows are freed once they
 * fired; session windows are refused.
 */
import { describe, expect, it } from 'vitest'
import { session, sliding, tumbling, WindowJoin, type WindowAssigner } from '../../../processors/index.ts'
import { fc } from '../../../testing/index.ts'
import { all, expectSameLines, JOIN_CRASHES, joinPipeline, keyedLeft, line, RATE, RUNS, runJoin, SEED, side, type Item, type Side } from './fixtures/two-sides.ts'

interface Pair {
  l: string
  r: string
  start: number
}

/** The windows of `size` starting every `slide` ms (from 0) that contain `t`. */
function windowsOf(t: number, size: number, slide: number): number[] {
  const starts: number[] = []
  for (let k = Math.floor((t - size) / slide); k <= Math.floor(t / slide); k++) {
    const start = k * slide
    if (start <= t && t < start + size) starts.push(start)
  }
  return starts
}

function reference(left: Side, right: Side, size: number, slide: number): string[] {
  const out: string[] = []
  for (const l of all(left)) {
    for (const r of all(right)) {
      if (l.key !== r.key) continue
      const shared = windowsOf(r.t, size, slide)
      for (const start of windowsOf(l.t, size, slide)) if (shared.includes(start)) out.push(line(l.key, start + size - 1, { l: l.id, r: r.id, start }))
    }
  }
  return out
}

const windowJoin = (window: WindowAssigner) => () => new WindowJoin<Item, Item, Pair>({ window, join: (l, r, w) => ({ l: l.id, r: r.id, start: w.start }) })

/** A tumbling or a sliding window of 10-80 ms (sliding: 1-4 windows per record); the inputs advance by 0-5 ms a record, so the watermark passes window ends a few ms at a time. */
const windows = fc.oneof(
  fc.integer({ min: 10, max: 80 }).map((size) => ({ size, slide: size })),
  fc.tuple(fc.integer({ min: 5, max: 20 }), fc.integer({ min: 1, max: 4 })).map(([slide, n]) => ({ size: slide * n, slide })),
)

describe('WindowJoin', () => {
  it('emits the pairs of each key and window of a plain loop, at the window end - 1, whatever the arrival order', async () => {
    await fc.assert(
      fc.asyncProperty(side('L', 4, 40, { step: 5 }), side('R', 4, 40, { step: 5 }), windows, async (left, right, { size, slide }) => {
        const window = size === slide ? tumbling(size) : sliding(size, slide)
        const { out, state, late } = await runJoin<Pair>(joinPipeline('window-join', left, right, windowJoin(window), { ratePerSecond: RATE }))
        expectSameLines(out.map((r) => line(r.key, r.timestamp, r.value)), reference(left, right, size, slide))
        expect(late).toBe(0)
        expect(keyedLeft(state, ['window-join.windows'])).toEqual({})
      }),
      { numRuns: RUNS, seed: SEED, endOnFailure: true },
    )
  }, 600_000)

  it('is exactly-once across crashes at every point of the checkpoint protocol', async () => {
    const [left, right] = fc.sample(fc.tuple(side('L', 3, 150, { min: 150 }), side('R', 3, 150, { min: 150 })), { seed: 5, numRuns: 1 })[0]!
    const { out, planned, crashed } = await runJoin<Pair>(joinPipeline('window-join-crash', left, right, windowJoin(sliding(40, 20)), { ratePerSecond: 2 * RATE }), JOIN_CRASHES)
    expect(crashed).toEqual(planned)
    const expected = reference(left, right, 40, 20)
    expect(expected.length).toBeGreaterThan(100)
    expectSameLines(out.map((r) => line(r.key, r.timestamp, r.value)), expected)
  }, 300_000)

  it('refuses session windows', () => {
    expect(() => new WindowJoin({ window: session(1_000), join: () => 1 })).toThrow(/window: must be tumbling\(size\) or sliding\(size, slide\), got session/)
  })
})
