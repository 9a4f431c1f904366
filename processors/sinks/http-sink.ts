/**
 * exactly-once effect at a receiver that deduplicates by `Idempotency-Key`; at-least-once
 * delivery of requests otherwise. Two phases: at the barrier the checkpoint's records are
 * grouped into requests (per input topic, at most `batch.maxRecords` records and about
 * `batch.maxBytes` bytes each), which the checkpoint stores; once the pipe committed it (and
 * again at start, for the newest committed checkpoint) each request is sent with the header
 * `Idempotency-Key: <pipeline>/<stage>/<partition>/<topic>/<first offset>-<last offset>`. Only
 * a committed checkpoint's requests are ever sent, and they are what it stored, so every send
 * of a request (a retry, a restart after a crash, a zombie next to its successor) carries the
 * same body under the same key. Every request is retried (5xx, 408, 429, timeouts, connection
 * errors; with backoff, honouring Retry-After) until it got a 2xx, or an answer that refuses it
 * (any other status), which sends it to the stage's dead-letter topic with the response, once:
 * the dead letter commits with the next checkpoint. Nothing is dropped and nothing gives up:
 * while the endpoint does not take the requests the actor is held back (its next checkpoint
 * waits) and tells the monitor what it waits for.
 */
import { Pool } from 'undici'
import { readSecret, type SecretSource } from '../secrets.ts'
import { ConfigError, Processor, WeirError, type CheckpointContext, type CommitContext, type Context, type LifecycleContext, type StreamRecord } from '../../index.ts'

export type { SecretSource }

export interface HttpSinkOptions<T> {
  /** The endpoint: an http(s) URL, or where to read it (a URL holding a token is a secret). No user:password in it: use `secretHeaders`. */
  url: string | SecretSource
  /** Default 'POST'. */
  method?: 'POST' | 'PUT'
  /** Headers sent with every request (Content-Type is application/json). Credentials go in `secretHeaders`. */
  headers?: Record<string, string>
  /**
   * Headers whose values are secrets, read at start from an environment variable or a file
   * (its content, trailing newline removed).
   *
   * @example
   * secretHeaders: { Authorization: { env: 'HOOK_AUTHORIZATION' } }   // "Bearer …" in the environment
   */
  secretHeaders?: Record<string, SecretSource>
  /** The JSON item for a record (the request body is a JSON array of them). Default `{ key, value, timestamp }`. A throw dead-letters the record. */
  format?: (record: StreamRecord<T>) => unknown
  batch?: {
    /** Records per request at most. Default 100. */
    maxRecords?: number
    /** Body bytes per request at most; a single item larger than this goes alone. Default 1 MiB. */
    maxBytes?: number
  }
  /** One attempt's limit (connect, headers, body), ms. Default 10000. */
  timeoutMs?: number
  /** Requests in flight per actor. Default 4 (requests of one checkpoint may then arrive out of order; 1 keeps them in offset order). */
  concurrency?: number
  /** Requests started per second per actor (retries included) at most. Default: no limit. */
  ratePerSecond?: number
  retry?: {
    /** First wait before retrying a request, ms; doubles per attempt up to `maxDelayMs`. Default 100. */
    initialDelayMs?: number
    /** Default 30000. A Retry-After header is honoured over it (up to 10 minutes). */
    maxDelayMs?: number
  }
  /** Put before every Idempotency-Key: a new run of the pipeline on a fresh pipe (offsets from 0 again) needs another, or the receiver takes its requests for repeats. Default ''. */
  keyPrefix?: string
}

/** One request of a committed checkpoint, as stored in it. */
export interface StagedRequest {
  topic: string
  /** Offsets of its first and last record. */
  first: number
  last: number
  /** Event time of its first record, ms. */
  timestamp: number
  /** The JSON array of its records' items. */
  body: string
}

/** What a checkpoint stages: its requests, in offset order per topic. */
export interface StagedRequests {
  requests: StagedRequest[]
}

