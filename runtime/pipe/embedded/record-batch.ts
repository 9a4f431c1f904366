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

/** Records per stored batch: bounds what a reader decodes to serve one poll. */
export const MAX_BATCH_RECORDS = 4096
/** Bytes per stored batch (a larger single record still gets a batch of its own). */
export const MAX_BATCH_BYTES = 1 << 20

/**
 * Encodes records into batches as they are sent, so a commit only hands the finished
 * buffers to RocksDB. Batches are sealed at MAX_BATCH_RECORDS or MAX_BATCH_BYTES.
 */
export class RecordBatchBuilder {
  private buf: Buffer
  private used = HEADER
  private current = 0
  private readonly sealed: Array<{ data: Buffer; count: number }> = []
  /** Records added since the last finish, over all batches. */
  count = 0

  constructor(private readonly initial = 64 * 1024) {
    this.buf = Buffer.allocUnsafe(initial)
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
    if (this.current > 0 && (this.current >= MAX_BATCH_RECORDS || this.used + need > MAX_BATCH_BYTES)) this.seal()
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
    this.current++
    this.count++
  }

  private seal(): void {
    this.buf.writeUInt32LE(this.current, 0)
    this.sealed.push({ data: Buffer.from(this.buf.subarray(0, this.used)), count: this.current })
    this.used = HEADER
    this.current = 0
  }

  /** The finished batches in order; the builder is reset for reuse. */
  finish(appendTime: number): Array<{ data: Buffer; count: number }> {
    if (this.current > 0) this.seal()
    const out = this.sealed.splice(0)
    for (const b of out) b.data.writeDoubleLE(appendTime, 4)
    this.count = 0
    return out
  }

  private reserve(n: number): void {
    if (this.used + n <= this.buf.length) return
    let size = Math.max(this.buf.length, this.initial) * 2
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
 * Decodes the records of a batch whose first record has offset `base`, from offset `from`
 * on. Keys and values are views into `batch`; skipped records cost no allocation.
 */
export function decodeBatch(batch: Buffer, base: number, from: number, out: StoredRecord[]): void {
  const count = batch.readUInt32LE(0)
  let o = HEADER
  for (let i = 0; i < count; i++) {
    const offset = base + i
    if (offset < from) {
      o += 8
      const kl = batch.readInt32LE(o); o += 4 + Math.max(0, kl)
      const vl = batch.readInt32LE(o); o += 4 + Math.max(0, vl)
      const hc = batch.readUInt16LE(o); o += 2
      for (let h = 0; h < hc; h++) {
        o += 2 + batch.readUInt16LE(o)
        o += 4 + batch.readUInt32LE(o)
      }
      continue
    }
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
    const rec: StoredRecord = { offset, key, value, timestamp }
    if (headers !== undefined) rec.headers = headers
    out.push(rec)
  }
}
