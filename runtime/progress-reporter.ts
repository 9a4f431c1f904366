/**
 * Publishes a worker's progress channel: one ActorProgress per actor about once a second
 * and as soon as its watermark advances, and one WorkerHealth per worker per interval
 * (runtime/control/progress.ts). Publishing is fire-and-forget on the control bus and
 * never waits on the pipe: figures that need I/O (input lag, state size) are refreshed
 * in the background and the newest known value is sent.
 */
import { hostname } from 'node:os'
import { readdir, stat } from 'node:fs/promises'
import { join } from 'node:path'
import { monitorEventLoopDelay, type IntervalHistogram } from 'node:perf_hooks'
import type { Logger } from 'pino'
import type { Actor } from './actor/actor.ts'
import { PROGRESS_VERSION, progressSubjects, type ActorFailureProgress, type ActorProgress, type Percentiles, type WorkerHealth } from './control/progress.ts'
import type { ControlBus } from './control/bus.ts'
import { describeError } from './errors.ts'
import type { Pipeline } from './api/pipeline.ts'

export interface ProgressReporterOptions {
  cluster: string
  worker: string
  /** Interval of progress heartbeats and health, ms. Default 1000. */
  intervalMs?: number
  /** Shortest time between two events of one actor, ms: watermark changes sooner wait this long. Default 100. */
  minSpacingMs?: number
  log: Logger
  /** Standby replicas kept warm on this worker (cluster mode). */
  standbys?: () => StandbyView[]
  /** How an actor failed for good, if it did: it is reported 'failed' with this, and not among the worker's running actors. */
  failure?: (actor: Actor) => ActorFailureProgress | undefined
}

/** What the reporter needs of a standby replica. */
export interface StandbyView {
  readonly id: string
  readonly position: number
  lag(): Promise<number>
}

/** State size is read from disk every this many intervals. */
const STATE_SIZE_EVERY = 10
/** A lag measurement that takes longer than this is abandoned (pipe down): the last value is sent. */
const LAG_TIMEOUT_MS = 2000

/** p50/p99/max of a sample list, or null when empty. */
export function percentiles(samples: readonly number[]): Percentiles | null {
  if (samples.length === 0) return null
  const sorted = [...samples].sort((a, b) => a - b)
  const at = (q: number): number => sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!
  return { p50: at(0.5), p99: at(0.99), max: sorted[sorted.length - 1]! }
}

function finiteOrNull(n: number | undefined): number | null {
  return n === undefined || !Number.isFinite(n) ? null : n
}

export class ProgressReporter {
  private readonly intervalMs: number
  private readonly minSpacingMs: number
  private readonly startedAt = Date.now()
  private timer: NodeJS.Timeout | undefined
  private readonly lastSent = new Map<string, number>()
  /** When each actor's last watermark-triggered event went out: the spacing counts from these only. */
  private readonly lastWatermarkSent = new Map<string, number>()
  private readonly pending = new Map<string, NodeJS.Timeout>()
  private readonly stateBytes = new Map<string, number>()
  private readonly standbyLag = new Map<string, number>()
  private readonly loopDelay: IntervalHistogram
  private ticks = 0
  private measuring = false
  private readonly subject: { progress: string; health: string }

  constructor(private readonly bus: ControlBus, private readonly pipeline: Pipeline, private readonly actors: () => Actor[], private readonly options: ProgressReporterOptions) {
    this.intervalMs = options.intervalMs ?? 1000
    this.minSpacingMs = options.minSpacingMs ?? 100
    this.loopDelay = monitorEventLoopDelay({ resolution: 10 })
    this.subject = { progress: progressSubjects.progress(options.cluster, pipeline.name), health: progressSubjects.health(options.cluster, pipeline.name) }
  }

  start(): void {
    this.loopDelay.enable()
    this.timer = setInterval(() => this.tick(), this.intervalMs)
    this.timer.unref()
    this.publishHealth()
  }

  stop(): void {
    clearInterval(this.timer)
    for (const t of this.pending.values()) clearTimeout(t)
    this.pending.clear()
    this.loopDelay.disable()
  }

  /** An actor's watermark advanced: publish its progress now, or as soon as spacing allows. */
  watermarkAdvanced(actor: Actor): void {
    if (this.timer === undefined || this.pending.has(actor.id)) return
    // A heartbeat just before does not delay a watermark change: only watermark events are spaced.
    const wait = (this.lastWatermarkSent.get(actor.id) ?? 0) + this.minSpacingMs - Date.now()
    if (wait <= 0) return this.publishWatermarkChange(actor)
    const t = setTimeout(() => {
      this.pending.delete(actor.id)
      this.publishWatermarkChange(actor)
    }, wait)
    t.unref()
    this.pending.set(actor.id, t)
  }

  private publishWatermarkChange(actor: Actor): void {
    this.lastWatermarkSent.set(actor.id, Date.now())
    this.publishActor(actor)
  }

  /** Publishes an actor's progress now (it finished or is stopping), whatever the spacing. */
  publishNow(actor: Actor): void {
    clearTimeout(this.pending.get(actor.id))
    this.pending.delete(actor.id)
    this.publishActor(actor)
  }

