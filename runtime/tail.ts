/**
 * The committed records flowing on an edge of a pipeline, as a person inspects them (`weir
 * tail`, the dashboard's sample of a stage): a stage's output topic, a side output
 * (`stage.side`), a keyed stream (`stage.keyBy.1`), a topic input, or a stage's dead-letter
 * topic, decoded with the codec its writer used. Only what the pipe committed is read
 * (Kafka readers are read_committed; the embedded log has nothing else), and watermark
 * marks are left out.
 *
 * @example
 * const pipe = await EmbeddedPipe.open('./.weir/wordcount', { readOnly: true })
 * await tailEdge(pipe, pipeline, { stage: 'count', from: 'earliest', limit: 10 }, (r) => console.log(r.key, r.value))
 * const latest = await sampleEdge(pipe, pipeline, 'count', 20)
 */
import { isUtf8 } from 'node:buffer'
import type { Pipeline, StageSpec } from './api/pipeline.ts'
import { codecFor, stateCodec, type Codec } from './codec.ts'
import { ConfigError, PipeError, TopicError } from './errors.ts'
import { naming } from './naming.ts'
import type { PartitionOffset, PartitionReader, Pipe, StoredRecord } from './pipe/pipe.ts'
import { readRange } from './pipe/read-range.ts'
import { keyString } from './record-keys.ts'
import { SerialQueue } from './signal.ts'
import { closestName } from './suggest.ts'
import { chainsOf } from './api/chains.ts'
import { isControlRecord } from './watermarks.ts'

/** What to read of an edge, and how much. */
export interface TailOptions {
  /** A stage of the pipeline (a side output is `stage.side`): its output topic is read. */
  stage: string
  /** Read the stage's dead-letter topic instead (stages that run actors only). */
  deadLetter?: boolean
  /**
   * Where every partition starts: its first stored record (`earliest`), its end (`now`: only
   * what is committed from then on), or the first record at or after a time (ms since the
   * epoch; later records of the partition are shown even when older). Default `earliest`.
   */
  from?: 'earliest' | 'now' | number
  /** Only records with this key (as `keyString` shows it). */
  key?: string
  /** Stop after this many records (shown ones: after the key filter). Default: no limit. */
  limit?: number
  /**
   * Keep reading as records are committed, until `signal` aborts or `limit` is reached.
   * Without it, reading ends at the end offsets the partitions had when it started.
   */
  follow?: boolean
  /** Only these partitions. Default: all of the topic's. */
  partitions?: number[]
  signal?: AbortSignal
  /** A partition that makes no progress towards its end offset this long fails the read (Kafka broker gone). Default 60 s. */
  stallMs?: number
}

/** One committed record of an edge, decoded. */
export interface TailedRecord {
  stage: string
  topic: string
  partition: number
  offset: number
  /** The key as user code sees it (`keyString`), null for none. */
  key: string | null
  /** Event timestamp, ms since the epoch. */
  timestamp: number
  /** Header values: UTF-8 text as is, other bytes as `base64:<base64>`. */
  headers: Record<string, string>
  /**
   * The value as the stage's codec decodes it (null: a record without a value). Of a
   * dead-letter record, the DeadLetterView. Undefined when decoding failed: see decodeError.
   */
  value?: unknown
  /** Why the value could not be decoded; `raw` then holds its bytes in base64. */
  decodeError?: string
  raw?: string
}

/**
 * A dead-letter record as tail shows it: what `weir/testing`'s DeadLetter holds, with the
 * original key as a string and the original value decoded with the codec of the topic it
 * was read from (base64 with `valueDecodeError` when that fails, as for a record that could
 * not be decoded in the first place).
 */
export interface DeadLetterView {
  error: { code: string; message: string; cause?: { name?: string; message?: string; stack?: string } }
  origin?: { topic: string; partition: number; offset: number; timestamp: number; lastOffset?: number }
  timer?: { key: string | null; time: number; domain: string }
  stage: string
  actor: string
  attempts: number
  key: string | null
  value: unknown
  valueDecodeError?: string
  detail?: unknown
  failedAt: number
}

/** How a tail ended. */
export interface TailResult {
  /** Records handed to `onRecord`. */
  records: number
  /** `end`: every partition reached its end offset (not following); `limit`; `aborted`: the signal. */
  reason: 'end' | 'limit' | 'aborted'
  /** Per partition read, the next offset to read. */
  positions: PartitionOffset[]
}

