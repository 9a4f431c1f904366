/**
 * exactly-once into a Kafka topic outside the pipeline (another cluster, or another topic of
 * the pipe's cluster): readers with `isolation.level=read_committed` see every record once,
 * across crashes, restarts, broker outages and zombies. Readers with `read_uncommitted` can
 * also see the records of attempts that were aborted (a crash in the middle of a write, a
 * fenced zombie): Kafka writes them to the log and marks them aborted.
 *
 * How: each actor has one transactional producer, transactionalId
 * `<transactionalIdPrefix>.<pipeline>.<stage>.<partition>`. Initializing it fences every older
 * instance of the actor (Kafka's own zombie fencing) and ends a transaction one left open. The
 * actor's progress (generation, input positions, checkpoint, epoch, pending dead letters) is a
 * record keyed `<pipeline>/<stage>/<partition>` in a compacted progress topic on the target
 * cluster, written in the same Kafka transaction as the batch's records: both are committed or
 * neither. To read its progress, an instance commits a marker record of its own (key
 * `<pipeline>/<stage>/<partition>/claim`) to the progress topic and reads read_committed until
 * it sees that marker: every transaction of the actor ended before the producer was
 * initialized, so its newest committed progress is below the marker, whatever transaction
 * markers, aborted records and compaction gaps lie in between. A write whose commit outcome
 * was lost (a timeout, a connection cut during the commit) is resolved the same way: a new
 * producer, the progress read again, and the batch counted as written if the progress is
 * where the batch moved it.
 *
 * A record the mapping cannot convert, or whose size is above `maxMessageBytes`, goes to the
 * stage's dead-letter topic; the rest of the batch is written.
 */
// The public API first: loading it installs weir's correction of kafkajs's read_committed
// filter (runtime/pipe/kafka/kafkajs-fixes.ts), which must come before kafkajs is loaded.
import {
  ConfigError,
  SinkError,
  SinkFencedError,
  StateCorruptedError,
  StoreSink,
  encodePositions,
  type LifecycleContext,
  type SinkActor,
  type SinkBatch,
  type SinkClaim,
  type SinkProgress,
  type StoreSinkOptions,
  type StreamRecord,
  type WriteResult,
} from '../../index.ts'
import { randomUUID } from 'node:crypto'
import { readFileSync } from 'node:fs'
import { crc32 } from 'node:zlib'
import { AssignerProtocol, CompressionTypes, Kafka, Partitioners, logLevel as KafkaLogLevel, type Admin, type Consumer, type KafkaConfig, type LogEntry, type Message, type PartitionAssigner, type Producer, type SASLOptions, type Transaction } from 'kafkajs'
import type { ConnectionOptions } from 'node:tls'
import type { Logger } from 'pino'

/** What the sink writes for a record. */
export interface KafkaSinkMessage {
  /** Default: none (Kafka spreads keyless records over the partitions). */
  key?: string | Buffer | null
  /** `null` is a tombstone (for compacted target topics). */
  value: string | Buffer | null
  headers?: Readonly<Record<string, string | Buffer>>
  /** Default: Kafka's default partitioner on the key (murmur2, as the Java client). */
  partition?: number
}

export interface KafkaSinkTls {
  /** PEM file of the certificate authorities to trust (default: Node's). */
  caFile?: string
  /** Client certificate and key files (PEM), for brokers that ask for one. */
  certFile?: string
  keyFile?: string
  servername?: string
  rejectUnauthorized?: boolean
}

export interface KafkaSinkSasl {
  mechanism: 'plain' | 'scram-sha-256' | 'scram-sha-512'
  username: string
  /** The name of an environment variable holding the password. Exactly one of passwordEnv and passwordFile. */
  passwordEnv?: string
  /** A file holding the password (a trailing newline is dropped). */
  passwordFile?: string
}

