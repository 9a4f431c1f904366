/**
 * The failover benchmark's view of the output topic: one read_committed consumer that
 * tails it from the start for the whole run, and
 * - checks every record as it comes: the counts of a key must go on from its pre-loaded
 *   count (the pre-load is counted without output) one by one, with no gap and no repeat
 *   (each key's records are in one partition, in commit order);
 * - tells which instance of an actor committed a record. Every record batch carries the
 *   producer id and epoch of the transactional producer that wrote it; a moved actor's new
 *   instance opens its producer with the same transactional id, which bumps the epoch. So
 *   the first record of a partition from a producer (id, epoch) not seen before the kill is
 *   the first committed output of the reassigned actor, whatever the dead instance's last
 *   commits were still doing (they come with its old epoch);
 * - knows how far it has read each partition (transaction markers included), to tell when
 *   it has seen everything committed.
 */
import { randomUUID } from 'node:crypto'
// Before kafkajs: its read_committed filter leaks aborted transactions, and this tail reads a killed worker's aborted one.
import '../../runtime/pipe/kafka/kafkajs-fixes.ts'
import type { Admin, Consumer, Kafka, KafkaMessage } from 'kafkajs'
import { keyNumber } from './failover-input.ts'
import { wallMs } from './stats.ts'

/** The first record a partition got from a producer instance not seen before `watchNewProducers`. */
export interface FirstOutput {
  /** When the tail saw it (wall clock ms). */
  at: number
  partition: number
  offset: number
  /** `<producer id>:<epoch>` */
  producer: string
}

interface PartitionView {
  records: number
  /** Producer instances (`id:epoch`) of the records seen. */
  producers: Set<string>
  /** Offset after the last fetched batch, markers included. */
  position: number
}

interface Watch {
  known: Map<number, Set<string>>
  found: Map<number, FirstOutput>
  resolve(found: Map<number, FirstOutput>): void
}

/** Problems listed in a report, at most. */
const WRONG_SHOWN = 5

function producerOf(m: KafkaMessage): string {
  const b = (m as KafkaMessage & { batchContext?: { producerId: string; producerEpoch: number } }).batchContext
  return b === undefined ? 'unknown' : `${b.producerId}:${b.producerEpoch}`
}

export class FailoverTail {
  records = 0
  /** Records that broke their key's sequence (a repeat or a gap). */
  sequenceErrors = 0
  readonly wrong: string[] = []
  private readonly parts: PartitionView[]
  /** Last count seen per key number, starting from the counts built without output. */
  private readonly last: Uint32Array
  private readonly silentRecords: number
  private consumer: Consumer | undefined
  private readonly groupId = `weir-bench-failover-tail-${randomUUID().slice(0, 8)}`
  private watch: Watch | undefined
  private waiters: Array<{ records: number; resolve(at: number): void }> = []

  /** `silent` (indexed by key number): the input records per key that are counted without an output record (the pre-load). */
  constructor(private readonly kafka: Kafka, private readonly topic: string, partitions: number, silent: Uint32Array) {
    this.parts = Array.from({ length: partitions }, () => ({ records: 0, producers: new Set(), position: 0 }))
    this.last = silent.slice()
    this.silentRecords = silent.reduce((s, v) => s + v, 0)
  }

  private note(problem: string): void {
    if (this.wrong.length < WRONG_SHOWN) this.wrong.push(problem)
  }

  /** Resolves once the consumer has joined its group and is fetching. */
  async start(): Promise<void> {
    const consumer = this.kafka.consumer({ groupId: this.groupId, readUncommitted: false, maxBytes: 50 * 1024 * 1024, maxBytesPerPartition: 10 * 1024 * 1024, maxWaitTimeInMs: 50 })
    this.consumer = consumer
    const joined = new Promise<void>((r) => consumer.on(consumer.events.GROUP_JOIN, () => r()))
    // Every fetched batch ends here, also one holding only transaction markers.
    consumer.on(consumer.events.END_BATCH_PROCESS, ({ payload }) => {
      const view = this.parts[payload.partition]
      if (view !== undefined) view.position = Math.max(view.position, Number(payload.lastOffset) + 1)
    })
    await consumer.connect()
    await consumer.subscribe({ topic: this.topic, fromBeginning: true })
    await consumer.run({
      autoCommit: false,
      eachBatch: async ({ batch }) => {
        for (const m of batch.messages) this.onRecord(batch.partition, m)
        this.wakeWaiters()
      },
    })
    await joined
  }

