/**
 * Exactly-once batch jobs into the pipe: a job is one run id over the objects of a local
 * directory or an S3-compatible bucket, pinned (key, ETag, size) in actor state at the
 * job's start; the position inside the current object (byte offset, line) commits with the
 * records emitted up to it, and every record carries an id derived from (run id, object,
 * ETag, line). A restart resumes mid-object; a rerun of a finished run id emits nothing.
 */
import { existsSync, statSync } from 'node:fs'
import { resolve } from 'node:path'
import { ConfigError, Source, WeirError, type CommitContext, type LifecycleContext, type SourceContext, type SourceStatus } from '../../index.ts'
import { readSecret, type SecretSource } from '../secrets.ts'
import { FileSetJobUnfinishedError, FileSetObjectChangedError, FileSetObjectVanishedError } from './file-set/errors.ts'
import { eventId, JOB_STATE, OBJECTS_STATE, partitionOfKey, RUNS_STATE, summaryOf, type JobPosition, type JobState, type JobSummary, type PinnedObject } from './file-set/job-state.ts'
import { LineReader } from './file-set/line-reader.ts'
import { DirectoryStore, S3Store, type ObjectStore, type S3Target } from './file-set/object-store.ts'
import { RecordReader, type FileFormat } from './file-set/record-reader.ts'

/** The header that carries a record's event id when `eventId: 'header'`. */
export const EVENT_ID_HEADER = 'weir-event-id'

/** An S3-compatible bucket. Credentials come from the environment or files, never from the pipeline's text. */
export interface FileSetS3Options {
  bucket: string
  /** The service's URL (MinIO, Ceph, a local S3): default AWS. */
  endpoint?: string
  /** Default 'us-east-1'. */
  region?: string
  /** Path-style addressing (`endpoint/bucket/key`), which most S3-compatible servers need. Default: true when `endpoint` is set. */
  forcePathStyle?: boolean
  /**
   * Each secret from an environment variable or a file (`{ env: 'NAME' }`, `{ file: 'path' }`);
   * a string is refused. Default: the AWS SDK's own chain (AWS_ACCESS_KEY_ID, profiles, roles).
   */
  credentials?: { accessKeyId: SecretSource; secretAccessKey: SecretSource; sessionToken?: SecretSource }
}

/** Where a record came from, for the `key` and `timestamp` options. */
export interface FileSetRecordMeta {
  run: string
  object: string
  etag: string
  line: number
  /** The event id (as in the key or the header). */
  id: string
}

export interface FileSetSourceOptions<T = unknown> {
  /** A local directory (relative paths resolve against the run's working directory). Give this or `s3`. */
  directory?: string
  /** An S3-compatible bucket. Give this or `directory`. */
  s3?: FileSetS3Options
  /**
   * The objects of the job: keys starting with this (a path under `directory`, `/`-separated).
   * `{run}` is replaced by the run id. Default ''.
   */
  prefix?: string
  /**
   * The job's identity. Default: the prefix itself (then `prefix` must be given and hold no `{run}`).
   * Rerunning a run id that finished emits nothing; another run id is a new job.
   */
  run?: string
  /** 'jsonl': one JSON value per line. 'csv': a header row, then one object (column → string) per row. */
  format: FileFormat
  /** CSV field delimiter, one character. Default ','. */
  csvDelimiter?: string
  /**
   * Where the event id goes: 'key' (default) makes it the record key; 'header' puts it in the
   * `weir-event-id` header and takes the key from `key`.
   */
  eventId?: 'key' | 'header'
  /** The record key when `eventId: 'header'` (default null). A throw dead-letters the record. */
  key?: (value: T, meta: FileSetRecordMeta) => string | null
  /** The event time of a record, ms. Default: when the job listed its objects (the same on every restart). A throw dead-letters the record. */
  timestamp?: (value: T, meta: FileSetRecordMeta) => number
  /** Lines read per poll at most (a checkpoint can come between polls). Default 256. */
  linesPerPoll?: number
  /** A line (a CSV record) longer than this is dead-lettered with its first bytes. Default 1 MiB. */
  maxLineBytes?: number
  /** A new run id while the previous job is unfinished: 'refuse' (default, the actor fails saying so) or 'abandon' it (kept in the history as abandoned). */
  onUnfinished?: 'refuse' | 'abandon'
}