/** The topic an edge is stored in and how to show its records. */
export interface Edge {
  stage: StageSpec
  topic: string
  deadLetter: boolean
  /** The record's value as TailedRecord carries it. */
  decode(r: StoredRecord): Pick<TailedRecord, 'value' | 'decodeError' | 'raw'>
}

/**
 * The edge `stage` names (its dead-letter topic with `deadLetter`). An unknown stage is a
 * ConfigError on field `stage` listing the pipeline's stages and the closest name.
 *
 * @example
 * edgeOf(pipeline, 'count').topic               // 'weir.wordcount.count'
 * edgeOf(pipeline, 'count', true).topic         // 'weir.wordcount.count.dlq'
 */
export function edgeOf(pipeline: Pipeline, stage: string, deadLetter = false): Edge {
  const spec = pipeline.stage(stage)
  if (spec === undefined) {
    const names = pipeline.topology.map((s) => s.name)
    const suggestion = closestName(stage, names)
    throw new ConfigError('stage', `no stage '${stage}' in pipeline '${pipeline.name}'; its stages are: ${names.join(', ')}${suggestion === undefined ? '' : `; did you mean '${suggestion}'?`}`, { stage, pipeline: pipeline.name, suggestion })
  }
  if (!deadLetter) {
    const reader = chainsOf(pipeline).downstreamOf.get(stage)
    if (reader !== undefined) {
      throw new ConfigError('stage', `stage '${stage}' is chained to '${reader}' (docs/chaining.md): its records go to '${reader}' in the same actor, without a topic, so there is nothing to tail; tail '${reader}', or give '${reader}' { chain: false } to keep this edge a topic`, { stage, pipeline: pipeline.name })
    }
    const codec = codecFor(spec.codec)
    return { stage: spec, topic: pipeline.outputTopic(spec), deadLetter, decode: (r) => decodeWith(codec, r.value) }
  }
  if (spec.kind !== 'source' && spec.kind !== 'processor') {
    const writer = pipeline.writerOf(spec)
    const hint = writer === undefined ? 'a topic input has none' : `its records are written by stage '${writer.name}', whose dead-letter topic holds what that stage failed on`
    throw new ConfigError('stage', `'${stage}' runs no actors, so it has no dead-letter topic (${hint})`, { stage, pipeline: pipeline.name })
  }
  const codecs = new Map(pipeline.topology.map((s) => [pipeline.outputTopic(s), codecFor(s.codec)]))
  return { stage: spec, topic: naming.deadLetter(pipeline.name, spec.name), deadLetter, decode: (r) => decodeDeadLetter(r.value, codecs) }
}

/**
 * Calls `onRecord` for the committed records of an edge, in order per partition. Up to the
 * end offsets it found at the start, the partitions are merged by timestamp (then
 * partition, offset); with `follow`, records committed after that come as they arrive.
 * `onRecord` is never called concurrently, and its promise is awaited (back-pressure).
 *
 * `from` a time asks the pipe for the offset by time: Kafka answers from its time index;
 * the embedded log, which has none, decodes every record of the partition before it.
 *
 * @example
 * const ctl = new AbortController()
 * process.once('SIGINT', () => ctl.abort())
 * await tailEdge(pipe, pipeline, { stage: 'count', from: 'now', follow: true, signal: ctl.signal }, print)
 */
export async function tailEdge(pipe: Pipe, pipeline: Pipeline, options: TailOptions, onRecord: (r: TailedRecord) => void | Promise<void>): Promise<TailResult> {
  const edge = edgeOf(pipeline, options.stage, options.deadLetter)
  checkOptions(options)
  const partitions = await partitionsOf(pipe, edge.topic, options.partitions)
  const signal = options.signal
  const cursors: Cursor[] = []
  let shown = 0
  let reason: TailResult['reason'] | undefined
  const stop = (why: TailResult['reason']): void => {
    reason ??= why
    for (const c of cursors) c.close()
  }
  const onAbort = (): void => stop('aborted')
  signal?.addEventListener('abort', onAbort, { once: true })
  const serial = new SerialQueue()
  const show = async (p: number, r: StoredRecord): Promise<void> => {
    if (reason !== undefined) return
    await onRecord(toTailed(edge, p, r))
    shown++
    if (options.limit !== undefined && shown >= options.limit) stop('limit')
  }
  try {
    if (signal?.aborted) stop('aborted')
    else {
      const opened = await Promise.allSettled(partitions.map(async (p) => openCursor(pipe, edge.topic, p, options)))
      for (const o of opened) if (o.status === 'fulfilled') cursors.push(o.value)
      const failed = opened.find((o) => o.status === 'rejected')
      if (failed !== undefined) throw failed.reason
      // Stopped while opening: close what opened since.
      if (reason !== undefined) stop(reason)
    }
    await mergeToEnds(cursors, options.stallMs ?? 60_000, () => reason !== undefined, show)
    if (reason === undefined && options.follow === true) {
      await Promise.all(cursors.map((c) => c.follow(() => reason !== undefined, (records) => serial.run(async () => {
        for (const r of records) await show(c.partition, r)
      }))))
    }
  } catch (err) {
    // A reader closed by the signal or the limit may fail its pending poll (Kafka).
    if (reason === undefined) throw err
  } finally {
    signal?.removeEventListener('abort', onAbort)
    for (const c of cursors) c.close()
  }
  return { records: shown, reason: reason ?? 'end', positions: cursors.map((c) => ({ topic: edge.topic, partition: c.partition, offset: c.position })) }
}