/** An answer that refuses a request (a 4xx other than 408 and 429, or a status no retry can change): the request is dead-lettered with it. */
export class HttpRequestRefusedError extends WeirError {
  constructor(message: string, context: Record<string, unknown>) {
    super('WEIR_HTTP_REFUSED', message, context)
  }
}

/** Response body bytes kept in a dead letter. */
const DETAIL_BODY_BYTES = 4096
/** The longest Retry-After honoured, ms. */
const MAX_RETRY_AFTER_MS = 600_000
/** Headers that carry credentials: only from `secretHeaders`. */
const SECRET_HEADERS = new Set(['authorization', 'proxy-authorization', 'cookie', 'x-api-key', 'api-key', 'x-auth-token'])
/** Headers the sink sets itself. */
const OWN_HEADERS = new Set(['idempotency-key', 'content-type', 'content-length', 'host', 'transfer-encoding', 'connection'])
const HEADER_NAME = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/

interface OpenRequest {
  first: number
  last: number
  timestamp: number
  items: string[]
  bytes: number
}

type Attempt = { kind: 'delivered' } | { kind: 'retry'; error: unknown; afterMs?: number } | { kind: 'refused'; status: number; statusText: string; headers: Record<string, string>; body: string }

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms))

/**
 * Sends records to an HTTP endpoint (a webhook) as JSON arrays, each request under a
 * deterministic `Idempotency-Key` (see the file's first comment for the guarantee and
 * docs/sinks/http.md for what the receiver must do with the key).
 *
 * @example
 * stream.to('hook', () => new HttpSink<Alert>({
 *   url: 'https://hooks.example.com/alerts',
 *   secretHeaders: { Authorization: { env: 'ALERTS_TOKEN' } },
 *   format: (r) => ({ id: r.key, alert: r.value }),
 *   batch: { maxRecords: 50 },
 *   ratePerSecond: 20,
 * }))
 */
export class HttpSink<T = unknown> extends Processor<T, never, StagedRequests> {
  private readonly method: 'POST' | 'PUT'
  private readonly maxRecords: number
  private readonly maxBytes: number
  private readonly timeoutMs: number
  private readonly concurrency: number
  private readonly intervalMs: number
  private readonly initialDelayMs: number
  private readonly maxDelayMs: number
  private readonly keyPrefix: string
  private url: URL | undefined
  private headers: Record<string, string> = {}
  private pool: Pool | undefined
  /** Requests of the open epoch, closed ones first, then one open per topic. */
  private closed: StagedRequest[] = []
  private building: Map<string, OpenRequest> = new Map()
  /** When the next request may start (rate limit). */
  private nextStart = 0
  /** Requests whose newest attempt failed and that are waiting to retry. */
  private failing = 0
  private describedEndpoint = ''

