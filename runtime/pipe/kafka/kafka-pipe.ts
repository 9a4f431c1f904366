/**
 * The Pipe port on Apache Kafka (kafkajs). Topics are Kafka topics (changelogs with
 * `cleanup.policy=compact`), transactions are Kafka transactions with one transactional
 * producer per actor (`transactionalId` = pipeline/stage/partition, so a restarted or moved
 * actor fences the old one), input positions are committed with `sendOffsets` inside the
 * transaction, and readers see committed records only (`read_committed`).
 *
 * @example
 * const pipe = await KafkaPipe.connect({ brokers: ['127.0.0.1:9092'] })
 * const run = await startEmbedded(pipeline, { dataDir: './.weir/wordcount', pipe })
 */
// Before kafkajs: read_committed must drop every aborted transaction (see the file).
import './kafkajs-fixes.ts'
import { Kafka, Partitioners, logLevel as KafkaLogLevel, type Admin, type LogEntry, type Producer } from 'kafkajs'
import type { Logger } from 'pino'
import { ClosedError, PipeError, TopicError } from '../../errors.ts'
import { createLogger } from '../../log.ts'
import type { ConnectRetry, PartitionReader, Pipe, TopicSpec, TransactionalProducer } from '../pipe.ts'
import { kafkaCode, toWeirError } from './kafka-errors.ts'
import { KafkaTransactionalProducer } from './kafka-producer.ts'
import { KafkaPartitionReader } from './kafka-reader.ts'
import { resolveKafkaOptions, tlsFor, type KafkaPipeOptions, type ResolvedKafkaOptions } from './options.ts'

export type { KafkaPipeOptions } from './options.ts'
export { parseKafkaUrl, readKafkaConfigFile } from './options.ts'

/**
 * kafkajs logs through pino; its ERROR lines are mostly retries it recovers from, so they are
 * warnings here. While connecting, a failed attempt goes to `onConnectFailure` instead (weir
 * reports it in its own words), so the same failure is not logged twice.
 */
function kafkaLogCreator(log: Logger, onConnectFailure: (retry: { retryCount: number; retryTime: number } | undefined, message: string) => boolean) {
  return () => ({ namespace, level, log: entry }: LogEntry) => {
    const { message, ...extra } = entry
    const fields = { kafka: namespace, ...extra }
    // Retries are bounded on purpose: a transaction that fails aborts, and the actor restarts from its checkpoint.
    if (message.startsWith('Limiting retries for the idempotent producer')) return
    if (namespace === 'BrokerPool' && typeof extra.retryCount === 'number' && onConnectFailure({ retryCount: extra.retryCount, retryTime: Number(extra.retryTime ?? 0) }, message)) return
    if (namespace === 'Connection' && message.startsWith('Connection error') && onConnectFailure(undefined, message)) return
    if (level === KafkaLogLevel.ERROR || level === KafkaLogLevel.WARN) log.warn(fields, message)
    else if (level === KafkaLogLevel.INFO) log.debug(fields, message)
    else log.trace(fields, message)
  }
}

/** A failed connection attempt in words: the socket error kafkajs wraps. */
export function connectFailureReason(message: string): string {
  if (/ECONNREFUSED/.test(message)) return 'connection refused'
  if (/ENOTFOUND|EAI_AGAIN/.test(message)) return 'host not found'
  if (/EHOSTUNREACH|ENETUNREACH/.test(message)) return 'host unreachable'
  if (/Connection timeout|ETIMEDOUT/i.test(message)) return 'no answer (connection timeout)'
  return message.replace(/^Failed to connect to seed broker, trying another broker from the list: /, '')
}

/** The sum of kafkajs's backoffs before it gives up (exponential from initialRetryTime, doubling, capped). */
function retryBudgetMs(o: ResolvedKafkaOptions): number {
  let total = 0
  for (let n = 0; n < o.retries; n++) total += Math.min(o.initialRetryTimeMs * 2 ** n, o.maxRetryTimeMs)
  return total
}

