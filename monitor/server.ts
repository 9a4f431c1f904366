/**
 * The monitor's HTTP face (fastify 5): the JSON API, Prometheus metrics, the static
 * dashboard and the /livez and /readyz probes. Read-only by construction: GET only, no
 * request bodies, short URLs; with a token every path but the probes needs it (header or
 * the cookie the dashboard gets from `/?token=`).
 * `/api/views`, `/api/views/lookup` and `/api/sample` ask a pipeline's workers over the bus
 * (inspect.ts): bounded in size and time, failing with a JSON error when none answers.
 *
 * @example
 * const app = createServer({ status, actors, history, inspect, metrics, token, log })
 * await app.listen({ port: 9464, host: '127.0.0.1' })
 */
import { readFileSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import Fastify, { type FastifyInstance, type FastifyReply } from 'fastify'
import type { Logger } from 'pino'
import { z } from 'zod'
import { PROBE_PATHS, probeBody, runProbe, type HealthProbes } from '../runtime/health.ts'
import { requestHasToken, sameToken } from '../runtime/http-token.ts'
import { InspectError, MAX_SAMPLE, MAX_SCAN, stageNamePattern, type InspectRequest } from '../runtime/views/inspect-protocol.ts'
import type { HistoryPoint } from './history.ts'
import type { InspectAnswer, InspectTarget } from './inspect.ts'
import type { MonitorMetrics } from './metrics.ts'
import type { ActorRow, MonitorStatus } from './status.ts'

export interface HistoryQuery {
  cluster?: string
  pipeline: string
  output: string
}

export interface HistoryAnswer {
  cluster: string
  pipeline: string
  output: string
  slo: { timelinessMs: number } | null
  points: HistoryPoint[]
}

export interface ServerDeps {
  status(): MonitorStatus
  actors(): { at: number; actors: ActorRow[] }
  /** A string says why the query matches no single output (404). */
  history(query: HistoryQuery): HistoryAnswer | string
  /** Asks a pipeline's workers (inspect.ts); rejects with an InspectError carrying the HTTP status. */
  inspect(target: InspectTarget, request: InspectRequest): Promise<InspectAnswer>
  metrics: MonitorMetrics
  /** /livez and /readyz (runtime/health.ts): answered without the token, the kubelet carries none. */
  probes?: HealthProbes
  /** When set, every request but the probes needs it. */
  token?: string
  log: Logger
}

/** The cookie the dashboard carries after `/?token=…`: HttpOnly, so page scripts never see the token. */
export const TOKEN_COOKIE = 'weir_monitor_token'
const MAX_URL = 2048
const BODY_LIMIT = 1024

const DASHBOARD_DIR = join(dirname(fileURLToPath(import.meta.url)), 'dashboard')
const STATIC: Record<string, { file: string; type: string }> = {
  '/': { file: 'index.html', type: 'text/html; charset=utf-8' },
  '/index.html': { file: 'index.html', type: 'text/html; charset=utf-8' },
  '/app.js': { file: 'app.js', type: 'text/javascript; charset=utf-8' },
  '/dom.js': { file: 'dom.js', type: 'text/javascript; charset=utf-8' },
  '/inspect.js': { file: 'inspect.js', type: 'text/javascript; charset=utf-8' },
  '/style.css': { file: 'style.css', type: 'text/css; charset=utf-8' },
}
// The page runs only its own script and talks only to this server.
const CSP = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

const historyQuery = z
  .object({
    cluster: z.string().min(1).max(64).optional(),
    pipeline: z.string().min(1).max(64),
    output: z.string().min(1).max(129),
    token: z.string().optional(),
  })
  .strict()

/** Cluster, pipeline and view names: subject tokens (checkClusterName's rule). */
const name = z.string().regex(/^[A-Za-z0-9_-]{1,64}$/, 'a name is 1-64 of A-Z a-z 0-9 _ -')
const target = { cluster: name.optional(), pipeline: name, token: z.string().optional() }
/** A count in a query string, from 1 to `max`. */
const count = (max: number): z.ZodType<number, z.ZodTypeDef, string> =>
  z.string().regex(/^\d{1,6}$/, 'a whole number').transform(Number).pipe(z.number().int().min(1).max(max))
const viewsQuery = z.object(target).strict()
const lookupQuery = z
  .object({ ...target, view: name, key: z.string().max(4096).optional(), prefix: z.string().max(4096).optional(), after: z.string().max(4096).optional(), limit: count(MAX_SCAN).optional() })
  .strict()
  .superRefine((q, ctx) => {
    if ((q.key === undefined) === (q.prefix === undefined)) ctx.addIssue({ code: z.ZodIssueCode.custom, path: ['key'], message: 'give either key= or prefix=' })
    if (q.key !== undefined && (q.after !== undefined || q.limit !== undefined)) ctx.addIssue({ code: z.ZodIssueCode.custom, path: ['after'], message: 'after= and limit= go with prefix=, not key=' })
  })
const sampleQuery = z.object({ ...target, stage: z.string().regex(stageNamePattern, 'a stage name (a side output: stage.side)'), n: count(MAX_SAMPLE).optional() }).strict()
const DEFAULT_SAMPLE = 20

function badQuery(reply: FastifyReply, error: z.ZodError, expected: string): FastifyReply {
  const issue = error.issues[0]!
  return sendError(reply, 400, 'WEIR_MONITOR_BAD_REQUEST', `${issue.path.join('.') || 'query'}: ${issue.message} (expected ${expected})`)
}

function sendError(reply: FastifyReply, status: number, code: string, message: string): FastifyReply {
  return reply.code(status).type('application/json; charset=utf-8').send({ error: { code, message } })
}

export function createServer(deps: ServerDeps): FastifyInstance {
  const app = Fastify({ logger: false, bodyLimit: BODY_LIMIT, routerOptions: { maxParamLength: 128 }, return503OnClosing: true, forceCloseConnections: true })
  const files = new Map(Object.entries(STATIC).map(([path, f]) => [path, { body: readFileSync(join(DASHBOARD_DIR, f.file)), type: f.type }]))

  app.addHook('onRequest', async (req, reply) => {
    const url = req.raw.url ?? ''
    if (url.length > MAX_URL) return sendError(reply, 414, 'WEIR_MONITOR_URL_TOO_LONG', `URLs are limited to ${MAX_URL} characters`)
    if (req.method !== 'GET' && req.method !== 'HEAD') return sendError(reply.header('allow', 'GET, HEAD'), 405, 'WEIR_MONITOR_READ_ONLY', 'the monitor is read-only: GET only')
    const length = Number(req.headers['content-length'] ?? 0)
    if (length > 0 || req.headers['transfer-encoding'] !== undefined) return sendError(reply, 400, 'WEIR_MONITOR_NO_BODY', 'requests must not have a body')
    if (deps.token === undefined) return undefined
    if (requestHasToken(req.headers, deps.token, TOKEN_COOKIE)) return undefined
    const path = url.split('?')[0]!
    if (deps.probes !== undefined && PROBE_PATHS[path] !== undefined) return undefined
    // The dashboard's one-time link: trade the token for a cookie and drop it from the address bar.
    const query = new URLSearchParams(url.includes('?') ? url.slice(url.indexOf('?') + 1) : '')
    if ((path === '/' || path === '/index.html') && sameToken(query.get('token') ?? undefined, deps.token)) {
      return reply
        .code(303)
        .header('set-cookie', `${TOKEN_COOKIE}=${encodeURIComponent(deps.token)}; HttpOnly; SameSite=Strict; Path=/`)
        .header('location', '/')
        .header('cache-control', 'no-store')
        .send()
    }
    reply.header('www-authenticate', 'Bearer realm="weir-monitor"')
    return sendError(reply, 401, 'WEIR_MONITOR_UNAUTHORIZED', 'a token is required: Authorization: Bearer <token> (or open /?token=<token> once in a browser)')
  })

  app.addHook('onSend', async (_req, reply) => {
    reply.header('x-content-type-options', 'nosniff')
    reply.header('referrer-policy', 'no-referrer')
    if (reply.getHeader('cache-control') === undefined) reply.header('cache-control', 'no-store')
  })

  app.setNotFoundHandler((req, reply) => sendError(reply, 404, 'WEIR_MONITOR_NOT_FOUND', `no such path: ${req.url.split('?')[0]}`))
  app.setErrorHandler((err: { statusCode?: number; message: string }, _req, reply) => {
    const status = err.statusCode !== undefined && err.statusCode >= 400 && err.statusCode < 500 ? err.statusCode : 500
    if (status === 500) deps.log.error({ err: err.message }, 'monitor request failed')
    return sendError(reply, status, status === 500 ? 'WEIR_MONITOR_FAILED' : 'WEIR_MONITOR_BAD_REQUEST', err.message)
  })

  for (const [path, f] of files) {
    app.get(path, async (_req, reply) => reply.type(f.type).header('content-security-policy', CSP).send(f.body))
  }
  app.get('/api/status', async () => deps.status())
  app.get('/api/actors', async () => deps.actors())
  app.get('/api/history', async (req, reply) => {
    const q = historyQuery.safeParse(req.query)
    if (!q.success) {
      const issue = q.error.issues[0]!
      return sendError(reply, 400, 'WEIR_MONITOR_BAD_REQUEST', `${issue.path.join('.') || 'query'}: ${issue.message} (expected ?pipeline=P&output=O[&cluster=C])`)
    }
    const answer = deps.history({ cluster: q.data.cluster, pipeline: q.data.pipeline, output: q.data.output })
    if (typeof answer === 'string') return sendError(reply, 404, 'WEIR_MONITOR_NOT_FOUND', answer)
    return answer
  })
  const ask = async (reply: FastifyReply, t: InspectTarget, request: InspectRequest): Promise<unknown> => {
    try {
      return await deps.inspect(t, request)
    } catch (err) {
      if (!(err instanceof InspectError)) throw err
      if (err.status === 503) reply.header('retry-after', '1')
      return sendError(reply, err.status, err.code, err.message)
    }
  }
  const targetOf = (q: { cluster?: string; pipeline: string }): InspectTarget => (q.cluster === undefined ? { pipeline: q.pipeline } : { cluster: q.cluster, pipeline: q.pipeline })
  app.get('/api/views', async (req, reply) => {
    const q = viewsQuery.safeParse(req.query)
    if (!q.success) return badQuery(reply, q.error, '?pipeline=P[&cluster=C]')
    return ask(reply, targetOf(q.data), { v: 1, kind: 'views' })
  })
  app.get('/api/views/lookup', async (req, reply) => {
    const q = lookupQuery.safeParse(req.query)
    if (!q.success) return badQuery(reply, q.error, '?pipeline=P&view=V&key=K, or &prefix=X[&limit=N][&after=K], [&cluster=C]')
    const { view, key, prefix, after, limit } = q.data
    const request: InspectRequest = key !== undefined ? { v: 1, kind: 'lookup', view, key } : { v: 1, kind: 'lookup', view, prefix, ...(after === undefined ? {} : { after }), ...(limit === undefined ? {} : { limit }) }
    return ask(reply, targetOf(q.data), request)
  })
  app.get('/api/sample', async (req, reply) => {
    const q = sampleQuery.safeParse(req.query)
    if (!q.success) return badQuery(reply, q.error, `?pipeline=P&stage=S[&n=1..${MAX_SAMPLE}][&cluster=C]`)
    return ask(reply, targetOf(q.data), { v: 1, kind: 'sample', stage: q.data.stage, n: q.data.n ?? DEFAULT_SAMPLE })
  })
  app.get('/metrics', async (_req, reply) => reply.type(deps.metrics.contentType).send(await deps.metrics.text()))
  const probes = deps.probes
  if (probes !== undefined) {
    for (const [path, kind] of Object.entries(PROBE_PATHS)) {
      app.get(path, async (_req, reply) => {
        const result = await runProbe(probes, kind)
        return reply.code(result.ok ? 200 : 503).type('application/json; charset=utf-8').send(probeBody(kind, result))
      })
    }
  }
  return app
}
