/**
 * The embedded pipe: a partitioned log in one RocksDB in the data dir. A transaction is
 * one RocksDB WriteBatch holding its record batches, the new end offsets and the consumer
 * offsets, so outputs, changelog and input positions become durable together or not at all.
 * Producer epochs fence a zombie: only the newest instance of a transactional id commits.
 * Opened read-only (`weir tail`, `weir jobs` beside a running `weir run`), it sees what the
 * process holding the log committed, as of opening and again at every refresh.
 */
import { randomUUID } from 'node:crypto'
import { existsSync, mkdirSync } from 'node:fs'
import { join } from 'node:path'
import RocksDB from 'rocksdb-native'
import { pack, unpack } from 'msgpackr'
import { ActorFencedError, ClosedError, TopicError, WeirError } from '../../errors.ts'
import { SerialQueue, Signal } from '../../signal.ts'
import { getMany, writeBatch } from '../../rocks.ts'
import type {
  PartitionOffset,
  PartitionReader,
  Pipe,
  OutgoingRecord,
  StoredRecord,
  TopicSpec,
  TransactionalProducer,
} from '../pipe.ts'
import { BatchCursor, RecordBatchBuilder, SparseBatchBuilder, batchAppendTime, batchBase, batchCount, decodeBatch, scanBatch, type StoredBatch } from './record-batch.ts'
import {
  IDENTITY_KEY,
  TOPIC_PREFIX,
  cleanKey,
  dataKey,
  dataKeyOffset,
  endKey,
  epochKey,
  offsetKey,
  readU64,
  startKey,
  topicKey,
  u64,
} from './keys.ts'

interface TopicMeta extends TopicSpec {
  id: number
}

/** Recently committed batches kept in memory so readers at the tail skip RocksDB. */
interface TailBatch {
  base: number
  last: number
  data: Buffer
}

const TAIL_BATCHES = 256
/**
 * Bytes of tail batches kept per partition: a changelog nobody reads live would otherwise keep
 * its last 256 batches (up to 1 MiB each) in memory. A reader that keeps up reads within this.
 */
const TAIL_BYTES = 4 * 1024 * 1024

/**
 * The log's RocksDB settings. The memtable (RocksDB's default is 64 MiB, two of them):
 * opening after a kill replays the unflushed write-ahead log, so its size bounds restart
 * time, and memory with it. No block cache: a reader scans stored batches once, in order, and
 * one that keeps up reads the in-memory tail, so a cache only held blocks nobody read again
 * (26–29 MiB of it at 10M records; benchmarks/HISTORY.md, "The young generation"). Index and
 * filter blocks then stay with their table readers.
 */
const ROCKSDB_OPTIONS = { writeBufferSize: 16 * 1024 * 1024, blockCache: false, tableCacheIndexAndFilterBlocks: false }

class PartitionLog {
  end = 0
  start = 0
  /** Compacted topics: offsets below this hold at most one record per key. */
  cleanPoint = 0
  /** Records stored below the clean point, as of the last cleaning (undefined: not known since open). */
  cleanRecords: number | undefined
  /** When the last cleaning of this partition ended (ms since the epoch). */
  cleanedAt = 0
  readonly appended = new Signal()
  /** Newest last; replaced only through remember and filterTail, which keep its byte count. */
  tail: TailBatch[] = []

  /** Bytes of the batches in `tail`. */
  private tailBytes = 0

  remember(batch: TailBatch): void {
    this.tail.push(batch)
    this.tailBytes += batch.data.length
    let drop = 0
    while (this.tail.length - drop > 1 && (this.tail.length - drop > TAIL_BATCHES || this.tailBytes > TAIL_BYTES)) this.tailBytes -= this.tail[drop++]!.data.length
    if (drop > 0) this.tail.splice(0, drop)
  }

  /** Keeps only the tail batches `keep` accepts (retention and cleaning replace batches under it). */
  filterTail(keep: (b: TailBatch) => boolean): void {
    this.tail = this.tail.filter(keep)
    this.tailBytes = this.tail.reduce((n, b) => n + b.data.length, 0)
  }
}

