/**
 * An HTTP ingest source that acknowledges only what is committed. Clients POST JSON or
 * NDJSON batches of events to `/ingest/<stream>`; each request goes whole to one actor (its
 * home partition: the Idempotency-Key's, else the least busy one here), which emits its
 * events and, in the same checkpoint, keeps the key with a fingerprint of the payload and the
 * answer. The 200 goes out only after that checkpoint committed in the pipe, so an
 * acknowledged request's events are in the pipe, once: a crash before the commit loses the
 * request's events and its key together, and the client's retry (it got no 2xx) is taken
 * anew; a retry after the commit finds the key and gets the stored answer. docs/sources.md
 * draws the timeline.
 */
import { ConfigError, Source, checkPublicBinding, type CheckpointContext, type CommitContext, type LifecycleContext, type SourceContext, type SourceStatus, type Timer, type Context } from '../../index.ts'
import { isSecretSource, readSecret, type SecretSource } from '../secrets.ts'
import { errorAnswer, readTlsFile, serverFor, type IngestAnswer, type IngestEndpoint, type IngestRequest, type StreamSettings } from './http-ingest/server.ts'

export interface HttpIngestSourceOptions {
  /** The stream's name in the path (`POST /ingest/<stream>`). Default: the stage's name. */
  stream?: string
  /** Default 127.0.0.1. Any other address needs `token`. */
  host?: string
  /** The port (streams on one port share its server, token and TLS). */
  port: number
  /** The bearer token requests must carry (`Authorization: Bearer <token>`), read at start. */
  token?: SecretSource
  /** HTTPS: PEM files of the certificate (chain) and its key. */
  tls?: { certFile: string; keyFile: string }
  /** Each event's record key: a field of the event (a string or number), or a request header. Default: no key. */
  key?: { field: string } | { header: string }
  /** A field holding the event time (ms since the epoch, or ISO 8601). Default: the time the request arrived. */
  timestampField?: string
  /**
   * `committed` (default): a request is answered 200 once the checkpoint holding its events
   * committed. `received`: 202 as soon as its events are in the actor's open checkpoint, not
   * yet committed: faster, and a crash before the commit loses acknowledged events (a
   * client retrying after a timeout may also double them): at-most-once for acknowledged
   * requests, for data that may be lost.
   */
  ack?: 'committed' | 'received'
  /** `required`: a request without an Idempotency-Key gets 400. Default `optional` (such a request's retries are not recognised). */
  idempotencyKey?: 'optional' | 'required'
  /** How long a key's answer is kept (and a reuse with another payload refused), ms. Default 24 h. */
  idempotencyTtlMs?: number
  /** Default 1 MiB; larger bodies get 413. */
  maxBodyBytes?: number
  /** Default 10000. */
  maxEventsPerRequest?: number
  /** Bytes of requests an actor holds waiting for their checkpoint; over it requests get 429. Default 64 MiB. */
  maxInFlightBytes?: number
  /** A committed-mode request not answered after this long gets 503 (retry with the same key). Default 30000. */
  ackTimeoutMs?: number
  /** Retry-After of 429 and 503 answers, s. Default 1. */
  retryAfterSeconds?: number
  /**
   * The other servers of this stream in a cluster (base URLs, e.g. `http://10.0.0.2:8080`;
   * this server's own may be among them). A request whose partition runs on another server
   * gets 421 with `Location` naming it (found by asking the peers which partitions they serve).
   */
  peers?: string[]
  /** Accept `POST /ingest/<stream>/_end`, after which the source finishes once what it took is committed (bounded runs and tests). Default false. */
  acceptEnd?: boolean
}

/** What a key keeps: the payload's fingerprint, and the answer its first request got. */
interface IdempotencyEntry {
  fingerprint: string
  expiresAt: number
  status: number
  body: AckBody
}

/** The 2xx body: the events' positions in the actor's sequence (event ids `<pipeline>/<stage>/<partition>/<position>`), and the checkpoint. */
export interface AckBody {
  status: 'committed' | 'received'
  events: number
  partition: number
  positions: { from: number; to: number }
  checkpoint?: number
  epoch?: number
  /**
   * Read-your-writes for views downstream: `<topic>:<partition>:<offset>,…`, where the
   * committing checkpoint's records end in the topics this stage writes. A view's
   * `?atLeast=` with it answers only once its state includes these events (docs/views.md).
   * Only on the first answer, not on replays.
   */
  atLeast?: string
  replayed?: boolean
}