/**
 * The latest `n` committed records of an edge across its partitions, oldest first (by
 * timestamp, then partition and offset). Cheap on a long topic: each partition is read
 * back from its end, a window of about `n` offsets at a time (growing when watermark marks
 * or Kafka's transaction markers fill it), at most 64·n + 1024 offsets deep.
 *
 * @example
 * const latest = await sampleEdge(pipe, pipeline, 'count', 10)
 * latest.at(-1)?.value // the newest count
 */
export async function sampleEdge(pipe: Pipe, pipeline: Pipeline, stage: string, n: number, options: { deadLetter?: boolean } = {}): Promise<TailedRecord[]> {
  if (!Number.isInteger(n) || n < 1) throw new ConfigError('n', `the sample size must be a positive integer, got ${String(n)}`)
  const edge = edgeOf(pipeline, stage, options.deadLetter)
  const partitions = await partitionsOf(pipe, edge.topic, undefined)
  const perPartition = await Promise.all(partitions.map(async (p) => (await latestOf(pipe, edge.topic, p, n)).map((r) => toTailed(edge, p, r))))
  const all = perPartition.flat()
  all.sort(byTime)
  return all.slice(-n)
}

/**
 * `--from` as typed: `now`, `earliest`, ms since the epoch, or an ISO 8601 date-time
 * (`2025-01-31T12:00:00Z`; without a zone it is local time, as Date.parse takes it).
 *
 * @example
 * parseFrom('2025-01-31T12:00:00Z') // 1738324800000
 * parseFrom('now')                  // 'now'
 */
export function parseFrom(raw: string, field = '--from'): 'now' | 'earliest' | number {
  const v = raw.trim()
  if (v === 'now' || v === 'earliest') return v
  if (/^\d+$/.test(v)) {
    const ms = Number(v)
    if (Number.isSafeInteger(ms)) return ms
  } else if (/^\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?)?(Z|[+-]\d{2}:?\d{2})?$/.test(v)) {
    const ms = Date.parse(v)
    if (Number.isFinite(ms)) return ms
  }
  throw new ConfigError(field, `'${raw}' is not a start: use now, earliest, ms since the epoch (1738324800000) or an ISO 8601 time (2025-01-31T12:00:00Z)`)
}

/**
 * A value as JSON can carry it: bytes become base64 strings, bigints decimal strings, Maps
 * objects, Sets arrays, Dates ISO strings; undefined becomes null.
 *
 * @example
 * JSON.stringify(jsonSafe({ b: Buffer.from('hi'), n: 10n })) // '{"b":"aGk=","n":"10"}'
 */
export function jsonSafe(value: unknown): unknown {
  if (value === undefined) return null
  if (value === null || typeof value === 'string' || typeof value === 'number' || typeof value === 'boolean') return value
  if (typeof value === 'bigint') return value.toString()
  if (value instanceof Uint8Array) return Buffer.from(value.buffer, value.byteOffset, value.byteLength).toString('base64')
  if (value instanceof Date) return Number.isFinite(value.getTime()) ? value.toISOString() : null
  if (Array.isArray(value)) return value.map(jsonSafe)
  if (value instanceof Set) return [...value].map(jsonSafe)
  if (value instanceof Map) return Object.fromEntries([...value].map(([k, v]) => [String(k), jsonSafe(v)]))
  if (typeof value === 'object') {
    const out: Record<string, unknown> = {}
    for (const [k, v] of Object.entries(value)) if (v !== undefined) out[k] = jsonSafe(v)
    return out
  }
  return String(value)
}