export interface EmbeddedPipeOptions {
  /** How often age-based retention runs, ms. */
  retentionIntervalMs?: number
  /** A compacted partition is cleaned once this many records were appended since its last cleaning. Default 1,000,000. */
  compactionMinDirtyRecords?: number
  /** Most distinct keys one cleaning pass indexes (bounds its memory); the rest waits for the next pass. Default 500,000. */
  compactionMaxKeys?: number
  /** Least time between two cleanings of one partition, ms. Default 30 s. */
  compactionMinIntervalMs?: number
  /** Tombstones stay this long after their partition was cleaned past them (Kafka's delete.retention.ms). Default 24 h. */
  tombstoneRetentionMs?: number
  /**
   * Open the log without taking its lock, to read it while another process (a running `weir
   * run`) holds it: RocksDB opens read-only and replays the holder's write-ahead log, so
   * everything committed by then is visible; every write is refused (WEIR_PIPE_READ_ONLY).
   * A missing log is an error instead of a new one.
   */
  readOnly?: boolean
  /**
   * Read-only: how often to reopen the log to see newer commits (ends move, waiting readers
   * wake), ms; 0 never. Each reopen replays the holder's unflushed write-ahead log (up to
   * its memtable, 64 MiB by default), so keep it well above that cost. Default 500.
   */
  refreshMs?: number
}

/** Stored topics and partition positions, read from one RocksDB instance. */
interface StoredLayout {
  topics: TopicMeta[]
  /** Per topic name, per partition: [end, start, clean point]; null for a position never written. */
  positions: Map<string, Array<[number | null, number | null, number | null]>>
}

export class EmbeddedPipe implements Pipe {
  readonly kind = 'embedded'
  identity = 'embedded'
  readonly transactionRecords = 20_000
  /** Replaced by each refresh of a read-only pipe (reads in flight finish on the instance they started on). */
  private db: RocksDB
  private readonly topics = new Map<string, TopicMeta>()
  private readonly logs = new Map<string, PartitionLog[]>()
  private readonly epochs = new Map<string, number>()
  private readonly writes = new SerialQueue()
  private nextTopicId = 1
  private closed = false
  private readonly options: Required<EmbeddedPipeOptions>
  private readonly compactionDue = new Set<string>()
  private compaction: Promise<void> | undefined
  private retentionTimer: NodeJS.Timeout | undefined
  private refreshTimer: NodeJS.Timeout | undefined
  private refreshing: Promise<void> | undefined
  /** Read-only: reads in flight, which the instance they use must outlive. */
  private readonly reads = new Set<Promise<unknown>>()

  private constructor(readonly dir: string, options: EmbeddedPipeOptions) {
    this.db = new RocksDB(dir, { ...ROCKSDB_OPTIONS, readOnly: options.readOnly === true })
    this.options = {
      retentionIntervalMs: options.retentionIntervalMs ?? 30_000,
      compactionMinDirtyRecords: options.compactionMinDirtyRecords ?? 1_000_000,
      compactionMaxKeys: options.compactionMaxKeys ?? 500_000,
      compactionMinIntervalMs: options.compactionMinIntervalMs ?? 30_000,
      tombstoneRetentionMs: options.tombstoneRetentionMs ?? 24 * 3600_000,
      readOnly: options.readOnly ?? false,
      refreshMs: options.refreshMs ?? 500,
    }
  }

  /** Opened with `readOnly`: sees another process's commits, writes nothing. */
  get readOnly(): boolean {
    return this.options.readOnly
  }

  /**
   * Opens (or creates) the embedded log under `dataDir/pipe`.
   *
   * @example
   * const pipe = await EmbeddedPipe.open('./.weir')
   * await pipe.ensureTopic({ name: 'words', partitions: 4 })
   */
  static async open(dataDir: string, options: EmbeddedPipeOptions = {}): Promise<EmbeddedPipe> {
    const dir = join(dataDir, 'pipe')
    if (options.readOnly === true) {
      if (!existsSync(dir)) throw new WeirError('WEIR_PIPE_OPEN_FAILED', `no embedded pipe in ${dataDir} (no ${dir}): has a pipeline run with this data dir?`, { path: dir })
    } else {
      mkdirSync(dir, { recursive: true })
    }
    const pipe = new EmbeddedPipe(dir, options)
    try {
      await pipe.db.ready()
    } catch (cause) {
      throw new WeirError('WEIR_PIPE_OPEN_FAILED', `cannot open the embedded pipe in ${dir}: ${(cause as Error).message}`, { path: dir }, { cause })
    }
    await pipe.load()
    if (pipe.readOnly) {
      if (pipe.options.refreshMs > 0) {
        pipe.refreshTimer = setInterval(() => void pipe.refresh().catch(() => undefined), pipe.options.refreshMs)
        pipe.refreshTimer.unref()
      }
      return pipe
    }
    const every = pipe.options.retentionIntervalMs
    pipe.retentionTimer = setInterval(() => void pipe.enforceRetention().catch(() => undefined), every)
    pipe.retentionTimer.unref()
    return pipe
  }

