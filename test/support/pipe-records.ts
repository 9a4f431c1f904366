/** Generated pipe records for the record-batch codecs' properties, and a comparable form of them. */
import fc from 'fast-check'
import type { OutgoingRecord, PipeRecord } from '../../runtime/pipe/pipe.ts'

/** Record sizes a property draws from. */
export interface RecordLimits {
  keyBytes: number
  valueBytes: number
  headerNameLength: number
  headerBytes: number
  headers: number
}

/**
 * Records with null or byte keys and values, timestamps up to 2^45 (deltas past 2^28 and
 * below zero take the long varint paths) and optional headers. Lengths are drawn over the
 * whole range up to the limits (fast-check's default size would stop near 10): past 63
 * bytes a length is a two-byte varint, past 32 a Kafka batch copies with `set`.
 *
 * @example
 * fc.array(pipeRecordArb({ keyBytes: 40, valueBytes: 200, headerNameLength: 10, headerBytes: 20, headers: 3 }))
 */
export function pipeRecordArb(l: RecordLimits): fc.Arbitrary<PipeRecord> {
  const bytes = (maxLength: number): fc.Arbitrary<Buffer> => fc.uint8Array({ maxLength, size: 'max' }).map((a) => Buffer.from(a))
  return fc.record({
    key: fc.option(bytes(l.keyBytes), { nil: null }),
    value: fc.option(bytes(l.valueBytes), { nil: null }),
    timestamp: fc.integer({ min: 0, max: 2 ** 45 }),
    headers: fc.option(fc.dictionary(fc.string({ minLength: 1, maxLength: l.headerNameLength, size: 'max' }), bytes(l.headerBytes), { maxKeys: l.headers, size: 'max' }), { nil: undefined }),
  })
}

/** A record as plain arrays, so toEqual compares bytes; no headers and empty headers compare equal. */
export function plainRecord(r: PipeRecord & { offset?: number }): unknown {
  const headers = r.headers === undefined || Object.keys(r.headers).length === 0 ? undefined : Object.fromEntries(Object.entries(r.headers).map(([k, v]) => [k, [...v]]))
  return { key: r.key === null ? null : [...r.key], value: r.value === null ? null : [...r.value], timestamp: r.timestamp, headers, offset: r.offset }
}

/**
 * Records as a producer is handed them: each key and value null, bytes or a string (any
 * UTF-16, lone surrogates too; ASCII ones up to and past the writers' 64-character short
 * path), with `asBytes` giving the same record in bytes.
 */
export function outgoingRecordArb(l: RecordLimits): fc.Arbitrary<OutgoingRecord> {
  const text = (maxLength: number): fc.Arbitrary<string> => fc.oneof(fc.string({ unit: 'binary-ascii', maxLength, size: 'max' }), fc.string({ unit: 'binary', maxLength, size: 'max' }))
  return fc.tuple(pipeRecordArb(l), fc.option(text(l.keyBytes), { nil: undefined }), fc.option(text(l.valueBytes), { nil: undefined })).map(([r, key, value]) => ({ ...r, key: key ?? r.key, value: value ?? r.value }))
}

/** The record with its string key and value as their UTF-8 bytes (what the producer must write). */
export function asBytes(r: OutgoingRecord): PipeRecord {
  const bytes = (x: Buffer | string | null): Buffer | null => (typeof x === 'string' ? Buffer.from(x, 'utf8') : x)
  return { ...r, key: bytes(r.key), value: bytes(r.value) }
}

