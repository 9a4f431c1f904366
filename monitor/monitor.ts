/**
 * The timeliness monitor: listens to the progress channel on the control bus, keeps a
 * view rebuilt from what arrives (no store), evaluates SLOs every second, and serves the
 * dashboard, the API and /metrics. It depends on nothing but the bus, so it keeps
 * answering while the pipe, the coordinator or workers are down, and shows what went
 * silent as missing. A stage's records and its views are the workers' to show: the
 * monitor asks them over the bus when the dashboard does (inspect.ts), and says so in a
 * 503 when none answers.
 *
 * @example
 * const monitor = await startMonitor({ bus, port: 0, slos: [{ pipeline: 'wordcount', output: 'count', timelinessMs: 2000 }], log })
 * console.log(monitor.url)        // http://127.0.0.1:40123/
 * await monitor.close()
 */
import type { Logger } from 'pino'
import type { Registry } from 'prom-client'
import { checkClusterName, type ControlBus, type Subscription } from '../runtime/control/bus.ts'
import type { HealthProbes } from '../runtime/health.ts'
import { progressSubjects } from '../runtime/control/progress.ts'
import { WeirError } from '../runtime/errors.ts'
import { InspectError, type InspectRequest } from '../runtime/views/inspect-protocol.ts'
import { createLogger } from '../runtime/log.ts'
import { checkMonitorBinding, DEFAULT_MONITOR_HOST, DEFAULT_MONITOR_PORT, type SloConfig } from './config.ts'
import { FailureAlerts } from './failures.ts'
import { TimelinessHistory } from './history.ts'
import { MonitorInspector, type InspectAnswer, type InspectTarget, type ResolvedTarget } from './inspect.ts'
import { MonitorMetrics } from './metrics.ts'
import { monitorClock, MonitorView } from './model.ts'
import { createServer, type HistoryAnswer, type HistoryQuery } from './server.ts'
import { SloTracker } from './slo.ts'
import { actorRows, buildStatus, type MonitorStatus } from './status.ts'

export { checkMonitorBinding, DEFAULT_MONITOR_HOST, DEFAULT_MONITOR_PORT, parseDuration, parsePort, parseSloFlag, type SloConfig } from './config.ts'
export type { MonitorStatus } from './status.ts'

export interface MonitorOptions {
  /** The control bus to listen on; the caller opened it and closes it. */
  bus: ControlBus
  /** Cluster to watch, or `*` for all (default). */
  cluster?: string
  /** 0 = any free port. Default DEFAULT_MONITOR_PORT. */
  port?: number
  /** Default 127.0.0.1; anything else needs a token. */
  host?: string
  /** Bearer token every request must carry. */
  token?: string
  slos?: SloConfig[]
  log?: Logger
  /** More registries served on /metrics (an embedded run's worker metrics). */
  extraRegistries?: Registry[]
  /** How often SLOs, history and gauges are evaluated, ms. Default 1000. */
  intervalMs?: number
  /** Option name to blame for a refused host (`--host`, `--monitor-host`). */
  hostField?: string
  /** Longest the API waits for a worker's answer (a stage's records, a view lookup), ms: 200 to 5000 (default). */
  inspectTimeoutMs?: number
}

export interface RunningMonitor {
  /** `http://host:port/`: the dashboard. */
  readonly url: string
  readonly port: number
  readonly view: MonitorView
  /** The `/api/status` body now. */
  status(): MonitorStatus
  /** Stops listening and unsubscribes; the bus stays open. */
  close(): Promise<void>
}

/** The HTTP port could not be bound (in use, no permission, no such address). */
export class MonitorListenError extends WeirError {
  constructor(host: string, port: number, cause: unknown) {
    super('WEIR_MONITOR_LISTEN_FAILED', `cannot listen on ${host}:${port}: ${(cause as Error).message}`, { host, port }, { cause })
  }
}

/** A rate limit for one kind of log line: one per period, carrying how many were suppressed. */
function everyMs(periodMs: number): (emit: (suppressed: number) => void) => void {
  let last = -Infinity
  let suppressed = 0
  return (emit) => {
    const now = Date.now()
    if (now - last < periodMs) return void suppressed++
    last = now
    emit(suppressed)
    suppressed = 0
  }
}

/**
 * Live unless its bus connection was closed for good; ready while the bus delivers: the
 * monitor depends on nothing else, so a pipe or coordinator outage leaves it ready.
 */
function monitorProbes(bus: ControlBus): HealthProbes {
  return {
    live: () => (bus.state === 'closed' ? { ok: false, reason: 'the control bus connection is closed for good; a restart connects again' } : { ok: true }),
    ready: () => (bus.state === 'connected' ? { ok: true } : { ok: false, reason: `the control bus is ${bus.state}` }),
  }
}

/**
 * Starts the monitor on `bus`. Refuses (ConfigError naming `--host`) a host other
 * machines can reach without a token; rejects when the port cannot be bound.
 */