  private async load(): Promise<void> {
    const id = await this.db.get(IDENTITY_KEY)
    if (id !== null) this.identity = `embedded:${id.toString()}`
    else if (!this.readOnly) {
      const created = randomUUID()
      await this.db.put(IDENTITY_KEY, Buffer.from(created))
      this.identity = `embedded:${created}`
    }
    this.apply(await readLayout(this.db))
  }

  /**
   * Takes stored topics and positions in: registers topics not known yet (or recreated under
   * a new id) and moves every partition's end, start and clean point. Returns the logs whose
   * end moved.
   */
  private apply(layout: StoredLayout): PartitionLog[] {
    const moved: PartitionLog[] = []
    for (const meta of layout.topics) {
      if (this.topics.get(meta.name)?.id !== meta.id) this.registerTopic(meta)
      this.nextTopicId = Math.max(this.nextTopicId, meta.id + 1)
      const logs = this.logs.get(meta.name)!
      layout.positions.get(meta.name)!.forEach(([end, start, clean], p) => {
        const log = logs[p]!
        if (end !== null && end !== log.end) {
          log.end = end
          moved.push(log)
        }
        if (start !== null) log.start = start
        if (clean !== null) log.cleanPoint = clean
      })
    }
    return moved
  }

  /**
   * Read-only: reopens the log to see what its holder committed since the last (re)open, and
   * wakes the readers waiting at an end that moved. The timer of `refreshMs` calls it; a
   * reopen that fails (the holder deleted a write-ahead log file while it was read) keeps
   * the current view until the next one.
   *
   * @example
   * const pipe = await EmbeddedPipe.open('./.weir/wordcount', { readOnly: true, refreshMs: 0 })
   * await pipe.refresh() // sees the records committed since open
   */
  async refresh(): Promise<void> {
    if (!this.readOnly) return
    this.refreshing ??= this.reopen().finally(() => { this.refreshing = undefined })
    await this.refreshing
  }

  private async reopen(): Promise<void> {
    if (this.closed) return
    const fresh = new RocksDB(this.dir, { ...ROCKSDB_OPTIONS, readOnly: true })
    let layout: StoredLayout
    try {
      await fresh.ready()
      layout = await readLayout(fresh)
    } catch (err) {
      await fresh.close().catch(() => undefined)
      throw err
    }
    if (this.closed) {
      await fresh.close()
      return
    }
    const old = this.db
    this.db = fresh
    const moved = this.apply(layout)
    for (const log of moved) log.appended.notify()
    await Promise.allSettled([...this.reads])
    await old.close()
  }

  /** Runs a read on the current RocksDB instance; a refresh closes that instance only after it. */
  private reading<T>(read: (db: RocksDB) => Promise<T>): Promise<T> {
    if (!this.readOnly) return read(this.db)
    const p = read(this.db)
    this.reads.add(p)
    void p.then(() => this.reads.delete(p), () => this.reads.delete(p))
    return p
  }

  private writable(operation: string): void {
    if (this.readOnly) throw new WeirError('WEIR_PIPE_READ_ONLY', `the embedded pipe in ${this.dir} is open read-only: ${operation} is not allowed`, { path: this.dir })
  }

  private registerTopic(meta: TopicMeta): void {
    this.topics.set(meta.name, meta)
    this.logs.set(meta.name, Array.from({ length: meta.partitions }, () => new PartitionLog()))
  }

  private meta(topic: string, partition?: number): TopicMeta {
    const meta = this.topics.get(topic)
    if (meta === undefined) throw new TopicError('WEIR_TOPIC_MISSING', `topic ${topic} does not exist`, { topic, partition })
    if (partition !== undefined && (partition < 0 || partition >= meta.partitions || !Number.isInteger(partition))) {
      throw new TopicError('WEIR_TOPIC_MISMATCH', `topic ${topic} has no partition ${partition} (it has ${meta.partitions})`, { topic, partition })
    }
    return meta
  }

