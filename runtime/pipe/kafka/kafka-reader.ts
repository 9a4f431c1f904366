/**
 * Reads exactly one partition of a Kafka topic, read_committed, from a given offset.
 *
 * kafkajs has no manual assignment (tulios/kafkajs#373), so each reader is a consumer in a
 * consumer group of its own with one member, and a partition assigner that gives that
 * member exactly this partition: no rebalance can move it, and the coordinator's placement
 * decides who reads what (docs/kafka.md has the reasons and the measured start-up cost).
 * The group never stores offsets: positions are committed with the actor's transaction
 * under the stage's group, which no consumer joins.
 *
 * kafkajs pushes batches; poll() pulls from a bounded buffer, and the batch handler waits
 * (heartbeating) while it is full. The position also moves over what read_committed
 * hides (commit markers, aborted records), so `position` reaches the end offset.
 */
import { randomUUID } from 'node:crypto'
// Before kafkajs: read_committed must drop every aborted transaction (see the file).
import { READER_GROUP_PREFIX, weirCursorOf } from './kafkajs-fixes.ts'
import { scanRecordSet, type RecordCursor } from './record-batch.ts'
import { AssignerProtocol, type Consumer, type Kafka, type PartitionAssigner, type EachBatchPayload } from 'kafkajs'
import type { Logger } from 'pino'
import { ClosedError, PipeError, WeirError } from '../../errors.ts'
import type { PartitionReader, StoredRecord } from '../pipe.ts'
import { toWeirError } from './kafka-errors.ts'

/** Assigns the one member of the group exactly one partition. */
function fixedPartition(topic: string, partition: number): PartitionAssigner {
  const name = 'WeirFixedPartition'
  return () => ({
    name,
    version: 1,
    async assign({ members }) {
      return members.map((m, i) => ({
        memberId: m.memberId,
        memberAssignment: AssignerProtocol.MemberAssignment.encode({ version: 1, assignment: i === 0 ? { [topic]: [partition] } : {}, userData: Buffer.alloc(0) }),
      }))
    },
    protocol({ topics }) {
      return { name, metadata: AssignerProtocol.MemberMetadata.encode({ version: 1, topics, userData: Buffer.alloc(0) }) }
    },
  })
}

/** A cursor over nothing: a fetch whose records were all hidden (markers, aborted). */
function noRecords(): RecordCursor {
  return scanRecordSet(Buffer.alloc(0)).cursor()
}

interface Chunk {
  /** Its records, decoded as poll() takes them. */
  records: RecordCursor
  /** The offset after this chunk, including hidden records (markers, aborted). */
  end: number
}

export interface ReaderOptions {
  maxBytesPerPartition: number
  bufferRecords: number
  sessionTimeoutMs: number
  log: Logger
}

export class KafkaPartitionReader implements PartitionReader {
  private consumer: Consumer | undefined
  private chunks: Chunk[] = []
  private buffered = 0
  /** The offset the next fetched batch must start at; anything else is stale. */
  private nextFetch: number
  private positionValue: number
  private waiter: (() => void) | undefined
  private spaceWaiter: (() => void) | undefined
  private failure: WeirError | undefined
  private closed = false
  /** Set while the consumer is being replaced (seek). */
  private restarting: Promise<void> | undefined

  private constructor(
    private readonly kafka: Kafka,
    readonly topic: string,
    readonly partition: number,
    from: number,
    private readonly options: ReaderOptions,
    private readonly onClose: (disconnected: Promise<void>) => void,
  ) {
    this.nextFetch = from
    this.positionValue = from
  }

  /** @internal Opens the reader: joins its own group and starts fetching at `from`. */
  static async open(kafka: Kafka, topic: string, partition: number, from: number, options: ReaderOptions, onClose: (disconnected: Promise<void>) => void): Promise<KafkaPartitionReader> {
    const reader = new KafkaPartitionReader(kafka, topic, partition, from, options, onClose)
    await reader.start()
    return reader
  }

