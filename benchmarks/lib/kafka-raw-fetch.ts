/**
 * One Kafka Fetch (v4) over a plain socket, returning the partition's record set as the
 * broker sent it: the bytes weir's codec is tested and measured on, with no client between.
 * Talks to one broker (the partition's leader: the single local broker in tests).
 */
import { connect, type Socket } from 'node:net'

export interface RawFetch {
  errorCode: number
  highWatermark: number
  lastStableOffset: number
  /** Null when the fetch was read_uncommitted. */
  abortedTransactions: Array<{ producerId: number; firstOffset: number }> | null
  records: Buffer
}

function int64(buf: Buffer, at: number): number {
  return buf.readInt32BE(at) * 4294967296 + buf.readUInt32BE(at + 4)
}

/** A connection that sends Fetch requests one at a time. */
export class RawFetchConnection {
  private pending: { resolve: (b: Buffer) => void; reject: (e: Error) => void } | undefined
  private chunks: Buffer[] = []
  private buffered = 0
  private correlationId = 0

  private constructor(private readonly socket: Socket) {
    socket.on('data', (chunk: Buffer) => this.onData(chunk))
    socket.on('error', (err) => this.pending?.reject(err))
  }

  static open(broker: string): Promise<RawFetchConnection> {
    const [host, port] = broker.split(':') as [string, string]
    return new Promise((resolve, reject) => {
      const socket = connect({ host, port: Number(port), noDelay: true }, () => resolve(new RawFetchConnection(socket)))
      socket.once('error', reject)
    })
  }

  async fetch(topic: string, partition: number, offset: number, options: { readCommitted: boolean; maxBytes: number; maxWaitMs?: number }): Promise<RawFetch> {
    const clientId = Buffer.from('weir-raw-fetch')
    const topicBytes = Buffer.from(topic)
    const size = 2 + 2 + 4 + 2 + clientId.length + 4 + 4 + 4 + 4 + 1 + 4 + 2 + topicBytes.length + 4 + 4 + 8 + 4
    const req = Buffer.alloc(4 + size)
    let at = 0
    at = req.writeInt32BE(size, at)
    at = req.writeInt16BE(1, at) // Fetch
    at = req.writeInt16BE(4, at)
    at = req.writeInt32BE(++this.correlationId, at)
    at = req.writeInt16BE(clientId.length, at)
    at += clientId.copy(req, at)
    at = req.writeInt32BE(-1, at) // replica id
    at = req.writeInt32BE(options.maxWaitMs ?? 100, at)
    at = req.writeInt32BE(1, at) // min bytes
    at = req.writeInt32BE(options.maxBytes, at)
    at = req.writeInt8(options.readCommitted ? 1 : 0, at)
    at = req.writeInt32BE(1, at)
    at = req.writeInt16BE(topicBytes.length, at)
    at += topicBytes.copy(req, at)
    at = req.writeInt32BE(1, at)
    at = req.writeInt32BE(partition, at)
    at = req.writeInt32BE(Math.floor(offset / 4294967296), at)
    at = req.writeUInt32BE(offset % 4294967296, at)
    req.writeInt32BE(options.maxBytes, at)
    const res = await new Promise<Buffer>((resolve, reject) => {
      this.pending = { resolve, reject }
      this.socket.write(req)
    })
    // correlation id, throttle, [topics]: one topic, one partition
    let p = 4 + 4 + 4
    const nameLength = res.readInt16BE(p)
    p += 2 + nameLength + 4
    p += 4 // partition
    const errorCode = res.readInt16BE(p)
    p += 2
    const highWatermark = int64(res, p)
    const lastStableOffset = int64(res, p + 8)
    p += 16
    const abortedCount = res.readInt32BE(p)
    p += 4
    let abortedTransactions: RawFetch['abortedTransactions'] = null
    if (abortedCount >= 0) {
      abortedTransactions = []
      for (let i = 0; i < abortedCount; i++, p += 16) abortedTransactions.push({ producerId: int64(res, p), firstOffset: int64(res, p + 8) })
    }
    const recordsLength = res.readInt32BE(p)
    p += 4
    const records = recordsLength <= 0 ? Buffer.alloc(0) : res.subarray(p, p + recordsLength)
    return { errorCode, highWatermark, lastStableOffset, abortedTransactions, records }
  }

  close(): void {
    this.socket.destroy()
  }

  private onData(chunk: Buffer): void {
    this.chunks.push(chunk)
    this.buffered += chunk.length
    if (this.buffered < 4) return
    // Concatenate once the whole response is there (a 1 MiB fetch arrives in many chunks).
    const head = this.chunks[0]!.length >= 4 ? this.chunks[0]! : Buffer.concat(this.chunks)
    const size = head.readInt32BE(0)
    if (this.buffered < 4 + size) return
    const all = this.chunks.length === 1 ? this.chunks[0]! : Buffer.concat(this.chunks)
    const rest = all.subarray(4 + size)
    this.chunks = rest.length > 0 ? [rest] : []
    this.buffered = rest.length
    const pending = this.pending
    this.pending = undefined
    pending?.resolve(all.subarray(4, 4 + size))
  }
}

/** Every record set of a partition from `from` to its end (high watermark, or LSO when read_committed). */
export async function fetchAll(broker: string, topic: string, partition: number, from: number, options: { readCommitted: boolean; maxBytes?: number }): Promise<RawFetch[]> {
  const conn = await RawFetchConnection.open(broker)
  const out: RawFetch[] = []
  try {
    let offset = from
    for (;;) {
      const f = await conn.fetch(topic, partition, offset, { readCommitted: options.readCommitted, maxBytes: options.maxBytes ?? 1 << 20, maxWaitMs: 10 })
      if (f.errorCode !== 0) throw new Error(`fetch ${topic}/${partition} at ${offset}: Kafka error ${f.errorCode}`)
      const end = options.readCommitted ? f.lastStableOffset : f.highWatermark
      if (f.records.length === 0) {
        if (offset >= end) break
        continue
      }
      out.push(f)
      const next = nextOffsetOf(f.records)
      if (next <= offset) throw new Error(`fetch ${topic}/${partition} at ${offset} returned no complete batch (raise maxBytes)`)
      offset = next
      if (offset >= end) break
    }
  } finally {
    conn.close()
  }
  return out
}

/** Offset after the last complete batch of a record set (by the batch headers only). */
function nextOffsetOf(records: Buffer): number {
  let at = 0
  let next = -1
  while (at + 12 <= records.length) {
    const base = int64(records, at)
    const length = records.readInt32BE(at + 8)
    if (at + 12 + length > records.length) break
    next = base + records.readInt32BE(at + 23) + 1
    at += 12 + length
  }
  return next
}
