/**
 * Corrections to kafkajs 2.2.4 that exactly-once and throughput depend on, installed before
 * kafkajs loads.
 *
 * 1. Fetch decoding by weir's record-batch codec (record-batch.ts). kafkajs decoded each
 *    fetched record with Long arithmetic and object spreads (~6 µs per record on the JS
 *    thread, the bound of a changelog replay); here a fetch's record set is kept as bytes
 *    (`decodeMessages`); the Batch checks its record batches (CRC, aborted transactions)
 *    and decodes records into StoredRecords whose keys and values are slices of the fetched
 *    buffer when they are read. The Batch keeps kafkajs's interface: its `messages` are
 *    light views with kafkajs's field types, so kafkajs consumers elsewhere (sinks, tests,
 *    benchmarks) read as before; weir's reader decodes through `weirCursor` as it polls.
 *
 * 2. Produce encoding by the same codec: one record batch per partition written into one
 *    buffer, instead of kafkajs's encoder object per record and its byte-wise CRC.
 *    Compressed produce requests and repeated header names keep kafkajs's encoder.
 *
 * 3. read_committed must drop the records of aborted transactions. The broker answers a
 *    fetch with the aborted transactions that overlap it, listed in the order their abort
 *    markers were written; kafkajs's `filterAbortedMessages` treats that list as ordered by
 *    first offset and activates at most one aborted transaction per record. When two
 *    writers of one partition have overlapping transactions that abort in the other order
 *    (both actors of a stage restarting after a broker outage), or a fetch starts inside
 *    several aborted transactions, records of an aborted transaction reach the reader. The
 *    Java consumer orders the list by first offset and activates every transaction that
 *    has started (Fetcher's abortedTransactions priority queue); the codec does the same
 *    per batch, and `filterAbortedMessages` below at record granularity (kept for kafkajs's
 *    own batches and its test).
 *
 * 4. A request queue with nothing pending sets no timer. kafkajs's
 *    `scheduleCheckPendingRequests` computes `throttledUntil - Date.now()` with
 *    `throttledUntil` at -1 when nothing throttles, and sets that negative timeout whenever
 *    no request waits; the timer checks the queue and schedules the next one, so every
 *    broker connection of every client spins a 1 ms timer loop for as long as it is open
 *    (kafkajs issues 1704 and 1751; Node 24 also prints a TimeoutNegativeWarning). Measured
 *    with four idle producers and an admin client: 4,347 queue checks a second and 6.7 % of a
 *    core, against none and 1.3 % (test/runtime/pipe/kafka.test.ts counts an idle pipe's
 *    checks). A request is pending only after `push` found it could not go now, and `push`
 *    schedules the check itself; a completed request checks the queue directly. So the
 *    timer is needed only while something is pending.
 *
 * 5. A produce request's messages are grouped by partition in one pass. kafkajs's
 *    `groupMessagesPerPartition` copied the partition's array for every message
 *    (`[...current, message]`), quadratic in the messages per partition of a request: with
 *    weir's requests of up to 1,000 records per partition it was 39 % of the word count's
 *    CPU on Kafka (`npm run bench:kafka`, a profile of the weir contender).
 *
 * 6. kafkajs's consumer runner reads a batch's `messages` (their count for its batch
 *    events, and the last one) before and after handing the batch over, which would decode every
 *    record of a fetch when it arrives. A reader buffers fetches ahead of its actor, and
 *    records decoded that early lived long enough for V8 to promote them: that was most of
 *    the old-generation garbage of the Kafka word count (docs/kafka.md). The runner's
 *    `handleBatch` marks the batches of weir's readers (their group ids start with
 *    READER_GROUP_PREFIX) so that `messages` gives them the last message alone.
 *
 * kafkajs binds these modules when they are first required, so this module replaces their
 * entries in the CommonJS module cache before anything loads kafkajs: import it first
 * wherever kafkajs is imported (runtime/pipe/kafka/kafka-pipe.ts does).
 * test/runtime/pipe/kafka.test.ts proves the leak is gone against a real broker.
 */
import { createRequire } from 'node:module'
import type { StoredRecord } from '../pipe.ts'
import type { PipeRecord } from '../pipe.ts'
import { decodeAll, encodeRecordBatch, scanRecordSet, type DataBatchInfo, type RecordBatchWriter, type RecordCursor, type ScannedRecordSet } from './record-batch.ts'

interface AbortedTransaction {
  firstOffset: string
  producerId: string
}

