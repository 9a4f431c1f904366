/**
 * The monitor's in-memory view of every pipeline it hears about: the newest topology,
 * each worker's last health and each actor's last progress, stamped with when the monitor
 * applied them. It has no store: a restarted monitor rebuilds all of it from the next few
 * progress intervals, and whatever falls silent is forgotten after a while.
 *
 * @example
 * const view = new MonitorView({ now: monitorClock })
 * bus.subscribe(progressSubjects.allProgress('*'), (m, s) => view.apply(s, m))
 * for (const p of view.pipelines()) console.log(p.pipeline, p.actors.size)
 */
import { actorProgress, progressSubjects, workerHealth, type ActorProgress, type WorkerHealth } from '../runtime/control/progress.ts'
import { RATE_WINDOW_MS, type ActorSnapshot, type CounterSample, type Topology } from './timeliness.ts'

/** Milliseconds since the epoch with a fraction: comparable to publishers' `Date.now()`, finer than it. */
export function monitorClock(): number {
  return performance.timeOrigin + performance.now()
}

export interface ActorEntry extends ActorSnapshot {
  /** When the monitor first saw the current watermark value (monitor clock). */
  watermarkSeenAt: number
}

export interface WorkerEntry {
  health: WorkerHealth
  seenAt: number
}

export interface PipelineEntry {
  cluster: string
  pipeline: string
  /** From the newest health event (by its `at`); null until one arrived. */
  topology: Topology | null
  topologyAt: number
  /** When the monitor first heard of the pipeline (monitor clock). */
  firstSeenAt: number
  workers: Map<string, WorkerEntry>
  /** By actor id (`<stage>/<partition>`). */
  actors: Map<string, ActorEntry>
}

export type ApplyResult = 'applied' | 'malformed' | 'stale'

export interface MonitorViewOptions {
  now?: () => number
  /** Forget workers and actors silent this long, ms. Default 5 min. */
  forgetAfterMs?: number
  /** Staleness unit before any worker said its interval, ms. Default 1000. */
  defaultIntervalMs?: number
  /** A watermark changed; `delayMs` = when the monitor saw it − when it changed (publisher clock). */
  onWatermarkChange?: (delayMs: number) => void
  /** A message was dropped; `why` is the first schema issue. */
  onMalformed?: (subject: string, why: string) => void
}

const FORGET_AFTER_MS = 5 * 60_000
/** Enough samples for the rate window at one event per 250 ms; older ones are dropped. */
const MAX_SAMPLES = 256
/**
 * Counter samples closer together than this replace the newest one instead of adding one:
 * rates over a minute need a few points per actor, and the status (rebuilt every second)
 * walks all of them.
 */
const SAMPLE_SPACING_MS = 5000

/** The samples of the last two rate windows, at most one per SAMPLE_SPACING_MS (plus the newest). */
function appendSample(samples: readonly CounterSample[], sample: CounterSample, now: number): CounterSample[] {
  const kept = samples.filter((s) => s.at >= now - RATE_WINDOW_MS * 2)
  const last = kept.at(-1)
  const beforeLast = kept.at(-2)
  // The newest stays exact; the one before it is dropped when it is too close to its predecessor (same instance).
  if (last !== undefined && beforeLast !== undefined && last.startedAt === sample.startedAt && beforeLast.startedAt === last.startedAt && last.at - beforeLast.at < SAMPLE_SPACING_MS) kept.pop()
  kept.push(sample)
  return kept.slice(-MAX_SAMPLES)
}

export class MonitorView {
  /** Messages received, dropped as malformed, and ignored as older than what is known. */
  readonly counters = { received: 0, malformed: 0, stale: 0 }
  private readonly byKey = new Map<string, PipelineEntry>()
  private readonly now: () => number
  private readonly forgetAfterMs: number
  private readonly defaultIntervalMs: number

  constructor(private readonly options: MonitorViewOptions = {}) {
    this.now = options.now ?? monitorClock
    this.forgetAfterMs = options.forgetAfterMs ?? FORGET_AFTER_MS
    this.defaultIntervalMs = options.defaultIntervalMs ?? 1000
  }

  /** Applies one message from a `.progress` or `.health` subject; anything that does not parse changes nothing. */
  apply(subject: string, raw: unknown): ApplyResult {
    this.counters.received++
    const kind = subject.slice(subject.lastIndexOf('.') + 1)
    const schema = kind === 'progress' ? actorProgress : kind === 'health' ? workerHealth : undefined
    if (schema === undefined) return this.malformed(subject, `unexpected subject`)
    const parsed = schema.safeParse(raw)
    if (!parsed.success) {
      const issue = parsed.error.issues[0]!
      return this.malformed(subject, `${issue.path.join('.') || 'message'}: ${issue.message}`)
    }
    const event = parsed.data
    // The subject is the namespace subscribers filter on; a message claiming another one is not trusted.
    const expected = kind === 'progress' ? progressSubjects.progress(event.cluster, event.pipeline) : progressSubjects.health(event.cluster, event.pipeline)
    if (expected !== subject) return this.malformed(subject, `cluster/pipeline do not match the subject`)
    const now = this.now()
    return kind === 'progress' ? this.applyProgress(event as ActorProgress, now) : this.applyHealth(event as WorkerHealth, now)
  }

