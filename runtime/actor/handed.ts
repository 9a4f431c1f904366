/**
 * A record one chained stage hands the next (runtime/api/chains.ts) as a value rather than
 * as bytes: no topic lies between them, so encoding it only to decode it again in the same
 * actor is wasted work (for small records most of a chained stage's cost). The value is a
 * copy taken at emit (values.ts copyCheckedValue), so neither stage sees the other's later
 * changes. Its bytes are encoded only if something asks for them (a dead letter of it).
 */
import type { Codec } from '../codec.ts'
import type { StoredRecord } from '../pipe/pipe.ts'

export class HandedRecord implements StoredRecord {
  /** It was never in a topic. */
  readonly offset = -1
  headers?: Record<string, Buffer>
  private bytes: Buffer | null | undefined

  /** The value as the receiving stage gets it: null for an emitted undefined, as a decode gives. */
  readonly decoded: unknown

  /** `value`: the copy of what was emitted (undefined when nothing was). */
  constructor(readonly key: Buffer | null, value: unknown, readonly timestamp: number, private readonly codec: Codec<unknown>) {
    this.decoded = value === undefined ? null : value
    // An emitted undefined has no bytes (a null value), as Outputs writes it to a topic.
    if (value === undefined) this.bytes = null
  }

  /** The value's bytes in the edge's codec, encoded on first use (a dead letter); what the receiver changed in its copy is in them. */
  get value(): Buffer | null {
    if (this.bytes === undefined) this.bytes = this.codec.encode(this.decoded)
    return this.bytes
  }
}