export async function startMonitor(options: MonitorOptions): Promise<RunningMonitor> {
  const host = options.host ?? DEFAULT_MONITOR_HOST
  const token = options.token === '' ? undefined : options.token
  checkMonitorBinding(host, token, options.hostField ?? '--host')
  const cluster = options.cluster ?? '*'
  if (cluster !== '*') checkClusterName(cluster, '--cluster')
  const log = (options.log ?? createLogger()).child({ component: 'monitor' })
  // Only pipelines the monitor heard of are asked: their names came from the bus, in the clusters it watches.
  const resolveTarget = (t: InspectTarget): ResolvedTarget => {
    const matches = view.pipelines().filter((p) => p.pipeline === t.pipeline && (t.cluster === undefined || p.cluster === t.cluster))
    if (matches.length === 0) return { status: 404, message: `no pipeline '${t.pipeline}'${t.cluster === undefined ? '' : ` in cluster '${t.cluster}'`} has reported to this monitor` }
    if (matches.length > 1) return { status: 400, message: `pipeline '${t.pipeline}' runs in clusters ${matches.map((m) => m.cluster).join(', ')}: add &cluster=` }
    return { cluster: matches[0]!.cluster, pipeline: matches[0]!.pipeline }
  }
  const inspector = new MonitorInspector(options.bus, resolveTarget, { timeoutMs: options.inspectTimeoutMs, log })
  const startedAt = monitorClock()
  const metrics = new MonitorMetrics(options.extraRegistries)
  const warnMalformed = everyMs(10_000)
  const view = new MonitorView({
    onWatermarkChange: (delayMs) => metrics.viewDelay.observe(Math.max(0, delayMs) / 1000),
    onMalformed: (subject, why) => {
      metrics.malformed.inc()
      warnMalformed((suppressed) => log.warn({ subject, why, malformed: view.counters.malformed, suppressed }, 'malformed progress message dropped'))
    },
  })
  const slos = new SloTracker(options.slos ?? [], { publish: (s, a) => options.bus.publish(s, a), log })
  const failures = new FailureAlerts({ publish: (s, a) => options.bus.publish(s, a), log })
  const history = new TimelinessHistory()
  const statusNow = (): MonitorStatus => buildStatus(view, monitorClock(), startedAt, (c, p, o) => slos.stateOf(c, p, o))

  const onMessage = (message: unknown, subject: string): void => {
    metrics.received.inc()
    view.apply(subject, message)
  }
  const subs: Subscription[] = [
    options.bus.subscribe(progressSubjects.allProgress(cluster), onMessage),
    options.bus.subscribe(progressSubjects.allHealth(cluster), onMessage),
  ]

  const evaluate = (): void => {
    view.prune()
    const status = statusNow()
    slos.evaluate(status.pipelines, Date.now())
    failures.evaluate(status.pipelines, view, Date.now())
    // Evaluated again so the figures carry the states the SLOs just moved to.
    const settled = { ...status, pipelines: status.pipelines.map((p) => ({ ...p, outputs: p.outputs.map((o) => ({ ...o, slo: slos.stateOf(p.cluster, p.pipeline, o.output) })) })) }
    history.record(settled)
    metrics.update(settled)
  }
  const timer = setInterval(() => {
    try {
      evaluate()
    } catch (err) {
      log.error({ err: (err as Error).message }, 'monitor evaluation failed')
    }
  }, options.intervalMs ?? 1000)
  timer.unref()

  const historyOf = (q: HistoryQuery): HistoryAnswer | string => {
    const matches = view.pipelines().filter((p) => p.pipeline === q.pipeline && (q.cluster === undefined || p.cluster === q.cluster))
    if (matches.length === 0) return `no pipeline '${q.pipeline}'${q.cluster === undefined ? '' : ` in cluster '${q.cluster}'`}`
    if (matches.length > 1) return `pipeline '${q.pipeline}' runs in clusters ${matches.map((m) => m.cluster).join(', ')}: add &cluster=`
    const p = matches[0]!
    const points = history.series(p.cluster, p.pipeline, q.output)
    if (points === undefined && !(p.topology?.outputs.includes(q.output) ?? false)) return `'${q.output}' is not an output of '${q.pipeline}'`
    const slo = slos.sloFor(p.cluster, p.pipeline, q.output)
    return { cluster: p.cluster, pipeline: p.pipeline, output: q.output, slo: slo === undefined ? null : { timelinessMs: slo.timelinessMs }, points: points ?? [] }
  }

  const inspect = async (t: InspectTarget, r: InspectRequest): Promise<InspectAnswer> => {
    try {
      const answer = await inspector.ask(t, r)
      metrics.inspected.inc({ kind: r.kind, status: '200' })
      return answer
    } catch (err) {
      metrics.inspected.inc({ kind: r.kind, status: String(err instanceof InspectError ? err.status : 500) })
      throw err
    }
  }
  const app = createServer({ status: statusNow, actors: () => actorRows(view, monitorClock()), history: historyOf, inspect, metrics, probes: monitorProbes(options.bus), token, log })
  try {
    await app.listen({ port: options.port ?? DEFAULT_MONITOR_PORT, host })
  } catch (err) {
    clearInterval(timer)
    subs.forEach((s) => s.unsubscribe())
    await app.close().catch(() => undefined)
    throw new MonitorListenError(host, options.port ?? DEFAULT_MONITOR_PORT, err)
  }
  const address = app.server.address()
  const port = typeof address === 'object' && address !== null ? address.port : (options.port ?? DEFAULT_MONITOR_PORT)
  const urlHost = host.includes(':') ? `[${host}]` : host
  const url = `http://${urlHost}:${port}/`
  log.info({ url, cluster, slos: slos.count }, 'monitor listening')

  let closed = false
  return {
    url,
    port,
    view,
    status: statusNow,
    close: async () => {
      if (closed) return
      closed = true
      clearInterval(timer)
      subs.forEach((s) => s.unsubscribe())
      await app.close()
    },
  }
}
