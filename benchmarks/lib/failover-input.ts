/**
 * The failover benchmark's input: a key space split exactly evenly over the input
 * partitions (so the state each count actor holds is known to the key), the pre-load
 * that writes every key once (to build the state), and the trickle of new records that
 * keeps every actor producing output while a worker is killed. Every record goes to the
 * partition Kafka's default partitioner gives its key (runtime/partitioner.ts), so a key's
 * records, its count and its output all stay with one actor.
 */
// Before kafkajs: its read_committed filter leaks aborted transactions (see the file).
import '../../runtime/pipe/kafka/kafkajs-fixes.ts'
import { Partitioners, CompressionTypes, type Kafka, type Message, type Producer } from 'kafkajs'
import { partitionForKey } from '../../runtime/partitioner.ts'
import { PRELOAD_VALUE } from './failover-pipeline.ts'

/** Record keys are `k<n>`: short, and their number indexes the benchmark's typed arrays. */
export function keyOf(n: number): string {
  return `k${n}`
}

/** The number of a key `k<n>`, or -1 for anything else. */
export function keyNumber(key: string): number {
  if (key.charCodeAt(0) !== 107 /* k */) return -1
  const n = Number(key.slice(1))
  return Number.isInteger(n) && n >= 0 ? n : -1
}

/**
 * The pre-loaded keys: `k0, k1, …` taken in order, each kept only while its partition has
 * fewer than its share, so every partition holds exactly `keys / partitions` (± 1) keys.
 */
export class KeySpace {
  /** The key numbers, partition by partition. */
  readonly byPartition: Int32Array[]
  /** Largest key number used, for arrays indexed by key number. */
  readonly maxKey: number

  constructor(readonly keys: number, readonly partitions: number) {
    const quota = Array.from({ length: partitions }, (_, p) => Math.floor(keys / partitions) + (p < keys % partitions ? 1 : 0))
    this.byPartition = quota.map((q) => new Int32Array(q))
    const filled = new Array<number>(partitions).fill(0)
    let taken = 0
    let n = 0
    for (; taken < keys; n++) {
      const p = partitionForKey(Buffer.from(keyOf(n)), partitions)
      if (filled[p]! >= quota[p]!) continue
      this.byPartition[p]![filled[p]!++] = n
      taken++
    }
    this.maxKey = n - 1
  }

  /** Keys of partition `p`: the state its count actor holds once the pre-load is counted. */
  keysIn(p: number): number {
    return this.byPartition[p]!.length
  }

  /** The `i`-th key over all partitions (round robin), for spreading the trickle. */
  at(i: number): number {
    const p = i % this.partitions
    const list = this.byPartition[p]!
    return list[Math.floor(i / this.partitions) % list.length]!
  }
}

/**
 * Records per partition in one produce request of the pre-load: kafkajs groups a request's
 * records by partition in O(n²) (docs/kafka.md), so requests stay small, and several are in flight.
 */
const PRELOAD_PER_PARTITION = 1000
/** Producers writing the pre-load side by side: an idempotent kafkajs producer has one request in flight. */
const PRELOAD_PRODUCERS = 3
/** The pre-load's value (counted, not emitted) and the trickle's (emitted). */
const PRELOAD = Buffer.from(PRELOAD_VALUE)
const TRICKLE = Buffer.from('t')

/** A producer that writes each record once (idempotent, acks all): a doubled input record would show as a wrong count. */
function exactProducer(kafka: Kafka): Producer {
  return kafka.producer({ idempotent: true, maxInFlightRequests: 1, allowAutoTopicCreation: false, createPartitioner: Partitioners.DefaultPartitioner })
}

/**
 * Writes every key of `space` once to `topic`, to its own partition; `counts` (indexed by
 * key number) gets 1 per key once acknowledged. Before each request it awaits
 * `room(recordsSent)`, which lets the caller hold the writing back (the workers count as it
 * is written, so the topic never holds a large backlog).
 */
