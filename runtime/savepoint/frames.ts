/**
 * The files of a savepoint hold entries in frames: a 4-byte big-endian length, then one
 * standard MessagePack array of entries (no extensions, so any MessagePack library reads
 * it). Batching entries per frame keeps encoding fast at millions of keys; the length
 * prefix lets a reader stream a file of any size. Each file's SHA-256 and entry count are
 * recorded in the manifest and checked as the file is read back.
 *
 * @example
 * const w = await FrameWriter.open('/sp/stages/count/0/counts.frames')
 * w.add([Buffer.from('ant'), valueBytes])
 * const { entries, sha256 } = await w.close()
 * for await (const entry of readFrames(path, { entries, sha256 })) …
 */
import { createHash, type Hash } from 'node:crypto'
import { closeSync, fsync, openSync, writev } from 'node:fs'
import { open } from 'node:fs/promises'
import { Packr } from 'msgpackr'
import { WeirError } from '../errors.ts'

const packr = new Packr({ useRecords: false, moreTypes: false, mapsAsObjects: true })
/** Entries per frame. */
const FRAME_ENTRIES = 4096
const READ_CHUNK = 4 * 1024 * 1024
/** A frame's first buffer; it doubles as entries come. */
const FRAME_START_BYTES = 256 * 1024

export interface FileSummary {
  entries: number
  bytes: number
  sha256: string
}

export class FrameWriter {
  /** The frame being filled: its entries' MessagePack, one after another (the array header goes in front at flush). */
  private frame = Buffer.allocUnsafe(FRAME_START_BYTES)
  private at = 0
  private inFrame = 0
  private entries = 0
  private bytes = 0
  private readonly hash: Hash = createHash('sha256')
  private writing: Promise<unknown> = Promise.resolve()

  private constructor(private readonly fd: number, readonly path: string) {}

  /** Creates the file now (it must not exist), so a writer is had without an await per new file. */
  static create(path: string): FrameWriter {
    return new FrameWriter(openSync(path, 'wx'), path)
  }

  static async open(path: string): Promise<FrameWriter> {
    return FrameWriter.create(path)
  }

  /** Adds one entry (an array); written out once a frame is full. */
  add(entry: unknown[]): void {
    const bytes = packr.pack(entry)
    this.reserve(bytes.length)
    bytes.copy(this.frame, this.at)
    this.at += bytes.length
    this.added()
  }

  /**
   * Adds the entry [a, b] of two byte strings (null for nil): what keyed state is, millions
   * of times. Encoded here, as MessagePack bin, without building the entry or calling the
   * encoder; it reads back exactly as add([a, b]) would.
   */
  addBytesPair(a: Buffer | null, b: Buffer): void {
    this.reserve(11 + (a === null ? 0 : a.length) + b.length)
    this.frame[this.at++] = 0x92
    this.writeBin(a)
    this.writeBin(b)
    this.added()
  }

  /** Resolves once what was added so far is written: callers producing fast wait on it. */
  drained(): Promise<unknown> {
    return this.writing
  }

  private writeBin(v: Buffer | null): void {
    const f = this.frame
    if (v === null) {
      f[this.at++] = 0xc0
      return
    }
    const n = v.length
    if (n < 0x100) {
      f[this.at] = 0xc4
      f[this.at + 1] = n
      this.at += 2
    } else if (n < 0x10000) {
      f[this.at] = 0xc5
      f.writeUInt16BE(n, this.at + 1)
      this.at += 3
    } else {
      f[this.at] = 0xc6
      f.writeUInt32BE(n, this.at + 1)
      this.at += 5
    }
    v.copy(f, this.at)
    this.at += n
  }

  private reserve(n: number): void {
    if (this.at + n <= this.frame.length) return
    const bigger = Buffer.allocUnsafe(Math.max(this.frame.length * 2, this.at + n))
    this.frame.copy(bigger, 0, 0, this.at)
    this.frame = bigger
  }

  private added(): void {
    this.entries++
    if (++this.inFrame >= FRAME_ENTRIES) this.flushFrame()
  }