interface Taken {
  request: IngestRequest
  body: AckBody
}

/** Checkpoints (with their epoch and the sequence position they end at) kept to answer replays. */
const EPOCH_HISTORY = 128
const MAX_REQUESTS_PER_POLL = 64
/** Events one poll emits at most (whole requests, at least one): a poll is one synchronous stretch of the actor's loop. */
const MAX_EVENTS_PER_POLL = 2000
const LATENCY_SAMPLES = 1024

/**
 * @example
 * const events = p.source('events', () => new HttpIngestSource({ port: 8080, key: { field: 'user' } }), { partitions: 4 })
 * events.keyBy().to('sink', () => new PostgresSink({ ... }))   // partitioned by the event's key
 */
export class HttpIngestSource extends Source<unknown> {
  private readonly position = this.state.actorValue<number>('position')
  private readonly history = this.state.actorValue<Array<[checkpoint: number, epoch: number, position: number]>>('checkpoints')
  private readonly idempotency = this.state.value<IdempotencyEntry>('idempotency')

  private readonly settings: Settings
  private lifecycle: LifecycleContext | undefined
  private server: ReturnType<typeof serverFor> | undefined
  private stream = ''
  private queue: IngestRequest[] = []
  private polled: Taken[] = []
  private staged = new Map<number, Taken[]>()
  /** Keys of requests taken and not answered for good: a retry meanwhile gets 409 (422 with another payload). */
  private inFlightKeys = new Map<string, string>()
  private bytes = 0
  private readonly figures = { requests: 0, acked: 0, replayed: 0, events: 0, rejected: 0 } as Record<string, number>
  private latencies: number[] = []
  private timeouts = new Set<NodeJS.Timeout>()
  private closed = false
  private readonly endpoint: IngestEndpoint

  constructor(private readonly options: HttpIngestSourceOptions) {
    super()
    this.settings = checkOptions(options)
    const self = this
    this.endpoint = {
      get inFlightBytes() {
        return self.bytes
      },
      offer: (request) => this.offer(request),
      countRejection: (status) => this.count(`rejected.${status}`),
    }
  }

  override async open(ctx: LifecycleContext): Promise<void> {
    this.lifecycle = ctx
    this.stream = this.options.stream ?? ctx.stage
    const token = this.options.token === undefined ? undefined : readSecret('token', this.options.token, ctx.workDir)
    checkPublicBinding(this.settings.host, token, 'host', 'the token option')
    const tls = this.options.tls === undefined ? undefined : { cert: readTlsFile('tls.certFile', this.options.tls.certFile, ctx.workDir), key: readTlsFile('tls.keyFile', this.options.tls.keyFile, ctx.workDir) }
    this.server = serverFor({ host: this.settings.host, port: this.settings.port, token, tls }, ctx.log)
    await this.server.attach({ ...this.settings, stream: this.stream, partitions: ctx.partitions }, ctx.partition, this.endpoint)
    ctx.log.info({ address: this.server.server.address, stream: this.stream, ack: this.settings.ack }, 'serving ingest requests')
  }

  private offer(request: IngestRequest): boolean {
    if (this.closed) {
      request.answer(errorAnswer(503, 'WEIR_INGEST_STOPPING', `partition ${request.partition} of stream '${this.stream}' is stopping here: retry`, {}, { 'retry-after': String(this.settings.retryAfterSeconds) }))
      return false
    }
    this.count('requests')
    const key = request.idempotencyKey
    if (key !== undefined) {
      const fingerprint = this.inFlightKeys.get(key)
      if (fingerprint !== undefined) {
        this.count(fingerprint === request.fingerprint ? 'rejected.409' : 'rejected.422')
        request.answer(fingerprint === request.fingerprint
          ? errorAnswer(409, 'WEIR_INGEST_IN_PROGRESS', `a request with Idempotency-Key '${key}' is still being processed: retry once it was answered`, {}, { 'retry-after': String(this.settings.retryAfterSeconds) })
          : errorAnswer(422, 'WEIR_INGEST_KEY_REUSED', `Idempotency-Key '${key}' is in use by a request with another payload`))
        return false
      }
    }
    if (this.bytes > 0 && this.bytes + request.bytes > this.settings.maxInFlightBytes) {
      this.count('rejected.429')
      request.answer(errorAnswer(429, 'WEIR_INGEST_BUSY', `partition ${request.partition} of stream '${this.stream}' has ${this.bytes} bytes waiting for their checkpoint (at most ${this.settings.maxInFlightBytes}): retry later`, { partition: request.partition }, { 'retry-after': String(this.settings.retryAfterSeconds) }))
      return false
    }
    if (key !== undefined) this.inFlightKeys.set(key, request.fingerprint)
    this.bytes += request.bytes
    this.queue.push(request)
    if (this.settings.ack === 'committed') {
      const t = setTimeout(() => {
        this.timeouts.delete(t)
        if (request.answered) return
        this.count('rejected.503')
        request.answer(errorAnswer(503, 'WEIR_INGEST_ACK_TIMEOUT', `the checkpoint holding the request's events did not commit within ${this.settings.ackTimeoutMs} ms; they may still: retry${key === undefined ? ' (without an Idempotency-Key a retry may double them)' : ' with the same Idempotency-Key'}`, {}, { 'retry-after': String(this.settings.retryAfterSeconds) }))
        // Not taken yet: it never will be, the client was told to retry.
        const i = this.queue.indexOf(request)
        if (i >= 0) {
          this.queue.splice(i, 1)
          this.release(request)
        }
      }, this.settings.ackTimeoutMs)
      t.unref()
      this.timeouts.add(t)
    }
    this.lifecycle?.wake()
    return true
  }