  constructor(private readonly options: HttpSinkOptions<T>) {
    super()
    const o = options as HttpSinkOptions<T> | undefined
    if (o === null || typeof o !== 'object') throw new ConfigError('options', 'HttpSink needs an options object with at least url')
    checkSource('url', o.url, true)
    if (typeof o.url === 'string') this.url = parseUrl(o.url)
    this.method = o.method ?? 'POST'
    if (this.method !== 'POST' && this.method !== 'PUT') throw new ConfigError('method', `must be 'POST' or 'PUT', got ${JSON.stringify(o.method)}`)
    if (o.headers !== undefined) {
      if (o.headers === null || typeof o.headers !== 'object') throw new ConfigError('headers', 'must be an object of header names to string values')
      for (const [name, value] of Object.entries(o.headers)) {
        checkHeaderName(`headers.${name}`, name)
        if (SECRET_HEADERS.has(name.toLowerCase())) throw new ConfigError(`headers.${name}`, `is a credential: give it in secretHeaders, from an environment variable or a file (secretHeaders: { ${name}: { env: 'MY_TOKEN' } }), never in the pipeline`)
        if (typeof value !== 'string' || /[\r\n\0]/.test(value)) throw new ConfigError(`headers.${name}`, 'must be a string without line breaks')
      }
    }
    if (o.secretHeaders !== undefined) {
      if (o.secretHeaders === null || typeof o.secretHeaders !== 'object') throw new ConfigError('secretHeaders', "must be an object of header names to { env: 'VAR' } or { file: 'path' }")
      for (const [name, source] of Object.entries(o.secretHeaders)) {
        checkHeaderName(`secretHeaders.${name}`, name)
        checkSource(`secretHeaders.${name}`, source, false)
      }
    }
    if (o.format !== undefined && typeof o.format !== 'function') throw new ConfigError('format', 'must be a function of the record')
    this.maxRecords = wholeNumber('batch.maxRecords', o.batch?.maxRecords, 100, 1)
    this.maxBytes = wholeNumber('batch.maxBytes', o.batch?.maxBytes, 1 << 20, 2)
    this.timeoutMs = wholeNumber('timeoutMs', o.timeoutMs, 10_000, 1)
    this.concurrency = wholeNumber('concurrency', o.concurrency, 4, 1)
    if (o.ratePerSecond !== undefined && !(typeof o.ratePerSecond === 'number' && o.ratePerSecond > 0 && Number.isFinite(o.ratePerSecond))) throw new ConfigError('ratePerSecond', `must be a number > 0, got ${String(o.ratePerSecond)}`)
    this.intervalMs = o.ratePerSecond === undefined ? 0 : 1000 / o.ratePerSecond
    this.initialDelayMs = wholeNumber('retry.initialDelayMs', o.retry?.initialDelayMs, 100, 1)
    this.maxDelayMs = wholeNumber('retry.maxDelayMs', o.retry?.maxDelayMs, 30_000, this.initialDelayMs)
    this.keyPrefix = o.keyPrefix ?? ''
    if (typeof this.keyPrefix !== 'string' || !/^[\x21-\x7e]*$/.test(this.keyPrefix)) throw new ConfigError('keyPrefix', 'must be printable ASCII without spaces (it goes into a header)')
  }

  override open(ctx: LifecycleContext): void {
    if (this.url === undefined) this.url = parseUrl(readSecret('url', this.options.url as SecretSource, ctx.workDir))
    const headers: Record<string, string> = { ...this.options.headers, 'content-type': 'application/json' }
    for (const [name, source] of Object.entries(this.options.secretHeaders ?? {})) {
      const value = readSecret(`secretHeaders.${name}`, source, ctx.workDir)
      if (/[\r\n\0]/.test(value)) throw new ConfigError(`secretHeaders.${name}`, 'the value read has a line break inside')
      headers[name] = value
    }
    this.headers = headers
    this.describedEndpoint = `HTTP ${this.method} ${this.url.origin}${this.url.pathname}`
    this.pool = new Pool(this.url.origin, { connections: this.concurrency, headersTimeout: this.timeoutMs, bodyTimeout: this.timeoutMs, connectTimeout: this.timeoutMs })
  }

  onRecord(record: StreamRecord<T>, ctx: Context<never>): void {
    let item: string | undefined
    try {
      const formatted = this.options.format ? this.options.format(record) : { key: record.key, value: record.value, timestamp: record.timestamp }
      item = JSON.stringify(formatted)
      if (item === undefined) throw new Error(`format gave ${typeof formatted}, which has no JSON form`)
    } catch (err) {
      ctx.deadLetter(record, err)
      return
    }
    const bytes = Buffer.byteLength(item) + 1
    let req = this.building.get(record.topic)
    if (req !== undefined && (req.items.length >= this.maxRecords || req.bytes + bytes > this.maxBytes)) {
      this.closeRequest(record.topic, req)
      req = undefined
    }
    if (req === undefined) {
      req = { first: record.offset, last: record.offset, timestamp: record.timestamp, items: [], bytes: 1 }
      this.building.set(record.topic, req)
    }
    req.items.push(item)
    req.bytes += bytes
    req.last = record.offset
  }

