/**
 * The views' HTTP face, served by every worker (`weir worker --views-port`) and by `weir
 * run`: any of them answers any key, routing it over the control bus to the actor that
 * holds the key's partition (ViewClient). GET only, no bodies, bounded URLs, pages and
 * replies; loopback by default, and off loopback only with a bearer token.
 *
 *   GET /views/<pipeline>                   the views: name, stage, state, partitions, routing
 *   GET /views/<pipeline>/<view>/<key>      one key: 200 with its value, 404 when absent
 *   GET /views/<pipeline>/<view>?prefix=P   a page of keys starting with P (or gte=A&lt=B, or all),
 *                                           `limit` (≤ 1000) and `after` (the previous page's next)
 *   query options: atLeast=epoch:N | <input>:<partition>:<offset>[,…]  wait until included
 *                  stale=ok   a standby may answer while the actor moves
 *                  timeoutMs  overall budget (≤ 60 000; default 15 000)
 *
 * Every answer says which checkpoint (epoch) and input positions it reflects.
 *
 * @example
 * const app = createViewServer({ pipelines: [{ pipeline, views: new ViewClient(bus, pipeline, { cluster }) }], log })
 * await app.listen({ host: '127.0.0.1', port: 9470 })
 * // curl 127.0.0.1:9470/views/wordcount/counts/ant
 */
import Fastify, { type FastifyInstance, type FastifyReply } from 'fastify'
import type { Logger } from 'pino'
import { z } from 'zod'
import type { Pipeline } from '../api/pipeline.ts'
import { requestHasToken } from '../http-token.ts'
import { MAX_PAGE } from './view-protocol.ts'
import { parseAtLeast, ViewQueryError, type ReadOptions, type ViewClient } from './view-client.ts'

export interface ViewServerDeps {
  pipelines: Array<{ pipeline: Pipeline; views: ViewClient }>
  /** When set, every request needs `Authorization: Bearer <token>`. */
  token?: string
  log: Logger
}

const MAX_URL = 8192
const MAX_TIMEOUT_MS = 60_000

const readQuery = z
  .object({
    atLeast: z.string().min(1).max(2048).optional(),
    stale: z.enum(['ok']).optional(),
    timeoutMs: z.coerce.number().int().min(1).max(MAX_TIMEOUT_MS).optional(),
  })
  .strict()

const scanQuery = readQuery
  .extend({
    prefix: z.string().max(4096).optional(),
    gte: z.string().max(4096).optional(),
    lt: z.string().max(4096).optional(),
    after: z.string().max(4096).optional(),
    limit: z.coerce.number().int().min(1).max(MAX_PAGE).optional(),
  })
  .strict()

function sendError(reply: FastifyReply, status: number, code: string, message: string): FastifyReply {
  return reply.code(status).type('application/json; charset=utf-8').send(JSON.stringify({ error: { code, message } }))
}

/** JSON for state values: BigInts as strings, Buffers as base64 (`{ "$base64": … }`), Dates as ISO strings. */
export function toJson(body: unknown): string {
  return JSON.stringify(body, function replace(this: unknown, key, value: unknown) {
    const raw = (this as Record<string, unknown>)[key]
    if (typeof raw === 'bigint') return raw.toString()
    if (Buffer.isBuffer(raw) || raw instanceof Uint8Array) return { $base64: Buffer.from(raw).toString('base64') }
    return value
  })
}