const OPTION_NAMES = ['directory', 's3', 'prefix', 'run', 'format', 'csvDelimiter', 'eventId', 'key', 'timestamp', 'linesPerPoll', 'maxLineBytes', 'onUnfinished']
const S3_OPTION_NAMES = ['bucket', 'endpoint', 'region', 'forcePathStyle', 'credentials']

/** What onCheckpoint stages when the job refused an object: the actor fails once that is committed. */
interface StagedFailure {
  failed: true
}

/**
 * Reads a file set as one job per run id. Each actor of the stage (one per partition) lists
 * the objects once, at its job's start, and keeps those whose key hashes to its partition;
 * the listing (keys, ETags: a SHA-256 of the content for a directory, sizes) is pinned in its
 * state. What each checkpoint commits: the records emitted, the position inside the current
 * object (byte offset and line), the counts. So:
 * - a killed or failed job resumes from its last checkpoint, mid-object (a ranged GET, a file read from the offset);
 * - rerunning a finished run id emits nothing and ends at once; a new run id is a new job (older ones stay in state as history);
 * - an object whose ETag changed, or that vanished, under the same run id stops the job with
 *   FileSetObjectChangedError / FileSetObjectVanishedError naming it and both ETags;
 * - a line that does not parse (bad JSON, a CSV row with another field count) goes to the dead-letter topic with the object, line and error;
 * - every record carries `runId:object:etag:line` (URI-encoded parts) as its key, or in the
 *   `weir-event-id` header: a sink outside weir can dedup on it.
 * Objects are streamed, never read whole. docs/sources/file-set.md has the details.
 *
 * @example
 * export default (params: Record<string, string>) => {
 *   const p = new Pipeline('daily-import')
 *   p.source('orders', () => new FileSetSource({ directory: 'exports', prefix: '{run}/', run: params.run, format: 'jsonl' }), { partitions: 2 })
 *   return p
 * }
 */
export class FileSetSource<T = unknown> extends Source<T> {
  private readonly job = this.state.actorValue<JobState>(JOB_STATE)
  private readonly objects = this.state.actorValue<PinnedObject[]>(OBJECTS_STATE)
  private readonly runs = this.state.actorValue<Record<string, JobSummary>>(RUNS_STATE)
  private readonly run: string
  private readonly prefix: string
  private readonly linesPerPoll: number
  private readonly maxLineBytes: number
  private store: ObjectStore | undefined
  private reading: { object: number; lines: LineReader; records: RecordReader } | undefined
  /** The job refused an object: set in poll, thrown once the checkpoint that records it committed. */
  private failure: WeirError | undefined
  private stage = ''
  private partition = 0

  constructor(private readonly options: FileSetSourceOptions<T>) {
    super()
    checkOptions(options)
    const rawPrefix = options.prefix ?? ''
    this.run = options.run ?? rawPrefix
    this.prefix = rawPrefix.split('{run}').join(this.run)
    this.linesPerPoll = options.linesPerPoll ?? 256
    this.maxLineBytes = options.maxLineBytes ?? 1024 * 1024
  }

  override open(ctx: LifecycleContext): void {
    this.stage = ctx.stage
    this.partition = ctx.partition
    this.store = openStore(this.options, ctx.workDir)
    const job = this.job.get()
    if (job === undefined || job.run === this.run || job.status === 'finished') return
    if (this.options.onUnfinished !== 'abandon') throw new FileSetJobUnfinishedError(this.run, job.run, job.status, ctx.stage, ctx.partition)
    this.runs.set({ ...this.runs.get(), [job.run]: { ...summaryOf(job), status: 'abandoned' } })
    this.job.clear()
    this.objects.clear()
    ctx.log.warn({ run: this.run, abandoned: job.run, status: job.status }, 'file set: an unfinished job was abandoned for a new run id')
  }

  /** Polled again after an earlier job finished only when this run id has not finished. */
  override reopen(): boolean {
    return this.runs.get()?.[this.run]?.status !== 'finished'
  }

  async poll(ctx: SourceContext<T>): Promise<SourceStatus> {
    if (this.failure !== undefined) return 'idle'
    const job = this.job.get()
    if (job === undefined || job.run !== this.run) {
      if (this.runs.get()?.[this.run]?.status === 'finished') return 'done'
      return this.list(ctx)
    }
    if (job.status === 'finished') return 'done'
    return this.read(job, ctx)
  }