/** One line for a failed attempt: `connecting to Kafka at h:p: connection refused, retrying (attempt 3, 1.5 s; gives up after about 41 s)`. */
export function describeConnectRetry(r: ConnectRetry): string {
  const s = (ms: number): string => `${ms < 10_000 ? (ms / 1000).toFixed(1) : Math.round(ms / 1000)} s`
  if (r.retryInMs === undefined) return `connecting to ${r.target}: ${r.reason}, giving up (attempt ${r.attempt}, ${s(r.elapsedMs)})`
  return `connecting to ${r.target}: ${r.reason}, retrying (attempt ${r.attempt}, ${s(r.elapsedMs)}; gives up after about ${s(r.givesUpAfterMs)})`
}

/** How `KafkaPipe.connect` reports a failed attempt; by default a pino warn per attempt. */
export interface KafkaConnectHooks {
  onRetry?: (retry: ConnectRetry) => void
}

const DELETE_WAIT_MS = 15_000

export class KafkaPipe implements Pipe {
  readonly kind = 'kafka'
  readonly identity: string
  // bench:kafka (1M lines, weir alone, alternating): 47k lines/s median at 20,000 (131 commits),
  // 58k at 50,000 (52), 60k at 100,000 (34); more than 50,000 bought little and lets a backlogged
  // writer's records run further ahead of the others' watermarks.
  readonly transactionRecords = 50_000
  private readonly readers = new Set<KafkaPartitionReader>()
  private readonly producers = new Set<KafkaTransactionalProducer>()
  /** Readers closed but still leaving their consumer group. */
  private readonly disconnecting = new Set<Promise<void>>()
  private readonly queuedOffsets = new Map<string, Promise<Array<{ partition: number; low: number; high: number }>>>()
  private closed = false

  private constructor(
    private readonly kafka: Kafka,
    private readonly admin: Admin,
    readonly options: ResolvedKafkaOptions,
    private readonly log: Logger,
    clusterId: string,
  ) {
    this.identity = `kafka:${clusterId}`
  }

  /**
   * Connects the admin client, retrying unreachable brokers (`retries`, with backoff): each
   * failed attempt is reported to `hooks.onRetry`, or logged as a warning; when the retries
   * run out, fails with a PipeError naming the brokers and what to check.
   */
  static async connect(options: KafkaPipeOptions, log: Logger = createLogger(), hooks: KafkaConnectHooks = {}): Promise<KafkaPipe> {
    const resolved = resolveKafkaOptions(options)
    const target = `Kafka at ${resolved.brokers.join(',')}`
    const started = performance.now()
    const givesUpAfterMs = retryBudgetMs(resolved)
    let connecting = true
    let attempts = 0
    let lastReason: string | undefined
    const onConnectFailure = (retry: { retryCount: number; retryTime: number } | undefined, message: string): boolean => {
      if (!connecting) return false
      // kafkajs logs the socket error (Connection), then the retry (BrokerPool), which says when.
      if (retry === undefined) return true
      attempts = retry.retryCount + 1
      lastReason = connectFailureReason(message)
      const report: ConnectRetry = {
        target,
        attempt: attempts,
        reason: lastReason,
        elapsedMs: Math.round(performance.now() - started),
        retryInMs: retry.retryCount < resolved.retries ? retry.retryTime : undefined,
        givesUpAfterMs,
      }
      if (hooks.onRetry !== undefined) hooks.onRetry(report)
      else log.warn({ ...report, brokers: resolved.brokers }, describeConnectRetry(report))
      return true
    }
    const kafka = new Kafka({
      clientId: resolved.clientId,
      brokers: resolved.brokers,
      ssl: tlsFor(resolved.ssl),
      sasl: resolved.sasl as never,
      connectionTimeout: resolved.connectionTimeoutMs,
      requestTimeout: resolved.requestTimeoutMs,
      retry: { retries: resolved.retries, initialRetryTime: resolved.initialRetryTimeMs, maxRetryTime: resolved.maxRetryTimeMs },
      logLevel: KafkaLogLevel.WARN,
      logCreator: kafkaLogCreator(log.child({ component: 'kafkajs' }), onConnectFailure),
    })
    const admin = kafka.admin({ retry: { retries: 3, initialRetryTime: resolved.initialRetryTimeMs, maxRetryTime: resolved.maxRetryTimeMs } })
    let clusterId: string
    try {
      await admin.connect()
      clusterId = (await admin.describeCluster()).clusterId
    } catch (err) {
      connecting = false
      await admin.disconnect().catch(() => undefined)
      if (lastReason === undefined) throw toWeirError(err, `connect to ${resolved.brokers.join(',')}`, { brokers: resolved.brokers })
      const seconds = Math.round((performance.now() - started) / 1000)
      throw new PipeError(
        `cannot connect to ${target}: ${lastReason} (${attempts} attempt${attempts === 1 ? '' : 's'} in ${seconds} s): is a Kafka broker running there, and reachable from this host? ` +
          'Check the host and port in --pipe (or WEIR_PIPE); for a local broker, scripts/services.sh up in a weir checkout starts one on 127.0.0.1:9092',
        { brokers: resolved.brokers, attempts },
        { retriable: true, cause: err, kafkaCode: kafkaCode(err) },
      )
    }
    connecting = false
    return new KafkaPipe(kafka, admin, resolved, log, clusterId)
  }

