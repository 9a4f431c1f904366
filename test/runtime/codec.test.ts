/**
 * The built-in codecs decode what msgpackr and JSON give back: the msgpack codec's one-byte
 * fast path (fixints, nil, booleans) answers as msgpackr itself does for every byte, and
 * values of every shape survive an encode and a decode, alone or read from a shared buffer.
 * What a record is sent with (encodeForSend) is the codec's bytes, as text where it is text.
 */
import fc from 'fast-check'
import { Packr } from 'msgpackr'
import { describe, expect, it } from 'vitest'
import { codecFor, encodeForSend, json, msgpack } from '../../runtime/codec.ts'

const RUNS = Number(process.env.WEIR_CODEC_RUNS ?? 300)
/** msgpackr with the codec's options, not going through the codec. */
const reference = new Packr({ useRecords: false, moreTypes: false, mapsAsObjects: true })

function outcome(decode: () => unknown): { value: unknown } | { error: true } {
  try {
    return { value: decode() }
  } catch {
    return { error: true }
  }
}

describe('msgpack codec', () => {
  it('decodes every one-byte value as msgpackr does', () => {
    for (let x = 0; x < 256; x++) {
      const bytes = Buffer.from([x])
      expect(outcome(() => msgpack.decode(bytes)), `byte 0x${x.toString(16)}`).toEqual(outcome(() => reference.unpack(Buffer.from([x]))))
    }
  })

  it('gives back any JSON-shaped value, also as a slice of a larger buffer', () => {
    fc.assert(
      fc.property(fc.jsonValue(), fc.nat(16), (value, pad) => {
        const encoded = msgpack.encode(value)
        // A record's value is a slice of its fetched batch: read it from inside a larger buffer.
        const batch = Buffer.concat([Buffer.alloc(pad, 0xc1), encoded, Buffer.alloc(3, 0xc1)])
        const slice = batch.subarray(pad, pad + encoded.length)
        expect(msgpack.decode(slice)).toEqual(reference.unpack(Buffer.from(encoded)))
        expect(json.decode(json.encode(value))).toEqual(JSON.parse(JSON.stringify(value)))
      }),
      { numRuns: RUNS },
    )
  })
})

describe('encodeForSend', () => {
  const bytesOf = (x: Buffer | string): Buffer => (typeof x === 'string' ? Buffer.from(x, 'utf8') : x)
  it("gives the codec's own bytes for any value, as text for JSON and strings", () => {
    const str = codecFor('string')
    fc.assert(
      fc.property(fc.oneof(fc.jsonValue(), fc.integer({ min: -40, max: 140 }), fc.double(), fc.constant(-0)), fc.string({ unit: 'binary', maxLength: 100, size: 'max' }), (value, text) => {
        expect(bytesOf(encodeForSend(msgpack, value))).toEqual(msgpack.encode(value))
        expect(bytesOf(encodeForSend(json, value))).toEqual(json.encode(value))
        expect(typeof encodeForSend(json, value)).toBe('string')
        expect(bytesOf(encodeForSend(str, text))).toEqual(str.encode(text))
      }),
      { numRuns: RUNS },
    )
    for (let v = -33; v <= 128; v++) expect(bytesOf(encodeForSend(msgpack, v)), String(v)).toEqual(reference.pack(v))
  })

  it('refuses what JSON has no text for, naming the problem', () => {
    expect(() => json.encode(() => 1)).toThrow(/json codec cannot encode/)
    expect(() => encodeForSend(json, 10n)).toThrow(/json codec cannot encode/)
  })
})