  override onCheckpoint(): StagedFailure | undefined {
    return this.failure === undefined ? undefined : { failed: true }
  }

  /** The refusal is committed (the job shows failed): now the actor fails with it. */
  override onCheckpointCommitted(commit: CommitContext): void {
    if (commit.recovering || (commit.staged as StagedFailure | undefined)?.failed !== true || this.failure === undefined) return
    throw this.failure
  }

  override close(): void {
    this.reading?.lines.close()
    this.reading = undefined
    this.store?.close()
  }

  /** The job's start: list once, keep this partition's objects, pin them. */
  private async list(ctx: SourceContext<T>): Promise<SourceStatus> {
    const listed = await this.store!.list(this.prefix)
    const mine = listed.filter((o) => partitionOfKey(o.key, ctx.partitions) === ctx.partition)
    this.objects.set(mine)
    this.job.set({ run: this.run, status: 'listed', listedAt: Date.now(), at: { object: 0, offset: 0, line: 0 }, done: 0, total: mine.length, emitted: 0, deadLetters: 0 })
    ctx.log.info({ run: this.run, prefix: this.prefix, objects: mine.length, listed: listed.length }, 'file set job listed')
    return 'more'
  }

  private async read(job: JobState, ctx: SourceContext<T>): Promise<SourceStatus> {
    const objects = this.objects.get() ?? []
    let at: JobPosition = job.at
    let { done, emitted, deadLetters } = job
    for (let budget = this.linesPerPoll; budget > 0; ) {
      if (at.object >= objects.length) {
        const finished: JobState = { ...job, status: 'finished', finishedAt: Date.now(), at, done, emitted, deadLetters, failure: undefined }
        this.job.set(finished)
        this.runs.set({ ...this.runs.get(), [job.run]: summaryOf(finished) })
        ctx.log.info({ run: job.run, objects: done, emitted, deadLetters }, 'file set job finished')
        return 'done'
      }
      const object = objects[at.object]!
      if (this.reading?.object !== at.object) {
        this.reading?.lines.close()
        this.reading = undefined
        const opened = await this.store!.open(object, at.offset)
        // The progress of this poll so far commits with the refusal: its records were emitted.
        if (opened.kind !== 'stream') return this.refuse({ ...job, at, done, emitted, deadLetters }, object, opened.kind === 'changed' ? opened.current : null, ctx)
        const lines = new LineReader(opened.body, at.offset, this.maxLineBytes)
        this.reading = { object: at.object, lines, records: new RecordReader(lines, this.options.format, at.line, at.columns, this.options.csvDelimiter ?? ',', this.maxLineBytes) }
      }
      const item = await this.reading.records.next()
      if (item === undefined) {
        this.reading.lines.close()
        this.reading = undefined
        done++
        at = { object: at.object + 1, offset: 0, line: 0 }
        continue
      }
      budget--
      const id = eventId(job.run, object.key, object.etag, item.line)
      if (item.kind === 'header') at = { ...at, columns: item.columns }
      else if (item.kind === 'malformed') {
        this.deadLetter(ctx, job, object, id, item.line, item.bytes, item.error)
        deadLetters++
      } else if (item.kind === 'record') {
        if (this.emit(ctx, job, object, id, item.line, item.value as T)) emitted++
        else deadLetters++
      }
      at = { ...at, offset: item.end, line: this.reading.records.linesRead }
    }
    this.job.set({ ...job, status: 'running', at, done, emitted, deadLetters, failure: undefined })
    return 'more'
  }

  /** Emits one record; false when the key or timestamp option threw (it was dead-lettered). */
  private emit(ctx: SourceContext<T>, job: JobState, object: PinnedObject, id: string, line: number, value: T): boolean {
    const meta: FileSetRecordMeta = { run: job.run, object: object.key, etag: object.etag, line, id }
    let timestamp = job.listedAt
    let key: string | null = id
    try {
      if (this.options.timestamp !== undefined) timestamp = this.options.timestamp(value, meta)
      if (this.options.eventId === 'header') key = this.options.key?.(value, meta) ?? null
    } catch (err) {
      this.deadLetter(ctx, job, object, id, line, Buffer.from(JSON.stringify(value) ?? ''), err)
      return false
    }
    if (this.options.eventId === 'header') ctx.emit(key, value, { timestamp, headers: { [EVENT_ID_HEADER]: Buffer.from(id) } })
    else ctx.emit(key, value, { timestamp })
    return true
  }