  async ensureTopic(spec: TopicSpec): Promise<void> {
    this.checkOpen()
    if (!Number.isInteger(spec.partitions) || spec.partitions < 1) {
      throw new TopicError('WEIR_TOPIC_MISMATCH', `topic ${spec.name}: partitions must be a positive integer, got ${spec.partitions}`, { topic: spec.name })
    }
    const existing = await this.describeTopic(spec.name)
    if (existing === undefined) {
      const configEntries: Array<{ name: string; value: string }> = []
      if (spec.compacted === true) configEntries.push({ name: 'cleanup.policy', value: 'compact' })
      // The port keeps records unless the spec sets a retention: without retention.ms=-1 Kafka
      // would delete records whose event timestamps are older than its default 7 days before
      // anyone read them (Kafka Streams sets -1 on its repartition topics for the same reason).
      if (spec.compacted !== true) configEntries.push({ name: 'retention.ms', value: String(spec.retentionMs ?? -1) })
      try {
        await this.admin.createTopics({
          waitForLeaders: false,
          topics: [{ topic: spec.name, numPartitions: spec.partitions, replicationFactor: this.options.replicationFactor, configEntries }],
        })
      } catch (err) {
        // Another actor or process created it first: check its shape below.
        if ((err as { type?: string }).type !== 'TOPIC_ALREADY_EXISTS' && !/already exists/i.test(String((err as Error).message))) {
          throw toWeirError(err, 'create topic', { topic: spec.name })
        }
      }
      const created = await this.waitForLeaders(spec.name)
      if (created.partitions !== spec.partitions) {
        throw new TopicError('WEIR_TOPIC_MISMATCH', `topic ${spec.name} has ${created.partitions} partitions, the pipeline needs ${spec.partitions}`, { topic: spec.name })
      }
      return
    }
    if (existing.partitions !== spec.partitions) {
      throw new TopicError('WEIR_TOPIC_MISMATCH', `topic ${spec.name} has ${existing.partitions} partitions, the pipeline needs ${spec.partitions}`, { topic: spec.name })
    }
  }

