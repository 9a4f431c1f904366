import { describe, expect, it } from 'vitest'
import { Faults, SimulatedCrash, type CrashSpec } from '../../runtime/faults.ts'

/** The hit (1-based, over all calls) at which `faults` crashed, or undefined. */
function crashAt(faults: Faults, calls: Array<() => void>): number | undefined {
  for (const [i, call] of calls.entries()) {
    try {
      call()
    } catch (err) {
      if (err instanceof SimulatedCrash) return i + 1
      throw err
    }
  }
  return undefined
}

describe('crash plans', () => {
  it('counts hits of the planned point from the start by default', () => {
    const f = new Faults({ point: 'before-commit', hit: 3 }, 'throw')
    expect(crashAt(f, Array.from({ length: 5 }, () => () => f.point('before-commit')))).toBe(3)
  })

  it('afterPolls: hits count only once the sources polled that often; at source-poll the crash is at poll N + hit', () => {
    const f = new Faults({ point: 'before-commit', hit: 2, afterPolls: 3 }, 'throw')
    const calls = [
      () => f.point('before-commit'), () => f.point('source-poll'), () => f.point('before-commit'), () => f.point('source-poll'),
      () => f.point('source-poll'), () => f.point('before-commit'), () => f.point('mid-batch'), () => f.point('before-commit'),
    ]
    expect(crashAt(f, calls)).toBe(8)
    const g = new Faults({ point: 'source-poll', hit: 2, afterPolls: 4 }, 'throw')
    expect(crashAt(g, Array.from({ length: 10 }, () => () => g.point('source-poll')))).toBe(6)
  })

  it('afterRecords: hits count only once the named stage processed that many records, whatever other stages did', () => {
    const f = new Faults({ point: 'after-pipe-commit', hit: 1, afterRecords: { stage: 'sink', records: 100 } }, 'throw')
    const calls = [
      () => f.processed('count', 500), () => f.point('after-pipe-commit'), () => f.processed('sink', 64),
      () => f.point('after-pipe-commit'), () => f.processed('sink', 64), () => f.point('mid-batch'), () => f.point('after-pipe-commit'),
    ]
    expect(crashAt(f, calls)).toBe(7)
  })

  it('a counter never crashes and counts every point, so mid-batch is observed', () => {
    const f = Faults.counter()
    expect(f.armed).toBe(true)
    for (let i = 0; i < 5; i++) f.point('mid-batch')
    f.point('source-poll')
    expect([f.hitsOf('mid-batch'), f.hitsOf('source-poll'), f.hitsOf('before-commit')]).toEqual([5, 1, 0])
    expect(Faults.none().armed).toBe(false)
  })

  it('WEIR_CRASH_AT carries either place and round-trips; a malformed value is refused', () => {
    const specs: CrashSpec[] = [
      { point: 'mid-batch', hit: 2 },
      { point: 'source-poll', hit: 1, afterPolls: 5000 },
      { point: 'after-local-write', hit: 1, afterRecords: { stage: 'window-sink', records: 812 } },
    ]
    for (const spec of specs) {
      const env = Faults.envValue(spec)
      const g = Faults.fromEnv({ WEIR_CRASH_AT: env })
      expect(g.plan).toEqual(spec)
      expect(Faults.envValue(g.plan!)).toBe(env)
    }
    expect(Faults.envValue(specs[2]!)).toBe('after-local-write:1@window-sink:812')
    for (const bad of ['mid-batch', 'mid-batch:0', 'nowhere:1', 'mid-batch:1@', 'mid-batch:1@sink:', 'mid-batch:x']) {
      expect(() => Faults.fromEnv({ WEIR_CRASH_AT: bad }), bad).toThrow(/WEIR_CRASH_AT/)
    }
    expect(() => Faults.envValue({ point: 'mid-batch', hit: 1, afterPolls: 1, afterRecords: { stage: 'sink', records: 1 } })).toThrow(/one place/)
  })
})