  private deadLetter(ctx: SourceContext<T>, job: JobState, object: PinnedObject, id: string, line: number, bytes: Buffer, error: unknown): void {
    ctx.deadLetter({ key: id, value: bytes, timestamp: job.listedAt }, error, { run: job.run, object: object.key, etag: object.etag, line })
  }

  /** A pinned object changed or vanished: record the job as failed; the actor fails once that committed. */
  private refuse(job: JobState, object: PinnedObject, current: string | null, ctx: SourceContext<T>): SourceStatus {
    const where = this.store!.describe
    this.failure = current === null
      ? new FileSetObjectVanishedError(job.run, object.key, object.etag, where, this.stage, this.partition)
      : new FileSetObjectChangedError(job.run, object.key, object.etag, current, where, this.stage, this.partition)
    this.job.set({ ...job, status: 'failed', failure: { code: this.failure.code, message: this.failure.message, object: object.key, pinned: object.etag, current } })
    ctx.log.error({ run: job.run, object: object.key, pinned: object.etag, current, err: this.failure.message }, 'file set job refused a pinned object')
    return 'idle'
  }
}

function openStore<T>(options: FileSetSourceOptions<T>, workDir: string): ObjectStore {
  if (options.directory !== undefined) {
    const root = resolve(workDir, options.directory)
    if (!existsSync(root) || !statSync(root).isDirectory()) throw new ConfigError('directory', `${root} is not a directory`)
    return new DirectoryStore(root)
  }
  const s3 = options.s3!
  const target: S3Target = { bucket: s3.bucket, endpoint: s3.endpoint, region: s3.region ?? 'us-east-1', forcePathStyle: s3.forcePathStyle ?? s3.endpoint !== undefined }
  if (s3.credentials !== undefined) {
    const c = s3.credentials
    target.credentials = {
      accessKeyId: readSecret('s3.credentials.accessKeyId', c.accessKeyId, workDir),
      secretAccessKey: readSecret('s3.credentials.secretAccessKey', c.secretAccessKey, workDir),
      ...(c.sessionToken === undefined ? {} : { sessionToken: readSecret('s3.credentials.sessionToken', c.sessionToken, workDir) }),
    }
  }
  return new S3Store(target)
}

function checkOptions<T>(o: FileSetSourceOptions<T>): void {
  if (o === null || typeof o !== 'object') throw new ConfigError('options', 'FileSetSource takes an options object')
  for (const k of Object.keys(o)) if (!OPTION_NAMES.includes(k)) throw new ConfigError(k, `is not an option of FileSetSource (options: ${OPTION_NAMES.join(', ')})`)
  if ((o.directory === undefined) === (o.s3 === undefined)) throw new ConfigError('directory', 'give exactly one of directory (a local directory) and s3 (a bucket)')
  if (o.directory !== undefined && (typeof o.directory !== 'string' || o.directory === '')) throw new ConfigError('directory', 'must be a non-empty path')
  if (o.s3 !== undefined) checkS3(o.s3)
  if (o.format !== 'jsonl' && o.format !== 'csv') throw new ConfigError('format', `must be 'jsonl' or 'csv', got ${JSON.stringify(o.format)}`)
  if (o.prefix !== undefined && typeof o.prefix !== 'string') throw new ConfigError('prefix', 'must be a string')
  if (o.run !== undefined && (typeof o.run !== 'string' || o.run === '' || o.run.length > 256 || /[\u0000-\u001f]/.test(o.run))) throw new ConfigError('run', `must be 1 to 256 characters without control characters, got ${JSON.stringify(o.run)}`)
  if (o.run === undefined && (o.prefix ?? '') === '') throw new ConfigError('run', 'give a run id (run: params.run), or a prefix that names the job')
  if (o.run === undefined && o.prefix!.includes('{run}')) throw new ConfigError('run', `the prefix ${JSON.stringify(o.prefix)} holds {run} but no run id was given`)
  if (o.csvDelimiter !== undefined && (o.format !== 'csv' || typeof o.csvDelimiter !== 'string' || o.csvDelimiter.length !== 1 || o.csvDelimiter === '"' || o.csvDelimiter === '\n' || o.csvDelimiter === '\r')) throw new ConfigError('csvDelimiter', 'must be one character (not a quote or a line break), with format csv')
  if (o.eventId !== undefined && o.eventId !== 'key' && o.eventId !== 'header') throw new ConfigError('eventId', `must be 'key' or 'header', got ${JSON.stringify(o.eventId)}`)
  if (o.key !== undefined && (typeof o.key !== 'function' || o.eventId !== 'header')) throw new ConfigError('key', "is a function, and only with eventId: 'header' (otherwise the event id is the key)")
  if (o.timestamp !== undefined && typeof o.timestamp !== 'function') throw new ConfigError('timestamp', 'must be a function (value, meta) => ms')
  checkInteger('linesPerPoll', o.linesPerPoll, 1, 1_000_000)
  checkInteger('maxLineBytes', o.maxLineBytes, 16, 1024 * 1024 * 1024)
  if (o.onUnfinished !== undefined && o.onUnfinished !== 'refuse' && o.onUnfinished !== 'abandon') throw new ConfigError('onUnfinished', `must be 'refuse' or 'abandon', got ${JSON.stringify(o.onUnfinished)}`)
}