interface FetchedMessage {
  offset: string
  key: Buffer | null
  isControlRecord?: boolean
  batchContext: { producerId: string; inTransaction: boolean }
}

/** Control record key of an ABORT marker: version 0, type 0. */
const ABORT_MARKER_KEY = Buffer.from([0, 0, 0, 0])

/** The messages of a fetch that belong to no aborted transaction (control records kept: kafkajs drops them later). */
export function filterAbortedMessages({ messages, abortedTransactions }: { messages: FetchedMessage[]; abortedTransactions?: AbortedTransaction[] }): FetchedMessage[] {
  if (abortedTransactions === undefined || abortedTransactions.length === 0) return messages
  const pending = abortedTransactions.map((t) => ({ first: BigInt(t.firstOffset), producerId: String(t.producerId) })).sort((a, b) => (a.first < b.first ? -1 : a.first > b.first ? 1 : 0))
  const aborting = new Set<string>()
  let next = 0
  return messages.filter((m) => {
    const offset = BigInt(m.offset)
    while (next < pending.length && pending[next]!.first <= offset) aborting.add(pending[next++]!.producerId)
    const producerId = String(m.batchContext.producerId)
    if (m.isControlRecord === true) {
      if (m.key !== null && Buffer.from(m.key).equals(ABORT_MARKER_KEY)) aborting.delete(producerId)
      return true
    }
    return !(m.batchContext.inTransaction && aborting.has(producerId))
  })
}

/** What weir's `decodeMessages` leaves in a fetch response's partition: the record set's bytes. */
interface RawRecordSet {
  weirRecordSet: Buffer
}

interface KafkajsDecoder {
  readInt32(): number
  canReadBytes(n: number): boolean
  readBytes(n: number): Buffer
}

/** Replaces kafkajs's fetch/v4/decodeMessages (used by Fetch v4 to v11): keeps the bytes for the Batch. */
async function decodeMessages(decoder: KafkajsDecoder): Promise<RawRecordSet | []> {
  const size = decoder.readInt32()
  if (size <= 0 || !decoder.canReadBytes(size)) return []
  return { weirRecordSet: decoder.readBytes(size) }
}

/** A fetched record as kafkajs hands it to its users, computed from the StoredRecord when read. */
class FetchedMessageView {
  readonly magicByte = 2
  readonly attributes = 0
  readonly isControlRecord = false
  constructor(
    readonly record: StoredRecord,
    private readonly batch: DataBatchInfo | undefined,
  ) {}
  /** The fields of the record's batch, as kafkajs names them (the failover benchmark tells producers apart by them). */
  get batchContext(): Record<string, unknown> {
    const b = this.batch
    if (b === undefined) return {}
    return {
      firstOffset: String(b.baseOffset),
      firstTimestamp: String(b.baseTimestamp),
      partitionLeaderEpoch: b.partitionLeaderEpoch,
      inTransaction: b.transactional,
      isControlBatch: false,
      lastOffsetDelta: b.lastOffsetDelta,
      producerId: String(b.producerId),
      producerEpoch: b.producerEpoch,
      firstSequence: b.baseSequence,
      maxTimestamp: String(b.maxTimestamp),
      timestampType: b.logAppendTime ? 1 : 0,
      magicByte: 2,
    }
  }
  get key(): Buffer | null {
    return this.record.key
  }
  get value(): Buffer | null {
    return this.record.value
  }
  get offset(): string {
    return String(this.record.offset)
  }
  get timestamp(): string {
    return String(this.record.timestamp)
  }
  get headers(): Record<string, Buffer> {
    return this.record.headers ?? {}
  }
}

interface PartitionData {
  partition: number
  highWatermark: string
  abortedTransactions?: Array<{ producerId: string; firstOffset: string }> | null
  messages: RawRecordSet | unknown[]
}

/**
 * kafkajs's consumer Batch over weir's decoded record set: the same methods and answers
 * (offsets as strings), with read_committed filtering done by the codec. A fetch that
 * asked for read_uncommitted has no aborted list and sees every data record.
 */
class WeirBatch {
  readonly topic: string
  readonly partition: number
  readonly highWatermark: string
  readonly fetchedOffset: string
  /** The visible records, decoded as weir's reader takes them. */
  readonly weirCursor: RecordCursor
  private readonly decoded: ScannedRecordSet
  private views: FetchedMessageView[] | undefined

