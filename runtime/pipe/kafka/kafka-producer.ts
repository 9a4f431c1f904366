/**
 * One actor's transactional producer on Kafka. Records of the open transaction are kept
 * in memory and written when it commits: the actor already batches a whole epoch, and a
 * kafkajs producer can only run one transaction at a time, so `begin()` of the next epoch
 * must not wait for the broker. A commit is: AddPartitions + Produce in chunks bounded
 * per partition, TxnOffsetCommit of the input positions (`sendOffsets`), EndTxn.
 */
import type { Producer, Transaction, Message, TopicMessages } from 'kafkajs'
import { ClosedError } from '../../errors.ts'
import type { PartitionOffset, PipeRecord, TransactionalProducer } from '../pipe.ts'
import { toWeirError } from './kafka-errors.ts'

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

interface OpenTransaction {
  /** topic → partition → messages, in send order. */
  records: Map<string, Map<number, Message[]>>
  offsets: Array<{ group: string; offsets: PartitionOffset[] }>
  count: number
}

export class KafkaTransactionalProducer implements TransactionalProducer {
  private open: OpenTransaction | undefined
  /** Commits run one after another; this is the tail of that chain. */
  private chain: Promise<unknown> = Promise.resolve()
  private closed = false

  /** @internal Created by KafkaPipe.producer(), already initialized (older instances fenced). */
  constructor(
    readonly transactionalId: string,
    private readonly producer: Producer,
    private readonly limits: { maxBatchBytes: number; maxBatchRecords: number },
    private readonly onClose: () => void,
  ) {}

  begin(): void {
    if (this.closed) throw new ClosedError(`producer ${this.transactionalId}`)
    if (this.open !== undefined) throw new Error(`producer ${this.transactionalId}: a transaction is already open`)
    this.open = { records: new Map(), offsets: [], count: 0 }
  }

  send(topic: string, partition: number, record: PipeRecord): void {
    const txn = this.requireOpen()
    let byPartition = txn.records.get(topic)
    if (byPartition === undefined) txn.records.set(topic, (byPartition = new Map()))
    let messages = byPartition.get(partition)
    if (messages === undefined) byPartition.set(partition, (messages = []))
    messages.push({ key: record.key, value: record.value, partition, timestamp: String(record.timestamp), headers: record.headers })
    txn.count++
  }

  sendOffsets(group: string, offsets: PartitionOffset[]): void {
    this.requireOpen().offsets.push({ group, offsets: offsets.map((o) => ({ ...o })) })
  }

  commit(): Promise<PartitionOffset[]> {
    const txn = this.requireOpen()
    this.open = undefined
    const result = this.chain.then(() => this.run(txn))
    this.chain = result.catch(() => undefined)
    return result
  }

  /** Nothing of an open transaction has reached the broker yet: aborting drops it. */
  async abort(): Promise<void> {
    this.open = undefined
    await this.chain
  }

  async close(): Promise<void> {
    if (this.closed) return
    this.closed = true
    this.open = undefined
    await this.chain
    await this.producer.disconnect().catch(() => undefined)
    this.onClose()
  }

  private requireOpen(): OpenTransaction {
    if (this.open === undefined) throw new Error(`producer ${this.transactionalId}: no open transaction (call begin())`)
    return this.open
  }

  private async run(txn: OpenTransaction): Promise<PartitionOffset[]> {
    if (this.closed) throw new ClosedError(`producer ${this.transactionalId}`)
    if (txn.count === 0 && txn.offsets.length === 0) return []
    let kafkaTxn: Transaction
    try {
      kafkaTxn = await this.producer.transaction()
    } catch (err) {
      throw toWeirError(err, 'begin transaction', { transactionalId: this.transactionalId, actor: this.transactionalId })
    }
    const ends = new Map<string, PartitionOffset>()
    try {
      for (const chunk of this.chunks(txn)) {
        const metas = await kafkaTxn.sendBatch({ topicMessages: chunk.topicMessages, acks: -1 })
        for (const m of metas) {
          const count = chunk.counts.get(`${m.topicName}\u0000${m.partition}`) ?? 0
          const end = Number(m.baseOffset) + count
          const key = `${m.topicName}\u0000${m.partition}`
          const prev = ends.get(key)
          if (prev === undefined || prev.offset < end) ends.set(key, { topic: m.topicName, partition: m.partition, offset: end })
        }
      }
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
      await kafkaTxn.abort().catch(() => undefined)
      throw toWeirError(err, 'transaction', { transactionalId: this.transactionalId, actor: this.transactionalId })
    }
    return [...ends.values()]
  }

  /**
   * Splits a transaction into produce requests: at most `maxBatchBytes` per partition per
   * request (the broker refuses a record batch above `message.max.bytes`) and at most
   * `maxBatchRecords` (kafkajs groups a request's messages by partition in O(n²): its
   * groupMessagesPerPartition copies the array per message, 40k records in one request
   * took 1.8 s against 0.7 s in requests of 1000).
   */
  private *chunks(txn: OpenTransaction): Generator<{ topicMessages: TopicMessages[]; counts: Map<string, number> }> {
    const cursors: Array<{ topic: string; partition: number; messages: Message[]; at: number }> = []
    for (const [topic, byPartition] of txn.records) {
      for (const [partition, messages] of byPartition) cursors.push({ topic, partition, messages, at: 0 })
    }
    while (cursors.some((c) => c.at < c.messages.length)) {
      const byTopic = new Map<string, Message[]>()
      const counts = new Map<string, number>()
      for (const c of cursors) {
        if (c.at >= c.messages.length) continue
        let end = c.at
        let bytes = 0
        while (end < c.messages.length) {
          const m = c.messages[end]!
          bytes += 70 + ((m.key as Buffer | null)?.length ?? 0) + ((m.value as Buffer | null)?.length ?? 0)
          if ((bytes > this.limits.maxBatchBytes || end - c.at >= this.limits.maxBatchRecords) && end > c.at) break
          end++
        }
        const slice = c.messages.slice(c.at, end)
        c.at += slice.length
        let list = byTopic.get(c.topic)
        if (list === undefined) byTopic.set(c.topic, (list = []))
        for (const m of slice) list.push(m)
        counts.set(`${c.topic}\u0000${c.partition}`, slice.length)
      }
      yield { topicMessages: [...byTopic].map(([topic, messages]) => ({ topic, messages })), counts }
    }
  }
}
