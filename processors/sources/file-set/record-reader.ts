/**
 * Records of one object in its format (JSON lines, or CSV with a header row), each with the
 * line it starts on and the byte offset after it: what the source commits as its position
 * inside the object. A record that does not parse comes back as `malformed` with the error,
 * for the dead-letter topic; reading goes on after it.
 */
import { parse as parseCsv } from 'csv-parse/sync'
import type { LineReader } from './line-reader.ts'

export type FileFormat = 'jsonl' | 'csv'

export type ReadItem =
  /** A record: its value, the (1-based) line it starts on, the offset after it. */
  | { kind: 'record'; value: unknown; line: number; end: number }
  | { kind: 'malformed'; bytes: Buffer; line: number; end: number; error: Error }
  /** A CSV header row: the columns every following row is read with. */
  | { kind: 'header'; columns: string[]; line: number; end: number }
  /** A blank line: nothing to emit, but the position moves past it. */
  | { kind: 'blank'; line: number; end: number }

/** A CSV row whose field count is not the header's. */
export class CsvColumnCountError extends Error {
  constructor(readonly expected: number, readonly got: number) {
    super(`the row has ${got} field${got === 1 ? '' : 's'}, the header has ${expected}`)
    this.name = 'CsvColumnCountError'
  }
}

export class RecordReader {
  /** Lines read so far in this object (the number of the last line read). */
  private line: number

  constructor(private readonly lines: LineReader, private readonly format: FileFormat, startLine: number, private columns: readonly string[] | undefined, private readonly delimiter: string, private readonly maxLineBytes: number) {
    this.line = startLine
  }

  /** Lines of the object read so far (where the next record's line count starts). */
  get linesRead(): number {
    return this.line
  }

  /** The next item, or undefined at the end of the object. */
  async next(): Promise<ReadItem | undefined> {
    const first = await this.lines.next()
    if (first === undefined) return undefined
    const line = ++this.line
    if (first.oversized) return { kind: 'malformed', bytes: first.bytes, line, end: first.end, error: new Error(`the line is longer than maxLineBytes (${this.maxLineBytes}); its first ${first.bytes.length} bytes are kept`) }
    if (isBlank(first.bytes)) return { kind: 'blank', line, end: first.end }
    if (this.format === 'jsonl') return this.json(first.bytes, line, first.end)
    return this.csv(first.bytes, line, first.end)
  }

  private json(bytes: Buffer, line: number, end: number): ReadItem {
    try {
      return { kind: 'record', value: JSON.parse(bytes.toString('utf8')) as unknown, line, end }
    } catch (err) {
      return { kind: 'malformed', bytes: Buffer.from(bytes), line, end, error: err as Error }
    }
  }

  private async csv(firstBytes: Buffer, line: number, firstEnd: number): Promise<ReadItem> {
    // A quoted field may hold line breaks: a record ends on the line that closes every quote.
    const parts = [Buffer.from(firstBytes)]
    let size = firstBytes.length
    let quotes = countQuotes(firstBytes)
    let end = firstEnd
    while (quotes % 2 === 1) {
      const more = await this.lines.next()
      if (more === undefined) break
      this.line++
      end = more.end
      if (more.oversized || size + more.bytes.length > this.maxLineBytes) {
        return { kind: 'malformed', bytes: Buffer.concat(parts), line, end, error: new Error(`the record is longer than maxLineBytes (${this.maxLineBytes}) (an unclosed quote?)`) }
      }
      parts.push(Buffer.from('\n'), Buffer.from(more.bytes))
      size += more.bytes.length + 1
      quotes += countQuotes(more.bytes)
    }
    const bytes = Buffer.concat(parts)
    let fields: string[]
    try {
      const rows = parseCsv(bytes, { delimiter: this.delimiter, relax_column_count: true }) as string[][]
      if (rows.length !== 1) throw new Error(`expected one CSV record, found ${rows.length}`)
      fields = rows[0]!
    } catch (err) {
      return { kind: 'malformed', bytes, line, end, error: err as Error }
    }
    if (this.columns === undefined) {
      this.columns = fields
      return { kind: 'header', columns: fields, line, end }
    }
    if (fields.length !== this.columns.length) return { kind: 'malformed', bytes, line, end, error: new CsvColumnCountError(this.columns.length, fields.length) }
    const value: Record<string, string> = {}
    this.columns.forEach((c, i) => (value[c] = fields[i]!))
    return { kind: 'record', value, line, end }
  }
}

function isBlank(bytes: Buffer): boolean {
  for (const b of bytes) if (b !== 32 && b !== 9 && b !== 13) return false
  return true
}

function countQuotes(bytes: Buffer): number {
  let n = 0
  for (const b of bytes) if (b === 34) n++
  return n
}
