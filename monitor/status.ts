/**
 * The monitor's answer, built from its view at one instant: per pipeline the outputs'
 * timeliness and what holds them back, the stages' figures and the workers. This is the
 * `/api/status` body (docs/monitoring.md documents it) and what SLOs, history and
 * metrics are computed from, so all of them agree.
 *
 * @example
 * const status = buildStatus(view, monitorClock(), (c, p, o) => slos.stateOf(c, p, o))
 * for (const p of status.pipelines) for (const o of p.outputs) console.log(o.output, o.timelinessMs)
 */
import type { Percentiles } from '../runtime/control/progress.ts'
import type { MonitorView, PipelineEntry } from './model.ts'
import { MISSING_INTERVALS, outputStatus, pipelineStalled, stageStatus, type ActorSnapshot, type FailedActor, type OutputStatus, type StageStatus } from './timeliness.ts'

export interface SloView {
  timelinessMs: number
  state: 'unknown' | 'ok' | 'broken'
}

export interface WorkerStatus {
  worker: string
  hostname: string
  pid: number
  state: 'ok' | 'missing'
  /** Monitor clock, ms. */
  seenAt: number
  intervalMs: number
  rssBytes: number
  heapUsedBytes: number
  eventLoopDelayMs: Percentiles
  actors: string[]
  /** Standby replicas the worker keeps warm, with the changelog records each has not applied yet. */
  standbys: Array<{ actor: string; lag: number | null }>
}

export interface PipelineStatus {
  cluster: string
  pipeline: string
  /** No health event (and so no topology) yet: stages and outputs are empty. */
  topologyKnown: boolean
  fingerprint: string | null
  intervalMs: number
  stalled: boolean
  outputs: Array<OutputStatus & { slo: SloView | null }>
  stages: Array<Omit<StageStatus, 'silentMs' | 'stalled'> & { stalled: boolean }>
  workers: WorkerStatus[]
  /** Actors that failed for good (every stage), with their error; quarantined ones run nowhere until cleared. */
  failedActors: Array<FailedActor & { stage: string }>
}

export interface MonitorStatus {
  /** Monitor clock, ms. */
  at: number
  monitor: { startedAt: number; received: number; malformed: number; stale: number }
  pipelines: PipelineStatus[]
}

export type SloLookup = (cluster: string, pipeline: string, output: string) => SloView | null

/** The figures of one pipeline at `now`. */
export function pipelineStatus(p: PipelineEntry, intervalMs: number, now: number, sloOf: SloLookup): PipelineStatus {
  const actors = [...p.actors.values()]
  const byStage = new Map<string, ActorSnapshot[]>()
  for (const a of actors) byStage.set(a.progress.stage, [...(byStage.get(a.progress.stage) ?? []), a])
  const topology = p.topology
  const stages = new Map<string, StageStatus>()
  if (topology !== null) {
    const ctx = { now, intervalMs, knownForMs: now - p.firstSeenAt }
    for (const s of topology.stages) stages.set(s.name, stageStatus(s, byStage.get(s.name) ?? [], ctx))
  }
  const outputs = (topology?.outputs ?? []).map((o) => ({
    ...outputStatus(o, byStage.get(o) ?? [], stages, topology!, now),
    slo: sloOf(p.cluster, p.pipeline, o),
  }))
  return {
    cluster: p.cluster,
    pipeline: p.pipeline,
    topologyKnown: topology !== null,
    fingerprint: topology?.fingerprint ?? null,
    intervalMs,
    stalled: pipelineStalled(actors, now, intervalMs),
    outputs,
    stages: [...stages.values()].map(({ silentMs: _silent, ...s }) => s),
    failedActors: [...stages.values()].flatMap((s) => s.failed.map((f) => ({ ...f, stage: s.name }))),
    workers: [...p.workers.values()].map((w) => ({
      worker: w.health.worker,
      hostname: w.health.hostname,
      pid: w.health.pid,
      state: now - w.seenAt > MISSING_INTERVALS * w.health.intervalMs ? 'missing' : 'ok',
      seenAt: w.seenAt,
      intervalMs: w.health.intervalMs,
      rssBytes: w.health.rssBytes,
      heapUsedBytes: w.health.heapUsedBytes,
      eventLoopDelayMs: w.health.eventLoopDelayMs,
      actors: w.health.actors,
      standbys: (w.health.standbys ?? []).map((r) => ({ actor: r.actor, lag: r.lag })),
    })),
  }
}

/** The whole `/api/status` body. */
export function buildStatus(view: MonitorView, now: number, startedAt: number, sloOf: SloLookup): MonitorStatus {
  return {
    at: now,
    monitor: { startedAt, ...view.counters },
    pipelines: view.pipelines().map((p) => pipelineStatus(p, view.intervalOf(p), now, sloOf)),
  }
}

/** One row of `/api/actors`: the actor's newest progress plus the monitor's timestamps. */
export type ActorRow = ActorSnapshot['progress'] & { seenAt: number; watermarkSeenAt: number; state: 'ok' | 'missing' }

/** The `/api/actors` body. */
export function actorRows(view: MonitorView, now: number): { at: number; actors: ActorRow[] } {
  const actors: ActorRow[] = []
  for (const p of view.pipelines()) {
    for (const a of p.actors.values()) {
      actors.push({ ...a.progress, seenAt: a.seenAt, watermarkSeenAt: a.watermarkSeenAt, state: now - a.seenAt > MISSING_INTERVALS * a.intervalMs ? 'missing' : 'ok' })
    }
  }
  return { at: now, actors }
}
