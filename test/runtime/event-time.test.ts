/**
 * Event time: watermarks travel in-band from the sources through keyed edges, an actor's
 * watermark is the minimum over its upstream writers, event-time timers fire once when it
 * passes them (all of them at the end of a bounded input), late records are counted and
 * can be routed to a side output, and all of it survives crashes.
 */
import { afterAll, describe, expect, it } from 'vitest'
import { Pipeline, Processor, type Context, type StreamRecord, type Timer } from '../../index.ts'
import { GeneratorSource } from '../../processors/index.ts'
import { CRASH_POINTS, readStageOutput, removeDir, runToCompletion, tempDataDir } from '../../testing/index.ts'

/** The crash points these pipelines reach: no processor of theirs publishes after commits ('before-publish', 'after-publish'). */
const POINTS = CRASH_POINTS.filter((p) => !p.endsWith('-publish'))

const dirs: string[] = []
function dir(): string {
  const d = tempDataDir('weir-event-time-')
  dirs.push(d)
  return d
}

const WINDOW = 100

/** Counts records per key in tumbling event-time windows, with the raw timer API. */
class WindowCount extends Processor<number, { window: number; count: number; watermarkAtFire: number }> {
  private readonly counts = this.state.map<number>('counts')
  onRecord(r: StreamRecord<number>, ctx: Context<{ window: number; count: number; watermarkAtFire: number }>): void {
    if (r.timestamp <= ctx.watermark) {
      ctx.emitTo('late', r.key, { value: r.value, timestamp: r.timestamp, watermark: ctx.watermark })
      return
    }
    const start = r.timestamp - (r.timestamp % WINDOW)
    this.counts.set(String(start), (this.counts.get(String(start)) ?? 0) + 1)
    ctx.timers.registerEventTime(start + WINDOW - 1)
  }
  override onTimer(t: Timer, ctx: Context<{ window: number; count: number; watermarkAtFire: number }>): void {
    expect(t.domain).toBe('event-time')
    const start = t.time - WINDOW + 1
    const count = this.counts.get(String(start))
    this.counts.delete(String(start))
    ctx.emit(t.key, { window: start, count: count ?? -1, watermarkAtFire: ctx.watermark })
  }
}

/**
 * Two source partitions with in-order event times (partition 1 runs behind partition 0),
 * keyed into three window actors. Record i of partition p: key k(i % 7), time 10_000 + i*3 + p.
 * With `late`, every 97th record of partition 0 is 500 ms behind: late at the window.
 */
function pipeline(count: number, late = false): Pipeline {
  const p = new Pipeline('event-time')
  p.source<number>('in', () => new GeneratorSource<number>({
    count,
    // Paced when testing lateness, so that many checkpoints (and marks) happen during the run.
    ratePerSecond: late ? 6_000 : undefined,
    generate: (i, part) => ({ key: `k${i % 7}`, value: i, timestamp: 10_000 + i * 3 + part - (late && part === 0 && i % 97 === 96 ? 500 : 0) }),
  }), { partitions: 2, watermarks: { maxOutOfOrdernessMs: 0, idleTimeoutMs: 0 } })
    .keyBy(3)
    .process('window', WindowCount, { sideOutputs: ['late'] })
  return p
}

function expectedWindows(count: number): Map<string, number> {
  const m = new Map<string, number>()
  for (let part = 0; part < 2; part++) {
    for (let i = 0; i < count; i++) {
      const t = 10_000 + i * 3 + part
      const k = `k${i % 7}|${t - (t % WINDOW)}`
      m.set(k, (m.get(k) ?? 0) + 1)
    }
  }
  return m
}

type WindowResult = { window: number; count: number; watermarkAtFire: number }

async function windows(p: Pipeline, d: string): Promise<Map<string, number>> {
  const out = await readStageOutput<WindowResult>(p, d, 'window')
  const m = new Map<string, number>()
  for (const r of out) {
    const k = `${r.key}|${r.value.window}`
    // Exactly once per window: a second firing would show here.
    expect(m.has(k), `window ${k} fired twice`).toBe(false)
    m.set(k, r.value.count)
    // A window fires when the watermark passed its end, and its result carries the end as event time.
    expect(r.value.watermarkAtFire).toBeGreaterThanOrEqual(r.value.window + WINDOW - 1)
    expect(r.timestamp).toBe(r.value.window + WINDOW - 1)
  }
  return m
}

describe('event time', () => {
  it('windows fire exactly once per key and window when the watermark passes them, with every on-time record', async () => {
    const d = dir()
    const p = pipeline(3000)
    const { result } = await runToCompletion(p, { dataDir: d, epochIntervalMs: 20 })
    expect(await windows(p, d)).toEqual(expectedWindows(3000))
    const late = Object.entries(result.stats).filter(([a]) => a.startsWith('window/')).reduce((n, [, s]) => n + s.late, 0)
    expect(late).toBe(0)
    // Watermarks reached the end of input on every actor.
    for (const s of Object.values(result.stats)) expect(s.watermark).toBe(Infinity)
  })

  it('the same windows after crashes at every point of the checkpoint protocol', async () => {
    const reference = expectedWindows(2000)
    for (const point of POINTS) {
      const d = dir()
      const p = pipeline(2000)
      await runToCompletion(p, { dataDir: d, epochIntervalMs: 15, crashes: [{ point, hit: 3 }, { point, hit: 7 }] })
      expect(await windows(p, d), `crash at ${point}`).toEqual(reference)
    }
  })

  it('late records are counted and routed to the side output; on-time ones still land in their windows', async () => {
    const d = dir()
    const p = pipeline(3000, true)
    // Small epochs: marks are written often, so a record 500 ms behind arrives behind one.
    const { result } = await runToCompletion(p, { dataDir: d, epochIntervalMs: 5, actorConfig: { maxBatch: 50 } })
    const lateOut = await readStageOutput<{ value: number; timestamp: number; watermark: number }>(p, d, 'window.late')
    const counted = Object.entries(result.stats).filter(([a]) => a.startsWith('window/')).reduce((n, [, s]) => n + s.late, 0)
    expect(lateOut.length).toBe(counted)
    expect(lateOut.length).toBeGreaterThan(0)
    for (const r of lateOut) {
      expect(r.value.value % 97).toBe(96)
      expect(r.value.timestamp).toBeLessThanOrEqual(r.value.watermark)
    }
    const fired = await windows(p, d)
    const total = [...fired.values()].reduce((a, b) => a + b, 0)
    // Every record is either in a window or in the late output: nothing lost, nothing doubled.
    expect(total + lateOut.length).toBe(6000)
  })
})

afterAll(() => {
  for (const d of dirs) removeDir(d)
})
