/**
 * MapState against a plain Map per key: generated records of one to four sets, deletes and
 * clears over a few keys, some of which throw after changing the map (their changes must
 * vanish), with a write cache of 3 entries so that maps are evicted and loaded back from
 * RocksDB between records, checkpoints every few milliseconds (a map changed in place
 * within a checkpoint must reach the store as of its barrier), and crashes at generated
 * points on the way. After every record the processor emits its map's entries; the output
 * must equal what the model gives, and so must the committed maps at the end. Also: a
 * stored map's entries are frozen, and a value msgpack cannot hold is refused naming
 * its map key.
 */
import fc from 'fast-check'
import { afterAll, describe, expect, it } from 'vitest'
import { Pipeline, Processor, WeirError, policy, type Context, type MapState, type StreamRecord } from '../../../index.ts'
import { GeneratorSource } from '../../../processors/index.ts'
import { CRASH_POINTS, readCommittedState, readDeadLetters, readStageOutput, removeDir, runToCompletion, tempDataDir } from '../../../testing/index.ts'

const RUNS = Number(process.env.WEIR_MAP_STATE_RUNS ?? 6)
const dirs: string[] = []
afterAll(() => dirs.forEach(removeDir))

interface Op {
  op: 'set' | 'delete' | 'clear'
  mapKey: string
  n: number
}

/** One record: its ops in order, then a throw when `fails`. */
interface Step {
  i: number
  key: string
  ops: Op[]
  fails: boolean
}

type Entries = Array<[string, { n: number; at: number }]>

const byKey = ([a]: [string, unknown], [b]: [string, unknown]): number => (a < b ? -1 : a > b ? 1 : 0)

class Mapper extends Processor<Step, Entries> {
  private readonly map = this.state.map<{ n: number; at: number }>('m')
  onRecord(r: StreamRecord<Step>, ctx: Context<Entries>): void {
    for (const { op, mapKey, n } of r.value.ops) {
      if (op === 'set') this.map.set(mapKey, { n, at: r.value.i })
      else if (op === 'delete') this.map.delete(mapKey)
      else this.map.clear()
    }
    if (r.value.fails) throw new Error(`record ${r.value.i} fails after its ops`)
    const entries = this.map.entries().sort(byKey)
    const first = entries[0]?.[1]
    if (first !== undefined && !Object.isFrozen(first)) throw new Error('a stored map entry is not frozen')
    if (entries.length !== this.map.size) throw new Error(`size ${this.map.size} but ${entries.length} entries`)
    // Keys a plain object inherits are not entries.
    if (!this.map.has('constructor') && this.map.get('constructor') !== undefined) throw new Error("get('constructor') of a map without it is not undefined")
    ctx.emit(r.key, entries.map(([k, v]) => [k, { n: v.n, at: v.at }]))
  }
}

const steps = fc.array(fc.record({
  key: fc.constantFrom('k1', 'k2', 'k3', 'k4', 'k5'),
  ops: fc.array(fc.record({
    op: fc.constantFrom('set', 'set', 'set', 'delete', 'clear'),
    // Not '__proto__': msgpackr decodes that key as '__proto_', so set refuses it (the test below).
    mapKey: fc.constantFrom('a', 'b', 'c', 'd', 'constructor', 'toString'),
    n: fc.integer({ min: 0, max: 1000 }),
  }), { minLength: 1, maxLength: 4 }),
  fails: fc.integer({ min: 0, max: 9 }).map((x) => x < 2),
}), { minLength: 20, maxLength: 300, size: 'max' })

