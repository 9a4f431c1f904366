/**
 * Kafka record batches (magic v2), encoded and decoded by weir on the hot paths: a fetch's
 * record set becomes StoredRecords whose keys and values are slices of the fetched buffer
 * (no copy, no per-record decoder object, offsets and timestamps as numbers), with the
 * batches of aborted transactions skipped as the Java consumer does; a produce request's
 * records become one batch. kafkajs's own codec spent most of a changelog replay on Long
 * arithmetic and object spreads (docs/kafka.md has the figures).
 *
 * Compression: none, gzip and zstd are decoded (node:zlib); snappy and lz4 batches are
 * refused with a PipeError that says so (weir's own producers never compress).
 *
 * @example
 * const { records, nextOffset } = decodeRecordSet(bytes, { from: 42, abortedTransactions })
 * const batch = encodeRecordBatch(records, { producerId: 7, producerEpoch: 0, baseSequence: 0, transactional: true })
 */
import { createRequire } from 'node:module'
import { gunzipSync } from 'node:zlib'
import * as zlib from 'node:zlib'
import { PipeError } from '../../errors.ts'
import { setHeader, type OutgoingRecord, type PipeRecord, type StoredRecord } from '../pipe.ts'
import { copyInto, utf8Length, writeUtf8 } from '../../bytes.ts'

/** Bytes of a v2 batch before its records: baseOffset(8) length(4) leaderEpoch(4) magic(1) crc(4) attributes(2) lastOffsetDelta(4) baseTimestamp(8) maxTimestamp(8) producerId(8) producerEpoch(2) baseSequence(4) count(4). */
export const BATCH_HEADER_BYTES = 61
/** Offset of the attributes field, where the CRC starts. */
const CRC_START = 21

const ATTR_COMPRESSION = 0x07
const ATTR_LOG_APPEND_TIME = 0x08
const ATTR_TRANSACTIONAL = 0x10
const ATTR_CONTROL = 0x20

// ---- CRC-32C (Castagnoli) ----

/**
 * @node-rs/crc32's CRC-32C (SSE 4.2 where the CPU has it): 3.9–6.2 GB/s on 4 KiB–1 MiB
 * against 0.5 GB/s for the JavaScript below, which was 3 % of weir's CPU on the Kafka word
 * count (every batch is summed when produced and checked when fetched). Its binaries are
 * prebuilt for the common platforms only; elsewhere the JavaScript does it.
 */
const nativeCrc32c: ((input: Uint8Array) => number) | undefined = (() => {
  try {
    return (createRequire(import.meta.url)('@node-rs/crc32') as { crc32c: (input: Uint8Array) => number }).crc32c
  } catch {
    return undefined
  }
})()

/** True when CRC-32C runs natively (@node-rs/crc32 loaded). */
export const crc32cIsNative = nativeCrc32c !== undefined

/** CRC-32C of `buf[start, end)`, as an unsigned 32-bit number. */
export function crc32c(buf: Uint8Array, start = 0, end = buf.length): number {
  if (nativeCrc32c === undefined) return crc32cPortable(buf, start, end)
  return nativeCrc32c(start === 0 && end === buf.length ? buf : buf.subarray(start, end)) >>> 0
}

// The portable CRC-32C: slicing by 8.

const CRC_TABLES: Int32Array[] = (() => {
  const tables: Int32Array[] = []
  const t0 = new Int32Array(256)
  for (let n = 0; n < 256; n++) {
    let c = n
    for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ 0x82f63b78 : c >>> 1
    t0[n] = c
  }
  tables.push(t0)
  for (let t = 1; t < 8; t++) {
    const prev = tables[t - 1]!
    const table = new Int32Array(256)
    for (let n = 0; n < 256; n++) table[n] = (prev[n]! >>> 8) ^ t0[prev[n]! & 0xff]!
    tables.push(table)
  }
  return tables
})()