  constructor(topic: string, fetchedOffset: string, partitionData: PartitionData) {
    this.topic = topic
    this.partition = partitionData.partition
    this.highWatermark = partitionData.highWatermark
    this.fetchedOffset = fetchedOffset
    const raw = partitionData.messages as RawRecordSet | unknown[]
    const aborted = partitionData.abortedTransactions
    this.decoded = scanRecordSet(Array.isArray(raw) ? Buffer.alloc(0) : raw.weirRecordSet, {
      from: Number(fetchedOffset),
      // kafkajs sends isolation level read_committed unless readUncommitted; the broker lists aborted transactions only then.
      abortedTransactions: (aborted ?? []).map((t) => ({ producerId: Number(t.producerId), firstOffset: Number(t.firstOffset) })),
      topic,
      partition: partitionData.partition,
    })
    this.weirCursor = this.decoded.cursor()
  }

  /** Set (fix 6) when weir's reader takes this batch: its records go through `weirCursor` only. */
  forReader = false

  /**
   * kafkajs consumers other than weir's reader (sinks, tests, benchmarks) get every record
   * decoded at once. For weir's reader, kafkajs's runner only reads the last message and
   * whether there is one (fix 6): it gets a list of the last one alone, and the records stay
   * bytes until the reader's poll decodes them.
   */
  get messages(): FetchedMessageView[] {
    if (this.views !== undefined) return this.views
    if (this.forReader) {
      // The runner asks up to three times per batch; the last record is found once.
      const last = this.decoded.lastRecord()
      const batches = this.decoded.dataBatches
      this.views = last === undefined ? [] : [new FetchedMessageView(last, batches[batches.length - 1])]
      return this.views
    }
    const { records, dataBatches } = decodeAll(this.decoded)
    let b = -1
    this.views = records.map((r, i) => {
      while (b + 1 < dataBatches.length && dataBatches[b + 1]!.firstRecord <= i) b++
      return new FetchedMessageView(r, dataBatches[b])
    })
    return this.views
  }

  isEmpty(): boolean {
    return this.weirCursor.nextOffset() === undefined
  }

  isEmptyIncludingFiltered(): boolean {
    return this.decoded.firstOffset === undefined
  }

  isEmptyDueToFiltering(): boolean {
    return this.isEmpty() && this.decoded.batches > 0
  }

  isEmptyControlRecord(): boolean {
    return this.isEmpty() && this.decoded.controlBatches > 0
  }

  isEmptyDueToLogCompactedMessages(): boolean {
    return this.decoded.batches > 0 && this.isEmptyIncludingFiltered()
  }

  firstOffset(): string | null {
    return this.decoded.firstOffset === undefined ? null : String(this.decoded.firstOffset)
  }

  lastOffset(): string {
    if (this.isEmptyDueToLogCompactedMessages()) return this.fetchedOffset
    if (this.isEmptyIncludingFiltered()) return String(Number(this.highWatermark) - 1)
    return String(this.decoded.nextOffset - 1)
  }

  offsetLag(): string {
    return String(Number(this.highWatermark) - 1 - Number(this.lastOffset()))
  }

  offsetLagLow(): string {
    if (this.isEmptyIncludingFiltered()) return '0'
    return String(Number(this.highWatermark) - 1 - Number(this.firstOffset()))
  }
}

type KafkajsValue = Buffer | string | null | undefined

interface ProduceRequestArgs {
  acks: number
  timeout: number
  transactionalId?: string | null
  producerId?: { toString(): string } | string | number
  producerEpoch?: number
  compression?: number
  topicData: Array<{
    topic: string
    partitions: Array<{
      partition: number
      firstSequence?: number
      messages: Array<{ key?: KafkajsValue; value?: KafkajsValue; timestamp?: string | number; headers?: Record<string, KafkajsValue | KafkajsValue[]> }>
    }>
  }>
}

interface KafkajsEncoder {
  writeString(s: string | null): KafkajsEncoder
  writeInt16(n: number): KafkajsEncoder
  writeInt32(n: number): KafkajsEncoder
  writeBuffer(b: Buffer): KafkajsEncoder
  writeArray(a: unknown[]): KafkajsEncoder
}

function bytes(v: KafkajsValue): Buffer | null {
  if (v === null || v === undefined) return null
  return Buffer.isBuffer(v) ? v : Buffer.from(String(v))
}

/**
 * A partition's records that weir's producer encoded into a record batch as they were sent
 * (RecordBatchWriter): kafkajs carries it as one message, and the partition's message list
 * it builds (groupMessagesPerPartition) is `count` long, so the idempotent producer's
 * sequence moves by the number of records; the produce encoding writes the batch as it is.
 */
