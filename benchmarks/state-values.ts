/**
 * What keeping state values safe from user code costs: a keyed update loop (get, build the
 * next value, set) over 100k keys, for value shapes from a number to a window's open panes,
 * with each way of protecting stored values measured against storing the reference as is
 * (the ceiling: no protection). weir freezes deeply on set (runtime/values.ts); the peers
 * are a copy on set and on get (structuredClone) and msgpack on set and on get (what a store
 * that keeps bytes does). Prints one JSON line on stdout.
 *
 * @example
 * npm run bench:state-values
 * node --import tsx benchmarks/state-values.ts --updates 2000000
 */
import { parseArgs } from 'node:util'
import { Packr } from 'msgpackr'
import { freezeLoaded, freezeStateValue } from '../runtime/values.ts'
import { printResult, startRunInfo } from './lib/run-info.ts'
import { progress, round } from './lib/stats.ts'

const { values: args } = parseArgs({ options: { updates: { type: 'string', default: '1000000' }, keys: { type: 'string', default: '100000' } } })
const UPDATES = Number(args.updates)
const KEYS = Number(args.keys)
const info = startRunInfo(['runtime'])
const packr = new Packr({ useRecords: false, moreTypes: false, mapsAsObjects: true })

/** How a store keeps a value: what `set` stores and what `get` returns. */
interface Strategy {
  set(v: unknown): unknown
  get(stored: unknown): unknown
}

const strategies: Record<string, Strategy> = {
  reference: { set: (v) => v, get: (s) => s },
  freeze: {
    set: (v) => {
      const r = freezeStateValue(v)
      if (!('value' in r)) throw new Error(r.problem.reason)
      return r.value
    },
    get: (s) => s,
  },
  copy: { set: (v) => structuredClone(v), get: (s) => structuredClone(s) },
  msgpack: { set: (v) => packr.pack(v), get: (s) => packr.unpack(s as Buffer) },
}

/** Value shapes: the next value is built from the previous one without changing it. */
const shapes: Record<string, { first: () => unknown; next: (prev: unknown, i: number) => unknown }> = {
  number: { first: () => 0, next: (p, _i) => (p as number) + 1 },
  record: {
    first: () => ({ n: 0, last: 0, recent: [] as number[] }),
    next: (p, i) => {
      const v = p as { n: number; last: number; recent: number[] }
      return { n: v.n + 1, last: i, recent: [...v.recent.slice(-2), i] }
    },
  },
  panes: {
    first: () => ({}),
    next: (p, i) => {
      const panes = p as Record<string, { start: number; end: number; acc: { sum: number; n: number } }>
      const start = String(Math.floor(i / 50_000) * 60_000)
      const old = panes[start]
      const next = { ...panes, [start]: { start: Number(start), end: Number(start) + 60_000, acc: { sum: (old?.acc.sum ?? 0) + i, n: (old?.acc.n ?? 0) + 1 } } }
      const keys = Object.keys(next)
      if (keys.length > 3) delete next[keys[0]!]
      return next
    },
  },
}

function run(strategy: Strategy, shape: (typeof shapes)[string]): number {
  const store = new Map<number, unknown>()
  const started = performance.now()
  for (let i = 0; i < UPDATES; i++) {
    const key = (i * 7919) % KEYS
    const stored = store.get(key)
    const prev = stored === undefined ? shape.first() : strategy.get(stored)
    store.set(key, strategy.set(shape.next(prev, i)))
  }
  return UPDATES / ((performance.now() - started) / 1000)
}

const result: Record<string, unknown> = { benchmark: 'state-values', date: new Date().toISOString().slice(0, 10), updates: UPDATES, keys: KEYS }
for (const [shapeName, shape] of Object.entries(shapes)) {
  // A warm-up round, then the best of three per strategy, interleaved so load changes hit all alike.
  for (const s of Object.values(strategies)) run(s, shape)
  const best: Record<string, number> = {}
  for (let round3 = 0; round3 < 3; round3++) {
    for (const [name, s] of Object.entries(strategies)) best[name] = Math.max(best[name] ?? 0, run(s, shape))
  }
  for (const [name, perSecond] of Object.entries(best)) {
    result[`${shapeName}_${name}_per_s`] = Math.round(perSecond)
    if (name !== 'reference') result[`${shapeName}_${name}_ratio`] = round(perSecond / best.reference!)
  }
  progress(`${shapeName}: ${Object.entries(best).map(([n, v]) => `${n} ${Math.round(v).toLocaleString('en')}/s`).join(', ')}`)
}
// Values read back from the store are frozen too: their cost per load.
const loaded = packr.pack(shapes.record!.next(shapes.record!.first(), 1))
const t = performance.now()
for (let i = 0; i < UPDATES; i++) freezeLoaded(packr.unpack(loaded))
result.record_load_freeze_per_s = Math.round(UPDATES / ((performance.now() - t) / 1000))
printResult(result, info)
