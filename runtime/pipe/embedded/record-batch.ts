/**
 * The embedded log's on-disk record batch: many records in one RocksDB value, so an
 * append costs one put per partition per commit, not one per record.
 *
 * Layout: u32 count | f64 appendTime | records, each:
 *   f64 timestamp | i32 keyLen (-1 = null) | key | i32 valueLen (-1 = null) | value
 *   | u16 headerCount | (u16 nameLen | name | u32 len | bytes)*
 */
import type { PipeRecord, StoredRecord } from '../pipe.ts'

const HEADER = 12

/** Encodes records into a growing buffer as they are sent, so a commit only slices. */
export class RecordBatchBuilder {
  private buf: Buffer
  private used = HEADER
  count = 0

  constructor(initial = 64 * 1024) {
    this.buf = Buffer.allocUnsafe(initial)
  }

  get byteLength(): number {
    return this.used
  }

  add(r: PipeRecord): void {
    const keyLen = r.key === null ? 0 : r.key.length
    const valueLen = r.value === null ? 0 : r.value.length
    let need = 8 + 4 + keyLen + 4 + valueLen + 2
    const headers = r.headers
    let names: string[] | undefined
    if (headers !== undefined) {
      names = Object.keys(headers)
      for (const n of names) need += 2 + Buffer.byteLength(n) + 4 + headers[n]!.length
    }
    this.reserve(need)
    const b = this.buf
    let o = this.used
    b.writeDoubleLE(r.timestamp, o); o += 8
    if (r.key === null) { b.writeInt32LE(-1, o); o += 4 } else { b.writeInt32LE(keyLen, o); o += 4; r.key.copy(b, o); o += keyLen }
    if (r.value === null) { b.writeInt32LE(-1, o); o += 4 } else { b.writeInt32LE(valueLen, o); o += 4; r.value.copy(b, o); o += valueLen }
    b.writeUInt16LE(names?.length ?? 0, o); o += 2
    if (names !== undefined) {
      for (const n of names) {
        const nl = b.write(n, o + 2); b.writeUInt16LE(nl, o); o += 2 + nl
        const v = headers![n]!
        b.writeUInt32LE(v.length, o); o += 4; v.copy(b, o); o += v.length
      }
    }
    this.used = o
    this.count++
  }

  /** The finished batch; the builder is reset for reuse. */
  finish(appendTime: number): Buffer {
    this.buf.writeUInt32LE(this.count, 0)
    this.buf.writeDoubleLE(appendTime, 4)
    const out = Buffer.from(this.buf.subarray(0, this.used))
    this.used = HEADER
    this.count = 0
    return out
  }

  private reserve(n: number): void {
    if (this.used + n <= this.buf.length) return
    let size = this.buf.length * 2
    while (size < this.used + n) size *= 2
    const next = Buffer.allocUnsafe(size)
    this.buf.copy(next, 0, 0, this.used)
    this.buf = next
  }
}

export function batchCount(batch: Buffer): number {
  return batch.readUInt32LE(0)
}

export function batchAppendTime(batch: Buffer): number {
  return batch.readDoubleLE(4)
}

/**
 * Decodes the records of a batch whose first record has offset `base`, skipping those
 * before `from` and stopping after `max`. Keys and values are views into `batch`.
 */
export function decodeBatch(batch: Buffer, base: number, from: number, max: number, out: StoredRecord[]): void {
  const count = batch.readUInt32LE(0)
  let o = HEADER
  for (let i = 0; i < count && out.length < max; i++) {
    const timestamp = batch.readDoubleLE(o); o += 8
    const kl = batch.readInt32LE(o); o += 4
    const key = kl < 0 ? null : batch.subarray(o, o + kl); if (kl > 0) o += kl
    const vl = batch.readInt32LE(o); o += 4
    const value = vl < 0 ? null : batch.subarray(o, o + vl); if (vl > 0) o += vl
    const hc = batch.readUInt16LE(o); o += 2
    let headers: Record<string, Buffer> | undefined
    if (hc > 0) {
      headers = {}
      for (let h = 0; h < hc; h++) {
        const nl = batch.readUInt16LE(o); o += 2
        const name = batch.toString('utf8', o, o + nl); o += nl
        const len = batch.readUInt32LE(o); o += 4
        headers[name] = batch.subarray(o, o + len); o += len
      }
    }
    const offset = base + i
    if (offset < from) continue
    const rec: StoredRecord = { offset, key, value, timestamp }
    if (headers !== undefined) rec.headers = headers
    out.push(rec)
  }
}
