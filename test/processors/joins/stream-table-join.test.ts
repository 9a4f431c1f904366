/**
 * StreamTableJoin through a real embedded pipeline: each stream record joins the table row
 * of its key valid at its event time (the newest update at or before it; none after a
 * deletion), as a plain loop over the whole input finds it, whatever order the two inputs
 * arrive in and also across crashes; inner joins leave out records without a row; table
 * versions and waiting records are freed; a late stream record goes to the late output.
 */
import { describe, expect, it } from 'vitest'
import { StreamTableJoin } from '../../../processors/index.ts'
import { fc } from '../../../testing/index.ts'
import { all, expectSameLines, JOIN_CRASHES, joinPipeline, keyedLeft, line, RATE, RUNS, runJoin, SEED, side, type Item, type Side } from './fixtures/two-sides.ts'

interface Joined {
  s: string
  /** The row joined, as `<key>@<time>` of its update (ids of same-time updates may differ; their rows do not). */
  row: string | null
}

/** A table changelog of the side's records: the row of (key, time) is deleted for about one in four, the same for every update of that key and time. */
function asTable(side: Side): Side {
  return side.map((records) => records.map((r) => ({ ...r, del: (r.t * 31 + Number(r.key.slice(1))) % 4 === 0 })))
}

function reference(stream: Side, table: Side, inner: boolean): string[] {
  const out: string[] = []
  const updates = all(table)
  for (const s of all(stream)) {
    let valid: Item | undefined
    for (const u of updates) if (u.key === s.key && u.t <= s.t && (valid === undefined || u.t > valid.t)) valid = u
    const row = valid === undefined || valid.del === true ? null : `${valid.key}@${valid.t}`
    if (inner && row === null) continue
    out.push(line(s.key, s.t, { s: s.id, row }))
  }
  return out
}

/** Each key's newest update as the join keeps it at the end (none for a deletion). */
function finalTable(table: Side): Record<string, string[]> {
  const newest = new Map<string, Item>()
  for (const u of all(table)) if ((newest.get(u.key)?.t ?? -Infinity) <= u.t) newest.set(u.key, u)
  const kept = [...newest.values()].filter((u) => u.del !== true)
  return Object.fromEntries(kept.map((u) => [u.key, [`${u.key}@${u.t}`]]))
}

const streamTableJoin = (inner: boolean) => () => new StreamTableJoin<Item, Item, Joined>({ inner, join: (s, row) => ({ s: s.id, row: row === undefined ? null : `${row.key}@${row.t}` }) })

describe('StreamTableJoin', () => {
  it('joins each stream record with the row valid at its time, as a plain loop does, whatever the arrival order', async () => {
    await fc.assert(
      fc.asyncProperty(side('S', 4, 40), side('T', 4, 30), fc.boolean(), async (stream, rawTable, inner) => {
        const table = asTable(rawTable)
        const { out, state, late } = await runJoin<Joined>(joinPipeline('stream-table', stream, table, streamTableJoin(inner), { ratePerSecond: RATE }))
        expectSameLines(out.map((r) => line(r.key, r.timestamp, r.value)), reference(stream, table, inner))
        expect(late).toBe(0)
        // What stays is the table as of the end: each key's newest row, none for a deleted key.
        expect(keyedLeft(state, ['stream-table-join.waiting'])).toEqual({})
        const kept = Object.entries(state.keyed['stream-table-join.table'] ?? {}) as Array<[string, Array<{ t: number; row: Item | null }>]>
        expect(Object.fromEntries(kept.map(([key, versions]) => [key, versions.map((v) => `${v.row?.key}@${v.t}`)]))).toEqual(finalTable(table))
      }),
      { numRuns: RUNS, seed: SEED, endOnFailure: true },
    )
  }, 600_000)

  it('is exactly-once across crashes at every point of the checkpoint protocol', async () => {
    const [stream, rawTable] = fc.sample(fc.tuple(side('S', 3, 150, { min: 150 }), side('T', 3, 60, { min: 60 })), { seed: 11, numRuns: 1 })[0]!
    const table = asTable(rawTable)
    const { out, planned, crashed } = await runJoin<Joined>(joinPipeline('stream-table-crash', stream, table, streamTableJoin(false), { ratePerSecond: 2 * RATE }), JOIN_CRASHES)
    expect(crashed).toEqual(planned)
    const expected = reference(stream, table, false)
    expect(expected.filter((l) => !l.endsWith('"row":null}]')).length).toBeGreaterThan(100)
    expectSameLines(out.map((r) => line(r.key, r.timestamp, r.value)), expected)
  }, 300_000)

  it('sees a table update that comes after a stream record but is older in event time, and not one that is newer', async () => {
    // The stream record at 1000 comes first; the table updates at 990 (before it) and 1010 (after it) come later.
    const stream: Side = [[{ key: 'k0', id: 'S:0:0', t: 1_000 }, { key: 'k0', id: 'S:0:1', t: 1_020 }], []]
    const table: Side = [[{ key: 'k0', id: 'T:0:0', t: 990 }, { key: 'k0', id: 'T:0:1', t: 1_010 }, { key: 'k0', id: 'T:0:2', t: 1_015, del: true }], []]
    const { out } = await runJoin<Joined>(joinPipeline('stream-table-order', stream, table, streamTableJoin(false), { pause: { side: 'right', partition: 0, index: 0, ms: 300 } }))
    expect(out.map((r) => [r.value.s, r.value.row, r.timestamp])).toEqual([['S:0:0', 'k0@990', 1_000], ['S:0:1', null, 1_020]])
  }, 60_000)

  it('drops a stream record that comes at or below the watermark and sends it to the late side output', async () => {
    const stream: Side = [[{ key: 'k0', id: 'S:0:0', t: 1_000 }, { key: 'k0', id: 'S:0:1', t: 1_200 }, { key: 'k0', id: 'S:0:2', t: 700 }], []]
    const table: Side = [[{ key: 'k0', id: 'T:0:0', t: 500 }, { key: 'k0', id: 'T:0:1', t: 1_300 }], []]
    const p = joinPipeline('stream-table-late', stream, table, streamTableJoin(true), { stage: { sideOutputs: ['late'] }, pause: { side: 'left', partition: 0, index: 2, ms: 600 } })
    const { out, lateRecords, state } = await runJoin<Joined>(p)
    expect(out.map((r) => [r.value.s, r.value.row])).toEqual([['S:0:0', 'k0@500'], ['S:0:1', 'k0@500']])
    expect(lateRecords.map((r) => r.value.id)).toEqual(['S:0:2'])
    expect(Object.values(state.actor).map((a) => a['stream-table-join.dropped']).filter((n) => n !== undefined)).toEqual([1])
  }, 60_000)
})
