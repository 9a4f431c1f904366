/**
 * Codecs turn a topic's bytes into values and back. msgpack is the default; JSON and raw
 * bytes are there for topics shared with other systems.
 *
 * @example
 * const c = codecFor('json')
 * c.decode(c.encode({ a: 1 })) // { a: 1 }
 */
import { Packr } from 'msgpackr'
import { WeirError } from './errors.ts'
import { findValueProblem } from './values.ts'

export interface Codec<T = unknown> {
  readonly name: string
  encode(value: T): Buffer
  decode(bytes: Buffer): T
}

const packr = new Packr({ useRecords: false, moreTypes: false, mapsAsObjects: true })
/** The ArrayBuffer of the last value decoded, and a Buffer over all of it (msgpack.decode). */
let wholeBuffer: ArrayBufferLike | undefined
let whole: Buffer = Buffer.alloc(0)

/**
 * Values are checked where user code hands them over (values.ts), except objects already
 * frozen (taken as checked state values); one frozen by user code that the codec refuses
 * still fails in weir's words, not the library's (msgpackr's advice names options a weir
 * user cannot set). `context.path` and `context.reason` say what to change.
 */
function encodeFailure(codec: 'msgpack' | 'json', value: unknown, err: unknown): unknown {
  const problem = findValueProblem(value, codec)
  if (problem === undefined) return err
  // Not the library's error as the cause: its advice is what this replaces.
  return new WeirError('WEIR_VALUE_UNSUPPORTED', `the ${codec} codec cannot encode this value: ${problem.path} ${problem.reason}`, { path: problem.path, reason: problem.reason, codec })
}

export const msgpack: Codec<unknown> = {
  name: 'msgpack',
  encode: (v) => {
    try {
      return packr.pack(v)
    } catch (err) {
      throw encodeFailure('msgpack', v, err)
    }
  },
  decode: (b) => {
    // One byte is a fixint, nil or a boolean (a count, a flag): no call into msgpackr.
    if (b.byteLength === 1) {
      const x = b[0]!
      if (x < 0x80) return x
      if (x >= 0xe0) return x - 0x100
      if (x === 0xc0) return null
      if (x === 0xc2) return false
      if (x === 0xc3) return true
    }
    if (b.byteLength === 0) return packr.unpack(b)
    // msgpackr caches a DataView on the Buffer it reads: with each value its own view (a record
    // in a stored batch) that is a new DataView and a new property per value. Read the value as
    // a range of its whole ArrayBuffer instead, through one Buffer kept while values come from it.
    if (b.buffer !== wholeBuffer) {
      wholeBuffer = b.buffer
      whole = Buffer.from(b.buffer)
    }
    return packr.unpack(whole, { start: b.byteOffset, end: b.byteOffset + b.byteLength })
  },
}

/** The JSON text of `v`: what JSON.stringify writes, a finite number without its call (a count's digits). */
function jsonText(v: unknown): string {
  if (typeof v === 'number' && Number.isFinite(v)) return String(v)
  let text: string | undefined
  try {
    text = JSON.stringify(v)
  } catch (err) {
    throw encodeFailure('json', v, err)
  }
  // A function or symbol at the top: JSON has no text for it.
  if (text === undefined) throw encodeFailure('json', v, new TypeError(`JSON.stringify gives no text for ${typeof v}`))
  return text
}

export const json: Codec<unknown> = {
  name: 'json',
  encode: (v) => Buffer.from(jsonText(v)),
  decode: (b) => JSON.parse(b.toString('utf8')) as unknown,
}

export const raw: Codec<Buffer> = {
  name: 'raw',
  encode: (v) => v,
  decode: (b) => b,
}

export const utf8: Codec<string> = {
  name: 'string',
  encode: (v) => Buffer.from(v),
  decode: (b) => b.toString('utf8'),
}

export type CodecName = 'msgpack' | 'json' | 'raw' | 'string'

export function codecFor(c: CodecName | Codec<unknown>): Codec<unknown> {
  if (typeof c !== 'string') return c
  switch (c) {
    case 'msgpack': return msgpack
    case 'json': return json
    case 'raw': return raw as Codec<unknown>
    case 'string': return utf8 as Codec<unknown>
  }
}

/** The state store's value encoding: msgpack, shared so state and changelog agree. */
export const stateCodec = msgpack

/** msgpack's one-byte integers, -32 to 127 (negative and positive fixint): counts, small numbers. */
const FIXINT_MIN = -32
const FIXINTS: readonly Buffer[] = Array.from({ length: 128 - FIXINT_MIN }, (_, i) => Buffer.from([(i + FIXINT_MIN) & 0xff]))

/**
 * A value's bytes for a record a producer copies into its batch at once (OutgoingRecord):
 * the JSON and string codecs give their text, which the producer writes as UTF-8 without a
 * Buffer of its own; msgpack gives a shared Buffer for a one-byte integer. What it returns
 * is read once and never kept or changed.
 *
 * @example
 * encodeForSend(json, 3)    // '3'
 * encodeForSend(msgpack, 1) // <Buffer 01>
 */
export function encodeForSend(codec: Codec<unknown>, value: unknown): Buffer | string {
  if (codec === msgpack) return typeof value === 'number' && Number.isInteger(value) && value >= FIXINT_MIN && value <= 127 ? FIXINTS[value - FIXINT_MIN]! : msgpack.encode(value)
  if (codec === json) return jsonText(value)
  if (codec === utf8 && typeof value === 'string') return value
  return codec.encode(value)
}
