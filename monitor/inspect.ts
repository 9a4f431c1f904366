/**
 * The monitor's questions to a pipeline's workers: which views it serves, a lookup in one,
 * a sample of a stage's latest committed records (runtime/views/inspect-protocol.ts). The
 * monitor knows only names (it hears progress events, never the pipeline's code), so a
 * worker answers: any one of them, on subjects.inspect. With no worker up the answer is a
 * quick 503, a slow one a 504 after at most `timeoutMs`; the rest of the monitor never
 * waits on it. A worker's reply is checked against the protocol's schema before it is
 * passed on, so a newer or broken worker cannot make the monitor serve what it did not check.
 *
 * @example
 * const inspector = new MonitorInspector(bus, (t) => ({ cluster: t.cluster ?? 'local', pipeline: t.pipeline }), { timeoutMs: 5000, log })
 * const page = await inspector.ask({ pipeline: 'wordcount' }, { v: 1, kind: 'sample', stage: 'count', n: 20 })
 */
import type { Logger } from 'pino'
import { BusNoResponderError, BusTimeoutError, subjects, type ControlBus } from '../runtime/control/bus.ts'
import { ConfigError } from '../runtime/errors.ts'
import { INSPECT_VERSION, InspectError, inspectReply, MAX_INSPECT_REPLY_CHARS, type InspectReply, type InspectRequest } from '../runtime/views/inspect-protocol.ts'

/** Longest the monitor waits for a worker's answer, ms (and its default). */
export const MAX_INSPECT_TIMEOUT_MS = 5000
/** Requests to workers at once; more are refused (503) rather than queued. */
const MAX_IN_FLIGHT = 16
/** Of the budget, what the worker may use: its own "too slow" (a 503 or 504 saying why) arrives before the bus gives up. */
const WORKER_SHARE = 0.85

/** Which pipeline to ask; without a cluster, the one cluster the monitor heard the pipeline in. */
export interface InspectTarget {
  cluster?: string
  pipeline: string
}

/** A pipeline the monitor heard of, or why `target` names none (a 404, or a 400 when ambiguous). */
export type ResolvedTarget = { cluster: string; pipeline: string } | { status: 400 | 404; message: string }

/** A worker's answer as the monitor's API serves it. */
export type InspectAnswer = DistributiveOmit<Extract<InspectReply, { ok: true }>, 'ok'> & { cluster: string; pipeline: string }
type DistributiveOmit<T, K extends PropertyKey> = T extends unknown ? Omit<T, K> : never

export interface InspectorOptions {
  /** Longest one question may take, ms; at most MAX_INSPECT_TIMEOUT_MS (the default). */
  timeoutMs?: number
  log: Logger
}

/** Which kinds of reply answer which kind of request. */
const ANSWERS: Record<InspectRequest['kind'], ReadonlyArray<string>> = { views: ['views'], lookup: ['lookup', 'scan'], sample: ['sample'] }

export class MonitorInspector {
  private inFlight = 0
  readonly timeoutMs: number

  constructor(private readonly bus: ControlBus, private readonly resolve: (target: InspectTarget) => ResolvedTarget, private readonly options: InspectorOptions) {
    const timeoutMs = options.timeoutMs ?? MAX_INSPECT_TIMEOUT_MS
    if (!Number.isInteger(timeoutMs) || timeoutMs < 200 || timeoutMs > MAX_INSPECT_TIMEOUT_MS) throw new ConfigError('inspectTimeoutMs', `must be an integer from 200 to ${MAX_INSPECT_TIMEOUT_MS} ms, got ${String(timeoutMs)}`)
    this.timeoutMs = timeoutMs
  }

  /**
   * Asks one of `target`'s workers. Rejects with an InspectError carrying the HTTP status:
   * the worker's own (400, 404, 503, 504), 404 for a pipeline the monitor never heard of,
   * 503 when no worker listens or too many questions are in flight, 504 when none answered
   * in time, 502 for a reply that breaks the protocol.
   */
  async ask(target: InspectTarget, request: InspectRequest): Promise<InspectAnswer> {
    const resolved = this.resolve(target)
    if ('status' in resolved) throw new InspectError(resolved.status === 404 ? 'WEIR_MONITOR_NOT_FOUND' : 'WEIR_MONITOR_BAD_REQUEST', resolved.message, resolved.status)
    if (this.inFlight >= MAX_IN_FLIGHT) throw new InspectError('WEIR_MONITOR_BUSY', `the monitor is already waiting on ${MAX_IN_FLIGHT} answers from workers: try again in a moment`, 503, {}, { retriable: true })
    const { cluster, pipeline } = resolved
    const subject = subjects.inspect(cluster, pipeline)
    const workerBudget = Math.max(100, Math.floor(this.timeoutMs * WORKER_SHARE))
    const message = request.kind === 'views' ? { v: INSPECT_VERSION, kind: 'views' } : { ...request, v: INSPECT_VERSION, timeoutMs: workerBudget }
    this.inFlight++
    let raw: unknown
    try {
      raw = await this.bus.request(subject, message, { timeoutMs: this.timeoutMs })
    } catch (err) {
      throw this.busFailure(err, cluster, pipeline)
    } finally {
      this.inFlight--
    }
    const reply = this.check(raw, request, subject)
    if (!reply.ok) throw new InspectError(reply.error.code, reply.error.message, reply.error.status, { cluster, pipeline })
    const { ok: _ok, ...answer } = reply
    return { cluster, pipeline, ...answer }
  }

  private check(raw: unknown, request: InspectRequest, subject: string): InspectReply {
    const parsed = inspectReply.safeParse(raw)
    let why: string | undefined
    if (!parsed.success) why = `${parsed.error.issues[0]?.path.join('.') || 'reply'}: ${parsed.error.issues[0]?.message}`
    else if (parsed.data.ok && !ANSWERS[request.kind].includes(parsed.data.kind)) why = `a '${parsed.data.kind}' reply to a '${request.kind}' request`
    else if (JSON.stringify(parsed.data).length > MAX_INSPECT_REPLY_CHARS * 2) why = 'larger than the protocol allows'
    if (why === undefined) return parsed.data!
    this.options.log.warn({ subject, kind: request.kind, why }, 'malformed inspect reply dropped')
    throw new InspectError('WEIR_MONITOR_BAD_REPLY', `a worker's reply does not follow the inspect protocol (${why}): is it a different weir version?`, 502, { subject })
  }

  private busFailure(err: unknown, cluster: string, pipeline: string): InspectError {
    const context = { cluster, pipeline }
    if (err instanceof BusNoResponderError) {
      return new InspectError('WEIR_MONITOR_NO_WORKER', `no worker of pipeline ${pipeline} (cluster ${cluster}) answers: are its workers running, and new enough to answer the dashboard?`, 503, context, { retriable: true })
    }
    if (err instanceof BusTimeoutError) {
      return new InspectError('WEIR_MONITOR_INSPECT_TIMEOUT', `no worker of pipeline ${pipeline} (cluster ${cluster}) answered within ${this.timeoutMs} ms`, 504, context, { retriable: true })
    }
    this.options.log.warn({ cluster, pipeline, err: (err as Error)?.message }, 'inspect request failed on the bus')
    return new InspectError('WEIR_MONITOR_BUS_FAILED', `cannot ask the workers of pipeline ${pipeline} over the control bus: ${(err as Error)?.message ?? String(err)}`, 503, context, { retriable: true, cause: err })
  }
}