export interface KafkaSinkOptions<T> extends StoreSinkOptions {
  /** The target cluster's bootstrap brokers, `host:port` (any cluster: the pipe's or another). */
  brokers: readonly string[]
  /** The target topic; it must exist (its owner decides its partitions and configuration). */
  topic: string
  /** Kafka client id. Default `weir-sink`. */
  clientId?: string
  /** TLS: `true` (Node's trusted CAs), or files. */
  ssl?: boolean | KafkaSinkTls
  /** SASL; the password comes from the environment or a file, never from the pipeline. */
  sasl?: KafkaSinkSasl
  /** The message for a record; a throw dead-letters the record. Default: the record's key, its value as JSON. */
  mapping?: (record: StreamRecord<T>) => KafkaSinkMessage
  /** The compacted topic that keeps the actors' progress, on the target cluster; created if missing. Default `weir-sink-progress`. */
  progressTopic?: string
  /** Producers' transactional ids are `<prefix>.<pipeline>.<stage>.<partition>`. Default `weir-sink`. */
  transactionalIdPrefix?: string
  /** Default `none`; `gzip` is the one codec kafkajs has built in. */
  compression?: 'none' | 'gzip'
  /**
   * A message (key, value and headers) above this many bytes is dead-lettered before it is
   * sent: Kafka would refuse it, and with it the whole batch. Keep it at or below the topic's
   * `max.message.bytes` less about 100 bytes. Default 1,000,000 (Kafka's default is 1,048,588).
   */
  maxMessageBytes?: number
  /** Kafka `transaction.timeout.ms` of the producers. Default 60000. */
  transactionTimeoutMs?: number
  /** How long a read of the progress may wait (other writers' open transactions hold read_committed readers back), ms. Default 120000. */
  progressReadTimeoutMs?: number
  /** Kafka client request timeout, ms. Default 30000. */
  requestTimeoutMs?: number
}

/** A message ready to send, with its size as Kafka counts it (near enough). */
interface EncodedMessage {
  message: Message
  bytes: number
}

const DEFAULT_PROGRESS_TOPIC = 'weir-sink-progress'
const TOPIC_NAME = /^[A-Za-z0-9._-]{1,249}$/
const BROKER = /^[^\s:/]+:\d{1,5}$/
/** Per-record overhead of Kafka's record format, counted with the message's own bytes. */
const RECORD_OVERHEAD = 64
/** A produce request's records per send: kafkajs sends one request per call. */
const SEND_BYTES = 900 * 1024
const SEND_RECORDS = 1000
/**
 * A fencing error means some instance initialized the actor's producer after this one: a newer
 * instance (this one must stop) or an older one starting over after an outage (which then finds
 * the newer generation in the progress and stops). The progress tells which, read with a new
 * producer: this many times, then the instance gives up as fenced.
 */
const FENCE_RECHECKS = 5

/** Thrown when the progress read does not reach its marker in time: other writers hold read_committed readers back. */
class ProgressReadTimeout extends Error {
  override readonly name = 'ProgressReadTimeout'
}

/**
 * Writes records to a Kafka topic exactly once for read_committed readers (see the file's first
 * comment; docs/sinks/kafka.md has the details).
 *
 * @example
 * stream.to('publish', () => new KafkaSink<Order>({
 *   brokers: ['kafka-a.example.com:9093'], topic: 'orders-enriched',
 *   ssl: true, sasl: { mechanism: 'scram-sha-512', username: 'weir', passwordEnv: 'ORDERS_KAFKA_PASSWORD' },
 *   mapping: (r) => ({ key: r.value.id, value: JSON.stringify(r.value), headers: { source: 'weir' } }),
 * }))
 */
export class KafkaSink<T = unknown> extends StoreSink<T, EncodedMessage> {
  private readonly progressTopic: string
  private readonly prefix: string
  private readonly compression: CompressionTypes
  private readonly maxMessageBytes: number
  private readonly transactionTimeoutMs: number
  private readonly progressReadTimeoutMs: number
  private readonly requestTimeoutMs: number
  private logger: Logger | undefined
  private kafka: Kafka | undefined
  private admin: Admin | undefined
  private producer: Producer | undefined
  private owner: SinkActor | undefined
  private targetPartitions = 0
  private progressPartition = 0
  /** The producer is the actor's newest and the progress in Kafka is what this instance last wrote or read. */
  private verified = false