export class EncodedBatchMessage {
  /** kafkajs refuses a message whose value is undefined. */
  readonly value = null
  constructor(
    readonly partition: number,
    readonly batch: RecordBatchWriter,
  ) {}
}

/** Records of one partition as the codec takes them; undefined when a header repeats a name (kafkajs encodes those). */
function pipeRecords(messages: ProduceRequestArgs['topicData'][number]['partitions'][number]['messages'], now: number): PipeRecord[] | undefined {
  const out: PipeRecord[] = new Array(messages.length)
  for (let i = 0; i < messages.length; i++) {
    const m = messages[i]!
    let headers: Record<string, Buffer> | undefined
    if (m.headers !== undefined) {
      for (const name in m.headers) {
        const v = m.headers[name]
        if (Array.isArray(v)) return undefined
        const b = bytes(v)
        if (b === null) return undefined
        ;(headers ??= {})[name] = b
      }
    }
    out[i] = { key: bytes(m.key), value: bytes(m.value), timestamp: m.timestamp === undefined || m.timestamp === null ? now : Number(m.timestamp), headers }
  }
  return out
}

function weirProduceRequest(original: (args: ProduceRequestArgs) => { encode: () => Promise<unknown> }, Encoder: new () => KafkajsEncoder) {
  return (args: ProduceRequestArgs) => {
    const request = original(args)
    if ((args.compression ?? 0) !== 0) return request
    return {
      ...request,
      encode: async () => {
        const now = Date.now()
        const producerId = args.producerId === undefined ? -1 : Number(String(args.producerId))
        const topics: KafkajsEncoder[] = []
        for (const t of args.topicData) {
          const partitions: KafkajsEncoder[] = []
          for (const p of t.partitions) {
            const producer = { producerId, producerEpoch: args.producerEpoch ?? 0, baseSequence: p.firstSequence ?? 0, transactional: args.transactionalId !== undefined && args.transactionalId !== null, now }
            const first = p.messages[0]
            let batch: Buffer
            if (first instanceof EncodedBatchMessage) batch = first.batch.finish(producer)
            else {
              const records = pipeRecords(p.messages, now)
              if (records === undefined) return request.encode()
              batch = encodeRecordBatch(records, producer)
            }
            partitions.push(new Encoder().writeInt32(p.partition).writeInt32(batch.length).writeBuffer(batch))
          }
          topics.push(new Encoder().writeString(t.topic).writeArray(partitions))
        }
        return new Encoder().writeString(args.transactionalId ?? null).writeInt16(args.acks).writeInt32(args.timeout).writeArray(topics)
      },
    }
  }
}

/** Fix 5: kafkajs's grouping of a produce request's messages by partition, in one pass and in message order. */
export function groupMessagesPerPartition<M>({ topic, partitionMetadata, messages, partitioner }: { topic: string; partitionMetadata: unknown[]; messages: M[]; partitioner: (args: { topic: string; partitionMetadata: unknown[]; message: M }) => number }): Record<number, M[]> {
  const result: Record<number, M[]> = {}
  if (partitionMetadata.length === 0) return result
  for (const message of messages) {
    if (message instanceof EncodedBatchMessage) {
      // Its records' places: the sequence and the request's record count go by the list's length.
      const list = new Array<M>(message.batch.count)
      list[0] = message
      result[message.partition] = list
      continue
    }
    const partition = partitioner({ topic, partitionMetadata, message })
    const list = result[partition]
    if (list === undefined) result[partition] = [message]
    else list.push(message)
  }
  return result
}

/** What fixRequestQueue touches of kafkajs's RequestQueue. */
interface RequestQueueClass {
  prototype: {
    pending: unknown[]
    throttledUntil: number
    throttleCheckTimeoutId: ReturnType<typeof setTimeout> | null
    checkPendingRequests(): void
    scheduleCheckPendingRequests(): void
  }
}

/** kafkajs's interval between checks of a queue that waits on in-flight requests, not on a throttle. */
const CHECK_PENDING_REQUESTS_MS = 10

