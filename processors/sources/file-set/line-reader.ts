/**
 * Physical lines of one object, read as a stream from a byte offset, each with the byte
 * range it covers: the source commits the offset after the last line it emitted, so a
 * restart reads on from exactly there (a ranged GET, a file read from the offset). Never
 * holds more than one line (at most `maxLineBytes`) and one chunk in memory.
 */
import type { Readable } from 'node:stream'

export interface Line {
  /** The line's bytes without its line break (`\n` or `\r\n`); at most maxLineBytes of them when `oversized`. */
  bytes: Buffer
  /** Byte offset of its first byte in the object. */
  start: number
  /** Byte offset just after its line break (where the next line starts). */
  end: number
  /** Longer than maxLineBytes: `bytes` holds its beginning, the rest was skipped. */
  oversized: boolean
}

export class LineReader {
  private buffer: Buffer = Buffer.alloc(0)
  /** Object offset of buffer[0]. */
  private bufferStart: number
  /** Bytes of the buffer already searched for a line break. */
  private scanned = 0
  private ended = false
  private readonly chunks: AsyncIterator<unknown>

  constructor(private readonly body: Readable, offset: number, private readonly maxLineBytes: number) {
    this.bufferStart = offset
    this.chunks = body[Symbol.asyncIterator]()
  }

  /** Object offset where the next line starts. */
  get position(): number {
    return this.bufferStart
  }

  /** The next line, or undefined at the end of the object. */
  async next(): Promise<Line | undefined> {
    for (;;) {
      const nl = this.buffer.indexOf(10, this.scanned)
      if (nl >= 0) return this.take(nl, nl + 1)
      this.scanned = this.buffer.length
      if (this.ended) return this.buffer.length === 0 ? undefined : this.take(this.buffer.length, this.buffer.length)
      if (this.buffer.length > this.maxLineBytes) return this.skipOversized()
      await this.read()
    }
  }

  close(): void {
    this.body.destroy()
  }

  private take(lineEnd: number, next: number): Line {
    let bytes = this.buffer.subarray(0, lineEnd)
    if (bytes.length > 0 && bytes[bytes.length - 1] === 13) bytes = bytes.subarray(0, bytes.length - 1)
    const oversized = bytes.length > this.maxLineBytes
    const line: Line = { bytes: oversized ? Buffer.from(bytes.subarray(0, this.maxLineBytes)) : bytes, start: this.bufferStart, end: this.bufferStart + next, oversized }
    this.buffer = this.buffer.subarray(next)
    this.bufferStart += next
    this.scanned = 0
    return line
  }

  /** A line longer than maxLineBytes: keep its beginning, read past the rest without holding it. */
  private async skipOversized(): Promise<Line> {
    const head = Buffer.from(this.buffer.subarray(0, this.maxLineBytes))
    const start = this.bufferStart
    for (;;) {
      const nl = this.buffer.indexOf(10)
      if (nl >= 0) {
        this.bufferStart += nl + 1
        this.buffer = this.buffer.subarray(nl + 1)
        this.scanned = 0
        return { bytes: head, start, end: this.bufferStart, oversized: true }
      }
      this.bufferStart += this.buffer.length
      this.buffer = Buffer.alloc(0)
      if (this.ended) return { bytes: head, start, end: this.bufferStart, oversized: true }
      await this.read()
    }
  }

  private async read(): Promise<void> {
    const r = await this.chunks.next()
    if (r.done === true) {
      this.ended = true
      return
    }
    const chunk = typeof r.value === 'string' ? Buffer.from(r.value) : (r.value as Uint8Array)
    this.buffer = this.buffer.length === 0 ? Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength) : Buffer.concat([this.buffer, chunk])
  }
}