  constructor(private readonly options: KafkaSinkOptions<T>) {
    super(options)
    checkOptions(options)
    this.progressTopic = options.progressTopic ?? DEFAULT_PROGRESS_TOPIC
    this.prefix = options.transactionalIdPrefix ?? 'weir-sink'
    this.compression = options.compression === 'gzip' ? CompressionTypes.GZIP : CompressionTypes.None
    this.maxMessageBytes = options.maxMessageBytes ?? 1_000_000
    this.transactionTimeoutMs = options.transactionTimeoutMs ?? 60_000
    this.progressReadTimeoutMs = options.progressReadTimeoutMs ?? 120_000
    this.requestTimeoutMs = options.requestTimeoutMs ?? 30_000
  }

  protected describeStore(): string {
    return `Kafka ${this.options.brokers.join(',')} topic ${this.options.topic}`
  }

  /** The key of an actor's progress record in the progress topic. */
  progressKey(actor: SinkActor): string {
    return `${actor.pipeline}/${actor.stage}/${actor.partition}`
  }

  /** The transactional id of an actor's producer. */
  transactionalId(actor: SinkActor): string {
    return `${this.prefix}.${actor.pipeline}.${actor.stage}.${actor.partition}`
  }

  protected async connect(ctx: LifecycleContext): Promise<void> {
    this.logger = ctx.log.child({ component: 'kafka-sink' })
    this.owner = { pipeline: ctx.pipeline, stage: ctx.stage, partition: ctx.partition }
    await this.disconnect()
    this.kafka = new Kafka(this.clientConfig(this.logger))
    const admin = this.kafka.admin()
    this.admin = admin
    await admin.connect()
    this.targetPartitions = await this.partitionsOf(this.options.topic)
    if (this.targetPartitions === 0) throw new SinkError(`${ctx.stage}/${ctx.partition}: the target topic ${this.options.topic} does not exist on ${this.options.brokers.join(',')} (option topic): create it first`, { stage: ctx.stage, partition: ctx.partition, topic: this.options.topic })
    let progressPartitions = await this.partitionsOf(this.progressTopic)
    if (progressPartitions === 0) {
      try {
        await admin.createTopics({ waitForLeaders: true, topics: [{ topic: this.progressTopic, numPartitions: 1, configEntries: [{ name: 'cleanup.policy', value: 'compact' }] }] })
      } catch (err) {
        if ((err as { type?: string }).type !== 'TOPIC_ALREADY_EXISTS' && !/already exists/i.test(String((err as Error).message))) throw err
      }
      progressPartitions = await this.partitionsOf(this.progressTopic)
      if (progressPartitions === 0) throw Object.assign(new Error(`the progress topic ${this.progressTopic} has no partitions yet`), { retriable: true })
    }
    this.progressPartition = crc32(this.progressKey(this.owner)) % progressPartitions
    await this.openProducer()
  }

  protected async disconnect(): Promise<void> {
    await this.dropProducer()
    const admin = this.admin
    this.admin = undefined
    await admin?.disconnect().catch(() => undefined)
    this.kafka = undefined
  }

  protected toRow(record: StreamRecord<T>): EncodedMessage {
    const m = this.options.mapping !== undefined ? this.options.mapping(record) : defaultMessage(record)
    if (typeof m !== 'object' || m === null) throw new TypeError(`mapping: expected { key, value, headers?, partition? }, got ${m === null ? 'null' : typeof m}`)
    const bytesOf = (field: string, v: unknown, nullable: boolean): number => {
      if (typeof v === 'string') return Buffer.byteLength(v)
      if (Buffer.isBuffer(v)) return v.length
      if (nullable && (v === null || v === undefined)) return 0
      throw new TypeError(`mapping: ${field} must be a string or a Buffer${nullable ? ' (or null)' : ''}, got ${v === null ? 'null' : typeof v}`)
    }
    if (!('value' in m)) throw new TypeError('mapping: the message has no value (null for a tombstone)')
    let bytes = RECORD_OVERHEAD + bytesOf('key', m.key, true) + bytesOf('value', m.value, true)
    const message: Message = { key: m.key ?? null, value: m.value }
    if (m.headers !== undefined) {
      if (typeof m.headers !== 'object' || m.headers === null) throw new TypeError('mapping: headers must be an object of strings or Buffers')
      for (const [name, v] of Object.entries(m.headers)) bytes += Buffer.byteLength(name) + bytesOf(`headers.${name}`, v, false)
      message.headers = { ...m.headers }
    }
    if (m.partition !== undefined) {
      if (!Number.isSafeInteger(m.partition) || m.partition < 0 || m.partition >= this.targetPartitions) throw new RangeError(`mapping: partition ${String(m.partition)} is not one of ${this.options.topic}'s (0 to ${this.targetPartitions - 1})`)
      message.partition = m.partition
    }
    if (bytes > this.maxMessageBytes) throw new RangeError(`the message is ${bytes} bytes, above maxMessageBytes (${this.maxMessageBytes}): Kafka would refuse it`)
    return { message, bytes }
  }