function checkOptions(o: TailOptions): void {
  const from = o.from ?? 'earliest'
  if (from !== 'earliest' && from !== 'now' && !(typeof from === 'number' && Number.isFinite(from))) throw new ConfigError('from', `must be 'earliest', 'now' or a time in ms since the epoch, got ${String(from)}`)
  if (o.limit !== undefined && (!Number.isSafeInteger(o.limit) || o.limit < 1)) throw new ConfigError('limit', `must be a positive integer, got ${String(o.limit)}`)
  if (o.key !== undefined && typeof o.key !== 'string') throw new ConfigError('key', `must be a string, got ${typeof o.key}`)
}

async function partitionsOf(pipe: Pipe, topic: string, wanted: number[] | undefined): Promise<number[]> {
  const spec = await pipe.describeTopic(topic)
  if (spec === undefined) throw new TopicError('WEIR_TOPIC_MISSING', `topic ${topic} does not exist on this pipe: has the pipeline run on it?`, { topic })
  if (wanted === undefined) return Array.from({ length: spec.partitions }, (_, p) => p)
  for (const p of wanted) {
    if (!Number.isInteger(p) || p < 0 || p >= spec.partitions) throw new ConfigError('partitions', `topic ${topic} has partitions 0..${spec.partitions - 1}, not ${String(p)}`, { topic })
  }
  return [...new Set(wanted)].sort((a, b) => a - b)
}

async function openCursor(pipe: Pipe, topic: string, partition: number, o: TailOptions): Promise<Cursor> {
  const [start, end] = await Promise.all([pipe.startOffset(topic, partition), pipe.endOffset(topic, partition)])
  const from = o.from ?? 'earliest'
  const at = from === 'earliest' ? start : from === 'now' ? end : Math.min(end, Math.max(start, await pipe.offsetForTime(topic, partition, from)))
  const reader = await pipe.reader(topic, partition, at)
  return new Cursor(reader, end, { key: o.key, skipBefore: typeof from === 'number' ? from : undefined })
}

/** One partition's reader and the records it polled that are to be shown. */
class Cursor {
  private buffer: StoredRecord[] = []
  private at = 0
  private closed = false

  constructor(private readonly reader: PartitionReader, readonly end: number, private readonly filter: { key: string | undefined; skipBefore: number | undefined }) {}

  get partition(): number {
    return this.reader.partition
  }

  /** The next offset not yet handed out. */
  get position(): number {
    return this.at < this.buffer.length ? this.buffer[this.at]!.offset : this.reader.position
  }

  get done(): boolean {
    return this.at >= this.buffer.length && this.reader.position >= this.end
  }

  head(): StoredRecord | undefined {
    return this.buffer[this.at]
  }

  take(): StoredRecord {
    return this.buffer[this.at++]!
  }

  /** Polls until a record to show is buffered or the end offset is reached. */
  async fill(stallMs: number, stopped: () => boolean): Promise<void> {
    let progressAt = Date.now()
    let last = this.reader.position
    while (this.at >= this.buffer.length && this.reader.position < this.end && !stopped()) {
      this.buffer = this.keep(await this.reader.poll(1000, 500))
      this.at = 0
      if (this.reader.position !== last) {
        last = this.reader.position
        progressAt = Date.now()
      } else if (Date.now() - progressAt > stallMs) {
        throw new PipeError(`reading ${this.reader.topic}/${this.partition} made no progress for ${stallMs} ms at offset ${last} (end ${this.end})`, { topic: this.reader.topic, partition: this.partition, offset: last }, { retriable: true })
      }
    }
  }

  /** Hands every record committed from the position on to `show`, until `stopped`. */
  async follow(stopped: () => boolean, show: (records: StoredRecord[]) => Promise<void>): Promise<void> {
    const rest = this.buffer.slice(this.at)
    this.buffer = []
    this.at = 0
    if (rest.length > 0) await show(rest)
    while (!stopped()) {
      const kept = this.keep(await this.reader.poll(1000, 500))
      if (kept.length > 0) await show(kept)
    }
  }

  private keep(batch: StoredRecord[]): StoredRecord[] {
    const key = this.filter.key
    const out: StoredRecord[] = []
    for (const r of batch) {
      if (isControlRecord(r)) continue
      // Reading from the offset for a time may start with older records (see Pipe.offsetForTime).
      if (this.filter.skipBefore !== undefined) {
        if (r.timestamp < this.filter.skipBefore) continue
        this.filter.skipBefore = undefined
      }
      if (key !== undefined && (r.key === null || keyString(r.key) !== key)) continue
      out.push(r)
    }
    return out
  }