  private flushFrame(): void {
    if (this.inFrame === 0) return
    const n = this.inFrame
    // The length prefix, then the array header (fixarray, array 16 or array 32) in front of the entries.
    const head = Buffer.allocUnsafe(9)
    let h = 4
    if (n < 16) head[h++] = 0x90 | n
    else if (n < 0x10000) {
      head[h] = 0xdc
      head.writeUInt16BE(n, h + 1)
      h += 3
    } else {
      head[h] = 0xdd
      head.writeUInt32BE(n, h + 1)
      h += 5
    }
    head.writeUInt32BE(h - 4 + this.at, 0)
    const prefix = head.subarray(0, h)
    const body = this.frame.subarray(0, this.at)
    this.hash.update(prefix)
    this.hash.update(body)
    this.bytes += prefix.length + body.length
    this.frame = Buffer.allocUnsafe(Math.max(FRAME_START_BYTES, this.frame.length))
    this.at = 0
    this.inFrame = 0
    const fd = this.fd
    // Writes are chained, so frames land in order; the encoding of the next frame overlaps this write.
    this.writing = this.writing.then(() => writevAll(fd, [prefix, body]))
  }

  async close(): Promise<FileSummary> {
    this.flushFrame()
    try {
      await this.writing
      await new Promise<void>((resolve, reject) => fsync(this.fd, (err) => (err ? reject(err) : resolve())))
    } finally {
      closeSync(this.fd)
    }
    return { entries: this.entries, bytes: this.bytes, sha256: this.hash.digest('hex') }
  }
}

/** Writes every byte of `buffers` at the file's current position (a short write continues). */
function writevAll(fd: number, buffers: Buffer[]): Promise<void> {
  const total = buffers.reduce((n, b) => n + b.length, 0)
  return new Promise((resolve, reject) => {
    writev(fd, buffers, (err, written) => {
      if (err) return reject(err)
      if (written === total) return resolve()
      const rest = Buffer.concat(buffers).subarray(written)
      writevAll(fd, [rest]).then(resolve, reject)
    })
  })
}

/** The savepoint does not match its manifest (a changed, cut or foreign file). */
export class SavepointFileError extends WeirError {
  constructor(path: string, problem: string) {
    super('WEIR_SAVEPOINT_INVALID', `savepoint file ${path}: ${problem}`, { path })
  }
}

/**
 * The entries of a frames file, in order. With `expect`, the count and checksum are checked
 * when the file ends (a reader acting on entries as they come checks nothing was cut or
 * changed before it commits what it built from them).
 */
export async function* readFrames(path: string, expect?: FileSummary): AsyncGenerator<unknown[][]> {
  const file = await open(path, 'r')
  const hash = createHash('sha256')
  let entries = 0
  let bytes = 0
  try {
    let buffered = Buffer.alloc(0)
    const chunk = Buffer.allocUnsafe(READ_CHUNK)
    for (;;) {
      const { bytesRead } = await file.read(chunk, 0, READ_CHUNK, null)
      if (bytesRead === 0) break
      hash.update(chunk.subarray(0, bytesRead))
      bytes += bytesRead
      buffered = buffered.length === 0 ? Buffer.from(chunk.subarray(0, bytesRead)) : Buffer.concat([buffered, chunk.subarray(0, bytesRead)])
      let at = 0
      while (buffered.length - at >= 4) {
        const length = buffered.readUInt32BE(at)
        if (buffered.length - at - 4 < length) break
        const frame = packr.unpack(buffered.subarray(at + 4, at + 4 + length)) as unknown[][]
        if (!Array.isArray(frame)) throw new SavepointFileError(path, `a frame at byte ${bytes - buffered.length + at} is not an array of entries`)
        entries += frame.length
        at += 4 + length
        yield frame
      }
      buffered = buffered.subarray(at)
    }
    if (buffered.length > 0) throw new SavepointFileError(path, `ends inside a frame (${buffered.length} bytes left over): the file was cut`)
  } finally {
    await file.close()
  }
  if (expect !== undefined) {
    const sha256 = hash.digest('hex')
    if (bytes !== expect.bytes || sha256 !== expect.sha256) throw new SavepointFileError(path, `its checksum or size differs from the manifest's (${bytes} bytes, sha256 ${sha256.slice(0, 12)}…; the manifest says ${expect.bytes} bytes, ${expect.sha256.slice(0, 12)}…): the file changed after the savepoint was taken`)
    if (entries !== expect.entries) throw new SavepointFileError(path, `holds ${entries} entries, the manifest says ${expect.entries}`)
  }
}