  protected async claim(actor: SinkActor): Promise<SinkClaim> {
    for (let attempt = 1; ; attempt++) {
      try {
        if (this.producer === undefined) await this.openProducer()
        const stored = await this.readProgress(actor)
        const generation = (stored?.generation ?? 0) + 1
        const claimed: SinkProgress = { ...(stored ?? { positions: {}, checkpoint: 0, epoch: 0, deadLetters: [] }), generation }
        await this.inTransaction(async (txn) => {
          await txn.send({ topic: this.progressTopic, messages: [this.progressMessage(actor, claimed)] })
        })
        this.verified = true
        return { generation, progress: stored !== undefined && stored.checkpoint > 0 ? stored : undefined }
      } catch (err) {
        await this.dropProducer()
        // Fenced while claiming: an older instance starting over, or a newer one; claiming again settles it (the newest claim wins).
        if (isFenced(err) && attempt < FENCE_RECHECKS) continue
        if (isFenced(err)) throw new SinkFencedError(`${actor.stage}/${actor.partition}: another instance initialized ${this.transactionalId(actor)} ${FENCE_RECHECKS} times while this one claimed the actor`, { stage: actor.stage, partition: actor.partition })
        throw err
      }
    }
  }

  protected async write(batch: SinkBatch<EncodedMessage>): Promise<WriteResult> {
    const actor = batch.actor
    const context = { stage: actor.stage, partition: actor.partition, store: this.describeStore() }
    for (let attempt = 1; ; attempt++) {
      try {
        if (!this.verified) {
          // A new producer (fencing any other) and the progress it can trust.
          await this.dropProducer()
          await this.openProducer()
          const stored = await this.readProgress(actor)
          if (stored === undefined || stored.generation < batch.generation) throw new StateCorruptedError(`${actor.stage}/${actor.partition}: the progress record ${this.progressKey(actor)} in ${this.progressTopic} is ${stored === undefined ? 'gone' : `at generation ${stored.generation}`}, but this instance claimed generation ${batch.generation}: the progress topic was changed outside the sink`, context)
          if (stored.generation > batch.generation) throw new SinkFencedError(`${actor.stage}/${actor.partition}: ${this.describeStore()} refused a write of generation ${batch.generation}: the progress in ${this.progressTopic} has generation ${stored.generation} (another instance claimed the actor)`, { ...context, generation: batch.generation, storeGeneration: stored.generation })
          const at = encodePositions(stored.positions)
          if (at === encodePositions(batch.to)) {
            this.verified = true
            return { outcome: 'already-written', progress: stored }
          }
          if (at !== encodePositions(batch.from)) throw new StateCorruptedError(`${actor.stage}/${actor.partition}: the progress in ${this.progressTopic} is at ${at}, but this write continues from ${encodePositions(batch.from)} to ${encodePositions(batch.to)}: the progress was changed outside this instance`, { ...context, storePositions: at })
          this.verified = true
        }
        await this.inTransaction(async (txn) => {
          for (const chunk of chunks(batch.rows.map((r) => r.row))) await txn.send({ topic: this.options.topic, compression: this.compression, messages: chunk })
          await txn.send({ topic: this.progressTopic, messages: [this.progressMessage(actor, batch.progress([]))] })
        })
        return { outcome: 'written', rejected: [] }
      } catch (err) {
        this.verified = false
        if (err instanceof SinkFencedError || err instanceof StateCorruptedError) throw err
        await this.dropProducer()
        if (isFenced(err)) {
          this.logger?.warn({ ...context, transactionalId: this.transactionalId(actor), attempt, err: (err as Error).message }, 'kafka sink producer fenced; reading the progress to learn by whom')
          if (attempt < FENCE_RECHECKS) continue
          throw new SinkFencedError(`${actor.stage}/${actor.partition}: the producer ${this.transactionalId(actor)} was fenced ${FENCE_RECHECKS} times in a row`, context)
        }
        throw err
      }
    }
  }