  close(): void {
    if (this.closed) return
    this.closed = true
    this.reader.close()
  }
}

/** Shows every cursor's records up to its end offset, the oldest head first. */
async function mergeToEnds(cursors: Cursor[], stallMs: number, stopped: () => boolean, show: (partition: number, r: StoredRecord) => Promise<void>): Promise<void> {
  for (;;) {
    await Promise.all(cursors.map((c) => c.fill(stallMs, stopped)))
    if (stopped()) return
    let next: Cursor | undefined
    for (const c of cursors) {
      const h = c.head()
      if (h !== undefined && (next === undefined || byTime({ timestamp: h.timestamp, partition: c.partition, offset: h.offset }, { timestamp: next.head()!.timestamp, partition: next.partition, offset: next.head()!.offset }) < 0)) next = c
    }
    if (next === undefined) return
    await show(next.partition, next.take())
  }
}

/** The last `n` data records of a partition, oldest first. */
async function latestOf(pipe: Pipe, topic: string, partition: number, n: number): Promise<StoredRecord[]> {
  const [start, end] = await Promise.all([pipe.startOffset(topic, partition), pipe.endOffset(topic, partition)])
  const deepest = Math.max(start, end - (64 * n + 1024))
  let found: StoredRecord[] = []
  let upTo = end
  let window = n
  while (found.length < n && upTo > deepest) {
    const from = Math.max(deepest, upTo - window)
    const chunk: StoredRecord[] = []
    await readRange(pipe, topic, partition, from, upTo, (batch) => {
      for (const r of batch) if (r.offset < upTo && !isControlRecord(r)) chunk.push(r)
    })
    found = chunk.concat(found)
    upTo = from
    window *= 4
  }
  return found.slice(-n)
}

function byTime(a: { timestamp: number; partition: number; offset: number }, b: { timestamp: number; partition: number; offset: number }): number {
  return a.timestamp - b.timestamp || a.partition - b.partition || a.offset - b.offset
}

function toTailed(edge: Edge, partition: number, r: StoredRecord): TailedRecord {
  const headers: Record<string, string> = {}
  if (r.headers !== undefined) for (const [name, v] of Object.entries(r.headers)) headers[name] = isUtf8(v) ? v.toString('utf8') : `base64:${v.toString('base64')}`
  return { stage: edge.stage.name, topic: edge.topic, partition, offset: r.offset, key: r.key === null ? null : keyString(r.key), timestamp: r.timestamp, headers, ...edge.decode(r) }
}

function decodeWith(codec: Codec<unknown>, value: Buffer | null): Pick<TailedRecord, 'value' | 'decodeError' | 'raw'> {
  if (value === null) return { value: null }
  try {
    return { value: codec.decode(value) }
  } catch (err) {
    return { decodeError: `${codec.name}: ${(err as Error)?.message ?? String(err)}`, raw: value.toString('base64') }
  }
}

function bytesOf(v: unknown): Buffer | null {
  return v instanceof Uint8Array ? Buffer.from(v.buffer, v.byteOffset, v.byteLength) : null
}

function decodeDeadLetter(value: Buffer | null, codecs: Map<string, Codec<unknown>>): Pick<TailedRecord, 'value' | 'decodeError' | 'raw'> {
  const decoded = decodeWith(stateCodec, value)
  const body = decoded.value
  if (body === null || typeof body !== 'object') return body === undefined ? decoded : { decodeError: 'not a dead-letter record', raw: value?.toString('base64') }
  const b = body as Record<string, unknown>
  const key = bytesOf(b.key)
  const original = bytesOf(b.value)
  const origin = b.origin as DeadLetterView['origin']
  const codec = origin === undefined ? undefined : codecs.get(origin.topic)
  let shown: unknown = original === null ? null : original.toString('base64')
  let valueDecodeError: string | undefined
  if (original !== null) {
    const again = codec === undefined ? { decodeError: `no stage of the pipeline writes ${origin?.topic ?? 'its origin'}: shown as base64` } : decodeWith(codec, original)
    if (again.decodeError === undefined) shown = again.value
    else valueDecodeError = again.decodeError
  }
  const view = { ...b, key: key === null ? null : keyString(key), value: shown, ...(valueDecodeError === undefined ? {} : { valueDecodeError }) } as DeadLetterView
  return { value: view }
}
