/**
 * The monitor's HTTP face (fastify 5): the JSON API, Prometheus metrics and the static
 * dashboard. Read-only by construction: GET only, no request bodies, short URLs; with a
 * token every path needs it (header or the cookie the dashboard gets from `/?token=`).
 *
 * @example
 * const app = createServer({ status, actors, history, metrics, token, log })
 * await app.listen({ port: 9464, host: '127.0.0.1' })
 */
import { readFileSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import Fastify, { type FastifyInstance, type FastifyReply } from 'fastify'
import type { Logger } from 'pino'
import { z } from 'zod'
import { requestHasToken, sameToken } from '../runtime/http-token.ts'
import type { HistoryPoint } from './history.ts'
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
  metrics: MonitorMetrics
  /** When set, every request needs it. */
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
    // The dashboard's one-time link: trade the token for a cookie and drop it from the address bar.
    const path = url.split('?')[0]
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
  app.get('/metrics', async (_req, reply) => reply.type(deps.metrics.contentType).send(await deps.metrics.text()))
  return app
}