  private log(topic: string, partition: number): PartitionLog {
    this.meta(topic, partition)
    return this.logs.get(topic)![partition]!
  }

  private check(): void {
    if (this.closed) throw new ClosedError('embedded pipe')
  }

  async ensureTopic(spec: TopicSpec): Promise<void> {
    this.check()
    const existing = this.topics.get(spec.name)
    if (existing !== undefined) {
      if (existing.partitions !== spec.partitions) {
        throw new TopicError('WEIR_TOPIC_MISMATCH', `topic ${spec.name} has ${existing.partitions} partitions, the pipeline needs ${spec.partitions}`, { topic: spec.name })
      }
      return
    }
    if (!Number.isInteger(spec.partitions) || spec.partitions < 1) {
      throw new TopicError('WEIR_TOPIC_MISMATCH', `topic ${spec.name}: partitions must be a positive integer, got ${spec.partitions}`, { topic: spec.name })
    }
    this.writable(`creating topic ${spec.name}`)
    const meta: TopicMeta = { ...spec, id: this.nextTopicId++ }
    this.registerTopic(meta)
    await this.writes.run(() => this.db.put(topicKey(spec.name), pack(meta)))
  }

  async describeTopic(name: string): Promise<TopicSpec | undefined> {
    const meta = this.topics.get(name)
    if (meta === undefined) return undefined
    const { id: _id, ...spec } = meta
    return spec
  }

  async listTopics(): Promise<string[]> {
    return [...this.topics.keys()]
  }

  async deleteTopic(name: string): Promise<void> {
    const meta = this.topics.get(name)
    if (meta === undefined) return
    this.writable(`deleting topic ${name}`)
    this.topics.delete(name)
    const logs = this.logs.get(name)!
    this.logs.delete(name)
    for (const l of logs) l.appended.notify()
    await this.writes.run(async () => {
      const w = writeBatch(this.db, 1 + meta.partitions * 4)
      w.tryDelete(topicKey(name))
      for (let p = 0; p < meta.partitions; p++) {
        w.tryDeleteRange(dataKey(meta.id, p, 0), dataKey(meta.id, p + 1, 0))
        w.tryDelete(endKey(meta.id, p))
        w.tryDelete(startKey(meta.id, p))
        w.tryDelete(cleanKey(meta.id, p))
      }
      await w.flush()
      w.destroy()
    })
  }

  async endOffset(topic: string, partition: number): Promise<number> {
    return this.log(topic, partition).end
  }

  async startOffset(topic: string, partition: number): Promise<number> {
    return this.log(topic, partition).start
  }

  async reader(topic: string, partition: number, from: number): Promise<PartitionReader> {
    this.check()
    const meta = this.meta(topic, partition)
    return new EmbeddedReader(this, meta, partition, from)
  }

  async producer(transactionalId: string): Promise<TransactionalProducer> {
    this.check()
    this.writable(`a producer (${transactionalId})`)
    return this.writes.run(async () => {
      const stored = await this.db.get(epochKey(transactionalId))
      const epoch = (stored ? readU64(stored) : 0) + 1
      await this.db.put(epochKey(transactionalId), u64(epoch))
      this.epochs.set(transactionalId, epoch)
      return new EmbeddedProducer(this, transactionalId, epoch)
    })
  }

  async committedOffset(group: string, topic: string, partition: number): Promise<number | undefined> {
    const meta = this.meta(topic, partition)
    const v = await this.reading((db) => db.get(offsetKey(group, meta.id, partition)))
    return v ? readU64(v) : undefined
  }

  /**
   * Scans the partition's stored batches from its start: the embedded log keeps no time
   * index, so this reads (and decodes) every record below the one it finds.
   */
  async offsetForTime(topic: string, partition: number, timestamp: number): Promise<number> {
    this.check()
    const meta = this.meta(topic, partition)
    const log = this.logs.get(topic)![partition]!
    const { start, end } = log
    return this.reading(async (db) => {
      for await (const { key, value } of db.iterator({ gte: dataKey(meta.id, partition, start), lt: dataKey(meta.id, partition + 1, 0), capacity: 4 })) {
        const records: StoredRecord[] = []
        decodeBatch(value, batchBase(value, dataKeyOffset(key)), start, records)
        for (const r of records) {
          if (r.offset >= end) return end
          if (r.timestamp >= timestamp) return r.offset
        }
      }
      return end
    })
  }