  async describeTopic(name: string): Promise<TopicSpec | undefined> {
    this.checkOpen()
    if (!(await this.listTopics()).includes(name)) return undefined
    try {
      const meta = await this.retrying('describe topic', { topic: name }, () => this.admin.fetchTopicMetadata({ topics: [name] }))
      const topic = meta.topics.find((t) => t.name === name)
      if (topic === undefined || topic.partitions.length === 0) return undefined
      const configs = await this.retrying('describe topic configs', { topic: name }, () => this.admin.describeConfigs({ includeSynonyms: false, resources: [{ type: 2 /* TOPIC */, name, configNames: ['cleanup.policy', 'retention.ms'] }] }))
      const entries = configs.resources[0]?.configEntries ?? []
      const policy = entries.find((e) => e.configName === 'cleanup.policy')?.configValue ?? 'delete'
      const retention = entries.find((e) => e.configName === 'retention.ms')?.configValue
      const spec: TopicSpec = { name, partitions: topic.partitions.length, compacted: policy.split(',').includes('compact') }
      if (retention !== undefined && retention !== '-1') spec.retentionMs = Number(retention)
      return spec
    } catch (err) {
      if ((err as { type?: string }).type === 'UNKNOWN_TOPIC_OR_PARTITION') return undefined
      throw toWeirError(err, 'describe topic', { topic: name })
    }
  }

  async listTopics(): Promise<string[]> {
    this.checkOpen()
    try {
      return await this.retrying('list topics', {}, () => this.admin.listTopics())
    } catch (err) {
      throw toWeirError(err, 'list topics')
    }
  }

  /** Deletes a topic and waits until the broker's metadata no longer lists it (Kafka deletes asynchronously). */
  async deleteTopic(name: string): Promise<void> {
    this.checkOpen()
    try {
      await this.admin.deleteTopics({ topics: [name], timeout: DELETE_WAIT_MS })
    } catch (err) {
      if ((err as { type?: string }).type === 'UNKNOWN_TOPIC_OR_PARTITION') return
      throw toWeirError(err, 'delete topic', { topic: name })
    }
    const deadline = Date.now() + DELETE_WAIT_MS
    while ((await this.listTopics()).includes(name)) {
      if (Date.now() > deadline) throw new TopicError('WEIR_TOPIC_MISMATCH', `topic ${name} is still listed ${DELETE_WAIT_MS} ms after its deletion`, { topic: name })
      await new Promise((r) => setTimeout(r, 100))
    }
  }

  async reader(topic: string, partition: number, from: number): Promise<PartitionReader> {
    this.checkOpen()
    await this.checkPartition(topic, partition)
    const reader: KafkaPartitionReader = await KafkaPartitionReader.open(
      this.kafka,
      topic,
      partition,
      from,
      { maxBytesPerPartition: this.options.maxBytesPerPartition, bufferRecords: this.options.readerBufferRecords, sessionTimeoutMs: this.options.sessionTimeoutMs, log: this.log },
      (disconnected) => {
        this.readers.delete(reader)
        this.disconnecting.add(disconnected)
        void disconnected.finally(() => this.disconnecting.delete(disconnected))
      },
    )
    this.readers.add(reader)
    return reader
  }

  /** The last stable offset: read_committed readers see everything below it. */
  async endOffset(topic: string, partition: number): Promise<number> {
    return (await this.offsets(topic, partition)).high
  }

  async startOffset(topic: string, partition: number): Promise<number> {
    return (await this.offsets(topic, partition)).low
  }

  /** ListOffsets by timestamp (the broker's time index); kafkajs answers the high watermark where no record is that new. */
  async offsetForTime(topic: string, partition: number, timestamp: number): Promise<number> {
    this.checkOpen()
    let all: Array<{ partition: number; offset: string }>
    try {
      all = await this.retrying('list offsets by time', { topic, partition }, () => this.admin.fetchTopicOffsetsByTimestamp(topic, timestamp), (err) => err instanceof TypeError)
    } catch (err) {
      throw toWeirError(err, 'list offsets by time', { topic, partition })
    }
    const p = all.find((o) => o.partition === partition)
    if (p === undefined) throw new TopicError('WEIR_TOPIC_MISMATCH', `topic ${topic} has no partition ${partition}`, { topic, partition })
    return Number(p.offset)
  }

