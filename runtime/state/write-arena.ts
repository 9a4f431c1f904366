import { copyInto } from '../bytes.ts'

/**
 * A checkpoint's store writes, their bytes back to back in one buffer. They wait from the
 * seal until the pipe has committed and the local write runs (hundreds of ms at millions of
 * keys); held as a key Buffer and a value Buffer per entry, they outlived V8's scavenges and
 * were promoted (a third of what was promoted at 10M keys, benchmarks/HISTORY.md). Here they
 * are bytes outside the JavaScript heap and offsets in a typed array; `each` hands out
 * views only while the write batch is built.
 *
 * @example
 * const arena = new WriteArena()
 * arena.add(Buffer.from('k'), Buffer.from('v'))
 * arena.add(Buffer.from('gone'), null) // a delete
 * arena.each((key, value) => console.log(key.toString(), value?.toString()))
 */
export class WriteArena {
  private bytes: Buffer
  private used = 0
  /** Per entry: key start, value start (= key end), value end; -1 as value end for a delete. */
  private spans: Int32Array
  /** Entries added. */
  length = 0

  constructor(initialBytes = 64 * 1024, initialEntries = 1024) {
    this.bytes = Buffer.allocUnsafe(initialBytes)
    this.spans = new Int32Array(initialEntries * 3)
  }

  /** Copies an entry in; `value` null deletes the key. */
  add(key: Buffer, value: Buffer | null): void {
    const need = key.length + (value?.length ?? 0)
    if (this.used + need > this.bytes.length) {
      const grown = Buffer.allocUnsafe(Math.max(this.bytes.length * 2, this.used + need))
      this.bytes.copy(grown, 0, 0, this.used)
      this.bytes = grown
    }
    if ((this.length + 1) * 3 > this.spans.length) {
      const grown = new Int32Array(this.spans.length * 2)
      grown.set(this.spans)
      this.spans = grown
    }
    const at = this.length * 3
    this.spans[at] = this.used
    this.used = copyInto(key, this.bytes, this.used)
    this.spans[at + 1] = this.used
    if (value === null) this.spans[at + 2] = -1
    else {
      this.used = copyInto(value, this.bytes, this.used)
      this.spans[at + 2] = this.used
    }
    this.length++
  }

  /** Visits the entries in the order they were added, as views of the arena's bytes. */
  each(visit: (key: Buffer, value: Buffer | null) => void): void {
    const { bytes, spans } = this
    for (let i = 0; i < this.length; i++) {
      const at = i * 3
      const end = spans[at + 2]!
      visit(bytes.subarray(spans[at]!, spans[at + 1]!), end < 0 ? null : bytes.subarray(spans[at + 1]!, end))
    }
  }
}
