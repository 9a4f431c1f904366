/**
 * A worker's Prometheus metrics (prom-client): per-actor figures read from the actors'
 * stats when scraped, so the hot path never touches a metric object, plus the Node.js
 * process metrics. Served by `serveMetrics` (weir run|worker --metrics-port, with the
 * worker's /livez and /readyz) or merged into the monitor's /metrics (weir run --monitor).
 *
 * @example
 * const metrics = workerMetrics(pipeline, () => worker.actorList)
 * const server = await serveMetrics(metrics, { port: 9465, host: '0.0.0.0', token, probes })
 */
import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { collectDefaultMetrics, Counter, Gauge, Registry, type Metric } from 'prom-client'
import type { Actor, ActorStats } from './actor/actor.ts'
import { ConfigError } from './errors.ts'
import { refuseBody, respondToProbe, type HealthProbes } from './health.ts'
import { checkPublicBinding, requestHasToken } from './http-token.ts'
import type { Pipeline } from './api/pipeline.ts'

type Labels = { pipeline: string; stage: string; partition: string }

/** Builds the registry of a worker running `pipeline`; `actors` lists the actors it runs now. */
export function workerMetrics(pipeline: Pipeline, actors: () => Actor[], options: { processMetrics?: boolean } = {}): Registry {
  const registry = new Registry()
  if (options.processMetrics !== false) collectProcessMetrics(registry, 'weir_worker_')
  const labelNames = ['pipeline', 'stage', 'partition'] as const
  const labels = (a: Actor): Labels => ({ pipeline: pipeline.name, stage: a.stage.name, partition: String(a.partition) })

  const counter = (name: string, help: string, read: (s: ActorStats) => number): void => {
    new Counter({
      name, help, labelNames, registers: [registry],
      collect() {
        // Totals live in the actors; a restarted actor starts from 0, as a restarted process would.
        this.reset()
        for (const a of actors()) this.inc(labels(a), read(a.stats))
      },
    })
  }
  const gauge = (name: string, help: string, read: (s: ActorStats, now: number) => number | undefined): void => {
    new Gauge({
      name, help, labelNames, registers: [registry],
      collect() {
        this.reset()
        const now = Date.now()
        for (const a of actors()) {
          const v = read(a.stats, now)
          if (v !== undefined && Number.isFinite(v)) this.set(labels(a), v)
        }
      },
    })
  }

  counter('weir_actor_records_in_total', 'Records processed by the actor.', (s) => s.recordsIn)
  counter('weir_actor_records_out_total', 'Records the actor emitted.', (s) => s.recordsOut)
  counter('weir_actor_errors_total', 'Failed attempts to process a record.', (s) => s.errors)
  counter('weir_actor_dead_lettered_total', 'Records sent to the dead-letter topic.', (s) => s.deadLettered)
  counter('weir_actor_late_total', 'Records that arrived at or below the watermark.', (s) => s.late)
  counter('weir_actor_checkpoints_total', 'Checkpoints committed.', (s) => s.checkpoints)
  gauge('weir_actor_lag_records', 'Unprocessed input records (end offsets minus positions).', (s) => s.lag)
  gauge('weir_actor_watermark_seconds', 'Event-time watermark, seconds since the epoch.', (s) => s.watermark / 1000)
  gauge('weir_actor_watermark_lag_seconds', 'Wall clock minus watermark.', (s, now) => (now - s.watermark) / 1000)
  gauge('weir_actor_last_epoch', 'Newest committed checkpoint epoch.', (s) => s.lastEpoch)
  gauge('weir_actor_checkpoint_age_seconds', 'Time since the last committed checkpoint.', (s, now) => (s.lastCommitAt === undefined ? undefined : (now - s.lastCommitAt) / 1000))
  gauge('weir_actor_end_to_end_seconds', 'At the last commit: commit time minus the ingest horizon it carried.', (s) => (s.endToEndMs === undefined ? undefined : s.endToEndMs / 1000))
  gauge('weir_actor_commit_seconds', 'Duration of the last pipe commit.', (s) => (s.commitMs.length === 0 ? undefined : s.commitMs[s.commitMs.length - 1]! / 1000))
  return registry
}

/**
 * Registers prom-client's default Node.js process metrics, less the gauges it names
 * `*_total` (nodejs_active_handles_total, nodejs_active_requests_total,
 * nodejs_active_resources_total): Prometheus keeps that suffix for counters, and
 * `promtool check metrics` rejects the exposition over them. Nothing is lost: each is the
 * sum over `type` of the gauge of the same name without the suffix, e.g.
 * `sum without (type) (nodejs_active_handles)`.
 *
 * @example
 * const registry = new Registry()
 * collectProcessMetrics(registry, 'weir_worker_')
 */