  private malformed(subject: string, why: string): ApplyResult {
    this.counters.malformed++
    this.options.onMalformed?.(subject, why)
    return 'malformed'
  }

  private entry(cluster: string, pipeline: string, now: number): PipelineEntry {
    const key = `${cluster}\0${pipeline}`
    let p = this.byKey.get(key)
    if (p === undefined) {
      p = { cluster, pipeline, topology: null, topologyAt: -Infinity, firstSeenAt: now, workers: new Map(), actors: new Map() }
      this.byKey.set(key, p)
    }
    return p
  }

  private applyHealth(h: WorkerHealth, now: number): ApplyResult {
    const p = this.entry(h.cluster, h.pipeline, now)
    const known = p.workers.get(h.worker)
    if (known !== undefined && known.health.startedAt === h.startedAt && h.at < known.health.at) return this.stale()
    p.workers.set(h.worker, { health: h, seenAt: now })
    // Workers of a redeployed pipeline may briefly disagree: the newest description wins.
    if (h.at >= p.topologyAt) {
      p.topology = h.topology
      p.topologyAt = h.at
    }
    return 'applied'
  }

  private applyProgress(event: ActorProgress, now: number): ApplyResult {
    const p = this.entry(event.cluster, event.pipeline, now)
    const intervalMs = this.intervalOfWorker(p, event.worker)
    const known = p.actors.get(event.actor)
    // An actor restarting (after a pipe failure, or moved) reports no watermark until its
    // checkpoint is restored, and what it restores is what it had: keep the one we know.
    let e = event.watermark === null && known?.progress.watermark != null ? { ...event, watermark: known.progress.watermark, watermarkChangedAt: known.progress.watermarkChangedAt } : event
    // Nor has it committed yet: its last commit is the one before the restart. Counted from
    // its start instead, an actor restarting in a loop (its pipe down) would hide a stall.
    if (e.lastCommitAt === null && known?.progress.lastCommitAt != null && known.progress.startedAt !== e.startedAt) e = { ...e, lastCommitAt: known.progress.lastCommitAt }
    if (known !== undefined) {
      const sameInstance = known.progress.startedAt === e.startedAt
      if (sameInstance && e.at < known.progress.at) return this.stale()
      // An older instance still talking (a zombie about to be fenced) must not hide the new one.
      const liveNewer = e.startedAt < known.progress.startedAt && now - known.seenAt <= 3 * known.intervalMs
      if (liveNewer) return this.stale()
    }
    const sample: CounterSample = { at: now, startedAt: e.startedAt, recordsIn: e.recordsIn, recordsOut: e.recordsOut, errors: e.errors, deadLettered: e.deadLettered, late: e.late }
    const samples = appendSample(known?.samples ?? [], sample, now)
    let watermarkSeenAt = known?.watermarkSeenAt ?? now
    const moved = known !== undefined && (known.progress.watermark !== e.watermark || known.progress.ended !== e.ended)
    if (moved) {
      watermarkSeenAt = now
      if (e.watermarkChangedAt !== null) this.options.onWatermarkChange?.(now - e.watermarkChangedAt)
    }
    p.actors.set(e.actor, { progress: e, seenAt: now, intervalMs, samples, watermarkSeenAt })
    return 'applied'
  }

  private stale(): ApplyResult {
    this.counters.stale++
    return 'stale'
  }

  private intervalOfWorker(p: PipelineEntry, worker: string): number {
    return p.workers.get(worker)?.health.intervalMs ?? this.intervalOf(p)
  }

  /** The largest interval of the pipeline's workers (the default before any said). */
  intervalOf(p: PipelineEntry): number {
    let max = 0
    for (const w of p.workers.values()) max = Math.max(max, w.health.intervalMs)
    return max > 0 ? max : this.defaultIntervalMs
  }

  /** Forgets workers and actors silent for `forgetAfterMs`, and pipelines left with neither. */
  prune(now = this.now()): void {
    for (const [key, p] of this.byKey) {
      for (const [id, w] of p.workers) if (now - w.seenAt > this.forgetAfterMs) p.workers.delete(id)
      for (const [id, a] of p.actors) if (now - a.seenAt > this.forgetAfterMs) p.actors.delete(id)
      if (p.workers.size === 0 && p.actors.size === 0) this.byKey.delete(key)
    }
  }

  /** Every known pipeline, sorted by cluster and name. */
  pipelines(): PipelineEntry[] {
    return [...this.byKey.values()].sort((a, b) => a.cluster.localeCompare(b.cluster) || a.pipeline.localeCompare(b.pipeline))
  }

  find(cluster: string, pipeline: string): PipelineEntry | undefined {
    return this.byKey.get(`${cluster}\0${pipeline}`)
  }
}
