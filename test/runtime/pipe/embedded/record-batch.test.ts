import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import type { PipeRecord, StoredRecord } from '../../../../runtime/pipe/pipe.ts'
import { BatchCursor, RecordBatchBuilder, SparseBatchBuilder, type StoredBatch } from '../../../../runtime/pipe/embedded/record-batch.ts'

const RUNS = Number(process.env.WEIR_RECORD_BATCH_PROPERTY_RUNS ?? 200)

const recordArb = fc.record({
  key: fc.option(fc.uint8Array({ maxLength: 40 }).map((a) => Buffer.from(a)), { nil: null }),
  value: fc.option(fc.uint8Array({ maxLength: 200 }).map((a) => Buffer.from(a)), { nil: null }),
  timestamp: fc.integer({ min: 0, max: 2 ** 45 }),
  headers: fc.option(fc.dictionary(fc.string({ minLength: 1, maxLength: 10 }), fc.uint8Array({ maxLength: 20 }).map((a) => Buffer.from(a)), { maxKeys: 3 }), { nil: undefined }),
})

function plain(r: PipeRecord & { offset: number }): unknown {
  const headers = r.headers === undefined || Object.keys(r.headers).length === 0 ? undefined : Object.fromEntries(Object.entries(r.headers).map(([k, v]) => [k, [...v]]))
  return { offset: r.offset, key: r.key === null ? null : [...r.key], value: r.value === null ? null : [...r.value], timestamp: r.timestamp, headers }
}

describe('embedded record batches: BatchCursor', () => {
  it('reads dense and sparse batches from any offset, in takes of any size, as they were written (records decoded as taken)', () => {
    fc.assert(
      fc.property(
        fc.array(fc.record({ sparse: fc.boolean(), gaps: fc.array(fc.nat(3), { minLength: 1, maxLength: 30 }) }), { minLength: 1, maxLength: 6 }),
        fc.array(recordArb, { minLength: 1, maxLength: 40, size: 'max' }),
        fc.nat(200),
        fc.array(fc.integer({ min: 1, max: 9 }), { minLength: 1, maxLength: 8 }),
        (layout, pool, fromAt, takes) => {
          // Batches back to back; a sparse one (compaction's output) leaves gaps between offsets.
          const batches: StoredBatch[] = []
          const written: Array<PipeRecord & { offset: number }> = []
          let offset = 100
          for (const { sparse, gaps } of layout) {
            if (sparse) {
              const b = new SparseBatchBuilder()
              for (const gap of gaps) {
                offset += gap
                const r = pool[written.length % pool.length]!
                b.add(offset, r)
                written.push({ ...r, offset: offset++ })
              }
              for (const s of b.finish(1)) batches.push({ data: s.data, base: s.base })
            } else {
              const b = new RecordBatchBuilder(64)
              const base = offset
              for (let i = 0; i < gaps.length; i++) {
                const r = pool[written.length % pool.length]!
                b.add(r)
                written.push({ ...r, offset: offset++ })
              }
              for (const s of b.finish(1)) batches.push({ data: s.data, base })
            }
          }
          const from = 100 + fromAt
          const cursor = new BatchCursor(batches, from)
          expect(cursor.remaining).toBe(written.length)
          const read: StoredRecord[] = []
          for (let i = 0; ; i++) if (cursor.take(read, takes[i % takes.length]!) === 0) break
          expect(cursor.remaining).toBe(0)
          expect(read.map(plain)).toEqual(written.filter((r) => r.offset >= from).map(plain))
        },
      ),
      { numRuns: RUNS },
    )
  })
})
