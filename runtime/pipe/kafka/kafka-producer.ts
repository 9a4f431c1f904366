/**
 * One actor's transactional producer on Kafka. A kafkajs producer runs one transaction at
 * a time, but the actor opens the next epoch's transaction (`begin()`) while the previous
 * one is still committing. So records are queued per transaction and written in the
 * background in order: once the previous commit is done and enough records are queued,
 * the Kafka transaction starts and queued records are produced while the epoch goes on;
 * `commit()` writes the rest, the input positions (AddOffsetsToTxn + TxnOffsetCommit) and
 * EndTxn. Nothing of a transaction becomes visible before its EndTxn (read_committed).
 */
import type { Producer, Transaction, Message, TopicMessages } from 'kafkajs'
import { ClosedError, type WeirError } from '../../errors.ts'
import type { OutgoingRecord, PartitionOffset, TransactionalProducer } from '../pipe.ts'
import { toWeirError } from './kafka-errors.ts'
import { EncodedBatchMessage } from './kafkajs-fixes.ts'
import { RecordBatchWriter } from './record-batch.ts'

/**
 * The previous transaction's markers are still being written when the next one starts:
 * the broker answers CONCURRENT_TRANSACTIONS for a few ms. kafkajs retries that for
 * produce but not for AddOffsetsToTxn; like the Java client, retry it after a short backoff.
 */
async function retryConcurrent<T>(op: () => Promise<T>): Promise<T> {
  for (let attempt = 0; ; attempt++) {
    try {
      return await op()
    } catch (err) {
      if (attempt >= 50 || (err as { type?: string }).type !== 'CONCURRENT_TRANSACTIONS') throw err
      await new Promise((r) => setTimeout(r, Math.min(10 * (attempt + 1), 100)))
    }
  }
}

interface PendingTransaction {
  /**
   * Queued, not yet produced: topic → partition → record batches, each within the request
   * limits, in send order. Partitions index an array: no hashing per record.
   */
  queued: Map<string, Array<RecordBatchWriter[] | undefined>>
  queuedCount: number
  offsets: Array<{ group: string; offsets: PartitionOffset[] }>
  /** The Kafka transaction, once started. */
  kafka: Transaction | undefined
  /** Offset after the last record produced, per partition. */
  ends: Map<string, PartitionOffset>
  flushScheduled: boolean
  aborted: boolean
  /** A background flush failed: the commit fails with it. */
  error: WeirError | undefined
}

export interface ProducerLimits {
  maxBatchBytes: number
  maxBatchRecords: number
  /** Records waiting to be produced above which whenWritable() waits. */
  highWaterRecords: number
}

/** First size of a queued batch's buffer; it doubles up to the batch limits. */
const BATCH_INITIAL_BYTES = 16 * 1024

export class KafkaTransactionalProducer implements TransactionalProducer {
  private open: PendingTransaction | undefined
  /** Flushes and commits run one after another, in the order they were issued; this is the tail. */
  private tail: Promise<unknown> = Promise.resolve()
  private closed = false
  /** Records queued or being produced, over all transactions not yet committed. */
  private backlog = 0
  private writableWaiters: Array<() => void> = []

  /** @internal Created by KafkaPipe.producer(), already initialized (older instances fenced). */
  constructor(
    readonly transactionalId: string,
    private readonly producer: Producer,
    private readonly limits: ProducerLimits,
    private readonly onClose: () => void,
  ) {}

  begin(): void {
    if (this.closed) throw new ClosedError(`producer ${this.transactionalId}`)
    if (this.open !== undefined) throw new Error(`producer ${this.transactionalId}: a transaction is already open`)
    this.open = { queued: new Map(), queuedCount: 0, offsets: [], kafka: undefined, ends: new Map(), flushScheduled: false, aborted: false, error: undefined }
  }

  send(topic: string, partition: number, record: OutgoingRecord): void {
    const txn = this.requireOpen()
    let byPartition = txn.queued.get(topic)
    if (byPartition === undefined) txn.queued.set(topic, (byPartition = []))
    let batches = byPartition[partition]
    if (batches === undefined) byPartition[partition] = batches = []
    // Copied into a batch now: nothing of the record waits for the produce request.
    const batch = batches[batches.length - 1]
    if (batch === undefined || batch.count >= this.limits.maxBatchRecords || !batch.add(record, this.limits.maxBatchBytes)) {
      const next = new RecordBatchWriter(BATCH_INITIAL_BYTES)
      next.add(record)
      batches.push(next)
    }
    txn.queuedCount++
    this.backlog++
    // Enough for a full request: produce it in the background (after any earlier commit).
    if (!txn.flushScheduled && txn.queuedCount >= this.limits.maxBatchRecords) {
      txn.flushScheduled = true
      this.tail = this.tail.then(() => this.flush(txn)).catch(() => undefined)
    }
  }

  /** Resolves once fewer than `highWaterRecords` records wait to be produced. */
  whenWritable(): Promise<void> {
    if (this.backlog < this.limits.highWaterRecords || this.closed) return Promise.resolve()
    return new Promise((resolve) => this.writableWaiters.push(resolve))
  }

  private released(n: number): void {
    this.backlog -= n
    if (this.backlog < this.limits.highWaterRecords && this.writableWaiters.length > 0) {
      const waiters = this.writableWaiters
      this.writableWaiters = []
      for (const w of waiters) w()
    }
  }

  sendOffsets(group: string, offsets: PartitionOffset[]): void {
    this.requireOpen().offsets.push({ group, offsets: offsets.map((o) => ({ ...o })) })
  }