  protected override isUnavailable(err: unknown): boolean {
    if (super.isUnavailable(err)) return true
    if (isFenced(err)) return false
    for (const c of causes(err)) {
      if (c instanceof ProgressReadTimeout) return true
      if (c.retriable === true) return true
      if (c.name !== undefined && UNAVAILABLE_ERRORS.has(c.name)) return true
      if (c.type !== undefined && UNAVAILABLE_TYPES.has(c.type)) return true
    }
    return false
  }

  protected override resetHint(actor: SinkActor): string {
    return `write a tombstone for the key ${this.progressKey(actor)} to ${this.progressTopic}, e.g. echo '${this.progressKey(actor)}|' | kcat -b ${this.options.brokers[0]} -t ${this.progressTopic} -p ${this.progressPartition} -P -Z -K '|'`
  }

  private clientConfig(log: Logger): KafkaConfig {
    const o = this.options
    return {
      clientId: o.clientId ?? 'weir-sink',
      brokers: [...o.brokers],
      ssl: tlsOptions(o.ssl),
      sasl: saslOptions(o.sasl),
      requestTimeout: this.requestTimeoutMs,
      connectionTimeout: 5000,
      // A few quick retries: an outage surfaces soon, and the sink retries with backoff, telling the monitor.
      retry: { retries: 8, initialRetryTime: 50, maxRetryTime: 2000 },
      logLevel: KafkaLogLevel.WARN,
      logCreator: () => ({ namespace, level, log: entry }: LogEntry) => {
        const { message, ...extra } = entry
        if (level <= KafkaLogLevel.WARN) log.warn({ kafka: namespace, ...extra }, message)
      },
    }
  }

  /** Partitions of a topic on the target cluster (0: it does not exist). */
  private async partitionsOf(topic: string): Promise<number> {
    const admin = this.admin!
    if (!(await admin.listTopics()).includes(topic)) return 0
    const meta = await admin.fetchTopicMetadata({ topics: [topic] })
    return meta.topics.find((t) => t.name === topic)?.partitions.length ?? 0
  }

  /** A new transactional producer for the actor, initialized: every older one is fenced and a transaction it left open is ended. */
  private async openProducer(): Promise<void> {
    const producer = this.kafka!.producer({
      transactionalId: this.transactionalId(this.owner!),
      idempotent: true,
      maxInFlightRequests: 1,
      transactionTimeout: this.transactionTimeoutMs,
      allowAutoTopicCreation: false,
      createPartitioner: Partitioners.DefaultPartitioner,
      // CONCURRENT_TRANSACTIONS while the previous instance's transaction is ended clears in milliseconds.
      retry: { retries: 12, initialRetryTime: 20, maxRetryTime: 2000 },
    })
    try {
      await producer.connect()
      // InitProducerId comes with the first transaction; an empty one sends nothing else.
      await (await producer.transaction()).abort()
    } catch (err) {
      await producer.disconnect().catch(() => undefined)
      throw err
    }
    this.producer = producer
  }

  private async dropProducer(): Promise<void> {
    const producer = this.producer
    this.producer = undefined
    this.verified = false
    await producer?.disconnect().catch(() => undefined)
  }

  /** Runs `body` in one transaction of the actor's producer and commits it; aborts what it can when `body` fails. */
  private async inTransaction(body: (txn: Transaction) => Promise<void>): Promise<void> {
    const producer = this.producer
    if (producer === undefined) throw Object.assign(new Error('the producer is closed'), { code: 'ECONNRESET' })
    const txn = await producer.transaction()
    try {
      await body(txn)
    } catch (err) {
      if (txn.isActive()) await txn.abort().catch(() => undefined)
      throw err
    }
    await txn.commit()
  }

  private progressMessage(actor: SinkActor, p: SinkProgress): Message {
    return { key: this.progressKey(actor), partition: this.progressPartition, value: JSON.stringify({ generation: p.generation, positions: p.positions, checkpoint: p.checkpoint, epoch: p.epoch, deadLetters: p.deadLetters }) }
  }