/** Fix 4: the pending-request timer is set only while a request is pending. */
function fixRequestQueue(RequestQueue: RequestQueueClass): void {
  RequestQueue.prototype.scheduleCheckPendingRequests = function (this: RequestQueueClass['prototype']) {
    if (this.throttleCheckTimeoutId !== null && this.throttleCheckTimeoutId !== undefined) return
    if (this.pending.length === 0) return
    const throttledMs = this.throttledUntil - Date.now()
    this.throttleCheckTimeoutId = setTimeout(() => {
      this.throttleCheckTimeoutId = null
      this.checkPendingRequests()
    }, throttledMs > 0 ? throttledMs : CHECK_PENDING_REQUESTS_MS)
  }
}

/** What fixRunner touches of kafkajs's consumer Runner. */
interface RunnerClass {
  prototype: {
    consumerGroup: { groupId: string }
    handleBatch(batch: unknown): Promise<void>
  }
}

/** The group id prefix of weir's readers (kafka-reader.ts): their batches are read through `weirCursor`. */
export const READER_GROUP_PREFIX = 'weir-reader.'

/**
 * Fix 6: a batch for one of weir's readers is marked before kafkajs's runner handles it, so
 * its `messages` does not decode every record (the runner reads the count and the last one;
 * the reader decodes them as it polls).
 */
function fixRunner(Runner: RunnerClass): void {
  const handleBatch = Runner.prototype.handleBatch
  Runner.prototype.handleBatch = function (this: RunnerClass['prototype'], batch: unknown) {
    if (batch instanceof WeirBatch && this.consumerGroup.groupId.startsWith(READER_GROUP_PREFIX)) batch.forReader = true
    return handleBatch.call(this, batch)
  }
}

/** The records of a kafkajs batch, for weir's reader to decode as it takes them (every batch, once this module is loaded). */
export function weirCursorOf(batch: unknown): RecordCursor {
  const cursor = (batch as Partial<WeirBatch>).weirCursor
  if (cursor === undefined) throw new Error('runtime/pipe/kafka/kafkajs-fixes.ts was not installed before kafkajs loaded')
  return cursor
}

const requireFromKafkajs = createRequire(createRequire(import.meta.url).resolve('kafkajs'))
const filterPath = requireFromKafkajs.resolve('./src/consumer/filterAbortedMessages.js')
const batchPath = requireFromKafkajs.resolve('./src/consumer/batch.js')
const decodeMessagesPath = requireFromKafkajs.resolve('./src/protocol/requests/fetch/v4/decodeMessages.js')
const produceV3Path = requireFromKafkajs.resolve('./src/protocol/requests/produce/v3/request.js')
const requestQueuePath = requireFromKafkajs.resolve('./src/network/requestQueue/index.js')
const groupMessagesPath = requireFromKafkajs.resolve('./src/producer/groupMessagesPerPartition.js')
const runnerPath = requireFromKafkajs.resolve('./src/consumer/runner.js')
const loadedBatch = requireFromKafkajs.cache[batchPath]?.exports as { weirFixed?: boolean } | undefined
if ((loadedBatch !== undefined && loadedBatch.weirFixed !== true) || (requireFromKafkajs.cache[decodeMessagesPath] !== undefined && requireFromKafkajs.cache[decodeMessagesPath]!.exports !== decodeMessages && loadedBatch?.weirFixed !== true)) {
  // kafkajs was loaded before this module: its batches keep the faulty filter and its decoder.
  throw new Error('runtime/pipe/kafka/kafkajs-fixes.ts must be imported before kafkajs is loaded')
}
if (loadedBatch === undefined) {
  requireFromKafkajs(filterPath)
  requireFromKafkajs.cache[filterPath]!.exports = filterAbortedMessages
  requireFromKafkajs(decodeMessagesPath)
  requireFromKafkajs.cache[decodeMessagesPath]!.exports = decodeMessages
  requireFromKafkajs(batchPath)
  const originalProduceV3 = requireFromKafkajs(produceV3Path) as Parameters<typeof weirProduceRequest>[0]
  requireFromKafkajs.cache[produceV3Path]!.exports = weirProduceRequest(originalProduceV3, requireFromKafkajs('./src/protocol/encoder.js') as new () => KafkajsEncoder)
  fixRequestQueue(requireFromKafkajs(requestQueuePath) as RequestQueueClass)
  requireFromKafkajs(groupMessagesPath)
  requireFromKafkajs.cache[groupMessagesPath]!.exports = groupMessagesPerPartition
  fixRunner(requireFromKafkajs(runnerPath) as RunnerClass)
  ;(WeirBatch as unknown as { weirFixed: boolean }).weirFixed = true
  requireFromKafkajs.cache[batchPath]!.exports = WeirBatch
}