  private onRecord(partition: number, m: KafkaMessage): void {
    this.records++
    const view = this.parts[partition]!
    view.records++
    const producer = producerOf(m)
    if (!view.producers.has(producer)) {
      view.producers.add(producer)
      this.noticeProducer(partition, producer, Number(m.offset))
    }
    const key = m.key === null ? '' : m.key.toString('utf8')
    const n = keyNumber(key)
    const count = Number(m.value?.toString('utf8'))
    if (n < 0 || n >= this.last.length || !Number.isInteger(count)) {
      this.sequenceErrors++
      return this.note(`unexpected record ${key}=${m.value?.toString('utf8')} at ${partition}/${m.offset}`)
    }
    const before = this.last[n]!
    if (count !== before + 1) {
      this.sequenceErrors++
      this.note(`${key}: count ${count} after ${before} at ${partition}/${m.offset} (${count <= before ? 'repeated' : 'gap'})`)
    }
    if (count > before) this.last[n] = count
  }

  private noticeProducer(partition: number, producer: string, offset: number): void {
    const w = this.watch
    if (w === undefined || !w.known.has(partition) || w.known.get(partition)!.has(producer) || w.found.has(partition)) return
    w.found.set(partition, { at: wallMs(), partition, offset, producer })
    if (w.found.size === w.known.size) {
      this.watch = undefined
      w.resolve(w.found)
    }
  }

  private wakeWaiters(): void {
    const ready = this.waiters.filter((w) => this.records >= w.records)
    if (ready.length === 0) return
    this.waiters = this.waiters.filter((w) => this.records < w.records)
    const at = wallMs()
    for (const w of ready) w.resolve(at)
  }

  /** Resolves (with the wall-clock time) once `records` output records have been seen. */
  whenRecords(records: number): Promise<number> {
    if (this.records >= records) return Promise.resolve(wallMs())
    return new Promise((resolve) => this.waiters.push({ records, resolve }))
  }

  /** Output records seen per partition. */
  recordsIn(partition: number): number {
    return this.parts[partition]!.records
  }

  /**
   * Call right after the kill: resolves once each of `partitions` has a committed record
   * from a producer instance the tail had not seen there before, with the first such record
   * of each partition.
   */
  watchNewProducers(partitions: number[]): Promise<Map<number, FirstOutput>> {
    return new Promise((resolve) => {
      this.watch = { known: new Map(partitions.map((p) => [p, new Set(this.parts[p]!.producers)])), found: new Map(), resolve }
    })
  }

  /** Waits until the tail has read every partition up to its last stable offset now (all producers must be done). */
  async readToEnd(admin: Admin, timeoutMs: number): Promise<void> {
    const ends = await admin.fetchTopicOffsets(this.topic)
    const deadline = Date.now() + timeoutMs
    for (const e of ends) {
      while (this.parts[e.partition]!.position < Number(e.high)) {
        if (Date.now() > deadline) throw new Error(`output tail: partition ${e.partition} read to ${this.parts[e.partition]!.position}, its end is ${e.high}, after ${timeoutMs} ms`)
        await new Promise((r) => setTimeout(r, 50))
      }
    }
  }

  /**
   * After readToEnd: every key's last count must be its input records (`expected`, indexed
   * by key number), and there must be exactly one output record per input record that is
   * not silent.
   */
  check(expected: Uint32Array): { ok: boolean; records: number; expectedRecords: number; wrongKeys: number; wrong: string[] } {
    let expectedRecords = -this.silentRecords
    let wrongKeys = 0
    for (let n = 0; n < expected.length; n++) {
      const want = expected[n]!
      expectedRecords += want
      const got = n < this.last.length ? this.last[n]! : 0
      if (got !== want) {
        wrongKeys++
        this.note(`k${n}: last count ${got}, expected ${want}`)
      }
    }
    if (this.records !== expectedRecords) this.wrong.unshift(`${this.records} output records, expected ${expectedRecords}`)
    const ok = wrongKeys === 0 && this.sequenceErrors === 0 && this.records === expectedRecords
    return { ok, records: this.records, expectedRecords, wrongKeys, wrong: this.wrong.slice(0, WRONG_SHOWN + 1) }
  }

  async stop(admin: Admin): Promise<void> {
    await this.consumer?.disconnect().catch(() => undefined)
    await admin.deleteGroups([this.groupId]).catch(() => undefined)
  }
}