/** CRC-32C of `buf[start, end)` in JavaScript, as an unsigned 32-bit number. */
export function crc32cPortable(buf: Uint8Array, start = 0, end = buf.length): number {
  const [t0, t1, t2, t3, t4, t5, t6, t7] = CRC_TABLES as [Int32Array, Int32Array, Int32Array, Int32Array, Int32Array, Int32Array, Int32Array, Int32Array]
  let crc = -1
  let i = start
  for (; i + 8 <= end; i += 8) {
    const a = crc ^ (buf[i]! | (buf[i + 1]! << 8) | (buf[i + 2]! << 16) | (buf[i + 3]! << 24))
    crc =
      t7[a & 0xff]! ^
      t6[(a >>> 8) & 0xff]! ^
      t5[(a >>> 16) & 0xff]! ^
      t4[a >>> 24]! ^
      t3[buf[i + 4]!]! ^
      t2[buf[i + 5]!]! ^
      t1[buf[i + 6]!]! ^
      t0[buf[i + 7]!]!
  }
  for (; i < end; i++) crc = t0[(crc ^ buf[i]!) & 0xff]! ^ (crc >>> 8)
  return (crc ^ -1) >>> 0
}

// ---- varints (zigzag) ----

/** Reads a zigzag varint of up to 64 bits as a number (exact below 2^53); the position goes to `cursor.at`. */
function readVarint(buf: Buffer, cursor: { at: number }): number {
  let at = cursor.at
  let b = buf[at++]!
  let raw = b & 0x7f
  if (b >= 0x80) {
    b = buf[at++]!
    raw |= (b & 0x7f) << 7
    if (b >= 0x80) {
      b = buf[at++]!
      raw |= (b & 0x7f) << 14
      if (b >= 0x80) {
        b = buf[at++]!
        raw |= (b & 0x7f) << 21
        if (b >= 0x80) {
          // Past 28 bits: continue in floating point (timestamp deltas of a varlong).
          let value = raw >>> 0
          let scale = 2 ** 28
          do {
            if (at >= buf.length) throw new RangeError('varint runs past the end of the buffer')
            b = buf[at++]!
            value += (b & 0x7f) * scale
            scale *= 128
          } while (b >= 0x80)
          cursor.at = at
          // zigzag: even → value/2, odd → -(value+1)/2
          return value % 2 === 0 ? value / 2 : -(value + 1) / 2
        }
      }
    }
  }
  if (at > buf.length) throw new RangeError('varint runs past the end of the buffer')
  cursor.at = at
  return (raw >>> 1) ^ -(raw & 1)
}

/** Bytes of `value` as a zigzag varint. */
function varintSize(value: number): number {
  let z = value >= 0 ? value * 2 : -value * 2 - 1
  let size = 1
  while (z >= 128) {
    z = Math.floor(z / 128)
    size++
  }
  return size
}

function writeVarint(buf: Buffer, at: number, value: number): number {
  let z = value >= 0 ? value * 2 : -value * 2 - 1
  while (z >= 128) {
    buf[at++] = (z % 128) | 0x80
    z = Math.floor(z / 128)
  }
  buf[at++] = z
  return at
}

/** A signed 64-bit big-endian integer as a number (exact below 2^53; producer ids, offsets, timestamps). */
function readInt64(buf: Buffer, at: number): number {
  return buf.readInt32BE(at) * 4294967296 + buf.readUInt32BE(at + 4)
}

function writeInt64(buf: Buffer, at: number, value: number): void {
  const high = Math.floor(value / 4294967296)
  buf.writeInt32BE(high, at)
  buf.writeUInt32BE(value - high * 4294967296, at + 4)
}

// ---- decoding ----

/** An aborted transaction as a fetch response lists it. */
export interface AbortedTransaction {
  producerId: number
  firstOffset: number
}

export interface DecodeOptions {
  /** Records below this offset are dropped (a fetch may start inside a batch). */
  from?: number
  /**
   * read_committed: the fetch response's aborted transactions of this partition. Given, the
   * batches of those transactions are skipped; undefined reads everything (read_uncommitted).
   */
  abortedTransactions?: readonly AbortedTransaction[]
  /** Check every batch's CRC-32C (the Java consumer's check.crcs, on by default). */
  verifyCrc?: boolean
  /** For error messages. */
  topic?: string
  partition?: number
}

export interface DataBatchInfo {
  firstRecord: number
  baseOffset: number
  lastOffsetDelta: number
  baseTimestamp: number
  maxTimestamp: number
  partitionLeaderEpoch: number
  producerId: number
  producerEpoch: number
  baseSequence: number
  transactional: boolean
  logAppendTime: boolean
}

