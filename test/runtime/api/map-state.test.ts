/**
 * MapState against a plain Map per key: generated sets, deletes and clears over a few keys,
 * with a write cache of 3 entries so that maps are evicted and loaded back from RocksDB
 * between records, and crashes at generated points on the way. After every operation the
 * processor emits its map's entries; the output must equal what the model gives. Also: a
 * stored map and its entries are frozen, and a value msgpack cannot hold is refused naming
 * its map key.
 */
import fc from 'fast-check'
import { afterAll, describe, expect, it } from 'vitest'
import { Pipeline, Processor, WeirError, policy, type Context, type MapState, type StreamRecord } from '../../../index.ts'
import { GeneratorSource } from '../../../processors/index.ts'
import { CRASH_POINTS, readStageOutput, removeDir, runToCompletion, tempDataDir } from '../../../testing/index.ts'

const RUNS = Number(process.env.WEIR_MAP_STATE_RUNS ?? 6)
const dirs: string[] = []
afterAll(() => dirs.forEach(removeDir))

interface Op {
  i: number
  key: string
  op: 'set' | 'delete' | 'clear'
  mapKey: string
  n: number
}

class Mapper extends Processor<Op, Array<[string, { n: number; at: number }]>> {
  private readonly map = this.state.map<{ n: number; at: number }>('m')
  onRecord(r: StreamRecord<Op>, ctx: Context<Array<[string, { n: number; at: number }]>>): void {
    const { op, mapKey, n } = r.value
    if (op === 'set') this.map.set(mapKey, { n, at: r.value.i })
    else if (op === 'delete') this.map.delete(mapKey)
    else this.map.clear()
    const entries = this.map.entries().sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
    const first = entries[0]?.[1]
    if (first !== undefined && !Object.isFrozen(first)) throw new Error('a stored map entry is not frozen')
    // Keys a plain object inherits are not entries.
    if (!this.map.has('constructor') && this.map.get('constructor') !== undefined) throw new Error("get('constructor') of a map without it is not undefined")
    ctx.emit(r.key, entries.map(([k, v]) => [k, { n: v.n, at: v.at }]))
  }
}

const ops = fc.array(fc.record({
  key: fc.constantFrom('k1', 'k2', 'k3', 'k4', 'k5'),
  op: fc.constantFrom('set', 'set', 'set', 'delete', 'clear'),
  // Not '__proto__': msgpackr decodes that key as '__proto_', so set refuses it (the test below).
  mapKey: fc.constantFrom('a', 'b', 'c', 'd', 'constructor', 'toString'),
  n: fc.integer({ min: 0, max: 1000 }),
}), { minLength: 20, maxLength: 300, size: 'max' })

describe('MapState', () => {
  it(`equals a plain Map per key across evictions, reloads and crashes (${RUNS} cases)`, async () => {
    let cases = 0
    let operations = 0
    let crashes = 0
    await fc.assert(fc.asyncProperty(ops, fc.constantFrom(...CRASH_POINTS), fc.integer({ min: 1, max: 6 }), async (list: Array<Omit<Op, 'i'>>, point, hit) => {
      const dataDir = tempDataDir('weir-map-state-')
      dirs.push(dataDir)
      const p = new Pipeline('map-state')
      p.source<Op>('ops', () => new GeneratorSource<Op>({ count: list.length, generate: (i) => ({ key: list[i]!.key, value: { ...list[i]!, i } }) }), { partitions: 1 })
        .process('mapper', Mapper)
      const run = await runToCompletion(p, { dataDir, epochIntervalMs: 5, actorConfig: { cacheEntries: 3, maxDirty: 2, maxBatch: 7 }, crashes: [{ point, hit }] })
      crashes += run.crashed.length
      const out = await readStageOutput<Array<[string, { n: number; at: number }]>>(p, dataDir, 'mapper')
      const model = new Map<string, Map<string, { n: number; at: number }>>()
      const expected = list.map((o, i) => {
        const m = model.get(o.key) ?? new Map<string, { n: number; at: number }>()
        model.set(o.key, m)
        if (o.op === 'set') m.set(o.mapKey, { n: o.n, at: i })
        else if (o.op === 'delete') m.delete(o.mapKey)
        else m.clear()
        return [...m].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
      })
      expect(out.map((r) => r.value)).toEqual(expected)
      cases++
      operations += list.length
      removeDir(dataDir)
    }), { numRuns: RUNS })
    console.log(`map state property: ${JSON.stringify({ cases, operations, crashes })}`)
    expect(cases).toBe(RUNS)
    expect(crashes).toBeGreaterThan(0)
  }, 300_000)

  /** The message and cause of the run's failure when one record's `set` calls what `use` does with its map. */
  async function setFailure(name: string, use: (map: MapState<unknown>, value: number) => void): Promise<string> {
    class Setter extends Processor<number, number> {
      private readonly map = this.state.map<unknown>('m')
      onRecord(r: StreamRecord<number>, ctx: Context<number>): void {
        use(this.map, r.value)
        ctx.emit(r.key, this.map.size)
      }
    }
    const dataDir = tempDataDir('weir-map-state-')
    dirs.push(dataDir)
    const p = new Pipeline(name)
    p.source<number>('n', () => new GeneratorSource<number>({ count: 1, generate: (i) => ({ key: 'k', value: i }) }), { partitions: 1 }).process('set', Setter, { onError: policy.failStop() })
    const err = await runToCompletion(p, { dataDir }).then(() => undefined, (e: unknown) => e)
    expect(err).toBeInstanceOf(WeirError)
    return `${(err as Error).message} ${String((err as Error).cause)}`
  }

  it('refuses a value msgpack cannot hold, naming its map key, and keeps the map as it was', async () => {
    const text = await setFailure('map-state-bad', (map, value) => {
      map.set('ok', value)
      map.set('bad.key', { inner: [1, new Map()] })
    })
    expect(text).toContain("state 'm'.set")
    // A map key that is not an identifier is quoted, so the path names one field.
    expect(text).toContain('value["bad.key"].inner[1] is a Map')
  })

  it("refuses the map key '__proto__', which msgpack would give back as '__proto_'", async () => {
    const text = await setFailure('map-state-proto', (map, value) => map.set('__proto__', value))
    expect(text).toContain("state 'm'.set")
    expect(text).toContain('value.__proto__ is a key msgpack does not give back')
  })
})
