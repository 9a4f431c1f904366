/**
 * What the latency benchmark measures with: a tail of the ticker's signal file that stamps
 * each line with the wall time it became visible, the topic hops on the path from a source
 * to the output, and the raw Kafka floor of one hop (a transaction's commit until a
 * read_committed consumer sees its record).
 */
import { closeSync, existsSync, openSync, readSync, statSync } from 'node:fs'
import { randomUUID } from 'node:crypto'
import type { Kafka } from 'kafkajs'
import type { Pipeline } from '../../index.ts'
import { wallMs } from './stats.ts'

/** One signal as the benchmark saw it. */
export interface SeenSignal {
  /** Wall clock when the line was first seen in the file, ms. */
  visibleAt: number
  /** The signal record's event time (the window's end − 1 ms), ms. */
  eventTime: number
}

/**
 * Polls a JSON-lines file every `pollMs` and stamps each complete new line with the time it
 * was seen. The file sink writes a checkpoint's lines only after the pipe committed it, so a
 * line's first sighting is when the signal became visible downstream (within `pollMs`).
 */
export class SignalFileTail {
  readonly seen: SeenSignal[] = []
  private offset = 0
  private rest = ''
  private timer: NodeJS.Timeout | undefined
  private readonly buf = Buffer.alloc(1 << 20)

  constructor(private readonly path: string, private readonly pollMs = 5) {}

  start(): void {
    this.timer = setInterval(() => this.poll(), this.pollMs)
  }

  stop(): void {
    clearInterval(this.timer)
    this.poll()
  }

  private poll(): void {
    if (!existsSync(this.path)) return
    const size = statSync(this.path).size
    if (size <= this.offset) return
    const at = wallMs()
    const fd = openSync(this.path, 'r')
    try {
      while (this.offset < size) {
        const n = readSync(fd, this.buf, 0, Math.min(this.buf.length, size - this.offset), this.offset)
        if (n <= 0) break
        this.offset += n
        this.rest += this.buf.toString('utf8', 0, n)
      }
    } finally {
      closeSync(fd)
    }
    const lines = this.rest.split('\n')
    this.rest = lines.pop()!
    for (const line of lines) {
      if (line.trim() === '') continue
      const parsed = JSON.parse(line) as { at?: string }
      const eventTime = parsed.at === undefined ? NaN : Date.parse(parsed.at)
      this.seen.push({ visibleAt: at, eventTime })
    }
  }
}

/**
 * The edges of the longest path from a source to `output` whose records travel through a
 * pipe topic, as the topics' names: each input of an actor stage is the topic its writer (or
 * the keyed stream of its writer) writes. A stage that reads a topic from outside the
 * pipeline counts that topic as one edge.
 */
export function topicPath(pipeline: Pipeline, output: string): string[] {
  const memo = new Map<string, string[]>()
  const pathTo = (name: string): string[] => {
    const known = memo.get(name)
    if (known !== undefined) return known
    const stage = pipeline.stage(name)!
    let best: string[] = []
    for (const input of stage.inputs) {
      const spec = pipeline.stage(input)!
      const writer = pipeline.writerOf(spec)
      const upstream = writer === undefined ? [] : pathTo(writer.name)
      const candidate = [...upstream, pipeline.outputTopic(spec)]
      if (candidate.length > best.length) best = candidate
    }
    memo.set(name, best)
    return best
  }
  return pathTo(output)
}

/**
 * The raw floor of one Kafka hop in this run: a transactional producer sends one record and
 * commits; a read_committed consumer (already fetching) sees it. Returns the time from the
 * send to the sighting of each of `rounds` records, ms.
 */
export async function kafkaHopFloor(kafka: Kafka, topic: string, rounds: number): Promise<number[]> {
  const admin = kafka.admin()
  await admin.connect()
  await admin.createTopics({ topics: [{ topic, numPartitions: 1, replicationFactor: 1 }], waitForLeaders: true })
  const producer = kafka.producer({ transactionalId: `${topic}.tx`, maxInFlightRequests: 1, idempotent: true })
  const consumer = kafka.consumer({ groupId: `${topic}.g.${randomUUID().slice(0, 8)}`, readUncommitted: false, maxWaitTimeInMs: 100 })
  const waiting = new Map<string, (at: number) => void>()
  try {
    await producer.connect()
    await consumer.connect()
    const joined = new Promise<void>((r) => consumer.on(consumer.events.GROUP_JOIN, () => r()))
    await consumer.subscribe({ topic, fromBeginning: true })
    await consumer.run({
      autoCommit: false,
      eachMessage: async ({ message }) => {
        const at = wallMs()
        waiting.get(message.value!.toString())?.(at)
      },
    })
    await joined
    const out: number[] = []
    // The first rounds warm up connections and the transaction coordinator.
    for (let i = 0; i < rounds + 3; i++) {
      const id = String(i)
      const seen = new Promise<number>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`hop floor: record ${id} not seen within 30 s`)), 30_000)
        waiting.set(id, (at) => {
          clearTimeout(timer)
          resolve(at)
        })
      })
      const start = wallMs()
      const tx = await producer.transaction()
      await tx.send({ topic, messages: [{ value: id }] })
      await tx.commit()
      const at = await seen
      if (i >= 3) out.push(at - start)
    }
    return out
  } finally {
    await consumer.disconnect().catch(() => undefined)
    await producer.disconnect().catch(() => undefined)
    await admin.deleteTopics({ topics: [topic] }).catch(() => undefined)
    await admin.disconnect().catch(() => undefined)
  }
}