export interface DecodedRecordSet {
  /** Data records visible to the reader, in offset order. */
  records: StoredRecord[]
  /**
   * The offset after the last complete batch (including control batches and skipped
   * aborted ones); the offset to fetch next. Equals `from` when no complete batch was there.
   */
  nextOffset: number
  /** Offset of the first record or marker at or after `from` in a complete batch; undefined when none. */
  firstOffset: number | undefined
  /**
   * The data batches the records came from, in order: `firstRecord` is the index in
   * `records` of the batch's first visible record (for clients that show batch fields).
   */
  dataBatches: DataBatchInfo[]
  /** Complete batches seen, and control batches among them (for tests and metrics). */
  batches: number
  controlBatches: number
}

/** A visible data batch of a fetched record set, its records not decoded yet. */
interface RecordSpan {
  info: DataBatchInfo
  /** The batch's records: the fetched buffer, or the decompressed records. */
  body: Buffer
  recordsAt: number
  recordsEnd: number
  count: number
}

/** A fetched record set, checked and filtered batch by batch; its records are decoded when read (`cursor`). */
export interface ScannedRecordSet {
  /** As in DecodedRecordSet. */
  nextOffset: number
  firstOffset: number | undefined
  batches: number
  controlBatches: number
  /** The visible data batches, `firstRecord` not yet known (0). */
  dataBatches: DataBatchInfo[]
  /** A cursor over the visible records, from the first. */
  cursor(): RecordCursor
  /** The last visible record, decoded alone (the others are skipped by their lengths); undefined when none is visible. */
  lastRecord(): StoredRecord | undefined
}

/**
 * Checks and filters the record set of one partition of a fetch response without decoding
 * its records: CRCs, magic, control batches and aborted transactions are handled here (a
 * corrupt batch fails now), the records of the visible batches when a cursor reads them.
 * A reader that buffers fetches this way holds bytes, not a record object per buffered
 * record (those lived long enough for V8 to promote them, which cost more than decoding).
 * A partial batch at the end (the broker cuts a fetch at its byte limit) is ignored;
 * `nextOffset` says where it starts.
 */