export function collectProcessMetrics(registry: Registry, prefix = ''): void {
  for (const metric of processMetrics(prefix)) registry.registerMetric(metric)
}

/**
 * The process metrics are made once per process and prefix, and shared by every registry:
 * prom-client's collectors (a GC observer, an event-loop monitor) live as long as the
 * process, so making them per run kept every run's worker in memory (~3 MB per embedded
 * run in a test process that started a thousand).
 */
const processMetricsByPrefix = new Map<string, Metric[]>()

function processMetrics(prefix: string): Metric[] {
  let metrics = processMetricsByPrefix.get(prefix)
  if (metrics === undefined) {
    const defaults = new Registry()
    collectDefaultMetrics({ register: defaults, prefix })
    // The typings say MetricObject; at runtime these are the metric instances.
    metrics = defaults.getMetricsAsArray().filter((m) => !(m.name.endsWith('_total') && !((m as unknown) instanceof Counter))).map((m) => m as unknown as Metric)
    processMetricsByPrefix.set(prefix, metrics)
  }
  return metrics
}

export interface MetricsServer {
  readonly url: string
  close(): Promise<void>
}

export interface MetricsServerOptions {
  port: number
  /** Default 127.0.0.1; an address other machines can reach needs `token`. */
  host?: string
  /** When set, every request but the probes needs `Authorization: Bearer <token>` (Prometheus: `authorization.credentials_file`). */
  token?: string
  /** Answers GET /livez and /readyz (runtime/health.ts) without a token: the kubelet carries none. */
  probes?: HealthProbes
}

/**
 * Refuses (ConfigError naming --metrics-host) an address other machines can reach without
 * a token: the metrics name pipelines, stages and hosts, and nothing else stands in front.
 */
export function checkMetricsBinding(host: string, token: string | undefined): void {
  checkPublicBinding(host, token, '--metrics-host', '--metrics-token-file FILE or WEIR_METRICS_TOKEN')
}

/**
 * Serves `GET /metrics` from the registries (merged) on host:port; loopback unless told
 * otherwise, and off loopback only with a token (the monitor's rule, runtime/http-token.ts).
 * With `probes`, also /livez and /readyz, which need no token. Anything else is 404; request
 * bodies are refused. `registries` may be a function: the server can start (and answer its
 * probes) before the worker whose metrics it serves exists; /metrics is 503 until then.
 */
export async function serveMetrics(registries: Registry | Registry[] | (() => Registry | undefined), options: MetricsServerOptions): Promise<MetricsServer> {
  const host = options.host ?? '127.0.0.1'
  const token = options.token === '' ? undefined : options.token
  if (!Number.isInteger(options.port) || options.port < 0 || options.port > 65535) throw new ConfigError('--metrics-port', `expected a port in 0..65535, got ${options.port}`)
  checkMetricsBinding(host, token)
  const fixed = typeof registries === 'function' ? undefined : Array.isArray(registries) ? Registry.merge(registries) : registries
  const current = typeof registries === 'function' ? registries : () => fixed
  const probes = options.probes
  const server: Server = createServer((req, res) => {
    if (refuseBody(req, res)) return
    if (probes !== undefined && respondToProbe(probes, req, res)) return
    if (token !== undefined && !requestHasToken(req.headers, token)) {
      res.writeHead(401, { 'content-type': 'text/plain', 'www-authenticate': 'Bearer realm="weir-metrics"' }).end('a token is required: Authorization: Bearer <token>\n')
      return
    }
    if (req.method !== 'GET' || (req.url ?? '').split('?')[0] !== '/metrics') {
      res.writeHead(404, { 'content-type': 'text/plain' }).end(`not found: GET /metrics${probes === undefined ? '' : ', /livez or /readyz'}\n`)
      return
    }
    const registry = current()
    if (registry === undefined) {
      res.writeHead(503, { 'content-type': 'text/plain', 'retry-after': '1' }).end('starting: the worker has not joined its cluster yet\n')
      return
    }
    registry.metrics().then(
      (text) => res.writeHead(200, { 'content-type': registry.contentType }).end(text),
      (err: unknown) => res.writeHead(500, { 'content-type': 'text/plain' }).end(`${(err as Error).message}\n`),
    )
  })
  server.maxHeadersCount = 50
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(options.port, host, () => resolve())
  })
  const { port } = server.address() as AddressInfo
  const shown = host.includes(':') ? `[${host}]` : host
  return {
    url: `http://${shown}:${port}/metrics`,
    close: () => new Promise<void>((resolve) => {
      server.close(() => resolve())
      server.closeIdleConnections()
    }),
  }
}
