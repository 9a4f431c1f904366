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
})
