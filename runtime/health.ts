/**
 * Liveness and readiness probes of a weir process (Kubernetes `livenessProbe` and
 * `readinessProbe`): `GET /livez` answers whether restarting the process could help (200
 * unless it failed for good), `GET /readyz` whether it does its share now (200, else 503
 * with the reason). Probes carry no token (the kubelet sends none), so they answer with a
 * status and a short reason only, never figures of the data. Served beside /metrics
 * (`serveMetrics`), inside the monitor, or alone (`serveHealth`, `weir coordinator
 * --health-port`). docs/operations.md, "Health probes", says what each process means by ready.
 *
 * @example
 * const health = await serveHealth({ live: () => ({ ok: true }), ready: () => ({ ok: lease.isLeader, reason: 'standing by' }) }, { port: 9466 })
 * // curl -i http://127.0.0.1:9466/readyz
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import { ConfigError } from './errors.ts'

/** What a probe found. `reason` says why not (and may say what is fine); `details` lists what holds it back. */
export interface ProbeResult {
  ok: boolean
  reason?: string
  /** Which parts are not ready (e.g. actors by stage and partition), at most MAX_DETAILS of them. */
  details?: Array<Record<string, string | number>>
}

/** The two questions an orchestrator asks; an answer may take I/O (a worker measures its lag). */
export interface HealthProbes {
  live(): ProbeResult | Promise<ProbeResult>
  ready(): ProbeResult | Promise<ProbeResult>
}

/** The probe paths, as the Helm chart and Kubernetes' own components name them. */
export const PROBE_PATHS: Readonly<Record<string, keyof HealthProbes>> = { '/livez': 'live', '/readyz': 'ready' }

/** A probe body stays small whatever the process holds: the first few culprits make the point. */
export const MAX_DETAILS = 20
/** A probe that takes longer answers 503: the kubelet's default timeout is 1 s. */
const PROBE_TIMEOUT_MS = 900

/** The probe's verb for its body's `status`. */
const STATUS = { live: ['live', 'failed'], ready: ['ready', 'not ready'] } as const

/**
 * Answers `req` when it asks for /livez or /readyz (GET or HEAD) and returns true; false for
 * any other path, which the caller answers. A probe that throws or hangs answers 503.
 */
export function respondToProbe(probes: HealthProbes, req: IncomingMessage, res: ServerResponse): boolean {
  const kind = PROBE_PATHS[(req.url ?? '').split('?')[0]!]
  if (kind === undefined || (req.method !== 'GET' && req.method !== 'HEAD')) return false
  void runProbe(probes, kind).then((result) => {
    const body = JSON.stringify(probeBody(kind, result))
    res.writeHead(result.ok ? 200 : 503, { 'content-type': 'application/json; charset=utf-8', 'cache-control': 'no-store' }).end(req.method === 'HEAD' ? undefined : `${body}\n`)
  })
  return true
}

/** Runs one probe, bounded in time; an error is a 503 naming it, not a 500. */
export async function runProbe(probes: HealthProbes, kind: keyof HealthProbes): Promise<ProbeResult> {
  let timer: NodeJS.Timeout | undefined
  try {
    return await Promise.race([
      Promise.resolve().then(() => probes[kind]()),
      new Promise<ProbeResult>((resolve) => {
        timer = setTimeout(() => resolve({ ok: false, reason: `the ${kind === 'live' ? 'liveness' : 'readiness'} check did not finish within ${PROBE_TIMEOUT_MS} ms` }), PROBE_TIMEOUT_MS)
      }),
    ])
  } catch (err) {
    return { ok: false, reason: `the check failed: ${(err as Error).message}` }
  } finally {
    clearTimeout(timer)
  }
}

/** The JSON a probe answers: `{ status, reason?, details? }`. */
export function probeBody(kind: keyof HealthProbes, result: ProbeResult): { status: string; reason?: string; details?: ProbeResult['details'] } {
  const body: { status: string; reason?: string; details?: ProbeResult['details'] } = { status: STATUS[kind][result.ok ? 0 : 1] }
  if (result.reason !== undefined) body.reason = result.reason
  if (result.details !== undefined && result.details.length > 0) body.details = result.details.slice(0, MAX_DETAILS)
  return body
}

export interface HealthServer {
  /** `http://host:port` (append /livez or /readyz). */
  readonly url: string
  close(): Promise<void>
}

export interface HealthServerOptions {
  port: number
  /** Default 127.0.0.1. Any address is allowed without a token: probes say no more than a status and a reason. */
  host?: string
  /** The option that set the port, for a refusal (default --health-port). */
  portField?: string
}

/**
 * Serves only /livez and /readyz on host:port: 404 for any other path, 413 for a request
 * with a body.
 *
 * @example
 * const server = await serveHealth(probes, { port: 9466, host: '0.0.0.0' })
 * await server.close()
 */
export async function serveHealth(probes: HealthProbes, options: HealthServerOptions): Promise<HealthServer> {
  const host = options.host ?? '127.0.0.1'
  if (!Number.isInteger(options.port) || options.port < 0 || options.port > 65535) throw new ConfigError(options.portField ?? '--health-port', `expected a port in 0..65535, got ${options.port}`)
  if (host.trim() === '') throw new ConfigError('--health-host', 'must not be empty')
  const server: Server = createServer((req, res) => {
    if (refuseBody(req, res)) return
    if (respondToProbe(probes, req, res)) return
    res.writeHead(404, { 'content-type': 'text/plain' }).end('not found: GET /livez or /readyz\n')
  })
  return listen(server, options.port, host)
}

/** Probes and metrics take no body: one is refused (413) and the connection dropped. */
export function refuseBody(req: IncomingMessage, res: ServerResponse): boolean {
  if (req.headers['content-length'] === undefined || req.headers['content-length'] === '0') {
    if (req.headers['transfer-encoding'] === undefined) return false
  }
  res.writeHead(413).end()
  req.destroy()
  return true
}

async function listen(server: Server, port: number, host: string): Promise<HealthServer> {
  server.maxHeadersCount = 50
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(port, host, () => resolve())
  })
  const address = server.address() as AddressInfo
  const shown = host.includes(':') ? `[${host}]` : host
  return {
    url: `http://${shown}:${address.port}`,
    close: () => new Promise<void>((resolve) => {
      server.close(() => resolve())
      // Probes and scrapes are short: a kubelet's keep-alive connection must not hold the close.
      server.closeIdleConnections()
    }),
  }
}