  /**
   * The actor's newest committed progress: commits a marker record, then reads read_committed
   * from the start of the progress topic's partition until the marker (see the file's first comment).
   */
  private async readProgress(actor: SinkActor): Promise<SinkProgress | undefined> {
    const key = this.progressKey(actor)
    let marker = -1
    await this.inTransaction(async (txn) => {
      const sent = await txn.send({ topic: this.progressTopic, messages: [{ key: `${key}/claim`, partition: this.progressPartition, value: JSON.stringify({ at: new Date().toISOString() }) }] })
      marker = Number(sent.find((s) => s.partition === this.progressPartition)?.baseOffset ?? -1)
    })
    if (!(marker >= 0)) throw new SinkError(`${actor.stage}/${actor.partition}: Kafka did not give the offset of the progress marker in ${this.progressTopic}`, { stage: actor.stage, partition: actor.partition })
    const topic = this.progressTopic
    const partition = this.progressPartition
    const consumer: Consumer = this.kafka!.consumer({
      groupId: `${this.prefix}-progress-reader.${randomUUID()}`,
      partitionAssigners: [onePartition(topic, partition)],
      readUncommitted: false,
      allowAutoTopicCreation: false,
      maxWaitTimeInMs: 200,
      retry: { retries: 5 },
    })
    let found: string | undefined
    let done!: () => void
    let failed!: (err: unknown) => void
    const reached = new Promise<void>((resolve, reject) => {
      done = resolve
      failed = reject
    })
    consumer.on(consumer.events.CRASH, (e) => failed(e.payload.error))
    const timer = setTimeout(() => failed(new ProgressReadTimeout(`${actor.stage}/${actor.partition}: the progress read did not reach its marker (${topic}/${partition} offset ${marker}) in ${this.progressReadTimeoutMs} ms: another writer's open transaction holds read_committed readers back`)), this.progressReadTimeoutMs)
    try {
      await consumer.connect()
      await consumer.subscribe({ topics: [topic], fromBeginning: true })
      await consumer.run({
        autoCommit: false,
        eachBatch: async ({ batch, resolveOffset }) => {
          if (batch.partition !== partition) return
          for (const m of batch.messages) {
            if (Number(m.offset) >= marker) {
              done()
              return
            }
            if (m.key?.toString() === key) found = m.value?.toString()
            resolveOffset(m.offset)
          }
        },
      })
      await reached
    } finally {
      clearTimeout(timer)
      await consumer.disconnect().catch(() => undefined)
    }
    if (found === undefined) return undefined
    try {
      const p = JSON.parse(found) as SinkProgress
      if (!Number.isSafeInteger(p.generation) || typeof p.positions !== 'object' || p.positions === null || !Array.isArray(p.deadLetters)) throw new Error('fields missing')
      return p
    } catch (err) {
      throw new StateCorruptedError(`${actor.stage}/${actor.partition}: the record ${key} in ${topic} is not the sink's progress (${(err as Error).message})`, { stage: actor.stage, partition: actor.partition })
    }
  }
}

interface KafkaJsErrorLike {
  name?: string
  message?: string
  type?: string
  retriable?: boolean
  cause?: unknown
  originalError?: unknown
}

/** kafkajs errors of a broker or connection that may answer again. */
const UNAVAILABLE_ERRORS = new Set(['KafkaJSConnectionError', 'KafkaJSConnectionClosedError', 'KafkaJSRequestTimeoutError', 'KafkaJSBrokerNotFound', 'KafkaJSLockTimeout', 'KafkaJSMetadataNotLoaded', 'KafkaJSGroupCoordinatorNotFound', 'KafkaJSNoBrokerAvailableError', 'ProgressReadTimeout'])
/** Kafka error codes of a cluster that cannot take the write now (a leader or coordinator moving, too few in-sync replicas). */
const UNAVAILABLE_TYPES = new Set(['LEADER_NOT_AVAILABLE', 'NOT_LEADER_FOR_PARTITION', 'NOT_LEADER_OR_FOLLOWER', 'COORDINATOR_NOT_AVAILABLE', 'NOT_COORDINATOR', 'COORDINATOR_LOAD_IN_PROGRESS', 'CONCURRENT_TRANSACTIONS', 'NOT_ENOUGH_REPLICAS', 'NOT_ENOUGH_REPLICAS_AFTER_APPEND', 'REQUEST_TIMED_OUT', 'NETWORK_EXCEPTION', 'KAFKA_STORAGE_ERROR'])
const FENCED_TYPES = new Set(['INVALID_PRODUCER_EPOCH', 'PRODUCER_FENCED', 'INVALID_PRODUCER_ID_MAPPING', 'TRANSACTIONAL_ID_AUTHORIZATION_FAILED_FENCED'])