  async poll(ctx: SourceContext<unknown>): Promise<SourceStatus> {
    if (this.queue.length === 0) {
      return this.server?.server.isEnded(this.stream) === true && this.polled.length === 0 && this.staged.size === 0 ? 'done' : 'idle'
    }
    let take = 0
    for (let events = 0; take < this.queue.length && take < MAX_REQUESTS_PER_POLL && (take === 0 || events + this.queue[take]!.events.length <= MAX_EVENTS_PER_POLL); take++) events += this.queue[take]!.events.length
    const batch = this.queue.splice(0, take)
    try {
      const keys = batch.flatMap((r) => (r.idempotencyKey === undefined ? [] : [r.idempotencyKey]))
      if (keys.length > 0) await ctx.loadKeys(keys)
      const now = Date.now()
      const replies: Array<() => void> = []
      for (const request of batch) {
        const key = request.idempotencyKey
        if (key !== undefined) {
          const stored = ctx.withKey(key, () => this.idempotency.get())
          if (stored !== undefined && stored.expiresAt > now) {
            const answer = this.replayAnswer(request, stored)
            replies.push(() => {
              this.release(request)
              this.count(answer.status === 422 ? 'rejected.422' : 'replayed')
              request.answer(answer)
            })
            continue
          }
        }
        const from = this.position.get() ?? 0
        const prefix = `${ctx.stage}/${ctx.partition}/`
        request.events.forEach((e, i) => ctx.emit(e.key, e.value, { timestamp: e.timestamp ?? request.receivedAt, headers: { 'weir-event-id': Buffer.from(`${prefix}${from + i}`) } }))
        const to = from + request.events.length
        this.position.set(to)
        const body: AckBody = { status: this.settings.ack, events: request.events.length, partition: ctx.partition, positions: { from, to } }
        if (key !== undefined) {
          const expiresAt = now + this.settings.ttlMs
          ctx.withKey(key, () => {
            this.idempotency.set({ fingerprint: request.fingerprint, expiresAt, status: this.settings.ack === 'committed' ? 200 : 202, body })
            ctx.timers.registerProcessingTime(expiresAt)
          })
        }
        this.count('events', request.events.length)
        if (this.settings.ack === 'received') replies.push(() => this.acknowledge({ request, body }, 202))
        else this.polled.push({ request, body })
      }
      // Answered once the poll's state changes stand (after it returned), never for a poll undone.
      if (replies.length > 0) setImmediate(() => replies.forEach((r) => r()))
      this.report(ctx)
      return this.queue.length > 0 ? 'more' : 'idle'
    } catch (err) {
      // Undone with the poll's state: the requests are taken again by the next poll.
      this.polled = this.polled.filter((t) => !batch.includes(t.request))
      this.queue.unshift(...batch.filter((r) => !r.answered))
      throw err
    }
  }

  /** A key's expiry: its answer is forgotten, and the key may carry another payload. */
  override onTimer(timer: Timer, _ctx: Context<unknown>): void {
    const entry = this.idempotency.get()
    if (entry !== undefined && entry.expiresAt <= timer.time) this.idempotency.clear()
  }