  async deleteRecordsBefore(topic: string, partition: number, offset: number): Promise<void> {
    this.writable(`deleting records of ${topic}/${partition}`)
    const meta = this.meta(topic, partition)
    const log = this.log(topic, partition)
    const upTo = Math.min(offset, log.end)
    if (upTo <= log.start) return
    await this.writes.run(async () => {
      const w = writeBatch(this.db, 2)
      // Batches are keyed by their last offset: every batch ending below `upTo` goes.
      w.tryDeleteRange(dataKey(meta.id, partition, 0), dataKey(meta.id, partition, upTo))
      w.tryPut(startKey(meta.id, partition), u64(upTo))
      await w.flush()
      w.destroy()
      log.start = Math.max(log.start, upTo)
      log.filterTail((b) => b.last >= upTo)
    })
  }

  /** Drops whole batches older than each topic's `retentionMs`. */
  async enforceRetention(now = Date.now()): Promise<void> {
    this.writable('enforcing retention')
    for (const meta of this.topics.values()) {
      if (meta.retentionMs === undefined) continue
      for (let p = 0; p < meta.partitions; p++) {
        let cut = -1
        for await (const { key, value } of this.db.iterator({ gte: dataKey(meta.id, p, 0), lt: dataKey(meta.id, p + 1, 0) })) {
          if (now - batchAppendTime(value) <= meta.retentionMs) break
          cut = dataKeyOffset(key) + 1
        }
        if (cut > 0) await this.deleteRecordsBefore(meta.name, p, cut)
      }
    }
  }

  /**
   * @internal The stored batches of a partition from the one holding `from` on, as bytes,
   * until they hold at least `min` records or the partition ends.
   */
  async readBatches(meta: TopicMeta, partition: number, from: number, min: number): Promise<StoredBatch[]> {
    const log = this.logs.get(meta.name)?.[partition]
    if (log === undefined) throw new TopicError('WEIR_TOPIC_MISSING', `topic ${meta.name} was deleted`, { topic: meta.name, partition })
    const out: StoredBatch[] = []
    let records = 0
    const tail = log.tail
    if (tail.length > 0 && tail[0]!.base <= from) {
      let i = tail.length - 1
      while (i > 0 && tail[i]!.base > from) i--
      for (; i < tail.length && records < min; i++) {
        out.push({ data: tail[i]!.data, base: tail[i]!.base })
        records += batchCount(tail[i]!.data)
      }
      return out
    }
    const gte = dataKey(meta.id, partition, Math.max(from, log.start))
    await this.reading(async (db) => {
      for await (const { key, value } of db.iterator({ gte, lt: dataKey(meta.id, partition + 1, 0), capacity: 4 })) {
        out.push({ data: value, base: batchBase(value, dataKeyOffset(key)) })
        records += batchCount(value)
        if (records >= min) break
      }
    })
    return out
  }