  /** Phase one: the epoch's requests, as the checkpoint stores them. */
  override onCheckpoint(ctx: CheckpointContext): StagedRequests | undefined {
    for (const [topic, req] of this.building) this.closeRequest(topic, req)
    if (this.closed.length === 0) return undefined
    const requests = this.closed
    this.closed = []
    ctx.log.trace({ checkpoint: ctx.checkpoint, requests: requests.length }, 'requests staged')
    return { requests }
  }

  /**
   * Phase two, once the checkpoint committed: sends its requests until each got a 2xx or was
   * refused. Runs again after a crash and on a zombie: the same requests under the same keys.
   * It never throws for the endpoint: the runtime gives up on a publish that keeps throwing,
   * while an endpoint that is down must only hold the actor back.
   */
  override async onCheckpointCommitted(commit: CommitContext<StagedRequests>): Promise<void> {
    const requests = commit.staged?.requests
    if (requests === undefined || requests.length === 0) return
    let next = 0
    const worker = async (): Promise<void> => {
      while (next < requests.length) await this.deliver(requests[next++]!, commit)
    }
    await Promise.all(Array.from({ length: Math.min(this.concurrency, requests.length) }, worker))
  }

  override async close(): Promise<void> {
    await this.pool?.close().catch(() => undefined)
    this.pool = undefined
  }

  private closeRequest(topic: string, req: OpenRequest): void {
    this.building.delete(topic)
    this.closed.push({ topic, first: req.first, last: req.last, timestamp: req.timestamp, body: `[${req.items.join(',')}]` })
  }

  private idempotencyKey(r: StagedRequest, c: LifecycleContext): string {
    return `${this.keyPrefix}${c.pipeline}/${c.stage}/${c.partition}/${r.topic}/${r.first}-${r.last}`
  }

  private async deliver(r: StagedRequest, commit: CommitContext<StagedRequests>): Promise<void> {
    const key = this.idempotencyKey(r, commit)
    let delay = this.initialDelayMs
    let waited = false
    for (let attempt = 1; ; attempt++) {
      await this.paced()
      const outcome = await this.attempt(r, key)
      if (outcome.kind === 'retry') {
        if (!waited) this.failing++
        waited = true
        // Never sooner than Retry-After asks, nor than the backoff (a Retry-After of 0 must not make a busy loop).
        const waitMs = Math.max(outcome.afterMs ?? 0, delay / 2 + Math.random() * (delay / 2))
        commit.waitingOn(this.describedEndpoint, outcome.error)
        if (attempt === 1 || attempt % 10 === 0) commit.log.warn({ idempotencyKey: key, attempt, delayMs: Math.round(waitMs), err: messageOf(outcome.error) }, 'HTTP sink request not taken; retrying')
        await sleep(waitMs)
        delay = Math.min(this.maxDelayMs, delay * 2)
        continue
      }
      if (waited && --this.failing === 0) commit.waitingOn(undefined)
      if (outcome.kind === 'refused') {
        const context = { stage: commit.stage, partition: commit.partition, topic: r.topic, offset: r.first, lastOffset: r.last, status: outcome.status, idempotencyKey: key }
        const err = new HttpRequestRefusedError(`${this.describedEndpoint} answered ${outcome.status}${outcome.statusText === '' ? '' : ` ${outcome.statusText}`} to request ${key}`, context)
        commit.deadLetter({ key, value: r.body, timestamp: r.timestamp, origin: { topic: r.topic, partition: commit.partition, offset: r.first, lastOffset: r.last } }, err, { status: outcome.status, headers: outcome.headers, body: outcome.body, idempotencyKey: key })
      }
      return
    }
  }

  /** Waits for the rate limit's next slot. */
  private async paced(): Promise<void> {
    if (this.intervalMs === 0) return
    const now = Date.now()
    const at = Math.max(now, this.nextStart)
    this.nextStart = at + this.intervalMs
    if (at > now) await sleep(at - now)
  }