export async function preloadKeys(kafka: Kafka, topic: string, space: KeySpace, counts: Uint32Array, room: (sent: number) => Promise<void>): Promise<void> {
  const producers = Array.from({ length: PRELOAD_PRODUCERS }, () => exactProducer(kafka))
  await Promise.all(producers.map((p) => p.connect()))
  try {
    const longest = Math.max(...space.byPartition.map((l) => l.length))
    const requests = Math.ceil(longest / PRELOAD_PER_PARTITION)
    let sent = 0
    // Each producer sends every PRELOAD_PRODUCERS-th request, one at a time.
    await Promise.all(producers.map(async (producer, i) => {
      for (let r = i; r < requests; r += PRELOAD_PRODUCERS) {
        await room(sent)
        const from = r * PRELOAD_PER_PARTITION
        const messages: Message[] = []
        for (let p = 0; p < space.partitions; p++) {
          for (const n of space.byPartition[p]!.subarray(from, from + PRELOAD_PER_PARTITION)) messages.push({ key: keyOf(n), value: PRELOAD, partition: p })
        }
        await producer.sendBatch({ topicMessages: [{ topic, messages }], acks: -1, compression: CompressionTypes.None })
        for (const m of messages) counts[keyNumber(m.key as string)]!++
        sent += messages.length
      }
    }))
  } finally {
    await Promise.all(producers.map((p) => p.disconnect()))
  }
}

/** Every this many trickle records, one goes to a hot key instead, so some counts climb well past 2 across the failover. */
const HOT_EVERY = 4
const HOT_KEYS = 64
/** Steps through the key space so consecutive trickle records hit keys far apart (odd, so coprime with even sizes). */
const STRIDE = 7_919
const TICK_MS = 20

/**
 * New input records at a steady rate, sent in small batches: a few keys are hot, the rest
 * spread over every key.
 */
export class Trickle {
  sent = 0
  private stopped = false
  private loop: Promise<void> | undefined
  private failure: unknown
  private readonly producer: Producer

  /** `counts` (indexed by key number) gets 1 per record once the broker acknowledged it. */
  constructor(kafka: Kafka, private readonly topic: string, private readonly space: KeySpace, private readonly ratePerS: number, private readonly counts: Uint32Array) {
    this.producer = exactProducer(kafka)
  }

  async start(): Promise<void> {
    await this.producer.connect()
    const started = performance.now()
    this.loop = (async () => {
      while (!this.stopped) {
        const due = Math.floor(((performance.now() - started) / 1000) * this.ratePerS) - this.sent
        if (due > 0) await this.send(due)
        await new Promise((r) => setTimeout(r, TICK_MS))
      }
    })().catch((err: unknown) => {
      this.failure = err
    })
  }

  private keyFor(i: number): number {
    if (i % HOT_EVERY === HOT_EVERY - 1) return this.space.at(Math.floor(i / HOT_EVERY) % HOT_KEYS)
    return this.space.at(HOT_KEYS + ((i * STRIDE) % (this.space.keys - HOT_KEYS)))
  }

  private async send(count: number): Promise<void> {
    const keys = Array.from({ length: count }, (_, j) => this.keyFor(this.sent + j))
    const messages: Message[] = keys.map((n) => {
      const key = keyOf(n)
      return { key, value: TRICKLE, partition: partitionForKey(Buffer.from(key), this.space.partitions) }
    })
    await this.producer.send({ topic: this.topic, messages, acks: -1 })
    for (const n of keys) this.counts[n]!++
    this.sent += count
  }

  /** A send the broker refused (the trickle stopped there); undefined while all is well. */
  get error(): unknown {
    return this.failure
  }

  /** Stops after the batch in flight; everything sent is acknowledged and counted. Throws if a send failed. */
  async stop(): Promise<void> {
    this.stopped = true
    await this.loop
    await this.producer.disconnect().catch(() => undefined)
    if (this.failure !== undefined) throw this.failure
  }
}