  /**
   * A transactional producer, initialized before it is returned: the broker has bumped the
   * epoch of `transactionalId`, so every older instance is fenced and a transaction it left
   * open is aborted.
   */
  async producer(transactionalId: string): Promise<TransactionalProducer> {
    this.checkOpen()
    const producer: Producer = this.kafka.producer({
      transactionalId,
      idempotent: true,
      maxInFlightRequests: 1,
      transactionTimeout: this.options.transactionTimeoutMs,
      allowAutoTopicCreation: false,
      createPartitioner: Partitioners.DefaultPartitioner,
      // A short first backoff: CONCURRENT_TRANSACTIONS after each commit clears in milliseconds (the Java client uses 20 ms).
      retry: { retries: Math.max(this.options.retries, 30), initialRetryTime: 20, maxRetryTime: this.options.maxRetryTimeMs },
    })
    try {
      await producer.connect()
      // InitProducerId happens with the first transaction; an empty one sends no EndTxn.
      await this.retrying('init producer', { transactionalId }, async () => (await producer.transaction()).abort())
    } catch (err) {
      await producer.disconnect().catch(() => undefined)
      throw toWeirError(err, 'init producer', { transactionalId, actor: transactionalId })
    }
    const p: KafkaTransactionalProducer = new KafkaTransactionalProducer(transactionalId, producer, { maxBatchBytes: this.options.maxBatchBytes, maxBatchRecords: this.options.maxBatchRecords, highWaterRecords: this.options.producerHighWaterRecords }, () => this.producers.delete(p))
    this.producers.add(p)
    return p
  }

  async committedOffset(group: string, topic: string, partition: number): Promise<number | undefined> {
    this.checkOpen()
    try {
      const res = await this.retrying('fetch committed offset', { group, topic, partition }, () => this.admin.fetchOffsets({ groupId: group, topics: [topic] }))
      const offset = res.find((t) => t.topic === topic)?.partitions.find((p) => p.partition === partition)?.offset
      if (offset === undefined || offset === '-1' || offset === '') return undefined
      return Number(offset)
    } catch (err) {
      throw toWeirError(err, 'fetch committed offset', { group, topic, partition })
    }
  }

  async deleteRecordsBefore(topic: string, partition: number, offset: number): Promise<void> {
    this.checkOpen()
    try {
      // deleteTopicRecords lists the topic's offsets first: the same TypeError as fetchTopicOffsets while leaders are missing from kafkajs's metadata.
      await this.retrying('delete records', { topic, partition, offset }, () => this.admin.deleteTopicRecords({ topic, partitions: [{ partition, offset: String(offset) }] }), (err) => err instanceof TypeError)
    } catch (err) {
      throw toWeirError(err, 'delete records', { topic, partition, offset })
    }
  }

  async close(): Promise<void> {
    if (this.closed) return
    for (const r of [...this.readers]) r.close()
    await Promise.all([...this.producers].map((p) => p.close().catch(() => undefined)))
    await Promise.all([...this.disconnecting])
    this.closed = true
    await this.admin.disconnect().catch(() => undefined)
  }

  private async offsets(topic: string, partition: number): Promise<{ low: number; high: number }> {
    this.checkOpen()
    const all = await this.topicOffsets(topic)
    const p = all.find((o) => o.partition === partition)
    if (p === undefined) throw new TopicError('WEIR_TOPIC_MISMATCH', `topic ${topic} has no partition ${partition}`, { topic, partition })
    return p
  }