  /** @internal Commits one transaction; called by EmbeddedProducer. */
  commitTransaction(
    transactionalId: string,
    epoch: number,
    batches: Map<string, { topic: string; partition: number; builder: RecordBatchBuilder }>,
    offsets: Array<{ group: string; offset: PartitionOffset }>,
  ): Promise<PartitionOffset[]> {
    return this.writes.run(async () => {
      this.check()
      const current = this.epochs.get(transactionalId)
      if (current !== epoch) throw new ActorFencedError(transactionalId, epoch, current ?? 0)
      // Nothing to make durable: an idle actor's checkpoint costs no write.
      if (offsets.length === 0 && [...batches.values()].every((b) => b.builder.count === 0)) return []
      const now = Date.now()
      const w = writeBatch(this.db, batches.size * 4 + offsets.length)
      const appended: Array<{ log: PartitionLog; batch: TailBatch }> = []
      const ends: PartitionOffset[] = []
      for (const { topic, partition, builder } of batches.values()) {
        if (builder.count === 0) continue
        const meta = this.meta(topic, partition)
        const log = this.logs.get(topic)![partition]!
        let base = log.end
        for (const { data, count } of builder.finish(now)) {
          const last = base + count - 1
          w.tryPut(dataKey(meta.id, partition, last), data)
          appended.push({ log, batch: { base, last, data } })
          base = last + 1
        }
        w.tryPut(endKey(meta.id, partition), u64(base))
        ends.push({ topic, partition, offset: base })
      }
      for (const { group, offset } of offsets) {
        const meta = this.meta(offset.topic, offset.partition)
        w.tryPut(offsetKey(group, meta.id, offset.partition), u64(offset.offset))
      }
      try {
        await w.flush()
      } catch (cause) {
        throw new WeirError('WEIR_PIPE_WRITE_FAILED', `commit of ${transactionalId} failed: ${(cause as Error).message}`, { actor: transactionalId }, { cause, retriable: true })
      } finally {
        w.destroy()
      }
      // Visible only now that it is durable. The queue runs one commit at a time, so no other
      // commit assigned offsets from the same end meanwhile.
      for (const { log, batch } of appended) {
        log.end = batch.last + 1
        log.remember(batch)
        log.appended.notify()
      }
      for (const e of ends) this.noteAppended(e.topic, e.partition)
      return ends
    })
  }

  /** @internal */
  currentEpoch(transactionalId: string): number | undefined {
    return this.epochs.get(transactionalId)
  }

  /** @internal */
  partitionLog(topic: string, partition: number): PartitionLog | undefined {
    return this.logs.get(topic)?.[partition]
  }

  // ---- compaction -------------------------------------------------------------------

  private noteAppended(topic: string, partition: number): void {
    const meta = this.topics.get(topic)
    const log = this.logs.get(topic)?.[partition]
    if (meta?.compacted !== true || log === undefined) return
    const dirty = log.end - log.cleanPoint
    // Kafka's min.cleanable.dirty.ratio of 0.5: each pass copies the clean part too, so
    // waiting until the dirty part is as large keeps the copying proportional to appends.
    if (dirty < this.options.compactionMinDirtyRecords || dirty < (log.cleanRecords ?? log.cleanPoint - log.start)) return
    if (Date.now() - log.cleanedAt < this.options.compactionMinIntervalMs) return
    this.compactionDue.add(topic + '\u0000' + partition)
    this.compaction ??= this.runCompactions().finally(() => { this.compaction = undefined })
  }

  private async runCompactions(): Promise<void> {
    // Let the commit that triggered this return first.
    await new Promise((resolve) => setImmediate(resolve))
    for (const id of this.compactionDue) {
      this.compactionDue.delete(id)
      if (this.closed) return
      const sep = id.lastIndexOf('\u0000')
      await this.compact(id.slice(0, sep), Number(id.slice(sep + 1))).catch(() => undefined)
    }
  }

