/** Generated pipe records for the record-batch codecs' properties, and a comparable form of them. */
import fc from 'fast-check'
import type { PipeRecord } from '../../runtime/pipe/pipe.ts'

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
