/** The Nexmark event codec gives back every event the generator makes, field by field, and refuses what is not one. */
import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { eventCodec } from '../../../benchmarks/nexmark/event-codec.ts'
import { eventAt } from '../../../benchmarks/nexmark/generator.ts'
import { msgpack } from '../../../runtime/codec.ts'

const RUNS = Number(process.env.WEIR_NEXMARK_CODEC_RUNS ?? 500)

describe('Nexmark event codec', () => {
  it('gives back persons, auctions and bids of any seed and position, in fewer bytes than msgpack with names', () => {
    fc.assert(
      fc.property(fc.integer({ min: -(2 ** 31), max: 2 ** 31 - 1 }), fc.integer({ min: 0, max: 2 ** 31 - 1 }), (seed, n) => {
        const e = eventAt(seed, n)
        const bytes = eventCodec.encode(e)
        expect(eventCodec.decode(bytes)).toStrictEqual(e)
        expect(bytes.length).toBeLessThan(msgpack.encode(e).length)
      }),
      { numRuns: RUNS },
    )
    // Every kind at least once: n mod 50 is 0 for a person, 1..3 for an auction.
    for (const n of [0, 1, 4]) expect(eventCodec.decode(eventCodec.encode(eventAt(42, n)))).toStrictEqual(eventAt(42, n))
  })

  it('refuses bytes that are not an event', () => {
    expect(() => eventCodec.decode(msgpack.encode({ bid: 1 }))).toThrow(/not a Nexmark event/)
    expect(() => eventCodec.decode(msgpack.encode([7, 1]))).toThrow(/not a Nexmark event: kind 7/)
    expect(() => eventCodec.encode({})).toThrow(/person, an auction or a bid/)
  })
})