  get position(): number {
    return this.positionValue
  }

  async poll(max: number, waitMs: number): Promise<StoredRecord[]> {
    if (this.restarting !== undefined) await this.restarting
    if (this.chunks.length === 0 && this.failure === undefined && !this.closed && waitMs > 0) {
      await new Promise<void>((resolve) => {
        const t = setTimeout(done, waitMs)
        function done(): void {
          clearTimeout(t)
          resolve()
        }
        this.waiter = done
      })
      this.waiter = undefined
    }
    if (this.failure !== undefined) throw this.failure
    if (this.closed) throw new ClosedError(`reader ${this.topic}/${this.partition}`)
    const out: StoredRecord[] = []
    while (out.length < max && this.chunks.length > 0) {
      const c = this.chunks[0]!
      const before = c.records.remaining
      c.records.take(out, max - out.length)
      const next = c.records.nextOffset()
      // A finished chunk leaves the buffer whole (records below the fetch offset included).
      this.buffered -= before - (next === undefined ? 0 : c.records.remaining)
      if (next === undefined) {
        this.chunks.shift()
        this.positionValue = Math.max(this.positionValue, c.end)
      } else {
        this.positionValue = next
      }
    }
    if (this.buffered < this.options.bufferRecords) this.spaceWaiter?.()
    return out
  }

  /** Moves the position; the consumer is replaced so no batch fetched for the old position can arrive. */
  seek(offset: number): void {
    this.chunks = []
    this.buffered = 0
    this.nextFetch = offset
    this.positionValue = offset
    const previous = this.consumer
    this.consumer = undefined
    this.spaceWaiter?.()
    this.restarting = (async () => {
      await previous?.disconnect().catch(() => undefined)
      if (!this.closed) await this.start()
    })().catch((err: unknown) => {
      this.failure = toWeirError(err, 'seek', { topic: this.topic, partition: this.partition, offset })
    }).finally(() => {
      this.restarting = undefined
    })
  }

  close(): void {
    if (this.closed) return
    this.closed = true
    this.waiter?.()
    this.spaceWaiter?.()
    const c = this.consumer
    this.consumer = undefined
    // Leaving the group now lets it be deleted at once (otherwise it lingers for a session timeout); the pipe awaits this on close.
    this.onClose(c?.disconnect().catch(() => undefined) ?? Promise.resolve())
  }

