/**
 * LineReader: lines with the byte range each covers (what the source commits as its
 * position), from any offset, across chunk boundaries, with \r\n, without a last line break,
 * and a line longer than the limit skipped past without being held whole.
 */
import { Readable } from 'node:stream'
import { describe, expect, it } from 'vitest'
import { LineReader, type Line } from '../../../../processors/sources/file-set/line-reader.ts'

/** The bytes in chunks of `size`, produced only as they are read; counts what was produced. */
function chunked(bytes: Buffer, size: number): { body: Readable; produced: () => number } {
  let produced = 0
  function* gen(): Generator<Buffer> {
    for (let i = 0; i < bytes.length; i += size) {
      produced = Math.min(bytes.length, i + size)
      yield bytes.subarray(i, i + size)
    }
  }
  return { body: Readable.from(gen(), { objectMode: false, highWaterMark: 1 }), produced: () => produced }
}

async function all(reader: LineReader): Promise<Array<[string, number, number, boolean]>> {
  const out: Array<[string, number, number, boolean]> = []
  for (let l: Line | undefined; (l = await reader.next()) !== undefined; ) out.push([l.bytes.toString(), l.start, l.end, l.oversized])
  return out
}

describe('LineReader', () => {
  it('gives each line with its byte range, across chunks, \\r\\n and a last line without a break', async () => {
    const text = Buffer.from('ab\r\ncde\n\nfghij')
    for (const size of [1, 2, 3, 100]) {
      expect(await all(new LineReader(chunked(text, size).body, 0, 1000)), `chunks of ${size}`).toEqual([['ab', 0, 4, false], ['cde', 4, 8, false], ['', 8, 9, false], ['fghij', 9, 14, false]])
    }
  })

  it('reads on from an offset with the positions of the whole object', async () => {
    const text = Buffer.from('ab\ncde\nfg\n')
    expect(await all(new LineReader(chunked(text.subarray(3), 2).body, 3, 1000))).toEqual([['cde', 3, 7, false], ['fg', 7, 10, false]])
  })

  it('keeps the first maxLineBytes of a longer line, skips the rest while reading, and goes on after it', async () => {
    const long = 'x'.repeat(10 * 1024 * 1024)
    const text = Buffer.from(`a\n${long}\nb\n`)
    const { body, produced } = chunked(text, 64 * 1024)
    const reader = new LineReader(body, 0, 16)
    expect((await reader.next())!.bytes.toString()).toBe('a')
    const over = (await reader.next())!
    expect([over.bytes.toString(), over.start, over.end, over.oversized]).toEqual(['x'.repeat(16), 2, 2 + long.length + 1, true])
    expect(await reader.next()).toMatchObject({ start: 2 + long.length + 1, oversized: false })
    expect(produced()).toBe(text.length)
  })
})
