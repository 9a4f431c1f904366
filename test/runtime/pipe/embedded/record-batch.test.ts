import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import type { PipeRecord, StoredRecord } from '../../../../runtime/pipe/pipe.ts'
import { BatchCursor, RecordBatchBuilder, SparseBatchBuilder, type StoredBatch } from '../../../../runtime/pipe/embedded/record-batch.ts'
import { asBytes, outgoingRecordArb, pipeRecordArb, plainRecord } from '../../../support/pipe-records.ts'

const RUNS = Number(process.env.WEIR_RECORD_BATCH_PROPERTY_RUNS ?? 200)

const recordArb = pipeRecordArb({ keyBytes: 40, valueBytes: 200, headerNameLength: 10, headerBytes: 20, headers: 3 })
const plain = plainRecord

describe('embedded record batches: BatchCursor', () => {
  it('reads dense and sparse batches from any offset, in takes of any size, as they were written (records decoded as taken)', () => {
    fc.assert(
      fc.property(
        fc.array(fc.record({ sparse: fc.boolean(), gaps: fc.array(fc.nat(3), { minLength: 1, maxLength: 30, size: 'max' }) }), { minLength: 1, maxLength: 6 }),
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

  it('writes a key or value given as a string as its UTF-8 bytes', () => {
    const outgoing = outgoingRecordArb({ keyBytes: 100, valueBytes: 300, headerNameLength: 10, headerBytes: 20, headers: 2 })
    fc.assert(
      fc.property(fc.array(outgoing, { minLength: 1, maxLength: 30, size: 'max' }), (records) => {
        const [text, bytes] = [new RecordBatchBuilder(64), new RecordBatchBuilder(64)]
        for (const r of records) {
          text.add(r)
          bytes.add(asBytes(r))
        }
        expect(text.finish(7).map((b) => [...b.data])).toEqual(bytes.finish(7).map((b) => [...b.data]))
      }),
      { numRuns: RUNS },
    )
  })

  it('reads a header named __proto__ back as a header (found by the full-size generator, seed 1319475258)', () => {
    const headers: Record<string, Buffer> = {}
    Object.defineProperty(headers, '__proto__', { value: Buffer.from('p'), enumerable: true, writable: true, configurable: true })
    headers.other = Buffer.from('o')
    const b = new RecordBatchBuilder(64)
    b.add({ key: null, value: Buffer.from('v'), timestamp: 1, headers })
    const read: StoredRecord[] = []
    new BatchCursor(b.finish(1).map((s) => ({ data: s.data, base: 0 })), 0).take(read, 10)
    expect(Object.keys(read[0]!.headers!)).toEqual(['__proto__', 'other'])
    expect(Object.getOwnPropertyDescriptor(read[0]!.headers!, '__proto__')?.value).toEqual(Buffer.from('p'))
  })
})