export function createViewServer(deps: ViewServerDeps): FastifyInstance {
  const app = Fastify({ logger: false, bodyLimit: 1024, routerOptions: { maxParamLength: 4096 }, return503OnClosing: true, forceCloseConnections: true })
  const byName = new Map(deps.pipelines.map((p) => [p.pipeline.name, p]))
  const token = deps.token === '' ? undefined : deps.token

  app.addHook('onRequest', async (req, reply) => {
    const url = req.raw.url ?? ''
    if (url.length > MAX_URL) return sendError(reply, 414, 'WEIR_VIEW_URL_TOO_LONG', `URLs are limited to ${MAX_URL} characters`)
    if (req.method !== 'GET' && req.method !== 'HEAD') return sendError(reply.header('allow', 'GET, HEAD'), 405, 'WEIR_VIEW_READ_ONLY', 'views are read-only: GET only')
    const length = Number(req.headers['content-length'] ?? 0)
    if (length > 0 || req.headers['transfer-encoding'] !== undefined) return sendError(reply, 413, 'WEIR_VIEW_NO_BODY', 'requests must not have a body')
    if (token !== undefined && !requestHasToken(req.headers, token)) {
      reply.header('www-authenticate', 'Bearer realm="weir-views"')
      return sendError(reply, 401, 'WEIR_VIEW_UNAUTHORIZED', 'a token is required: Authorization: Bearer <token>')
    }
    return undefined
  })
  app.addHook('onSend', async (_req, reply) => {
    reply.header('x-content-type-options', 'nosniff')
    reply.header('cache-control', 'no-store')
  })
  app.setNotFoundHandler((req, reply) => sendError(reply, 404, 'WEIR_VIEW_NOT_FOUND', `no such path: ${req.url.split('?')[0]} (GET /views/<pipeline>[/<view>[/<key>]])`))
  app.setErrorHandler((err: { statusCode?: number; message: string }, _req, reply) => {
    const status = err.statusCode !== undefined && err.statusCode >= 400 && err.statusCode < 500 ? err.statusCode : 500
    if (status === 500) deps.log.error({ err: err.message }, 'view request failed')
    return sendError(reply, status, status === 500 ? 'WEIR_VIEW_FAILED' : 'WEIR_VIEW_BAD_REQUEST', err.message)
  })

  const pipelineOf = (name: string): { pipeline: Pipeline; views: ViewClient } => {
    const found = byName.get(name)
    if (found === undefined) throw new ViewQueryError('WEIR_VIEW_UNKNOWN', `no pipeline '${name}' here (${[...byName.keys()].join(', ') || 'none'})`, 404, { pipeline: name })
    return found
  }
  const readOptions = (pipeline: Pipeline, view: string, q: z.infer<typeof readQuery>): ReadOptions => {
    const o: ReadOptions = {}
    if (q.atLeast !== undefined) o.atLeast = parseAtLeast(pipeline, view, q.atLeast)
    if (q.stale === 'ok') o.stale = true
    if (q.timeoutMs !== undefined) o.timeoutMs = q.timeoutMs
    return o
  }
  const answer = async (reply: FastifyReply, run: () => Promise<{ status?: number; body: unknown }>): Promise<FastifyReply> => {
    try {
      const { status, body } = await run()
      return reply.code(status ?? 200).type('application/json; charset=utf-8').send(toJson(body))
    } catch (err) {
      if (err instanceof ViewQueryError) {
        if (err.status === 503) reply.header('retry-after', '1')
        return sendError(reply, err.status, err.code, err.message)
      }
      throw err
    }
  }
  const badQuery = (reply: FastifyReply, error: z.ZodError, usage: string): FastifyReply => {
    const issue = error.issues[0]!
    const field = issue.path.join('.') || (issue.code === 'unrecognized_keys' ? issue.keys.join(', ') : 'query')
    return sendError(reply, 400, 'WEIR_VIEW_BAD_REQUEST', `${field}: ${issue.message} (${usage})`)
  }

  app.get<{ Params: { pipeline: string } }>('/views/:pipeline', async (req, reply) =>
    answer(reply, async () => {
      const { pipeline } = pipelineOf(req.params.pipeline)
      return {
        body: {
          pipeline: pipeline.name,
          views: pipeline.views.map((v) => {
            const stage = pipeline.stage(v.stage)!
            return { name: v.name, stage: v.stage, state: v.state, partitions: stage.parallelism, keyed: pipeline.isKeyPartitioned(stage), projected: v.project !== undefined }
          }),
        },
      }
    }))

  app.get<{ Params: { pipeline: string; view: string }; Querystring: Record<string, string> }>('/views/:pipeline/:view', async (req, reply) => {
    const q = scanQuery.safeParse(req.query)
    if (!q.success) return badQuery(reply, q.error, 'expected prefix=P or gte=A&lt=B, limit, after, atLeast, stale=ok, timeoutMs')
    if (q.data.prefix !== undefined && (q.data.gte !== undefined || q.data.lt !== undefined)) return sendError(reply, 400, 'WEIR_VIEW_BAD_REQUEST', 'prefix: give either prefix or a gte/lt range, not both')
    return answer(reply, async () => {
      const { pipeline, views } = pipelineOf(req.params.pipeline)
      const { prefix, gte, lt, after, limit } = q.data
      return { body: { pipeline: pipeline.name, ...(await views.scan(req.params.view, { prefix, gte, lt, after, limit }, readOptions(pipeline, req.params.view, q.data))) } }
    })
  })

  app.get<{ Params: { pipeline: string; view: string; key: string }; Querystring: Record<string, string> }>('/views/:pipeline/:view/:key', async (req, reply) => {
    const q = readQuery.safeParse(req.query)
    if (!q.success) return badQuery(reply, q.error, 'expected atLeast, stale=ok, timeoutMs')
    return answer(reply, async () => {
      const { pipeline, views } = pipelineOf(req.params.pipeline)
      const found = await views.get(req.params.view, req.params.key, readOptions(pipeline, req.params.view, q.data))
      return { status: found.found ? 200 : 404, body: { pipeline: pipeline.name, ...found } }
    })
  })
  return app
}
