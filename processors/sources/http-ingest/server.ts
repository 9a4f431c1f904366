/**
 * The HTTP server behind `HttpIngestSource`: one per address in a process, shared by every
 * actor of every ingest stream bound there (the actors of a stage run in one process in an
 * embedded run, and a worker may hold several). It checks what needs no state (token, body
 * size, content type, the events' shape, the Idempotency-Key header), picks the request's
 * home partition and hands the request to the actor serving it; the actor answers once its
 * checkpoint committed. Requests for partitions this process does not serve are answered
 * with a hint (421 for one that moved away, 503 for one not started here).
 */
import { createHash } from 'node:crypto'
import { readFileSync } from 'node:fs'
import Fastify, { type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify'
import { ConfigError, partitionForKey, requestHasToken, type Logger } from '../../../index.ts'

/** One event of a request, as the actor emits it. */
export interface IngestEvent {
  readonly key: string | null
  readonly value: unknown
  readonly timestamp: number | undefined
}

/** The answer a request gets: status, JSON body, extra headers. */
export interface IngestAnswer {
  readonly status: number
  readonly body: unknown
  readonly headers?: Readonly<Record<string, string>>
}

/** A request the server accepted and handed to an actor. */
export interface IngestRequest {
  readonly stream: string
  readonly partition: number
  readonly events: readonly IngestEvent[]
  readonly idempotencyKey: string | undefined
  /** sha256 of the content type and the body: a key reused with another payload is refused. */
  readonly fingerprint: string
  readonly bytes: number
  readonly receivedAt: number
  /** Answers the request; later calls do nothing. */
  answer(answer: IngestAnswer): void
  readonly answered: boolean
}

/** What the server needs of an actor serving a partition. */
export interface IngestEndpoint {
  /** Bytes of requests taken and not yet answered. */
  readonly inFlightBytes: number
  /** Takes the request, or answers it at once (409/422 for a key in flight, 429 over its in-flight bytes) and returns false. */
  offer(request: IngestRequest): boolean
  /** A rejection before the actor saw the request, counted in its progress figures. */
  countRejection(status: number): void
}

/** How a stream reads events and keys out of a request. */
export interface StreamSettings {
  readonly stream: string
  readonly partitions: number
  readonly maxBodyBytes: number
  readonly maxEventsPerRequest: number
  readonly maxInFlightBytes: number
  readonly key: { field: string } | { header: string } | undefined
  readonly timestampField: string | undefined
  readonly idempotencyKey: 'optional' | 'required'
  readonly retryAfterSeconds: number
  /** `POST /ingest/<stream>/_end` is taken. */
  readonly acceptEnd: boolean
  /** The other servers of the stream (their base URLs): asked which serves a partition not served here, for the 421's Location. */
  readonly peers: readonly string[]
}

/** What every stream bound to one address must agree on. */
export interface ServerSettings {
  readonly host: string
  readonly port: number
  readonly token: string | undefined
  readonly tls: { cert: string; key: string } | undefined
}

interface StreamRoute {
  settings: StreamSettings
  endpoints: Map<number, IngestEndpoint>
  /** Partitions served here once: a request for one of them now gets 421 (it moved). */
  servedBefore: Set<number>
  ended: boolean
}

const IDEMPOTENCY_KEY = /^[\x21-\x7e]{1,255}$/
const JSON_TYPES = new Set(['application/json'])
const NDJSON_TYPES = new Set(['application/x-ndjson', 'application/jsonl', 'application/x-jsonlines'])

/** An error answer: `{ error: { code, message, ... } }`. */
export function errorAnswer(status: number, code: string, message: string, extra: Record<string, unknown> = {}, headers?: Record<string, string>): IngestAnswer {
  return { status, body: { error: { code, message, ...extra } }, headers }
}

class IngestServer {
  readonly routes = new Map<string, StreamRoute>()
  private app: FastifyInstance | undefined
  private listening: Promise<void> | undefined
  private users = 0

  constructor(readonly settings: ServerSettings, private readonly log: Logger) {}

  get address(): string {
    return `${this.settings.tls === undefined ? 'http' : 'https'}://${this.settings.host.includes(':') ? `[${this.settings.host}]` : this.settings.host}:${this.settings.port}`
  }

  async attach(settings: StreamSettings, partition: number, endpoint: IngestEndpoint): Promise<void> {
    let route = this.routes.get(settings.stream)
    if (route === undefined) {
      route = { settings, endpoints: new Map(), servedBefore: new Set(), ended: false }
      this.routes.set(settings.stream, route)
    }
    route.endpoints.set(partition, endpoint)
    route.servedBefore.add(partition)
    this.users++
    this.listening ??= this.listen()
    await this.listening
  }

  /** Returns true when nothing is attached any more (the server was closed). */
  async detach(stream: string, partition: number, endpoint: IngestEndpoint): Promise<boolean> {
    const route = this.routes.get(stream)
    if (route?.endpoints.get(partition) === endpoint) route.endpoints.delete(partition)
    this.users--
    if (this.users > 0) return false
    const app = this.app
    this.app = undefined
    this.listening = undefined
    this.routes.clear()
    await app?.close()
    return true
  }

  isEnded(stream: string): boolean {
    return this.routes.get(stream)?.ended ?? false
  }

  private async listen(): Promise<void> {
    const app = Fastify({ logger: false, ...(this.settings.tls === undefined ? {} : { https: { cert: this.settings.tls.cert, key: this.settings.tls.key } }) })
    app.removeAllContentTypeParsers()
    // Read here, not with parseAs: each stream has its own limit, and a body over it is cut off while it arrives.
    app.addContentTypeParser('*', limitedBody((req) => {
      const stream = (req.params as { stream?: string }).stream ?? ''
      const limit = this.routes.get(stream)?.settings.maxBodyBytes ?? 1024 * 1024
      return { limit, message: `the body is larger than stream '${stream}' takes (${limit} bytes)` }
    }))
    app.setErrorHandler((err: { statusCode?: number; code?: string; message: string }, _req, reply) => {
      const status = err.statusCode ?? 500
      if (status >= 500) this.log.error({ err: err.message }, 'ingest request failed')
      const route = this.routes.get(((_req.params ?? {}) as { stream?: string }).stream ?? '')
      if (route !== undefined) lowest(route.endpoints)?.countRejection(status)
      return send(reply, errorAnswer(status, err.code ?? 'WEIR_INGEST_ERROR', err.message))
    })
    app.setNotFoundHandler((req, reply) => send(reply, errorAnswer(404, 'WEIR_INGEST_NOT_FOUND', `no such endpoint: ${req.method} ${req.url} (POST /ingest/<stream>; streams here: ${[...this.routes.keys()].join(', ')})`)))
    app.post('/ingest/:stream', (req, reply) => this.ingest(req, reply))
    app.get('/ingest/:stream', (req, reply) => this.describe(req, reply))
    app.post('/ingest/:stream/_end', (req, reply) => this.end(req, reply))
    this.app = app
    try {
      await app.listen({ host: this.settings.host, port: this.settings.port })
    } catch (err) {
      this.app = undefined
      this.listening = undefined
      throw new ConfigError('port', `cannot listen on ${this.settings.host}:${this.settings.port}: ${(err as Error).message}`)
    }
    this.log.info({ address: this.address, streams: [...this.routes.keys()] }, 'ingest server listening')
  }

  private authorized(req: FastifyRequest, reply: FastifyReply): boolean {
    if (this.settings.token === undefined || requestHasToken(req.headers, this.settings.token)) return true
    void send(reply, errorAnswer(401, 'WEIR_INGEST_UNAUTHORIZED', 'a token is required: Authorization: Bearer <token>', {}, { 'www-authenticate': 'Bearer' }))
    return false
  }

  private route(req: FastifyRequest, reply: FastifyReply): StreamRoute | undefined {
    const stream = (req.params as { stream: string }).stream
    const route = this.routes.get(stream)
    if (route === undefined) void send(reply, errorAnswer(404, 'WEIR_INGEST_NO_STREAM', `no stream '${stream}' here (streams: ${[...this.routes.keys()].join(', ')})`))
    return route
  }

  private peerViews = new Map<string, { at: number; view: Promise<Map<number, string>> }>()

  /** The peer serving `partition` of the stream, as the peers said within the last second. */
  private async peerServing(route: StreamRoute, partition: number): Promise<string | undefined> {
    if (route.settings.peers.length === 0) return undefined
    const id = route.settings.stream
    let cached = this.peerViews.get(id)
    if (cached === undefined || Date.now() - cached.at > 1000) {
      cached = { at: Date.now(), view: this.askPeers(route) }
      this.peerViews.set(id, cached)
    }
    return (await cached.view).get(partition)
  }

  private async askPeers(route: StreamRoute): Promise<Map<number, string>> {
    const view = new Map<number, string>()
    const headers: Record<string, string> = this.settings.token === undefined ? {} : { authorization: `Bearer ${this.settings.token}` }
    await Promise.all(route.settings.peers.map(async (peer) => {
      try {
        const r = await fetch(`${peer}/ingest/${encodeURIComponent(route.settings.stream)}`, { headers, signal: AbortSignal.timeout(500) })
        if (!r.ok) return
        const body = (await r.json()) as { servedHere?: number[] }
        for (const p of body.servedHere ?? []) view.set(p, peer)
      } catch {
        // A peer that does not answer serves nothing we can send a client to.
      }
    }))
    return view
  }

  /** What a load balancer's readiness check or a client routing by partition needs: which partitions are served here. */
  private async describe(req: FastifyRequest, reply: FastifyReply): Promise<void> {
    if (!this.authorized(req, reply)) return
    const route = this.route(req, reply)
    if (route === undefined) return
    const served = [...route.endpoints.keys()].sort((a, b) => a - b)
    return send(reply, { status: 200, body: { stream: route.settings.stream, partitions: route.settings.partitions, servedHere: served, ended: route.ended } })
  }

  private async end(req: FastifyRequest, reply: FastifyReply): Promise<void> {
    if (!this.authorized(req, reply)) return
    const route = this.route(req, reply)
    if (route === undefined) return
    if (!route.settings.acceptEnd) return send(reply, errorAnswer(404, 'WEIR_INGEST_NOT_FOUND', `stream '${route.settings.stream}' cannot be ended over HTTP (its source's acceptEnd option is off)`))
    route.ended = true
    return send(reply, { status: 200, body: { stream: route.settings.stream, ended: true, partitions: [...route.endpoints.keys()].sort((a, b) => a - b) } })
  }

  private async ingest(req: FastifyRequest, reply: FastifyReply): Promise<void> {
    if (!this.authorized(req, reply)) return
    const route = this.route(req, reply)
    if (route === undefined) return
    const s = route.settings
    const first = lowest(route.endpoints)
    const reject = (answer: IngestAnswer, endpoint = first): Promise<void> => {
      endpoint?.countRejection(answer.status)
      return send(reply, answer)
    }
    if (route.ended) return reject(errorAnswer(503, 'WEIR_INGEST_ENDED', `stream '${s.stream}' was ended (POST /ingest/${s.stream}/_end): it takes no more events`))
    const body = req.body as Buffer | undefined
    if (body === undefined || body.length === 0) return reject(errorAnswer(400, 'WEIR_INGEST_EMPTY', 'the body is empty: send a JSON array or object, or NDJSON lines'))
    const type = (req.headers['content-type'] ?? '').split(';')[0]!.trim().toLowerCase()
    if (!JSON_TYPES.has(type) && !NDJSON_TYPES.has(type)) {
      return reject(errorAnswer(415, 'WEIR_INGEST_MEDIA_TYPE', `Content-Type ${type === '' ? '(none)' : `'${type}'`} is not taken: send application/json (an array of events, or one) or application/x-ndjson (an event per line)`))
    }
    const idempotencyKey = req.headers['idempotency-key']
    if (Array.isArray(idempotencyKey)) return reject(errorAnswer(400, 'WEIR_INGEST_IDEMPOTENCY_KEY', 'one Idempotency-Key header at most'))
    if (idempotencyKey === undefined && s.idempotencyKey === 'required') return reject(errorAnswer(400, 'WEIR_INGEST_IDEMPOTENCY_KEY', `stream '${s.stream}' requires an Idempotency-Key header (a unique string per request, reused on its retries)`))
    if (idempotencyKey !== undefined && !IDEMPOTENCY_KEY.test(idempotencyKey)) return reject(errorAnswer(400, 'WEIR_INGEST_IDEMPOTENCY_KEY', 'the Idempotency-Key must be 1 to 255 visible ASCII characters'))
    const parsed = parseEvents(body, NDJSON_TYPES.has(type), s, req.headers)
    if ('error' in parsed) return reject(errorAnswer(400, 'WEIR_INGEST_BAD_EVENTS', parsed.error, parsed.at === undefined ? {} : { at: parsed.at }))

    const partition = idempotencyKey !== undefined ? partitionForKey(Buffer.from(idempotencyKey), s.partitions) : leastLoaded(route.endpoints)
    const endpoint = partition === undefined ? undefined : route.endpoints.get(partition)
    if (endpoint === undefined) {
      const served = [...route.endpoints.keys()].sort((a, b) => a - b)
      const hint = { partition: partition ?? null, partitions: s.partitions, servedHere: served }
      const peer = partition === undefined ? undefined : await this.peerServing(route, partition)
      if (peer !== undefined) {
        const location = `${peer}/ingest/${encodeURIComponent(s.stream)}`
        return reject(errorAnswer(421, 'WEIR_INGEST_MISDIRECTED', `partition ${partition} of stream '${s.stream}' is served by ${peer}: send the request there`, { ...hint, location }, { location }))
      }
      if (partition !== undefined && route.servedBefore.has(partition)) {
        return reject(errorAnswer(421, 'WEIR_INGEST_MOVED', `partition ${partition} of stream '${s.stream}' moved away from this server${s.peers.length > 0 ? ' and none of its peers serves it now' : ''}: send the request to the server that runs it now`, hint, { 'retry-after': String(s.retryAfterSeconds) }))
      }
      return reject(errorAnswer(503, 'WEIR_INGEST_NOT_SERVED', partition === undefined ? `no partition of stream '${s.stream}' runs here yet` : `partition ${partition} of stream '${s.stream}' does not run here${s.peers.length > 0 ? ' nor at a peer' : ''} (yet)`, hint, { 'retry-after': String(s.retryAfterSeconds) }))
    }
    const answered = new Promise<IngestAnswer>((resolve) => {
      let done = false
      const request: IngestRequest = {
        stream: s.stream,
        partition: partition!,
        events: parsed.events,
        idempotencyKey,
        fingerprint: createHash('sha256').update(type).update('\n').update(body).digest('base64url'),
        bytes: body.length,
        receivedAt: Date.now(),
        answer: (a) => {
          if (done) return
          done = true
          resolve(a)
        },
        get answered() {
          return done
        },
      }
      endpoint.offer(request)
    })
    return send(reply, await answered)
  }
}

type BodyDone = (err: Error | null, body?: Buffer) => void

/**
 * A fastify content-type parser that reads the body into a Buffer and refuses (413,
 * `WEIR_INGEST_TOO_LARGE`) one over the request's limit: at once when its Content-Length says
 * so, else as soon as the bytes that arrived pass it (a chunked body is not read to its end).
 */
export function limitedBody(limitOf: (req: FastifyRequest) => { limit: number; message: string }): (req: FastifyRequest, payload: NodeJS.ReadableStream, done: BodyDone) => void {
  return (req, payload, done) => {
    const { limit, message } = limitOf(req)
    const tooLarge = (): Error => Object.assign(new Error(message), { statusCode: 413, code: 'WEIR_INGEST_TOO_LARGE' })
    if (Number(req.headers['content-length'] ?? 0) > limit) return done(tooLarge(), undefined)
    const chunks: Buffer[] = []
    let size = 0
    let finished = false
    const finish = (err: Error | null, body?: Buffer): void => {
      if (finished) return
      finished = true
      done(err, body)
    }
    payload.on('data', (chunk: Buffer) => {
      size += chunk.length
      if (size > limit) {
        payload.removeAllListeners('data')
        payload.resume()
        return finish(tooLarge())
      }
      chunks.push(chunk)
    })
    payload.on('end', () => finish(null, Buffer.concat(chunks)))
    payload.on('error', (err: Error) => finish(err))
  }
}

function send(reply: FastifyReply, answer: IngestAnswer): Promise<void> {
  if (answer.headers !== undefined) void reply.headers(answer.headers)
  return reply.code(answer.status).type('application/json').send(answer.body) as unknown as Promise<void>
}

function lowest(endpoints: Map<number, IngestEndpoint>): IngestEndpoint | undefined {
  let best: number | undefined
  for (const p of endpoints.keys()) if (best === undefined || p < best) best = p
  return best === undefined ? undefined : endpoints.get(best)
}

function leastLoaded(endpoints: Map<number, IngestEndpoint>): number | undefined {
  let best: number | undefined
  let bytes = Infinity
  for (const [p, e] of endpoints) {
    if (e.inFlightBytes < bytes) {
      best = p
      bytes = e.inFlightBytes
    }
  }
  return best
}

/** The events of a body, keyed and timestamped as the stream says, or why not. */
export function parseEvents(body: Buffer, ndjson: boolean, s: StreamSettings, headers: Record<string, string | string[] | undefined>): { events: IngestEvent[] } | { error: string; at?: number } {
  const values: unknown[] = []
  const text = body.toString('utf8')
  if (ndjson) {
    const lines = text.split('\n')
    for (let i = 0; i < lines.length; i++) {
      const line = lines[i]!.trim()
      if (line === '') continue
      try {
        values.push(JSON.parse(line))
      } catch (err) {
        return { error: `line ${i + 1} is not JSON: ${(err as Error).message}`, at: i + 1 }
      }
    }
  } else {
    let v: unknown
    try {
      v = JSON.parse(text)
    } catch (err) {
      return { error: `the body is not JSON: ${(err as Error).message}` }
    }
    if (Array.isArray(v)) values.push(...(v as unknown[]))
    else values.push(v)
  }
  if (values.length === 0) return { error: 'no events in the body' }
  if (values.length > s.maxEventsPerRequest) return { error: `${values.length} events; stream '${s.stream}' takes at most ${s.maxEventsPerRequest} per request` }
  let headerKey: string | null = null
  if (s.key !== undefined && 'header' in s.key) {
    const h = headers[s.key.header.toLowerCase()]
    if (typeof h !== 'string' || h === '') return { error: `the key header ${s.key.header} is missing` }
    headerKey = h
  }
  const events: IngestEvent[] = []
  for (let i = 0; i < values.length; i++) {
    const value = values[i]
    const at = i + 1
    const object = value !== null && typeof value === 'object' && !Array.isArray(value) ? (value as Record<string, unknown>) : undefined
    let key = headerKey
    if (s.key !== undefined && 'field' in s.key) {
      const k = object?.[s.key.field]
      if (typeof k !== 'string' && typeof k !== 'number') return { error: `event ${at} has no key field '${s.key.field}' (a string or number)`, at }
      key = String(k)
    }
    let timestamp: number | undefined
    if (s.timestampField !== undefined) {
      const t = object?.[s.timestampField]
      timestamp = typeof t === 'number' ? t : typeof t === 'string' ? Date.parse(t) : Number.NaN
      if (!Number.isSafeInteger(timestamp) || timestamp < 0) return { error: `event ${at} has no timestamp field '${s.timestampField}' (ms since the epoch, or an ISO 8601 string)`, at }
    }
    events.push({ key, value, timestamp })
  }
  return { events }
}

const servers = new Map<string, IngestServer>()

/**
 * The server for `settings`' address in this process (started by the first stream attached
 * to it). Streams sharing an address must agree on its token and TLS.
 */
export function serverFor(settings: ServerSettings, log: Logger): { server: IngestServer; attach: IngestServer['attach']; detach(stream: string, partition: number, endpoint: IngestEndpoint): Promise<void> } {
  const id = `${settings.host}:${settings.port}`
  let server = servers.get(id)
  if (server !== undefined && (server.settings.token !== settings.token || server.settings.tls?.cert !== settings.tls?.cert)) {
    throw new ConfigError('port', `${id} already serves ingest streams with another token or TLS certificate: give this stream its own port`)
  }
  if (server === undefined) {
    server = new IngestServer(settings, log)
    servers.set(id, server)
  }
  const s = server
  return {
    server: s,
    attach: (stream, partition, endpoint) => s.attach(stream, partition, endpoint),
    detach: async (stream, partition, endpoint) => {
      if (await s.detach(stream, partition, endpoint)) {
        if (servers.get(id) === s) servers.delete(id)
      }
    },
  }
}

/** Reads a TLS file's content (relative to the work dir), naming the field when it cannot. */
export function readTlsFile(field: string, path: string, workDir: string): string {
  try {
    return readFileSync(path.startsWith('/') ? path : `${workDir}/${path}`, 'utf8')
  } catch (err) {
    throw new ConfigError(field, `cannot read ${path}: ${(err as Error).message}`)
  }
}
