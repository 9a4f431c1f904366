/**
 * The embedded log's on-disk record batch: many records in one RocksDB value, so an
 * append costs one put per partition per commit, not one per record.
 *
 * Dense layout (appends; offsets are base, base+1, ...; base comes from the batch's key):
 *   u32 count | f64 appendTime | records
 * Sparse layout (written by compaction, which leaves gaps between offsets):
 *   u32 count|SPARSE | f64 appendTime | u64 base | (u32 offset - base | record)*
 * A record: f64 timestamp | i32 keyLen (-1 = null) | key | i32 valueLen (-1 = null) | value
 *   | u16 headerCount | (u16 nameLen | name | u32 len | bytes)*
 */
import { setHeader, type OutgoingRecord, type PipeRecord, type StoredRecord } from '../pipe.ts'
import { copyInto, utf8Room, writeUtf8 } from '../../bytes.ts'

const HEADER = 12
const SPARSE = 0x80000000
const SPARSE_HEADER = HEADER + 8

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

  add(r: OutgoingRecord): void {
    const need = recordSize(r)
    if (this.current > 0 && (this.current >= MAX_BATCH_RECORDS || this.used + need > MAX_BATCH_BYTES)) this.seal()
    this.reserve(need)
    this.used = writeRecord(this.buf, this.used, r)
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

/** Room for `r`: exact for bytes, utf8Room for text. */
function recordSize(r: OutgoingRecord): number {
  let need = 8 + 4 + roomFor(r.key) + 4 + roomFor(r.value) + 2
  if (r.headers !== undefined) for (const n of Object.keys(r.headers)) need += 2 + Buffer.byteLength(n) + 4 + r.headers[n]!.length
  return need
}

function roomFor(bytes: Buffer | string | null): number {
  return bytes === null ? 0 : typeof bytes === 'string' ? utf8Room(bytes) : bytes.length
}

/** Writes a length-prefixed key or value at `o` (length -1: null); returns the offset after it. */
function writeBytes(b: Buffer, o: number, bytes: Buffer | string | null): number {
  if (bytes === null) {
    b.writeInt32LE(-1, o)
    return o + 4
  }
  const end = typeof bytes === 'string' ? writeUtf8(bytes, b, o + 4) : copyInto(bytes, b, o + 4)
  b.writeInt32LE(end - o - 4, o)
  return end
}

/** Writes one record at `o`; returns the offset after it. */
function writeRecord(b: Buffer, o: number, r: OutgoingRecord): number {
  b.writeDoubleLE(r.timestamp, o); o += 8
  o = writeBytes(b, o, r.key)
  o = writeBytes(b, o, r.value)
  const headers = r.headers
  const names = headers === undefined ? undefined : Object.keys(headers)
  b.writeUInt16LE(names?.length ?? 0, o); o += 2
  if (names !== undefined) {
    for (const n of names) {
      const nl = b.write(n, o + 2); b.writeUInt16LE(nl, o); o += 2 + nl
      const v = headers![n]!
      b.writeUInt32LE(v.length, o); o = copyInto(v, b, o + 4)
    }
  }
  return o
}

/** Builds sparse batches of records that keep their original offsets (compaction output). */
export class SparseBatchBuilder {
  /** A record to encode, or the bytes [start, end) of one already encoded in `src`. */
  private parts: Array<{ offset: number; record: PipeRecord | undefined; src: Buffer | undefined; start: number; end: number; size: number }> = []
  private bytes = 0
  private readonly out: Array<{ data: Buffer; base: number; last: number }> = []

  add(offset: number, record: PipeRecord): void {
    this.push(offset, record, undefined, 0, 0, 4 + recordSize(record))
  }

  /** Adds a record as stored: its encoded bytes [start, end) of `src` (scanBatch), copied, not decoded. */
  addStored(offset: number, src: Buffer, start: number, end: number): void {
    this.push(offset, undefined, src, start, end, 4 + end - start)
  }

  private push(offset: number, record: PipeRecord | undefined, src: Buffer | undefined, start: number, end: number, size: number): void {
    if (this.parts.length > 0 && (this.parts.length >= MAX_BATCH_RECORDS || this.bytes + size > MAX_BATCH_BYTES)) this.seal()
    this.parts.push({ offset, record, src, start, end, size })
    this.bytes += size
  }

  private seal(): void {
    const base = this.parts[0]!.offset
    const b = Buffer.allocUnsafe(SPARSE_HEADER + this.bytes)
    b.writeUInt32LE((this.parts.length | SPARSE) >>> 0, 0)
    b.writeBigUInt64LE(BigInt(base), HEADER)
    let o = SPARSE_HEADER
    for (const p of this.parts) {
      b.writeUInt32LE(p.offset - base, o)
      if (p.src !== undefined) o += 4 + p.src.copy(b, o + 4, p.start, p.end)
      else o = writeRecord(b, o + 4, p.record!)
    }
    this.out.push({ data: b, base, last: this.parts[this.parts.length - 1]!.offset })
    this.parts = []
    this.bytes = 0
  }

  finish(appendTime: number): Array<{ data: Buffer; base: number; last: number }> {
    if (this.parts.length > 0) this.seal()
    for (const b of this.out) b.data.writeDoubleLE(appendTime, 4)
    return this.out.splice(0)
  }
}

/**
 * Calls `visit` for each record of a batch whose first record has offset `base`, without
 * decoding it: where its encoded bytes are ([start, end) of `batch`), where its key is
 * (`keyLength` -1: null), whether its value is null, and its timestamp. The log cleaner reads
 * every record of a partition this way, allocating nothing per record.
 */
export function scanBatch(batch: Buffer, base: number, visit: (offset: number, start: number, end: number, keyStart: number, keyLength: number, valueNull: boolean, timestamp: number) => void): void {
  const head = batch.readUInt32LE(0)
  const sparse = (head & SPARSE) !== 0
  const count = (head & ~SPARSE) >>> 0
  let o = sparse ? SPARSE_HEADER : HEADER
  if (sparse) base = Number(batch.readBigUInt64LE(HEADER))
  for (let i = 0; i < count; i++) {
    let offset = base + i
    if (sparse) {
      offset = base + batch.readUInt32LE(o)
      o += 4
    }
    const start = o
    const timestamp = batch.readDoubleLE(o); o += 8
    const kl = batch.readInt32LE(o); o += 4
    const keyStart = o
    if (kl > 0) o += kl
    const vl = batch.readInt32LE(o); o += 4
    if (vl > 0) o += vl
    const hc = batch.readUInt16LE(o); o += 2
    for (let h = 0; h < hc; h++) {
      o += 2 + batch.readUInt16LE(o)
      o += 4 + batch.readUInt32LE(o)
    }
    visit(offset, start, o, keyStart, kl, vl < 0, timestamp)
  }
}

export function batchCount(batch: Buffer): number {
  return (batch.readUInt32LE(0) & ~SPARSE) >>> 0
}

/** The offset of a batch's first record; `last` is the offset its key names. */
export function batchBase(batch: Buffer, last: number): number {
  return (batch.readUInt32LE(0) & SPARSE) !== 0 ? Number(batch.readBigUInt64LE(HEADER)) : last - batchCount(batch) + 1
}

export function batchAppendTime(batch: Buffer): number {
  return batch.readDoubleLE(4)
}

/**
 * Decodes the records of a batch whose first record has offset `base`, from offset `from`
 * on. Keys and values are views into `batch`; skipped records cost no allocation.
 */
export function decodeBatch(batch: Buffer, base: number, from: number, out: StoredRecord[]): void {
  new BatchCursor([{ data: batch, base }], from).take(out, Number.POSITIVE_INFINITY)
}

/** A stored batch as read: its bytes and the offset of its first record (dense batches; a sparse one carries its own). */
export interface StoredBatch {
  data: Buffer
  base: number
}

/**
 * Reads the records of stored batches in order, from `from` on, decoding each as it is
 * taken: a reader that reads ahead holds batches as bytes, not a record object per record
 * it has not handed out yet (those lived long enough for V8 to promote them).
 *
 * @example
 * const cursor = new BatchCursor([{ data, base: 0 }], 10)
 * const out: StoredRecord[] = []
 * cursor.take(out, 500)
 */
export class BatchCursor {
  private batch = -1
  private count = 0
  private index = 0
  private at = 0
  private base = 0
  private sparse = false
  private left: number

  constructor(private readonly batches: readonly StoredBatch[], private readonly from: number) {
    let n = 0
    for (const b of batches) n += batchCount(b.data)
    this.left = n
  }

  /** Records not taken yet, as the batch headers count them (records below `from` included until skipped). */
  get remaining(): number {
    return this.left
  }

  /** Appends up to `max` records at or after `from` to `out`; returns how many. */
  take(out: StoredRecord[], max: number): number {
    let n = 0
    while (n < max) {
      if (this.index >= this.count && !this.nextBatch()) break
      const batch = this.batches[this.batch]!.data
      let o = this.at
      let offset = this.base + this.index
      if (this.sparse) {
        offset = this.base + batch.readUInt32LE(o)
        o += 4
      }
      this.index++
      this.left--
      if (offset < this.from) {
        o += 8
        const kl = batch.readInt32LE(o); o += 4 + Math.max(0, kl)
        const vl = batch.readInt32LE(o); o += 4 + Math.max(0, vl)
        const hc = batch.readUInt16LE(o); o += 2
        for (let h = 0; h < hc; h++) {
          o += 2 + batch.readUInt16LE(o)
          o += 4 + batch.readUInt32LE(o)
        }
        this.at = o
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
          setHeader(headers, name, batch.subarray(o, o + len)); o += len
        }
      }
      this.at = o
      const rec: StoredRecord = { offset, key, value, timestamp }
      if (headers !== undefined) rec.headers = headers
      out.push(rec)
      n++
    }
    return n
  }

  private nextBatch(): boolean {
    for (;;) {
      if (this.batch + 1 >= this.batches.length) return false
      const { data, base } = this.batches[++this.batch]!
      const head = data.readUInt32LE(0)
      this.sparse = (head & SPARSE) !== 0
      this.count = (head & ~SPARSE) >>> 0
      this.index = 0
      this.at = this.sparse ? SPARSE_HEADER : HEADER
      this.base = this.sparse ? Number(data.readBigUInt64LE(HEADER)) : base
      if (this.count > 0) return true
    }
  }
}