  /**
   * Cleans one partition of a compacted topic, as Kafka's log cleaner does: an offset map
   * of the newest offset per key in the dirty section [cleanPoint, end), then every batch
   * below the dirty end is rewritten without the records a newer one of the same key
   * supersedes (and without tombstones older than the tombstone retention). Survivors keep
   * their offsets. Each rewrite replaces its batch atomically and leaves a valid log
   * (what it drops has a newer record above it), so memory stays bounded by the offset
   * map and a crash midway only means the next pass redoes some batches. Returns the
   * records removed.
   */
  async compact(topic: string, partition: number, now = Date.now()): Promise<number> {
    this.writable(`compacting ${topic}/${partition}`)
    const meta = this.meta(topic, partition)
    const log = this.logs.get(topic)![partition]!
    if (meta.compacted !== true) return 0
    const from = log.cleanPoint
    const upTo = log.end
    if (upTo <= from) return 0
    const latest = new Map<string, number>()
    let dirtyEnd = from
    for await (const { key, value } of this.db.iterator({ gte: dataKey(meta.id, partition, Math.max(from, log.start)), lt: dataKey(meta.id, partition, upTo), capacity: 4 })) {
      // Whole batches only, so the dirty end is a batch boundary.
      if (latest.size >= this.options.compactionMaxKeys) break
      const last = dataKeyOffset(key)
      scanBatch(value, batchBase(value, last), (offset, _start, _end, keyStart, keyLength) => {
        if (keyLength >= 0 && offset >= from) latest.set(value.toString('latin1', keyStart, keyStart + keyLength), offset)
      })
      dirtyEnd = last + 1
      // Cleaning shares the event loop with processing: give it a turn after every batch.
      await new Promise((resolve) => setImmediate(resolve))
    }
    if (dirtyEnd <= from) return 0
    let removed = 0
    let kept = 0
    let pending: Array<{ oldKey: Buffer; batches: Array<{ data: Buffer; last: number }> }> = []
    const apply = async (): Promise<void> => {
      const work = pending
      pending = []
      if (work.length === 0) return
      await this.writes.run(async () => {
        if (this.closed) return
        const w = writeBatch(this.db, work.length * 3)
        for (const { oldKey, batches } of work) {
          // Retention may have deleted the batch meanwhile: do not bring it back.
          if (dataKeyOffset(oldKey) < log.start) continue
          w.tryDelete(oldKey)
          for (const b of batches) w.tryPut(dataKey(meta.id, partition, b.last), b.data)
        }
        try {
          await w.flush()
        } finally {
          w.destroy()
        }
      })
    }
    for await (const { key, value } of this.db.iterator({ gte: dataKey(meta.id, partition, log.start), lt: dataKey(meta.id, partition, dirtyEnd), capacity: 4 })) {
      if (this.closed) return removed
      const survivors = new SparseBatchBuilder()
      let dropped = 0
      let records = 0
      // Survivors are copied as stored: the cleaner decodes only keys.
      scanBatch(value, batchBase(value, dataKeyOffset(key)), (offset, start, end, keyStart, keyLength, valueNull, timestamp) => {
        records++
        const newest = keyLength < 0 ? undefined : latest.get(value.toString('latin1', keyStart, keyStart + keyLength))
        const superseded = newest !== undefined && newest > offset
        const expiredTombstone = valueNull && offset < from && now - timestamp > this.options.tombstoneRetentionMs
        if (superseded || expiredTombstone) dropped++
        else survivors.addStored(offset, value, start, end)
      })
      removed += dropped
      kept += records - dropped
      if (dropped > 0) pending.push({ oldKey: Buffer.from(key), batches: survivors.finish(batchAppendTime(value)) })
      // Small rewrites: a commit queued behind one (the same write queue) waits for it.
      if (pending.length >= 4) await apply()
      await new Promise((resolve) => setImmediate(resolve))
    }
    await apply()
    await this.writes.run(async () => {
      if (this.closed) return
      await this.db.put(cleanKey(meta.id, partition), u64(dirtyEnd))
      log.cleanPoint = dirtyEnd
      log.cleanRecords = kept
      log.cleanedAt = Date.now()
      log.filterTail((b) => b.base >= dirtyEnd)
    })
    return removed
  }

  async close(): Promise<void> {
    if (this.closed) return
    this.closed = true
    await this.compaction
    clearInterval(this.retentionTimer)
    clearInterval(this.refreshTimer)
    await this.refreshing?.catch(() => undefined)
    for (const logs of this.logs.values()) for (const l of logs) l.appended.notify()
    await Promise.allSettled([...this.reads])
    await this.writes.run(() => this.db.close())
  }
}

/** The topics stored in `db` and every partition's end, start and clean point. */
async function readLayout(db: RocksDB): Promise<StoredLayout> {
  const topics: TopicMeta[] = []
  for await (const { value } of db.iterator({ gte: TOPIC_PREFIX, lt: String.fromCharCode(TOPIC_PREFIX.charCodeAt(0) + 1) })) topics.push(unpack(value) as TopicMeta)
  const keys: Buffer[] = []
  for (const meta of topics) for (let p = 0; p < meta.partitions; p++) keys.push(endKey(meta.id, p), startKey(meta.id, p), cleanKey(meta.id, p))
  const values = await getMany(db, keys)
  const positions = new Map<string, Array<[number | null, number | null, number | null]>>()
  let i = 0
  for (const meta of topics) {
    const parts: Array<[number | null, number | null, number | null]> = []
    for (let p = 0; p < meta.partitions; p++, i += 3) parts.push([values[i], values[i + 1], values[i + 2]].map((v) => (v ? readU64(v) : null)) as [number | null, number | null, number | null])
    positions.set(meta.name, parts)
  }
  return { topics, positions }
}