export function scanRecordSet(buf: Buffer, options: DecodeOptions = {}): ScannedRecordSet {
  const from = options.from ?? 0
  const verifyCrc = options.verifyCrc ?? true
  const spans: RecordSpan[] = []
  const dataBatches: DataBatchInfo[] = []
  let nextOffset = from
  let firstOffset: number | undefined
  let batches = 0
  let controlBatches = 0
  // read_committed, as the Java consumer's Fetcher: aborted transactions in order of their
  // first offset; a producer's batches are skipped from its first aborted offset until its ABORT marker.
  const pending = options.abortedTransactions === undefined ? undefined : [...options.abortedTransactions].sort((a, b) => a.firstOffset - b.firstOffset)
  let nextPending = 0
  const aborting = new Set<number>()
  let at = 0
  while (at + BATCH_HEADER_BYTES <= buf.length) {
    const baseOffset = readInt64(buf, at)
    const batchLength = buf.readInt32BE(at + 8)
    const end = at + 12 + batchLength
    if (end > buf.length) break
    const magic = buf[at + 16]!
    if (magic !== 2) throw decodeError(options, baseOffset, `record batch with magic ${magic} (weir reads magic 2, Kafka ≥ 0.11)`, 'UNSUPPORTED_VERSION')
    if (verifyCrc) {
      const expected = buf.readUInt32BE(at + 17)
      const actual = crc32c(buf, at + CRC_START, end)
      if (expected !== actual) throw decodeError(options, baseOffset, `record batch CRC-32C mismatch (stored ${expected.toString(16)}, computed ${actual.toString(16)})`, 'CORRUPT_MESSAGE')
    }
    const attributes = buf.readInt16BE(at + 21)
    const lastOffsetDelta = buf.readInt32BE(at + 23)
    const producerId = readInt64(buf, at + 43)
    const count = buf.readInt32BE(at + 57)
    const batchAt = at
    at = end
    batches++
    const lastOffset = baseOffset + lastOffsetDelta
    if (lastOffset + 1 > nextOffset) nextOffset = lastOffset + 1
    if (firstOffset === undefined && lastOffset >= from) firstOffset = Math.max(baseOffset, from)
    const control = (attributes & ATTR_CONTROL) !== 0
    if (pending !== undefined && producerId >= 0) {
      while (nextPending < pending.length && pending[nextPending]!.firstOffset <= lastOffset) aborting.add(pending[nextPending++]!.producerId)
      if (control) {
        // Control record key: version int16, type int16 (0 = ABORT, 1 = COMMIT).
        const keyType = controlType(buf, batchAt + BATCH_HEADER_BYTES, end)
        if (keyType === 0) aborting.delete(producerId)
      } else if ((attributes & ATTR_TRANSACTIONAL) !== 0 && aborting.has(producerId)) {
        continue
      }
    }
    if (control) {
      controlBatches++
      continue
    }
    if (lastOffset < from) continue
    let body = buf
    let recordsAt = batchAt + BATCH_HEADER_BYTES
    let recordsEnd = end
    const compression = attributes & ATTR_COMPRESSION
    if (compression !== 0) {
      body = decompress(compression, buf.subarray(recordsAt, end), options, baseOffset)
      recordsAt = 0
      recordsEnd = body.length
    }
    const info: DataBatchInfo = {
      firstRecord: 0,
      baseOffset,
      lastOffsetDelta,
      baseTimestamp: readInt64(buf, batchAt + 27),
      maxTimestamp: readInt64(buf, batchAt + 35),
      partitionLeaderEpoch: buf.readInt32BE(batchAt + 12),
      producerId,
      producerEpoch: buf.readInt16BE(batchAt + 51),
      baseSequence: buf.readInt32BE(batchAt + 53),
      transactional: (attributes & ATTR_TRANSACTIONAL) !== 0,
      logAppendTime: (attributes & ATTR_LOG_APPEND_TIME) !== 0,
    }
    dataBatches.push(info)
    spans.push({ info, body, recordsAt, recordsEnd, count })
  }
  const lastRecord = (): StoredRecord | undefined => {
    const span = spans[spans.length - 1]
    if (span === undefined || span.count <= 0) return undefined
    // Records below `from` come first, so the last span's last record is the last visible one, or none is.
    const skip = { at: span.recordsAt }
    for (let i = 0; i < span.count - 1; i++) {
      const length = readVarint(span.body, skip)
      skip.at += length
    }
    const cursor = new RecordCursor([{ ...span, recordsAt: skip.at, count: 1 }], from, options)
    const out: StoredRecord[] = []
    cursor.take(out, 1)
    return out[0]
  }
  return { nextOffset, firstOffset, batches, controlBatches, dataBatches, cursor: () => new RecordCursor(spans, from, options), lastRecord }
}

/**
 * Reads the visible records of a scanned record set in order, decoding each as it is
 * taken; records below the fetch offset are skipped.
 *
 * @example
 * const cursor = scanRecordSet(bytes, { from: 42 }).cursor()
 * const out: StoredRecord[] = []
 * cursor.take(out, 500)
 * const position = cursor.nextOffset() ?? fetchEnd
 */
export class RecordCursor {
  private span = 0
  private at: number
  private index = 0
  private peeked: StoredRecord | undefined
  private left: number

  constructor(
    private readonly spans: readonly RecordSpan[],
    private readonly from: number,
    private readonly options: DecodeOptions,
  ) {
    this.at = spans[0]?.recordsAt ?? 0
    let left = 0
    for (const s of spans) left += s.count
    this.left = left
  }

  /** Records not read yet, as the batch headers count them (records below the fetch offset included until skipped). */
  get remaining(): number {
    return this.left + (this.peeked === undefined ? 0 : 1)
  }

  /** Appends up to `max` records to `out`; returns how many it appended. */
  take(out: StoredRecord[], max: number): number {
    let n = 0
    if (this.peeked !== undefined && max > 0) {
      out.push(this.peeked)
      this.peeked = undefined
      n++
    }
    while (n < max) {
      const r = this.decodeNext()
      if (r === undefined) break
      out.push(r)
      n++
    }
    return n
  }

  /** The offset of the next record; undefined when every record was read. */
  nextOffset(): number | undefined {
    this.peeked ??= this.decodeNext()
    return this.peeked?.offset
  }

  private decodeNext(): StoredRecord | undefined {
    for (;;) {
      const span = this.spans[this.span]
      if (span === undefined) return undefined
      if (this.index >= span.count) {
        this.span++
        this.index = 0
        this.at = this.spans[this.span]?.recordsAt ?? 0
        continue
      }
      const r = this.decodeRecord(span)
      if (r.offset >= this.from) return r
    }
  }

