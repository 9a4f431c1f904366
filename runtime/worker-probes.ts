/**
 * A worker's answers to /livez and /readyz (runtime/health.ts). Ready means restored and
 * caught up: connected to the control bus, holding the coordinator's assignment (a worker
 * given no actors is ready once it has one), every assigned actor restored (changelog
 * replayed, readers open) and at most `maxLag` records behind the end of its inputs. Live
 * means the process has not failed for good; a blocked event loop does not answer at all,
 * which the kubelet counts as a failure by itself.
 *
 * @example
 * const probes = new WorkerProbes({ bus, maxLag: 1000 })
 * const server = await serveMetrics(() => worker?.metrics, { port: 9465, probes })
 * worker = await startClusterWorker(pipeline, options)
 * probes.attach(worker.worker)
 */
import type { Actor } from './actor/actor.ts'
import type { ControlBus } from './control/bus.ts'
import { ConfigError, WeirError } from './errors.ts'
import type { HealthProbes, ProbeResult } from './health.ts'
import type { Worker } from './worker.ts'

/** Records behind the input end an actor may be and still count as caught up (`--ready-max-lag`). */
export const DEFAULT_READY_MAX_LAG = 1000
/** A lag measurement slower than this (pipe slow or away) falls back to the last known lag. */
const LAG_TIMEOUT_MS = 600

export interface WorkerProbesOptions {
  /** The bus the worker coordinates over: ready only while it is connected. */
  bus: ControlBus
  /** Records behind the input end above which an actor is not caught up. Default DEFAULT_READY_MAX_LAG. */
  maxLag?: number
}

/** One actor that holds readiness back, by stage and partition. */
type Culprit = Record<string, string | number>

/**
 * `--ready-max-lag N`: a whole number of records, 0 or more. ConfigError naming the option.
 *
 * @example
 * parseReadyMaxLag('5000') // 5000
 */
export function parseReadyMaxLag(raw: string | undefined, field = '--ready-max-lag'): number {
  if (raw === undefined) return DEFAULT_READY_MAX_LAG
  const n = Number(raw)
  if (!/^\d{1,12}$/.test(raw) || !Number.isSafeInteger(n)) throw new ConfigError(field, `expected a whole number of records (0 or more), got '${raw}'`)
  return n
}

export class WorkerProbes implements HealthProbes {
  readonly maxLag: number
  private worker: Worker | undefined
  private failure: unknown
  private readonly bus: ControlBus
  /** Actors whose lag this probe measured once: their later lag may come from the progress reporter's measurements. */
  private readonly measured = new WeakSet<Actor>()
  /** Concurrent readiness probes share one measurement. */
  private pending: Promise<ProbeResult> | undefined

  constructor(options: WorkerProbesOptions) {
    this.bus = options.bus
    this.maxLag = options.maxLag ?? DEFAULT_READY_MAX_LAG
    if (!Number.isSafeInteger(this.maxLag) || this.maxLag < 0) throw new ConfigError('maxLag', `expected a whole number of records, got ${this.maxLag}`)
  }

  /** The worker runs (it joined its cluster, or the embedded run started): readiness asks it from now on. */
  attach(worker: Worker): void {
    this.worker = worker
  }

  /** The worker failed for good: /livez answers 503 (the process is about to exit, or should be restarted). */
  failed(err: unknown): void {
    this.failure ??= err ?? new Error('failed')
  }

  live(): ProbeResult {
    if (this.failure !== undefined) {
      const code = this.failure instanceof WeirError ? this.failure.code : 'an unexpected error'
      return { ok: false, reason: `the worker failed (${code}); its log says why` }
    }
    // Stopping closes the bus on purpose: a worker on its way out is not a failed one.
    if (this.worker?.isLeaving === true) return { ok: true, reason: 'leaving: handing its actors off' }
    if (this.bus.state === 'closed') return { ok: false, reason: 'the control bus connection is closed for good (credentials refused on reconnect?); a restart connects again' }
    return { ok: true }
  }

  ready(): Promise<ProbeResult> {
    this.pending ??= this.check().finally(() => {
      this.pending = undefined
    })
    return this.pending
  }

  private async check(): Promise<ProbeResult> {
    const live = this.live()
    if (!live.ok) return live
    const worker = this.worker
    if (worker?.isLeaving === true) return { ok: false, reason: 'leaving: handing its actors off' }
    if (this.bus.state !== 'connected') return { ok: false, reason: `the control bus is ${this.bus.state}` }
    if (worker === undefined) return { ok: false, reason: 'joining the cluster: no assignment from the coordinator yet' }
    if (worker.assignmentGeneration < 0) return { ok: false, reason: 'waiting for its assignment from the coordinator' }
    const assigned = worker.assignedActors
    const culprits = (await Promise.all(assigned.map((a) => this.culprit(a)))).filter((c): c is Culprit => c !== undefined)
    if (culprits.length === 0) return { ok: true, reason: `${assigned.length} assigned actor${assigned.length === 1 ? '' : 's'} restored and caught up (generation ${worker.assignmentGeneration})` }
    return { ok: false, reason: `${culprits.length} of ${assigned.length} assigned actors not restored and caught up (max lag ${this.maxLag} records)`, details: culprits }
  }

  /** Why one assigned actor holds readiness back, or undefined when it is restored and caught up. */
  private async culprit(assigned: Worker['assignedActors'][number]): Promise<Culprit | undefined> {
    const [stage, partition] = splitActor(assigned.id)
    const at = { actor: assigned.id, stage, partition }
    const { actor } = assigned
    if (actor === undefined) return { ...at, state: assigned.failed ? 'failed' : assigned.restarting ? 'restarting' : 'starting' }
    switch (actor.lifecycle) {
      case 'finished':
        return undefined
      case 'restoring':
        return { ...at, state: 'restoring', forMs: Date.now() - actor.stats.startedAt }
      case 'running':
      case 'committing':
        return this.lagCulprit(actor, at)
      default:
        // fenced, failed, closed: a newer instance runs elsewhere, or it stopped.
        return { ...at, state: actor.lifecycle }
    }
  }

  private async lagCulprit(actor: Actor, at: Culprit): Promise<Culprit | undefined> {
    let lag: number | undefined
    try {
      lag = await withTimeout(actor.measureLag(), LAG_TIMEOUT_MS)
      this.measured.add(actor)
    } catch {
      // Measured before: the progress reporter keeps the figure fresh, about once a second.
      if (this.measured.has(actor)) lag = actor.stats.lag
    }
    if (lag === undefined) return { ...at, state: 'lag unknown', reason: `the pipe did not answer its end offsets within ${LAG_TIMEOUT_MS} ms` }
    return lag > this.maxLag ? { ...at, state: 'lagging', lag } : undefined
  }
}

function splitActor(id: string): [string, number] {
  const slash = id.lastIndexOf('/')
  return [id.slice(0, slash), Number(id.slice(slash + 1))]
}

function withTimeout<T>(p: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  return Promise.race([p, new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error('timed out')), ms)
  })]).finally(() => clearTimeout(timer))
}