/** An error and what it wraps (kafkajs's retries wrap the last error). */
function* causes(err: unknown): Generator<KafkaJsErrorLike> {
  let e: unknown = err
  for (let depth = 0; e !== undefined && e !== null && depth < 8; depth++) {
    const k = e as KafkaJsErrorLike
    yield k
    e = k.originalError ?? k.cause
  }
}

/** A newer producer with the same transactional id exists (Kafka's fencing). */
function isFenced(err: unknown): boolean {
  for (const c of causes(err)) {
    if (c.type !== undefined && FENCED_TYPES.has(c.type)) return true
    if (typeof c.message === 'string' && /has been fenced|Producer attempted an operation with an old epoch/i.test(c.message)) return true
  }
  return false
}

/** The single member of a reader's group reads exactly one partition. */
function onePartition(topic: string, partition: number): PartitionAssigner {
  const name = 'WeirSinkProgressPartition'
  return () => ({
    name,
    version: 1,
    async assign({ members }) {
      return members.map((m, i) => ({ memberId: m.memberId, memberAssignment: AssignerProtocol.MemberAssignment.encode({ version: 1, assignment: i === 0 ? { [topic]: [partition] } : {}, userData: Buffer.alloc(0) }) }))
    },
    protocol({ topics }) {
      return { name, metadata: AssignerProtocol.MemberMetadata.encode({ version: 1, topics, userData: Buffer.alloc(0) }) }
    },
  })
}

function defaultMessage(record: StreamRecord<unknown>): KafkaSinkMessage {
  const value = JSON.stringify(record.value)
  if (value === undefined) throw new TypeError(`the record's value (${typeof record.value}) has no JSON form: give a mapping`)
  return { key: record.key ?? null, value }
}

/** Messages in sends of at most SEND_BYTES and SEND_RECORDS. */
function* chunks(rows: readonly EncodedMessage[]): Generator<Message[]> {
  let chunk: Message[] = []
  let bytes = 0
  for (const r of rows) {
    if (chunk.length > 0 && (bytes + r.bytes > SEND_BYTES || chunk.length >= SEND_RECORDS)) {
      yield chunk
      chunk = []
      bytes = 0
    }
    chunk.push(r.message)
    bytes += r.bytes
  }
  if (chunk.length > 0) yield chunk
}

function readSecret(field: string, file: string): string {
  try {
    return readFileSync(file, 'utf8').replace(/\r?\n$/, '')
  } catch (err) {
    throw new ConfigError(field, `cannot read ${file}: ${(err as Error).message}`)
  }
}

function tlsOptions(ssl: KafkaSinkOptions<unknown>['ssl']): boolean | ConnectionOptions | undefined {
  if (ssl === undefined || typeof ssl === 'boolean') return ssl
  return {
    ...(ssl.caFile === undefined ? {} : { ca: readSecret('ssl.caFile', ssl.caFile) }),
    ...(ssl.certFile === undefined ? {} : { cert: readSecret('ssl.certFile', ssl.certFile) }),
    ...(ssl.keyFile === undefined ? {} : { key: readSecret('ssl.keyFile', ssl.keyFile) }),
    ...(ssl.servername === undefined ? {} : { servername: ssl.servername }),
    ...(ssl.rejectUnauthorized === undefined ? {} : { rejectUnauthorized: ssl.rejectUnauthorized }),
  }
}

function saslOptions(sasl: KafkaSinkSasl | undefined): SASLOptions | undefined {
  if (sasl === undefined) return undefined
  const password = sasl.passwordEnv !== undefined ? process.env[sasl.passwordEnv]! : readSecret('sasl.passwordFile', sasl.passwordFile!)
  return { mechanism: sasl.mechanism, username: sasl.username, password } as SASLOptions
}