  private async attempt(r: StagedRequest, key: string): Promise<Attempt> {
    const url = this.url!
    try {
      const res = await this.pool!.request({
        path: url.pathname + url.search,
        method: this.method,
        headers: { ...this.headers, 'idempotency-key': key },
        body: r.body,
        signal: AbortSignal.timeout(this.timeoutMs),
      })
      const status = res.statusCode
      if (status >= 200 && status < 300) {
        await res.body.dump()
        return { kind: 'delivered' }
      }
      const body = await readSome(res.body, DETAIL_BODY_BYTES)
      const statusText = res.statusText ?? ''
      const error = new Error(`${status}${statusText === '' ? '' : ` ${statusText}`}${body === '' ? '' : `: ${body.slice(0, 200)}`}`)
      if (status >= 500 || status === 408 || status === 429) return { kind: 'retry', error, afterMs: retryAfterMs(res.headers['retry-after']) }
      return { kind: 'refused', status, statusText, headers: responseHeaders(res.headers), body }
    } catch (err) {
      // A timeout, a refused or cut connection, a TLS failure: the endpoint may answer later.
      return { kind: 'retry', error: err }
    }
  }
}

function checkSource(field: string, source: unknown, stringAllowed: boolean): void {
  if (stringAllowed && typeof source === 'string') return
  const s = source as Partial<{ env: unknown; file: unknown }> | null
  const ok = s !== null && typeof s === 'object' && (typeof s.env === 'string' && s.env !== '') !== (typeof s.file === 'string' && s.file !== '')
  if (!ok) throw new ConfigError(field, `must be ${stringAllowed ? "a URL string, " : ''}{ env: 'VARIABLE' } or { file: 'path' }, got ${JSON.stringify(source)}`)
}

function parseUrl(text: string): URL {
  let url: URL
  try {
    url = new URL(text)
  } catch {
    throw new ConfigError('url', `is not a URL: ${JSON.stringify(text)}`)
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new ConfigError('url', `must be http: or https:, got ${url.protocol}`)
  if (url.username !== '' || url.password !== '') throw new ConfigError('url', 'must not hold credentials (user:password@): give them in secretHeaders (Authorization) from the environment or a file')
  return url
}

function checkHeaderName(field: string, name: string): void {
  if (!HEADER_NAME.test(name)) throw new ConfigError(field, `${JSON.stringify(name)} is not a header name`)
  if (OWN_HEADERS.has(name.toLowerCase())) throw new ConfigError(field, `${name} is set by the sink`)
}

function wholeNumber(field: string, value: number | undefined, fallback: number, min: number): number {
  if (value === undefined) return fallback
  if (!Number.isSafeInteger(value) || value < min) throw new ConfigError(field, `must be a whole number >= ${min}, got ${String(value)}`)
  return value
}

/** Retry-After as seconds or an HTTP date, ms from now; undefined when absent or unreadable. */
function retryAfterMs(header: string | string[] | undefined): number | undefined {
  const value = Array.isArray(header) ? header[0] : header
  if (value === undefined || value.trim() === '') return undefined
  const seconds = /^\s*(\d+)\s*$/.exec(value)
  const ms = seconds !== null ? Number(seconds[1]) * 1000 : Date.parse(value) - Date.now()
  if (!Number.isFinite(ms)) return undefined
  return Math.min(MAX_RETRY_AFTER_MS, Math.max(0, ms))
}

/** Up to `limit` bytes of a response body as text; the rest is not read. */
async function readSome(body: AsyncIterable<Buffer> & { destroy(): void }, limit: number): Promise<string> {
  const chunks: Buffer[] = []
  let n = 0
  try {
    for await (const chunk of body) {
      chunks.push(chunk)
      n += chunk.length
      if (n >= limit) break
    }
  } catch {
    // A body cut short says enough with what came.
  }
  body.destroy()
  return Buffer.concat(chunks).subarray(0, limit).toString('utf8')
}

function responseHeaders(headers: Record<string, string | string[] | undefined>): Record<string, string> {
  const out: Record<string, string> = {}
  for (const [name, value] of Object.entries(headers)) {
    if (value === undefined || name === 'set-cookie') continue
    out[name] = Array.isArray(value) ? value.join(', ') : value
  }
  return out
}

function messageOf(err: unknown): string {
  return (err as Error)?.message ?? String(err)
}