  /**
   * Offsets of every partition of a topic. Idle actors ask for end offsets often; calls
   * made while no request for the topic is queued start one on the next tick, later calls
   * join it. A request already sent is never joined: its answer may predate the caller.
   */
  private topicOffsets(topic: string): Promise<Array<{ partition: number; low: number; high: number }>> {
    const queued = this.queuedOffsets.get(topic)
    if (queued !== undefined) return queued
    const request = new Promise<void>((resolve) => setImmediate(resolve)).then(async () => {
      this.queuedOffsets.delete(topic)
      try {
        // kafkajs fails with a TypeError when the topic's leaders are missing from its metadata for a moment (after a restart, or under concurrent metadata refreshes).
        const all = await this.retrying('list offsets', { topic }, () => this.admin.fetchTopicOffsets(topic), (err) => err instanceof TypeError)
        return all.map((o) => ({ partition: o.partition, low: Number(o.low), high: Number(o.high) }))
      } catch (err) {
        throw toWeirError(err, 'list offsets', { topic })
      }
    })
    this.queuedOffsets.set(topic, request)
    return request
  }

  /** Waits until a new topic is in the metadata with a leader for every partition. */
  private async waitForLeaders(topic: string): Promise<TopicSpec> {
    const deadline = Date.now() + this.options.requestTimeoutMs
    for (;;) {
      try {
        const meta = await this.admin.fetchTopicMetadata({ topics: [topic] })
        const t = meta.topics.find((x) => x.name === topic)
        if (t !== undefined && t.partitions.length > 0 && t.partitions.every((p) => p.leader >= 0)) {
          const spec = await this.describeTopic(topic)
          if (spec !== undefined) return spec
        }
      } catch (err) {
        const type = (err as { type?: string }).type
        if (type !== 'UNKNOWN_TOPIC_OR_PARTITION' && type !== 'LEADER_NOT_AVAILABLE') throw toWeirError(err, 'create topic', { topic })
      }
      if (Date.now() > deadline) throw new TopicError('WEIR_TOPIC_MISSING', `topic ${topic} was created but has no leaders after ${this.options.requestTimeoutMs} ms`, { topic })
      await new Promise((r) => setTimeout(r, 50))
    }
  }

  /** One metadata request (the admin client never creates topics), not describeTopic's three. */
  private async checkPartition(topic: string, partition: number): Promise<void> {
    let partitions: number | undefined
    try {
      const meta = await this.retrying('describe topic', { topic }, () => this.admin.fetchTopicMetadata({ topics: [topic] }))
      partitions = meta.topics.find((t) => t.name === topic)?.partitions.length
    } catch (err) {
      if ((err as { type?: string }).type !== 'UNKNOWN_TOPIC_OR_PARTITION') throw toWeirError(err, 'describe topic', { topic, partition })
    }
    if (partitions === undefined || partitions === 0) throw new TopicError('WEIR_TOPIC_MISSING', `topic ${topic} does not exist`, { topic, partition })
    if (partition < 0 || partition >= partitions) throw new TopicError('WEIR_TOPIC_MISMATCH', `topic ${topic} has no partition ${partition} (it has ${partitions})`, { topic, partition })
  }

  /**
   * Runs an admin request, retrying retriable errors (broker restarting, coordinator
   * loading or moving) with exponential backoff; kafkajs's admin client retries only some.
   */
  private async retrying<T>(operation: string, context: Record<string, unknown>, fn: () => Promise<T>, alsoRetry: (err: unknown) => boolean = () => false): Promise<T> {
    for (let attempt = 0; ; attempt++) {
      try {
        return await fn()
      } catch (err) {
        const typed = toWeirError(err, operation, context)
        // A missing topic is an answer, not an outage.
        const retriable = (typed.retriable && typed.context.kafkaCode !== 'UNKNOWN_TOPIC_OR_PARTITION') || alsoRetry(err)
        if (!retriable || attempt >= this.options.retries || this.closed) throw err
        const delay = Math.min(this.options.maxRetryTimeMs, this.options.initialRetryTimeMs * 2 ** attempt)
        this.log.debug({ ...context, attempt, delayMs: delay, kafkaCode: typed.context.kafkaCode }, `kafka ${operation} failed; retrying`)
        await new Promise((r) => setTimeout(r, delay))
      }
    }
  }

  private checkOpen(): void {
    if (this.closed) throw new ClosedError('kafka pipe')
  }
}