  commit(): Promise<PartitionOffset[]> {
    const txn = this.requireOpen()
    this.open = undefined
    const result = this.tail.then(() => this.finish(txn))
    this.tail = result.catch(() => undefined)
    return result
  }

  async abort(): Promise<void> {
    const txn = this.open
    this.open = undefined
    if (txn === undefined) return this.tail.then(() => undefined)
    txn.aborted = true
    this.dropQueued(txn)
    const result = this.tail.then(async () => {
      if (txn.kafka !== undefined) await txn.kafka.abort().catch(() => undefined)
    })
    this.tail = result.catch(() => undefined)
    await result
  }

  async close(): Promise<void> {
    if (this.closed) return
    this.closed = true
    const txn = this.open
    this.open = undefined
    if (txn !== undefined) {
      txn.aborted = true
      this.dropQueued(txn)
    }
    await this.tail
    this.released(this.backlog)
    // A transaction left open on the broker is aborted by the next instance's InitProducerId, or by its timeout.
    await this.producer.disconnect().catch(() => undefined)
    this.onClose()
  }

  /** Records of an aborted transaction that were never produced leave the backlog. */
  private dropQueued(txn: PendingTransaction): void {
    const n = txn.queuedCount
    txn.queued = new Map()
    txn.queuedCount = 0
    this.released(n)
  }

  private requireOpen(): PendingTransaction {
    if (this.open === undefined) throw new Error(`producer ${this.transactionalId}: no open transaction (call begin())`)
    return this.open
  }

  private context(): { transactionalId: string; actor: string } {
    return { transactionalId: this.transactionalId, actor: this.transactionalId }
  }

  /** Produces what is queued, starting the Kafka transaction if needed. Errors are kept for the commit. */
  private async flush(txn: PendingTransaction): Promise<void> {
    txn.flushScheduled = false
    if (txn.aborted || txn.error !== undefined || this.closed) return
    try {
      await this.produceQueued(txn)
    } catch (err) {
      txn.error = toWeirError(err, 'produce', this.context())
      this.dropQueued(txn)
    }
  }

  private async produceQueued(txn: PendingTransaction): Promise<void> {
    while (txn.queuedCount > 0) {
      const queued = txn.queued
      txn.queued = new Map()
      txn.queuedCount = 0
      if (txn.kafka === undefined) txn.kafka = await this.producer.transaction()
      for (const chunk of this.chunks(queued)) {
        const metas = await txn.kafka.sendBatch({ topicMessages: chunk.topicMessages, acks: -1 })
        let produced = 0
        for (const n of chunk.counts.values()) produced += n
        this.released(produced)
        for (const m of metas) {
          const key = `${m.topicName}\u0000${m.partition}`
          const end = Number(m.baseOffset) + (chunk.counts.get(key) ?? 0)
          const prev = txn.ends.get(key)
          if (prev === undefined || prev.offset < end) txn.ends.set(key, { topic: m.topicName, partition: m.partition, offset: end })
        }
      }
    }
  }

  private async finish(txn: PendingTransaction): Promise<PartitionOffset[]> {
    if (this.closed) throw new ClosedError(`producer ${this.transactionalId}`)
    try {
      if (txn.error !== undefined) throw txn.error
      if (txn.kafka === undefined && txn.queuedCount === 0 && txn.offsets.length === 0) return []
      await this.produceQueued(txn)
      if (txn.kafka === undefined) txn.kafka = await this.producer.transaction()
      const kafkaTxn = txn.kafka
      for (const { group, offsets } of txn.offsets) {
        const topics = new Map<string, Array<{ partition: number; offset: string }>>()
        for (const o of offsets) {
          let list = topics.get(o.topic)
          if (list === undefined) topics.set(o.topic, (list = []))
          list.push({ partition: o.partition, offset: String(o.offset) })
        }
        await retryConcurrent(() => kafkaTxn.sendOffsets({ consumerGroupId: group, topics: [...topics].map(([topic, partitions]) => ({ topic, partitions })) }))
      }
      await kafkaTxn.commit()
    } catch (err) {
      this.dropQueued(txn)
      await txn.kafka?.abort().catch(() => undefined)
      throw toWeirError(err, 'transaction', this.context())
    }
    return [...txn.ends.values()]
  }

  /**
   * Groups queued batches into produce requests: one batch per partition per request, each
   * already within `maxBatchBytes` (the broker refuses a record batch above
   * `message.max.bytes`) and `maxBatchRecords` (options.ts says how its default was measured).
   */
  private *chunks(queued: PendingTransaction['queued']): Generator<{ topicMessages: TopicMessages[]; counts: Map<string, number> }> {
    const cursors: Array<{ topic: string; partition: number; batches: RecordBatchWriter[]; at: number }> = []
    for (const [topic, byPartition] of queued) {
      byPartition.forEach((batches, partition) => {
        if (batches !== undefined) cursors.push({ topic, partition, batches, at: 0 })
      })
    }
    while (cursors.some((c) => c.at < c.batches.length)) {
      const byTopic = new Map<string, Message[]>()
      const counts = new Map<string, number>()
      for (const c of cursors) {
        if (c.at >= c.batches.length) continue
        const batch = c.batches[c.at++]!
        let list = byTopic.get(c.topic)
        if (list === undefined) byTopic.set(c.topic, (list = []))
        list.push(new EncodedBatchMessage(c.partition, batch) as unknown as Message)
        counts.set(`${c.topic}\u0000${c.partition}`, batch.count)
      }
      yield { topicMessages: [...byTopic].map(([topic, messages]) => ({ topic, messages })), counts }
    }
  }
}