describe('MapState', () => {
  it(`equals a plain Map per key across in-place changes, failed records, evictions, reloads and crashes (${RUNS} cases)`, async () => {
    let cases = 0
    let records = 0
    let failed = 0
    let crashes = 0
    await fc.assert(fc.asyncProperty(steps, fc.constantFrom(...CRASH_POINTS), fc.integer({ min: 1, max: 6 }), async (list: Array<Omit<Step, 'i'>>, point, hit) => {
      const dataDir = tempDataDir('weir-map-state-')
      dirs.push(dataDir)
      const p = new Pipeline('map-state')
      p.source<Step>('steps', () => new GeneratorSource<Step>({ count: list.length, generate: (i) => ({ key: list[i]!.key, value: { ...list[i]!, i } }) }), { partitions: 1 })
        .process('mapper', Mapper, { onError: policy.deadLetter() })
      const run = await runToCompletion(p, { dataDir, epochIntervalMs: 5, actorConfig: { cacheEntries: 3, maxDirty: 2, maxBatch: 7 }, crashes: [{ point, hit }] })
      crashes += run.crashed.length
      const out = await readStageOutput<Entries>(p, dataDir, 'mapper')
      const model = new Map<string, Map<string, { n: number; at: number }>>()
      const expected: Entries[] = []
      list.forEach((s, i) => {
        if (s.fails) return
        const m = model.get(s.key) ?? new Map<string, { n: number; at: number }>()
        model.set(s.key, m)
        for (const o of s.ops) {
          if (o.op === 'set') m.set(o.mapKey, { n: o.n, at: i })
          else if (o.op === 'delete') m.delete(o.mapKey)
          else m.clear()
        }
        expected.push([...m].sort(byKey))
      })
      expect(out.map((r) => r.value)).toEqual(expected)
      const fails = list.filter((s) => s.fails).length
      expect(await readDeadLetters(p, dataDir, 'mapper')).toHaveLength(fails)
      // An empty map is no stored value.
      const stored = (await readCommittedState(p, dataDir, 'mapper')).keyed.m ?? {}
      const modelStored = Object.fromEntries([...model].filter(([, m]) => m.size > 0).map(([k, m]) => [k, Object.fromEntries(m)]))
      expect(stored).toEqual(modelStored)
      cases++
      records += list.length
      failed += fails
      removeDir(dataDir)
    }), { numRuns: RUNS })
    console.log(`map state property: ${JSON.stringify({ cases, records, failed, crashes })}`)
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

  it('a map emptied one delete at a time, within a checkpoint or across them, is no stored value', async () => {
    // Records of key e: set a, b, c in one record, then delete them one per record; key f
    // does it all in one record. One long checkpoint: every change is to the same copy.
    const plan: Array<{ key: string; ops: Op[] }> = [
      { key: 'e', ops: ['a', 'b', 'c'].map((mapKey) => ({ op: 'set', mapKey, n: 1 })) },
      ...['a', 'b', 'c'].map((mapKey) => ({ key: 'e', ops: [{ op: 'delete' as const, mapKey, n: 0 }] })),
      { key: 'f', ops: [...['a', 'b'].map((mapKey) => ({ op: 'set' as const, mapKey, n: 1 })), ...['b', 'a'].map((mapKey) => ({ op: 'delete' as const, mapKey, n: 0 }))] },
      { key: 'g', ops: [{ op: 'set', mapKey: 'a', n: 1 }] },
    ]
    for (const epochIntervalMs of [60_000, 1]) {
      const dataDir = tempDataDir('weir-map-state-')
      dirs.push(dataDir)
      const p = new Pipeline('map-state-empty')
      p.source<Step>('steps', () => new GeneratorSource<Step>({ count: plan.length, generate: (i) => ({ key: plan[i]!.key, value: { ...plan[i]!, i, fails: false } }) }), { partitions: 1 })
        .process('mapper', Mapper, { onError: policy.failStop() })
      await runToCompletion(p, { dataDir, epochIntervalMs })
      expect((await readStageOutput<Entries>(p, dataDir, 'mapper')).map((r) => r.value.length)).toEqual([3, 2, 1, 0, 0, 1])
      expect((await readCommittedState(p, dataDir, 'mapper')).keyed.m).toEqual({ g: { a: { n: 1, at: 5 } } })
    }
  })
})