  override onCheckpoint(ctx: CheckpointContext): void {
    if (this.polled.length === 0) return
    this.staged.set(ctx.checkpoint, this.polled)
    this.polled = []
    const history = this.history.get() ?? []
    this.history.set([...history.slice(-(EPOCH_HISTORY - 1)), [ctx.checkpoint, ctx.epoch, this.position.get() ?? 0]])
  }

  override onCheckpointCommitted(commit: CommitContext): void {
    // Where this commit's records end bounds every earlier checkpoint's too.
    const atLeast = commit.outputPositions.length === 0 ? undefined : commit.outputPositions.map((p) => `${p.topic}:${p.partition}:${p.offset}`).join(',')
    for (const [checkpoint, taken] of this.staged) {
      if (checkpoint > commit.checkpoint) continue
      this.staged.delete(checkpoint)
      for (const t of taken) this.acknowledge({ request: t.request, body: { ...t.body, checkpoint, epoch: checkpoint === commit.checkpoint ? commit.epoch : undefined, ...(atLeast === undefined ? {} : { atLeast }) } }, 200)
    }
    if (this.lifecycle !== undefined) this.report(this.lifecycle)
  }

  override async close(): Promise<void> {
    this.closed = true
    for (const t of this.timeouts) clearTimeout(t)
    this.timeouts.clear()
    const unanswered = [...this.queue, ...this.polled.map((t) => t.request), ...[...this.staged.values()].flat().map((t) => t.request)]
    for (const r of unanswered) {
      r.answer(errorAnswer(503, 'WEIR_INGEST_STOPPING', `the actor serving partition ${r.partition} of stream '${this.stream}' stopped before the request's events were committed: retry${r.idempotencyKey === undefined ? '' : ' with the same Idempotency-Key'}`, {}, { 'retry-after': String(this.settings.retryAfterSeconds) }))
      this.release(r)
    }
    this.queue = []
    this.polled = []
    this.staged.clear()
    await this.server?.detach(this.stream, this.lifecycle?.partition ?? 0, this.endpoint)
  }

  /** The answer to a retry of a request whose key is kept (in the poll: it reads the checkpoint history). */
  private replayAnswer(request: IngestRequest, stored: IdempotencyEntry): IngestAnswer {
    if (stored.fingerprint !== request.fingerprint) {
      return errorAnswer(422, 'WEIR_INGEST_KEY_REUSED', `Idempotency-Key '${request.idempotencyKey}' was used for a request with another payload (kept until ${new Date(stored.expiresAt).toISOString()})`)
    }
    const found = (this.history.get() ?? []).find(([, , position]) => position >= stored.body.positions.to)
    const body: AckBody = { ...stored.body, replayed: true, ...(found === undefined || stored.status !== 200 ? {} : { checkpoint: found[0], epoch: found[1] }) }
    return { status: stored.status, body, headers: { 'idempotent-replayed': 'true' } }
  }

  private acknowledge(taken: Taken, status: number): void {
    this.release(taken.request)
    if (taken.request.answered) return
    this.count('acked')
    this.latencies.push(Date.now() - taken.request.receivedAt)
    if (this.latencies.length > LATENCY_SAMPLES) this.latencies = this.latencies.slice(-LATENCY_SAMPLES / 2)
    taken.request.answer({ status, body: taken.body })
  }

  private release(request: IngestRequest): void {
    this.bytes -= request.bytes
    if (request.idempotencyKey !== undefined && this.inFlightKeys.get(request.idempotencyKey) === request.fingerprint) this.inFlightKeys.delete(request.idempotencyKey)
  }

  private count(name: string, n = 1): void {
    this.figures[name] = (this.figures[name] ?? 0) + n
    if (name.startsWith('rejected.')) this.figures.rejected = (this.figures.rejected ?? 0) + n
  }

  private reportedAt = 0

  private report(ctx: { reportStats(stats: Record<string, number>): void }): void {
    const now = Date.now()
    if (now - this.reportedAt < 250) return
    this.reportedAt = now
    const sorted = [...this.latencies].sort((a, b) => a - b)
    const at = (q: number): number => sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] ?? 0
    ctx.reportStats({ ...this.figures, inFlightBytes: this.bytes, 'ackMs.p50': at(0.5), 'ackMs.p99': at(0.99) })
  }
}

type Settings = Omit<StreamSettings, 'stream' | 'partitions'> & { host: string; port: number; ack: 'committed' | 'received'; ttlMs: number; ackTimeoutMs: number }