/** Records decoded per RocksDB read: whole batches, served to polls from memory. */
const READ_AHEAD = 16_384

class EmbeddedReader implements PartitionReader {
  private pos: number
  private closed = false
  /** Stored batches read ahead from `pos` on, decoded as polls take their records. */
  private ahead: BatchCursor | undefined

  constructor(private readonly pipe: EmbeddedPipe, private readonly meta: TopicMeta, readonly partition: number, from: number) {
    this.pos = from
  }

  get topic(): string {
    return this.meta.name
  }

  get position(): number {
    return this.pos
  }

  seek(offset: number): void {
    this.pos = offset
    this.ahead = undefined
  }

  async poll(max: number, waitMs: number): Promise<StoredRecord[]> {
    const log = this.pipe.partitionLog(this.meta.name, this.partition)
    if (this.closed || log === undefined || max <= 0) return []
    const out: StoredRecord[] = []
    if (this.ahead !== undefined) this.ahead.take(out, max)
    if (out.length === 0) {
      this.ahead = undefined
      if (this.pos >= log.end) {
        if (waitMs <= 0) return []
        await log.appended.wait(waitMs)
        if (this.closed || this.pos >= log.end) return []
      }
      if (this.pos < log.start) this.pos = log.start
      const ahead = new BatchCursor(await this.pipe.readBatches(this.meta, this.partition, this.pos, Math.max(max, READ_AHEAD)), this.pos)
      if (ahead.take(out, max) === 0) {
        // Nothing below the end means the records were deleted under us; let I/O run before a retry.
        await new Promise((resolve) => setImmediate(resolve))
        return []
      }
      this.ahead = ahead
    }
    this.pos = out[out.length - 1]!.offset + 1
    return out
  }

  close(): void {
    this.closed = true
    this.ahead = undefined
    this.pipe.partitionLog(this.meta.name, this.partition)?.appended.notify()
  }
}

class EmbeddedProducer implements TransactionalProducer {
  private open = false
  private batches = new Map<string, { topic: string; partition: number; builder: RecordBatchBuilder }>()
  /** The same entries, indexed without building a string per record. */
  private byTopic = new Map<string, Array<{ topic: string; partition: number; builder: RecordBatchBuilder } | undefined>>()
  private offsets: Array<{ group: string; offset: PartitionOffset }> = []

  constructor(private readonly pipe: EmbeddedPipe, readonly transactionalId: string, private readonly epoch: number) {}

  begin(): void {
    if (this.open) throw new WeirError('WEIR_TXN_STATE', `transaction of ${this.transactionalId} is already open`, { actor: this.transactionalId })
    this.open = true
  }

  private requireOpen(): void {
    if (!this.open) throw new WeirError('WEIR_TXN_STATE', `no open transaction on ${this.transactionalId}`, { actor: this.transactionalId })
  }

  send(topic: string, partition: number, record: OutgoingRecord): void {
    this.requireOpen()
    let byPartition = this.byTopic.get(topic)
    if (byPartition === undefined) {
      byPartition = []
      this.byTopic.set(topic, byPartition)
    }
    let entry = byPartition[partition]
    if (entry === undefined) {
      entry = { topic, partition, builder: new RecordBatchBuilder() }
      byPartition[partition] = entry
      this.batches.set(topic + '\u0000' + partition, entry)
    }
    entry.builder.add(record)
  }

  sendOffsets(group: string, offsets: PartitionOffset[]): void {
    this.requireOpen()
    for (const offset of offsets) this.offsets.push({ group, offset })
  }

  async commit(): Promise<PartitionOffset[]> {
    this.requireOpen()
    const batches = this.batches
    const offsets = this.offsets
    this.batches = new Map()
    this.byTopic = new Map()
    this.offsets = []
    this.open = false
    return this.pipe.commitTransaction(this.transactionalId, this.epoch, batches, offsets)
  }

  /** The embedded log writes a transaction at commit: nothing queues in the background. */
  whenWritable(): Promise<void> {
    return Promise.resolve()
  }

  async abort(): Promise<void> {
    this.batches = new Map()
    this.byTopic = new Map()
    this.offsets = []
    this.open = false
  }

  async close(): Promise<void> {
    await this.abort()
  }
}