function checkS3(s3: FileSetS3Options): void {
  if (s3 === null || typeof s3 !== 'object') throw new ConfigError('s3', 'must be { bucket, endpoint?, region?, forcePathStyle?, credentials? }')
  for (const k of Object.keys(s3)) if (!S3_OPTION_NAMES.includes(k)) throw new ConfigError(`s3.${k}`, `is not an s3 option (options: ${S3_OPTION_NAMES.join(', ')})`)
  if (typeof s3.bucket !== 'string' || !/^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/.test(s3.bucket)) throw new ConfigError('s3.bucket', `must be a bucket name (3 to 63 lowercase letters, digits, dots, hyphens), got ${JSON.stringify(s3.bucket)}`)
  if (s3.endpoint !== undefined) {
    let url: URL
    try {
      url = new URL(s3.endpoint)
    } catch {
      throw new ConfigError('s3.endpoint', `is not a URL: ${JSON.stringify(s3.endpoint)}`)
    }
    if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new ConfigError('s3.endpoint', `must be http: or https:, got ${url.protocol}`)
    if (url.username !== '' || url.password !== '') throw new ConfigError('s3.endpoint', 'must not hold credentials: give them in s3.credentials from the environment or a file')
  }
  if (s3.region !== undefined && (typeof s3.region !== 'string' || s3.region === '')) throw new ConfigError('s3.region', 'must be a region name')
  if (s3.forcePathStyle !== undefined && typeof s3.forcePathStyle !== 'boolean') throw new ConfigError('s3.forcePathStyle', 'must be true or false')
  const c = s3.credentials
  if (c === undefined) return
  if (c === null || typeof c !== 'object') throw new ConfigError('s3.credentials', 'must be { accessKeyId, secretAccessKey, sessionToken? }, each { env } or { file }')
  for (const k of Object.keys(c)) if (!['accessKeyId', 'secretAccessKey', 'sessionToken'].includes(k)) throw new ConfigError(`s3.credentials.${k}`, 'is not a credential field (accessKeyId, secretAccessKey, sessionToken)')
  checkSecret('s3.credentials.accessKeyId', c.accessKeyId, true)
  checkSecret('s3.credentials.secretAccessKey', c.secretAccessKey, true)
  checkSecret('s3.credentials.sessionToken', c.sessionToken, false)
}

function checkSecret(field: string, source: unknown, required: boolean): void {
  if (source === undefined && !required) return
  if (typeof source === 'string') throw new ConfigError(field, "an inline secret is refused (it would live in the pipeline's source and logs): give { env: 'VARIABLE' } or { file: 'path' }")
  const s = source as Record<string, unknown> | null | undefined
  const ok = s !== null && typeof s === 'object' && Object.keys(s).length === 1 && ((typeof s.env === 'string' && s.env !== '') || (typeof s.file === 'string' && s.file !== ''))
  if (!ok) throw new ConfigError(field, `must be { env: 'VARIABLE' } or { file: 'path' }, got ${JSON.stringify(source)}`)
}

function checkInteger(field: string, value: unknown, min: number, max: number): void {
  if (value === undefined) return
  if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max) throw new ConfigError(field, `must be an integer from ${min} to ${max}, got ${JSON.stringify(value)}`)
}