  private async start(): Promise<void> {
    const consumer = this.kafka.consumer({
      groupId: `${READER_GROUP_PREFIX}${this.topic}.${this.partition}.${randomUUID().slice(0, 12)}`,
      partitionAssigners: [fixedPartition(this.topic, this.partition)],
      readUncommitted: false,
      allowAutoTopicCreation: false,
      maxBytesPerPartition: this.options.maxBytesPerPartition,
      maxBytes: Math.max(this.options.maxBytesPerPartition, 10 << 20),
      maxWaitTimeInMs: 500,
      sessionTimeout: this.options.sessionTimeoutMs,
      heartbeatInterval: Math.floor(this.options.sessionTimeoutMs / 10),
      retry: { retries: 10, restartOnFailure: async () => !this.closed },
    })
    this.consumer = consumer
    const tp = { topic: this.topic, partition: this.partition }
    // Batches that held only hidden records (markers, aborted) never reach eachBatch.
    consumer.on(consumer.events.END_BATCH_PROCESS, (e) => {
      if (e.payload.batchSize !== 0 || e.payload.topic !== this.topic || e.payload.partition !== this.partition) return
      const first = e.payload.firstOffset === null ? Number.NaN : Number(e.payload.firstOffset)
      if (!(first >= this.nextFetch)) return
      this.push(noRecords(), Number(e.payload.lastOffset) + 1)
    })
    // A consumer that restarts after an error starts over from no offset: put it back in line.
    consumer.on(consumer.events.GROUP_JOIN, () => {
      if (this.consumer === consumer) consumer.seek({ ...tp, offset: String(this.nextFetch) })
    })
    consumer.on(consumer.events.CRASH, (e) => {
      if (this.closed || this.consumer !== consumer) return
      const err = e.payload.error
      this.options.log.warn({ topic: this.topic, partition: this.partition, offset: this.nextFetch, err: { name: err.name, message: err.message }, restart: e.payload.restart }, 'kafka reader crashed')
      if (!e.payload.restart) {
        this.failure = toWeirError(err, 'fetch', { topic: this.topic, partition: this.partition, offset: this.nextFetch })
        this.waiter?.()
      }
    })
    try {
      await consumer.connect()
      await consumer.subscribe({ topics: [this.topic], fromBeginning: true })
      await consumer.run({ autoCommit: false, eachBatchAutoResolve: true, eachBatch: (payload) => this.onBatch(consumer, payload) })
      consumer.seek({ ...tp, offset: String(this.nextFetch) })
    } catch (err) {
      await consumer.disconnect().catch(() => undefined)
      const failure = toWeirError(err, 'open reader', { topic: this.topic, partition: this.partition, offset: this.nextFetch })
      // kafkajs says "Consumer group was not initialized" when its consumer crashed during
      // run() (the broker went away while it joined): transient, like the outage itself.
      if (!failure.retriable && /was not initialized/.test(failure.message)) throw new PipeError(failure.message, failure.context, { retriable: true, cause: err })
      throw failure
    }
  }

  private async onBatch(consumer: Consumer, { batch, heartbeat, isRunning, isStale }: EachBatchPayload): Promise<void> {
    if (this.consumer !== consumer || batch.topic !== this.topic || batch.partition !== this.partition || this.failure !== undefined) return
    const fetchedOffset = Number((batch as unknown as { fetchedOffset: string }).fetchedOffset)
    if (fetchedOffset > this.nextFetch) {
      // kafkajs moves a fetch below the partition's start to the start (fromBeginning), so the
      // records from nextFetch up to it are gone. Seeking back would spin forever; failing lets
      // the actor restart from its last checkpoint (a woken zombie then learns where the
      // instance that purged them got to).
      this.failure = new PipeError(`records of ${this.topic}/${this.partition} at offsets ${this.nextFetch} to ${fetchedOffset} were deleted before this reader read them (consumed records purged by a newer instance of the actor, or retention)`, { topic: this.topic, partition: this.partition, offset: this.nextFetch }, { retriable: true, kafkaCode: 'OFFSET_OUT_OF_RANGE' })
      this.waiter?.()
      return
    }
    if (fetchedOffset !== this.nextFetch) {
      // A fetch issued before a seek or a consumer restart; the seek puts the consumer back in line.
      consumer.seek({ topic: this.topic, partition: this.partition, offset: String(this.nextFetch) })
      return
    }
    // Decoded by weir's codec (kafkajs-fixes.ts): from the fetched offset on, aborted transactions skipped.
    this.push(weirCursorOf(batch), Number(batch.lastOffset()) + 1)
    while (this.buffered >= this.options.bufferRecords && !this.closed && this.consumer === consumer && isRunning() && !isStale()) {
      await new Promise<void>((resolve) => {
        const t = setTimeout(done, 1000)
        function done(): void {
          clearTimeout(t)
          resolve()
        }
        this.spaceWaiter = done
      })
      this.spaceWaiter = undefined
      await heartbeat().catch(() => undefined)
    }
  }

  private push(records: RecordCursor, end: number): void {
    if (end <= this.nextFetch) return
    this.nextFetch = end
    if (records.nextOffset() === undefined && this.chunks.length === 0) {
      this.positionValue = Math.max(this.positionValue, end)
    } else {
      this.chunks.push({ records, end })
      this.buffered += records.remaining
    }
    this.waiter?.()
  }
}
