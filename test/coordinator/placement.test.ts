import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { place, placeStandbys } from '../../coordinator/placement.ts'

const actors = (n: number): string[] => Array.from({ length: n }, (_, i) => `s/${i}`)

describe('placement', () => {
  it('places every actor on exactly one worker, balanced within one actor', () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 40 }), fc.integer({ min: 1, max: 6 }), (n, w) => {
        const workers = Array.from({ length: w }, (_, i) => `w${i}`)
        const a = place(actors(n), workers, new Map())
        expect([...a.keys()].sort()).toEqual(actors(n).sort())
        const loads = workers.map((wk) => [...a.values()].filter((x) => x === wk).length)
        expect(Math.max(...loads) - Math.min(...loads)).toBeLessThanOrEqual(1)
      }),
    )
  })

  it('stays balanced within one actor when workers join and leave one by one from any previous placement (10 actors on 2 → 3 workers was 5/5 → 4/4/2 with a ceil cap)', () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 40 }), fc.array(fc.integer({ min: 1, max: 6 }), { minLength: 1, maxLength: 8 }), (n, sizes) => {
        let current = new Map<string, string>()
        for (const w of sizes) {
          const workers = Array.from({ length: w }, (_, i) => `w${i}`)
          current = place(actors(n), workers, current)
          const loads = workers.map((wk) => [...current.values()].filter((x) => x === wk).length)
          expect(Math.max(...loads) - Math.min(...loads), `${n} actors on ${w} workers: ${loads}`).toBeLessThanOrEqual(1)
        }
      }),
    )
    const two = place(actors(10), ['a', 'b'], new Map())
    const three = place(actors(10), ['a', 'b', 'c'], two)
    expect(['a', 'b', 'c'].map((w) => [...three.values()].filter((x) => x === w).length).sort()).toEqual([3, 3, 4])
  })

  it('is sticky: a new worker takes only what balance requires, and actors of a gone worker move', () => {
    const first = place(actors(6), ['w1', 'w2'], new Map())
    const grown = place(actors(6), ['w1', 'w2', 'w3'], first)
    const moved = actors(6).filter((a) => grown.get(a) !== first.get(a))
    expect(moved).toHaveLength(2)
    expect(moved.every((a) => grown.get(a) === 'w3')).toBe(true)
    const shrunk = place(actors(6), ['w1', 'w3'], grown)
    for (const a of actors(6)) if (grown.get(a) !== 'w2') expect(shrunk.get(a)).toBe(grown.get(a))
    expect([...shrunk.values()].includes('w2')).toBe(false)
  })

  it('gives a worker that comes back the actors it held before it went away (its state dir has their stores), one worker at a time as a rolling upgrade does', () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 30 }), fc.integer({ min: 2, max: 5 }), (n, w) => {
        const workers = Array.from({ length: w }, (_, i) => `w${i}`)
        let current = place(actors(n), workers, new Map())
        const start = current
        for (const gone of workers) {
          // What the coordinator remembers: the actors of the worker that went away.
          const homes = new Map([...current].filter(([, x]) => x === gone))
          const without = place(actors(n), workers.filter((x) => x !== gone), current)
          current = place(actors(n), workers, without, new Map(), new Map(), new Map(), homes)
          for (const a of homes.keys()) expect(current.get(a), `${a} back on ${gone}`).toBe(gone)
        }
        // After every worker was replaced once, each actor is where it started: no full restore anywhere.
        expect(current).toEqual(start)
      }),
      { numRuns: 100 },
    )
  })

  it('never puts an actor on a worker it failed on while another exists, and still places it when it failed on all', () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 30 }), fc.integer({ min: 2, max: 5 }), fc.integer({ min: 0, max: 29 }), (n, w, pick) => {
        const workers = Array.from({ length: w }, (_, i) => `w${i}`)
        const before = place(actors(n), workers, new Map())
        const failing = actors(n)[pick % n]!
        const failedOn = [before.get(failing)!]
        const after = place(actors(n), workers, before, new Map(), new Map(), new Map([[failing, failedOn]]))
        expect([...after.keys()].sort()).toEqual(actors(n).sort())
        expect(failedOn).not.toContain(after.get(failing))
        // Every other actor stays where it was unless balance moved it for the failing one.
        const moved = actors(n).filter((a) => a !== failing && after.get(a) !== before.get(a))
        expect(moved.length).toBeLessThanOrEqual(1)
        const everywhere = place(actors(n), workers, before, new Map(), new Map(), new Map([[failing, workers]]))
        expect(workers).toContain(everywhere.get(failing))
      }),
      { numRuns: 200 },
    )
  })

  it('places n standbys per actor on other workers than its active one, sticky, and a moving actor goes to its standby', () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 30 }), fc.integer({ min: 1, max: 5 }), fc.integer({ min: 0, max: 2 }), (n, w, k) => {
        const workers = Array.from({ length: w }, (_, i) => `w${i}`)
        const active = place(actors(n), workers, new Map())
        const standbys = placeStandbys(actors(n), workers, active, new Map(), k)
        for (const a of actors(n)) {
          const list = k === 0 ? [] : standbys.get(a)!
          expect(list).toHaveLength(Math.min(k, w - 1))
          expect(list).not.toContain(active.get(a))
          expect(new Set(list).size).toBe(list.length)
        }
        // The same workers again: nothing moves.
        expect(placeStandbys(actors(n), workers, active, standbys, k)).toEqual(standbys)
      }),
    )
    const active = place(actors(6), ['w1', 'w2', 'w3'], new Map())
    const standbys = placeStandbys(actors(6), ['w1', 'w2', 'w3'], active, new Map(), 1)
    const gone = 'w2'
    const after = place(actors(6), ['w1', 'w3'], active, standbys)
    for (const a of actors(6).filter((x) => active.get(x) === gone)) expect(after.get(a)).toBe(standbys.get(a)![0])
  })

  it('spreads load: actors that move go heaviest first to the least-loaded worker, within the count balance', () => {
    fc.assert(
      fc.property(fc.array(fc.integer({ min: 0, max: 10_000 }), { minLength: 1, maxLength: 24 }), fc.integer({ min: 1, max: 5 }), (loads, w) => {
        const names = actors(loads.length)
        const workers = Array.from({ length: w }, (_, i) => `w${i}`)
        const load = new Map(names.map((a, i) => [a, loads[i]!]))
        const a = place(names, workers, new Map(), new Map(), load)
        expect([...a.keys()].sort()).toEqual([...names].sort())
        const counts = workers.map((wk) => [...a.values()].filter((x) => x === wk).length)
        expect(Math.max(...counts)).toBeLessThanOrEqual(Math.ceil(names.length / w))
        // Greedy heaviest-first: no worker exceeds the lightest worker's load by more than the heaviest single actor.
        const totals = workers.map((wk) => names.filter((n) => a.get(n) === wk).reduce((s, n) => s + load.get(n)!, 0))
        if (names.length >= w && names.length % w === 0) expect(Math.max(...totals) - Math.min(...totals)).toBeLessThanOrEqual(Math.max(...loads))
      }),
    )
    // Two hot actors and two cold ones on two workers: one hot one each, not both on one.
    const hot = new Map([['s/0', 900], ['s/1', 800], ['s/2', 5], ['s/3', 3]])
    const split = place(actors(4), ['w1', 'w2'], new Map(), new Map(), hot)
    expect(split.get('s/0')).not.toBe(split.get('s/1'))
    // Sticky still wins over load: with every actor where it was, nothing moves.
    const stay = new Map([['s/0', 'w1'], ['s/1', 'w1'], ['s/2', 'w2'], ['s/3', 'w2']])
    expect(place(actors(4), ['w1', 'w2'], stay, new Map(), hot)).toEqual(stay)
  })
})
