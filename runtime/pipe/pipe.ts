/**
 * The Pipe port: a durable, partitioned log with transactions. A transaction commits
 * output records, state changelog records and consumer offsets atomically; this is the
 * unit that keeps weir's checkpoint invariant. Adapters: `embedded/` (RocksDB), Kafka.
 */

/**
 * Header that marks a record weir adds to its own topics (watermarks, end marks) rather
 * than data; consumers outside weir skip records that carry it.
 */
export const CONTROL_HEADER = 'weir.control'

/** A record as stored in a pipe: bytes only, codecs live above the port. */
export interface PipeRecord {
  key: Buffer | null
  value: Buffer | null
  /** Event timestamp, ms since the epoch. */
  timestamp: number
  headers?: Record<string, Buffer>
}

/**
 * A record handed to a producer. A key or value may be a string standing for its UTF-8
 * bytes: the producer writes it straight into its batch, so an emitted word or a JSON text
 * needs no Buffer of its own on the way (each costs as much as the rest of its encoding).
 *
 * @example
 * producer.send('counts', 0, { key: 'ant', value: '3', timestamp: Date.now() })
 */
export interface OutgoingRecord {
  key: Buffer | string | null
  value: Buffer | string | null
  /** Event timestamp, ms since the epoch. */
  timestamp: number
  headers?: Record<string, Buffer>
}

/**
 * Sets header `name` on a record's headers as a decoder reads them: a name like `__proto__`
 * is a header like any other (assignment would set the object's prototype and lose it).
 */
export function setHeader(headers: Record<string, Buffer>, name: string, value: Buffer): void {
  if (name === '__proto__') Object.defineProperty(headers, name, { value, enumerable: true, writable: true, configurable: true })
  else headers[name] = value
}

/** A record read back from a pipe, with its position. */
export interface StoredRecord extends PipeRecord {
  offset: number
}

export interface TopicSpec {
  name: string
  partitions: number
  /** Keep only the newest record per key (Kafka `cleanup.policy=compact`). */
  compacted?: boolean
  /** Delete records older than this, in ms (Kafka `retention.ms`). Undefined keeps them. */
  retentionMs?: number
}

export interface TopicPartition {
  topic: string
  partition: number
}

export interface PartitionOffset extends TopicPartition {
  /** The next offset to read. */
  offset: number
}

/** Reads one partition in order, from a position, seeing committed records only. */
export interface PartitionReader {
  readonly topic: string
  readonly partition: number
  /** The offset of the next record poll() returns. */
  readonly position: number
  /**
   * Up to `max` records from the position on. Resolves with an empty array when
   * `waitMs` passes with nothing new, or as soon as records are appended.
   */
  poll(max: number, waitMs: number): Promise<StoredRecord[]>
  seek(offset: number): void
  close(): void
}

/**
 * One transactional writer. `begin` → `send`* → `sendOffsets`? → `commit` | `abort`.
 * Creating a producer with the same transactional id fences every older instance:
 * their commit fails with ActorFencedError and nothing they sent becomes visible.
 */
export interface TransactionalProducer {
  readonly transactionalId: string
  begin(): void
  /** Queues a record for a partition in the open transaction; it is encoded now, not at commit. */
  send(topic: string, partition: number, record: OutgoingRecord): void
  /** Adds consumer-group offsets to the open transaction. */
  sendOffsets(group: string, offsets: PartitionOffset[]): void
  /**
   * Makes everything in the transaction visible atomically; resolves with the end offset
   * of each partition written. The transaction's contents are taken when commit() is
   * called, so `begin()` may open the next one before the promise settles; commits of one
   * producer complete in the order they were called.
   */
  commit(): Promise<PartitionOffset[]>
  /**
   * Back-pressure: resolves when the producer can take more records. A producer that
   * writes in the background (Kafka) resolves once its queue is below its high-water mark;
   * one that writes at commit resolves at once. Actors wait on it between micro-batches.
   */
  whenWritable(): Promise<void>
  abort(): Promise<void>
  close(): Promise<void>
}

export interface Pipe {
  /** `embedded` or `kafka`: for logs and status. */
  readonly kind: string
  /**
   * Which log this is: `embedded:<id>` (an id created with the embedded log) or
   * `kafka:<cluster id>`. Local state belongs to the log whose changelogs it reflects; a
   * data dir remembers it and refuses another (see topology-guard.ts).
   */
  readonly identity: string
  /**
   * Records in one actor's transaction after which it takes an early barrier, unless the
   * actor's config sets `maxTransactionRecords`: a commit costs one local write batch on the
   * embedded log and several broker round trips on Kafka, so Kafka's transactions hold more.
   */
  readonly transactionRecords: number
  /** Creates the topic, or checks an existing one has the same partition count. */
  ensureTopic(spec: TopicSpec): Promise<void>
  describeTopic(name: string): Promise<TopicSpec | undefined>
  listTopics(): Promise<string[]>
  deleteTopic(name: string): Promise<void>
  reader(topic: string, partition: number, from: number): Promise<PartitionReader>
  /** The offset the next committed record of the partition will get. */
  endOffset(topic: string, partition: number): Promise<number>
  /** The first offset still stored (after retention). */
  startOffset(topic: string, partition: number): Promise<number>
  /**
   * Where to read from to see the partition's records from a time on (Kafka ListOffsets by
   * timestamp): no record below the offset returned has a timestamp at or after `timestamp`,
   * so reading from it finds every record from the first one that has; past every record
   * when none has. The embedded log returns that first record's offset; Kafka counts its
   * transaction markers, stamped at commit, so older records may come first: a reader skips
   * them up to the first record at or after the time. Timestamps need not grow with offsets,
   * so later records may be older again.
   */
  offsetForTime(topic: string, partition: number, timestamp: number): Promise<number>
  producer(transactionalId: string): Promise<TransactionalProducer>
  /**
   * Committed offset of a consumer group for a partition, undefined when none. Offsets of a
   * transaction are certain to be visible once a new producer of the transactional id that
   * committed them has been created (Kafka materializes them with the commit markers, which
   * InitProducerId waits for); a restarting actor therefore opens its producer first.
   */
  committedOffset(group: string, topic: string, partition: number): Promise<number | undefined>
  /** Deletes records below `offset` (Kafka deleteRecords); used to purge consumed internal topics. */
  deleteRecordsBefore(topic: string, partition: number, offset: number): Promise<void>
  close(): Promise<void>
}

/**
 * One failed attempt to reach the pipe while it is being opened, reported so a person
 * waiting is told what is happening (and a log says it per attempt) rather than silence
 * until the retries run out.
 */
export interface ConnectRetry {
  /** What is being reached: `Kafka at 127.0.0.1:9092`. */
  target: string
  /** 1 for the first attempt. */
  attempt: number
  /** Why it failed, in words (`connection refused`, `host not found`). */
  reason: string
  /** Time since opening started, ms. */
  elapsedMs: number
  /** When the next attempt is made, ms from now; undefined after the last one. */
  retryInMs: number | undefined
  /** About how long opening retries in all before it fails (the retry budget). */
  givesUpAfterMs: number
}