function checkOptions(o: HttpIngestSourceOptions): Settings {
  if (o === null || typeof o !== 'object') throw new ConfigError('options', 'HttpIngestSource takes an options object ({ port, ... })')
  const int = (field: string, v: unknown, min: number, max: number, dflt: number): number => {
    if (v === undefined) return dflt
    if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) throw new ConfigError(field, `must be an integer in ${min}..${max}, got ${JSON.stringify(v)}`)
    return v
  }
  if (o.stream !== undefined && (typeof o.stream !== 'string' || !/^[A-Za-z0-9_.-]{1,128}$/.test(o.stream))) throw new ConfigError('stream', `must be 1 to 128 letters, digits, '_', '.' or '-', got ${JSON.stringify(o.stream)}`)
  if (o.host !== undefined && (typeof o.host !== 'string' || o.host.trim() === '')) throw new ConfigError('host', `must be an address to bind, got ${JSON.stringify(o.host)}`)
  const port = int('port', o.port, 1, 65535, Number.NaN)
  if (Number.isNaN(port)) throw new ConfigError('port', 'is required (the port to serve on)')
  if (o.token !== undefined && !isSecretSource(o.token)) throw new ConfigError('token', "must be { env: 'VARIABLE' } or { file: 'path' }: a token is never written in the pipeline")
  if (o.tls !== undefined && (typeof o.tls !== 'object' || typeof o.tls.certFile !== 'string' || typeof o.tls.keyFile !== 'string')) throw new ConfigError('tls', 'must be { certFile, keyFile } (PEM files)')
  if (o.key !== undefined) {
    const k = o.key as Record<string, unknown>
    if (typeof k !== 'object' || k === null || (typeof k.field !== 'string' && typeof k.header !== 'string') || (k.field !== undefined && k.header !== undefined)) throw new ConfigError('key', "must be { field: 'name' } or { header: 'Name' }")
  }
  if (o.timestampField !== undefined && (typeof o.timestampField !== 'string' || o.timestampField === '')) throw new ConfigError('timestampField', 'must be a field name')
  if (o.ack !== undefined && o.ack !== 'committed' && o.ack !== 'received') throw new ConfigError('ack', `must be 'committed' or 'received', got ${JSON.stringify(o.ack)}`)
  if (o.idempotencyKey !== undefined && o.idempotencyKey !== 'optional' && o.idempotencyKey !== 'required') throw new ConfigError('idempotencyKey', `must be 'optional' or 'required', got ${JSON.stringify(o.idempotencyKey)}`)
  if (o.acceptEnd !== undefined && typeof o.acceptEnd !== 'boolean') throw new ConfigError('acceptEnd', 'must be true or false')
  const peers = (o.peers ?? []).map((peer, i) => {
    let url: URL
    try {
      url = new URL(peer)
    } catch {
      throw new ConfigError(`peers[${i}]`, `is not a URL: ${JSON.stringify(peer)}`)
    }
    if ((url.protocol !== 'http:' && url.protocol !== 'https:') || url.pathname !== '/' || url.username !== '' || url.password !== '') throw new ConfigError(`peers[${i}]`, `must be an http(s) base URL without a path or credentials, got ${JSON.stringify(peer)}`)
    return url.origin
  })
  return {
    host: o.host ?? '127.0.0.1',
    port,
    ack: o.ack ?? 'committed',
    idempotencyKey: o.idempotencyKey ?? 'optional',
    ttlMs: int('idempotencyTtlMs', o.idempotencyTtlMs, 1, 30 * 24 * 3600_000, 24 * 3600_000),
    maxBodyBytes: int('maxBodyBytes', o.maxBodyBytes, 1, 1 << 30, 1 << 20),
    maxEventsPerRequest: int('maxEventsPerRequest', o.maxEventsPerRequest, 1, 1_000_000, 10_000),
    maxInFlightBytes: int('maxInFlightBytes', o.maxInFlightBytes, 1, 2 ** 40, 64 << 20),
    ackTimeoutMs: int('ackTimeoutMs', o.ackTimeoutMs, 1, 3600_000, 30_000),
    retryAfterSeconds: int('retryAfterSeconds', o.retryAfterSeconds, 0, 3600, 1),
    key: o.key,
    timestampField: o.timestampField,
    acceptEnd: o.acceptEnd ?? false,
    peers,
  }
}