  private tick(): void {
    this.ticks++
    void this.refreshMeasurements()
    for (const actor of this.actors()) {
      // Actors that spoke recently (watermark changes) are not repeated within the interval.
      if (Date.now() - (this.lastSent.get(actor.id) ?? 0) >= this.intervalMs * 0.9) this.publishActor(actor)
    }
    this.publishHealth()
  }

  /** Input lag and state size need I/O: measured in the background, the newest value is published. */
  private async refreshMeasurements(): Promise<void> {
    if (this.measuring) return
    this.measuring = true
    try {
      const actors = this.actors()
      await Promise.all(actors.map((a) => withTimeout(a.measureLag(), LAG_TIMEOUT_MS).catch(() => undefined)))
      const standbys = this.options.standbys?.() ?? []
      await Promise.all(standbys.map((r) => withTimeout(r.lag(), LAG_TIMEOUT_MS).then((lag) => void this.standbyLag.set(r.id, lag), () => undefined)))
      for (const id of this.standbyLag.keys()) if (!standbys.some((r) => r.id === id)) this.standbyLag.delete(id)
      if (this.ticks % STATE_SIZE_EVERY === 1) {
        for (const a of actors) this.stateBytes.set(a.id, await directorySize(a.statePath))
      }
    } catch (err) {
      this.options.log.debug({ err: describeError(err) }, 'progress measurement failed')
    } finally {
      this.measuring = false
    }
  }

  private publishActor(actor: Actor): void {
    const s = actor.stats
    const now = Date.now()
    const failure = this.options.failure?.(actor)
    const event: ActorProgress = {
      v: PROGRESS_VERSION,
      cluster: this.options.cluster,
      pipeline: this.pipeline.name,
      worker: this.options.worker,
      actor: actor.id,
      stage: actor.stage.name,
      partition: actor.partition,
      at: now,
      startedAt: s.startedAt,
      lifecycle: failure === undefined ? actor.lifecycle : 'failed',
      watermark: finiteOrNull(s.watermark),
      watermarkChangedAt: s.watermarkChangedAt ?? null,
      idle: s.idle,
      ended: s.watermark === Infinity,
      ingestHorizon: finiteOrNull(s.ingestHorizon),
      endToEndMs: s.endToEndMs ?? null,
      lag: s.lag,
      lagByInput: s.lagByInput,
      recordsIn: s.recordsIn,
      recordsOut: s.recordsOut,
      errors: s.errors,
      deadLettered: s.deadLettered,
      late: s.late,
      processingUs: percentiles(s.processingUs.slice(-256)),
      commitMs: percentiles(s.commitMs.slice(-64)),
      lastEpoch: s.lastEpoch,
      lastCommitAt: s.lastCommitAt ?? null,
      stateBytes: this.stateBytes.get(actor.id) ?? null,
    }
    if (failure !== undefined) event.failure = failure
    if (s.waiting !== undefined) event.waiting = { ...s.waiting }
    if (Object.keys(s.custom).length > 0) event.stats = { ...s.custom }
    this.lastSent.set(actor.id, now)
    this.bus.publish(this.subject.progress, event)
  }

  private publishHealth(): void {
    const mem = process.memoryUsage()
    const ms = (ns: number): number => (Number.isFinite(ns) ? ns / 1e6 : 0)
    const health: WorkerHealth = {
      v: PROGRESS_VERSION,
      cluster: this.options.cluster,
      pipeline: this.pipeline.name,
      worker: this.options.worker,
      at: Date.now(),
      startedAt: this.startedAt,
      pid: process.pid,
      hostname: hostname(),
      intervalMs: this.intervalMs,
      rssBytes: mem.rss,
      heapUsedBytes: mem.heapUsed,
      eventLoopDelayMs: { p50: ms(this.loopDelay.percentile(50)), p99: ms(this.loopDelay.percentile(99)), max: ms(this.loopDelay.max) },
      actors: this.actors().filter((a) => this.options.failure?.(a) === undefined).map((a) => a.id),
      topology: {
        stages: this.pipeline.topology.map((s) => ({ name: s.name, kind: s.kind, inputs: s.inputs, parallelism: s.parallelism, topic: this.pipeline.outputTopic(s) })),
        outputs: this.pipeline.outputs.map((s) => s.name),
        fingerprint: this.pipeline.fingerprint(),
      },
    }
    const standbys = this.options.standbys?.()
    if (standbys !== undefined && standbys.length > 0) health.standbys = standbys.map((r) => ({ actor: r.id, position: r.position, lag: this.standbyLag.get(r.id) ?? null }))
    this.loopDelay.reset()
    this.bus.publish(this.subject.health, health)
  }
}

function withTimeout<T>(p: Promise<T>, ms: number): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`timed out after ${ms} ms`)), ms)
    p.then((v) => (clearTimeout(t), resolve(v)), (e: unknown) => (clearTimeout(t), reject(e)))
  })
}

async function directorySize(dir: string): Promise<number> {
  let total = 0
  try {
    for (const name of await readdir(dir)) total += (await stat(join(dir, name)).catch(() => ({ size: 0 }))).size
  } catch {
    // Not created yet, or being replaced during a restore.
  }
  return total
}