function checkOptions<T>(o: KafkaSinkOptions<T>): void {
  if (!Array.isArray(o.brokers) || o.brokers.length === 0) throw new ConfigError('brokers', 'give the target cluster\'s brokers as a list of host:port')
  for (const b of o.brokers) if (typeof b !== 'string' || !BROKER.test(b)) throw new ConfigError('brokers', `a broker is host:port, got ${JSON.stringify(b)}`)
  if (typeof o.topic !== 'string' || !TOPIC_NAME.test(o.topic)) throw new ConfigError('topic', `must be a Kafka topic name (letters, digits, . _ -; 1 to 249), got ${JSON.stringify(o.topic)}`)
  if (o.progressTopic !== undefined && (typeof o.progressTopic !== 'string' || !TOPIC_NAME.test(o.progressTopic))) throw new ConfigError('progressTopic', `must be a Kafka topic name, got ${JSON.stringify(o.progressTopic)}`)
  if (o.progressTopic !== undefined && o.progressTopic === o.topic) throw new ConfigError('progressTopic', 'must not be the target topic')
  if (o.clientId !== undefined && (typeof o.clientId !== 'string' || o.clientId === '')) throw new ConfigError('clientId', 'must be a non-empty string')
  if (o.transactionalIdPrefix !== undefined && (typeof o.transactionalIdPrefix !== 'string' || !/^[A-Za-z0-9._-]{1,100}$/.test(o.transactionalIdPrefix))) throw new ConfigError('transactionalIdPrefix', `must be 1 to 100 letters, digits, . _ or -, got ${JSON.stringify(o.transactionalIdPrefix)}`)
  if (o.mapping !== undefined && typeof o.mapping !== 'function') throw new ConfigError('mapping', 'must be a function of the record returning { key, value, headers?, partition? }')
  if (o.compression !== undefined && o.compression !== 'none' && o.compression !== 'gzip') throw new ConfigError('compression', `must be 'none' or 'gzip' (the codecs kafkajs has built in), got ${JSON.stringify(o.compression)}`)
  const whole = (field: keyof KafkaSinkOptions<T>, min: number, max: number): void => {
    const v = o[field]
    if (v !== undefined && (typeof v !== 'number' || !Number.isSafeInteger(v) || v < min || v > max)) throw new ConfigError(field, `must be a whole number from ${min} to ${max}, got ${JSON.stringify(v)}`)
  }
  whole('maxMessageBytes', 1024, 1 << 30)
  whole('transactionTimeoutMs', 1000, 900_000)
  whole('progressReadTimeoutMs', 1000, 3_600_000)
  whole('requestTimeoutMs', 1000, 300_000)
  if (o.ssl !== undefined && typeof o.ssl !== 'boolean') {
    if (typeof o.ssl !== 'object' || o.ssl === null) throw new ConfigError('ssl', 'must be true, false or { caFile, certFile, keyFile, servername, rejectUnauthorized }')
    for (const field of ['caFile', 'certFile', 'keyFile'] as const) if (o.ssl[field] !== undefined) readSecret(`ssl.${field}`, o.ssl[field])
  }
  if (o.sasl !== undefined) {
    const s = o.sasl
    if (typeof s !== 'object' || s === null) throw new ConfigError('sasl', 'must be { mechanism, username, passwordEnv | passwordFile }')
    if (s.mechanism !== 'plain' && s.mechanism !== 'scram-sha-256' && s.mechanism !== 'scram-sha-512') throw new ConfigError('sasl.mechanism', `must be plain, scram-sha-256 or scram-sha-512, got ${JSON.stringify(s.mechanism)}`)
    if (typeof s.username !== 'string' || s.username === '') throw new ConfigError('sasl.username', 'must be a non-empty string')
    if ('password' in s) throw new ConfigError('sasl.password', 'a pipeline must not hold the password: give it with passwordEnv or passwordFile')
    if ((s.passwordEnv === undefined) === (s.passwordFile === undefined)) throw new ConfigError('sasl.passwordEnv', 'give exactly one of passwordEnv and passwordFile')
    if (s.passwordEnv !== undefined && (typeof s.passwordEnv !== 'string' || process.env[s.passwordEnv] === undefined)) throw new ConfigError('sasl.passwordEnv', `the environment variable ${String(s.passwordEnv)} is not set`)
    if (s.passwordFile !== undefined) readSecret('sasl.passwordFile', s.passwordFile)
  }
}