  private decodeRecord(span: RecordSpan): StoredRecord {
    const { body, info } = span
    const cursor = { at: this.at }
    const i = this.index++
    this.left--
    const length = readVarint(body, cursor)
    const recordEnd = cursor.at + length
    if (recordEnd > span.recordsEnd) throw decodeError(this.options, info.baseOffset, `record ${i} of the batch runs past its end`, 'CORRUPT_MESSAGE')
    cursor.at++ // record attributes, unused
    const timestampDelta = readVarint(body, cursor)
    const offset = info.baseOffset + readVarint(body, cursor)
    const keyLength = readVarint(body, cursor)
    const key = keyLength < 0 ? null : body.subarray(cursor.at, (cursor.at += keyLength))
    const valueLength = readVarint(body, cursor)
    const value = valueLength < 0 ? null : body.subarray(cursor.at, (cursor.at += valueLength))
    const headerCount = readVarint(body, cursor)
    let headers: Record<string, Buffer> | undefined
    for (let h = 0; h < headerCount; h++) {
      const nameLength = readVarint(body, cursor)
      const name = body.toString('utf8', cursor.at, (cursor.at += nameLength))
      const headerValueLength = readVarint(body, cursor)
      if (headerValueLength < 0) continue
      const headerValue = body.subarray(cursor.at, (cursor.at += headerValueLength))
      headers ??= {}
      // The first of repeated names wins, as weir read them through kafkajs; names like
      // `toString` or `__proto__` are headers like any other (setHeader).
      if (!Object.hasOwn(headers, name)) setHeader(headers, name, headerValue)
    }
    if (cursor.at !== recordEnd) throw decodeError(this.options, info.baseOffset, `record ${i} of the batch has ${length} bytes but its fields take ${cursor.at - recordEnd + length}`, 'CORRUPT_MESSAGE')
    this.at = recordEnd
    const timestamp = info.logAppendTime ? info.maxTimestamp : info.baseTimestamp + timestampDelta
    return headers === undefined ? { key, value, timestamp, offset } : { key, value, timestamp, headers, offset }
  }
}

/**
 * Decodes the record set of one partition of a fetch response, every record at once (see
 * scanRecordSet for the checks). A partial batch at the end is ignored; `nextOffset` says
 * where it starts.
 */
export function decodeRecordSet(buf: Buffer, options: DecodeOptions = {}): DecodedRecordSet {
  const scanned = scanRecordSet(buf, options)
  return { ...decodeAll(scanned), nextOffset: scanned.nextOffset, firstOffset: scanned.firstOffset, batches: scanned.batches, controlBatches: scanned.controlBatches }
}

/** Every visible record of a scanned set, and its data batches with `firstRecord` set. */
export function decodeAll(scanned: ScannedRecordSet): { records: StoredRecord[]; dataBatches: DataBatchInfo[] } {
  const records: StoredRecord[] = []
  const cursor = scanned.cursor()
  const dataBatches: DataBatchInfo[] = []
  for (const info of scanned.dataBatches) {
    info.firstRecord = records.length
    dataBatches.push(info)
    // Up to the batch's last offset: the cursor's next record may belong to a later batch.
    const last = info.baseOffset + info.lastOffsetDelta
    for (let next = cursor.nextOffset(); next !== undefined && next <= last; next = cursor.nextOffset()) cursor.take(records, 1)
  }
  return { records, dataBatches }
}

/** The type of a control batch's first record (0 ABORT, 1 COMMIT), -1 when unreadable. */
function controlType(buf: Buffer, recordsAt: number, end: number): number {
  const cursor = { at: recordsAt }
  readVarint(buf, cursor) // length
  cursor.at++ // attributes
  readVarint(buf, cursor) // timestamp delta
  readVarint(buf, cursor) // offset delta
  const keyLength = readVarint(buf, cursor)
  if (keyLength < 4 || cursor.at + 4 > end) return -1
  return buf.readInt16BE(cursor.at + 2)
}

function decompress(compression: number, data: Buffer, options: DecodeOptions, baseOffset: number): Buffer {
  switch (compression) {
    case 1:
      return gunzipSync(data)
    case 4: {
      const zstd = (zlib as unknown as { zstdDecompressSync?: (b: Buffer) => Buffer }).zstdDecompressSync
      if (zstd !== undefined) return zstd(data)
      throw decodeError(options, baseOffset, 'zstd-compressed record batch: this Node.js has no zstd (Node ≥ 22.15 does)', 'UNSUPPORTED_COMPRESSION_TYPE')
    }
    default: {
      const name = compression === 2 ? 'snappy' : compression === 3 ? 'lz4' : `codec ${compression}`
      throw decodeError(options, baseOffset, `${name}-compressed record batch: weir reads uncompressed, gzip and zstd batches; set compression.type to one of those on the producer (or the topic)`, 'UNSUPPORTED_COMPRESSION_TYPE')
    }
  }
}

function decodeError(options: DecodeOptions, offset: number, message: string, kafkaCode: string): PipeError {
  const where = options.topic === undefined ? '' : ` in ${options.topic}/${options.partition ?? '?'}`
  return new PipeError(`cannot decode Kafka records${where} at offset ${offset}: ${message}`, { topic: options.topic, partition: options.partition, offset }, { retriable: false, kafkaCode })
}

// ---- encoding ----

export interface BatchProducer {
  /** -1 for a producer that is neither idempotent nor transactional. */
  producerId: number
  producerEpoch: number
  /** Sequence number of the first record (idempotence); -1 without a producer id. */
  baseSequence: number
  transactional: boolean
  /** Records whose timestamp is missing get this (ms); defaults to now. */
  now?: number
}

/** Header names as UTF-8, cached: weir's few header names repeat on every record. */
const headerNames = new Map<string, Buffer>()
function headerName(name: string): Buffer {
  let b = headerNames.get(name)
  if (b === undefined) {
    b = Buffer.from(name, 'utf8')
    if (headerNames.size < 1024) headerNames.set(name, b)
  }
  return b
}

/** Bytes of record `r` in a batch, without its length prefix: attributes, deltas, key, value (lengths given, -1 for null), headers. */
function recordBodySize(r: OutgoingRecord, keyLength: number, valueLength: number, timestampDelta: number, offsetDelta: number): number {
  let size = 1 + varintSize(timestampDelta) + varintSize(offsetDelta)
  size += keyLength < 0 ? 1 : varintSize(keyLength) + keyLength
  size += valueLength < 0 ? 1 : varintSize(valueLength) + valueLength
  let headerCount = 0
  if (r.headers !== undefined) {
    for (const name in r.headers) {
      const v = r.headers[name]!
      const n = headerName(name)
      size += varintSize(n.length) + n.length + varintSize(v.length) + v.length
      headerCount++
    }
  }
  return size + varintSize(headerCount)
}

/**
 * One uncompressed v2 record batch, encoded record by record as they are added: a
 * producer copies each record into its batch when it is sent, so the record's objects die
 * young instead of waiting in a queue for their produce request (in V8 that wait promotes
 * them to the old generation, whose collection then costs more than the encoding). The
 * header and CRC-32C are written by `finish`, when the producer's id, epoch and sequence
 * are known; base offset 0 (the broker assigns offsets).
 *
 * @example
 * const w = new RecordBatchWriter()
 * w.add({ key: null, value: Buffer.from('a'), timestamp: Date.now() })
 * const bytes = w.finish({ producerId: 7, producerEpoch: 0, baseSequence: 0, transactional: true })
 */
export class RecordBatchWriter {
  private buf: Buffer
  private at = BATCH_HEADER_BYTES
  /** Records added. */
  count = 0
  private baseTimestamp = 0
  private maxTimestamp = 0

  /** `initialBytes`: the buffer's first size (it doubles as records come). */
  constructor(initialBytes = 16 * 1024) {
    this.buf = Buffer.allocUnsafe(Math.max(initialBytes, BATCH_HEADER_BYTES))
  }

  /** Bytes of the batch so far, header included. */
  get bytes(): number {
    return this.at
  }

  /**
   * Copies `r` into the batch (its buffers are not kept). A batch that holds records
   * refuses one that would take it past `maxBytes` (header included): it returns false and
   * is unchanged, and the caller starts the next batch.
   */
  add(r: OutgoingRecord, maxBytes = Number.POSITIVE_INFINITY): boolean {
    const timestamp = r.timestamp
    const timestampDelta = this.count === 0 ? 0 : timestamp - this.baseTimestamp
    const key = r.key
    const value = r.value
    const keyLength = key === null ? -1 : typeof key === 'string' ? utf8Length(key) : key.length
    const valueLength = value === null ? -1 : typeof value === 'string' ? utf8Length(value) : value.length
    const size = recordBodySize(r, keyLength, valueLength, timestampDelta, this.count)
    const need = varintSize(size) + size
    if (this.count > 0 && this.at + need > maxBytes) return false
    if (this.count === 0) this.baseTimestamp = this.maxTimestamp = timestamp
    else if (timestamp > this.maxTimestamp) this.maxTimestamp = timestamp
    if (this.at + need > this.buf.length) {
      const grown = Buffer.allocUnsafe(Math.max(this.buf.length * 2, this.at + need))
      this.buf.copy(grown, 0, 0, this.at)
      this.buf = grown
    }
    const buf = this.buf
    let at = writeVarint(buf, this.at, size)
    buf[at++] = 0
    at = writeVarint(buf, at, timestampDelta)
    at = writeVarint(buf, at, this.count)
    at = writeVarint(buf, at, keyLength)
    if (key !== null) at = typeof key === 'string' ? writeUtf8(key, buf, at) : copyInto(key, buf, at)
    at = writeVarint(buf, at, valueLength)
    if (value !== null) at = typeof value === 'string' ? writeUtf8(value, buf, at) : copyInto(value, buf, at)
    if (r.headers === undefined) buf[at++] = 0
    else {
      let headerCount = 0
      for (const _ in r.headers) headerCount++
      at = writeVarint(buf, at, headerCount)
      for (const name in r.headers) {
        const n = headerName(name)
        const v = r.headers[name]!
        at = writeVarint(buf, at, n.length)
        at = copyInto(n, buf, at)
        at = writeVarint(buf, at, v.length)
        at = copyInto(v, buf, at)
      }
    }
    this.at = at
    this.count++
    return true
  }

  /**
   * The batch's bytes, header and CRC written for `producer`. It may be called again (a
   * retried produce request gets the same records with the sequence it is sent with).
   */
  finish(producer: BatchProducer): Buffer {
    const count = this.count
    if (count <= 0) throw new RangeError('a record batch needs at least one record')
    const buf = this.buf
    const total = this.at
    writeInt64(buf, 0, 0)
    buf.writeInt32BE(total - 12, 8)
    buf.writeInt32BE(-1, 12) // partition leader epoch: set by the broker
    buf[16] = 2
    buf.writeInt16BE(producer.transactional ? ATTR_TRANSACTIONAL : 0, 21)
    buf.writeInt32BE(count - 1, 23)
    writeInt64(buf, 27, this.baseTimestamp)
    writeInt64(buf, 35, this.maxTimestamp)
    writeInt64(buf, 43, producer.producerId)
    buf.writeInt16BE(producer.producerEpoch, 51)
    buf.writeInt32BE(producer.baseSequence, 53)
    buf.writeInt32BE(count, 57)
    buf.writeUInt32BE(crc32c(buf, CRC_START, total), 17)
    return buf.subarray(0, total)
  }
}

/**
 * One uncompressed v2 record batch holding `records` (base offset 0: the broker assigns
 * offsets), with its CRC-32C. Timestamps are stored as deltas from the first record's;
 * a record without one gets `producer.now` (default: now).
 */
export function encodeRecordBatch(records: readonly PipeRecord[], producer: BatchProducer, start = 0, end = records.length): Buffer {
  const count = end - start
  if (count <= 0) throw new RangeError('a record batch needs at least one record')
  const now = producer.now ?? Date.now()
  // Room for the keys and values and a record's usual framing; headers may grow it once.
  let estimate = BATCH_HEADER_BYTES
  for (let i = start; i < end; i++) estimate += 24 + (records[i]!.key?.length ?? 0) + (records[i]!.value?.length ?? 0)
  const writer = new RecordBatchWriter(estimate)
  for (let i = 0; i < count; i++) {
    const r = records[start + i]!
    writer.add(r.timestamp === undefined || r.timestamp === null ? { ...r, timestamp: now } : r)
  }
  return writer.finish(producer)
}
