/** Per-stage totals from per-actor stats (actor ids are `<stage>/<partition>`). */
import type { ActorStats } from '../runtime/actor/actor.ts'
import type { Pipeline, StageSpec } from '../runtime/api/pipeline.ts'

export interface StageTotals {
  name: string
  kind: StageSpec['kind']
  actors: number
  recordsIn: number
  recordsOut: number
  deadLettered: number
  errors: number
  /** Unprocessed input records (end offsets minus positions), as last measured. */
  lag: number
}

export function stageTotals(pipeline: Pipeline, stats: Record<string, ActorStats>): StageTotals[] {
  const byStage = new Map<string, StageTotals>()
  for (const s of pipeline.actorStages) {
    byStage.set(s.name, { name: s.name, kind: s.kind, actors: s.parallelism, recordsIn: 0, recordsOut: 0, deadLettered: 0, errors: 0, lag: 0 })
  }
  for (const [id, st] of Object.entries(stats)) {
    const t = byStage.get(id.slice(0, id.lastIndexOf('/')))
    if (t === undefined) continue
    t.recordsIn += st.recordsIn
    t.recordsOut += st.recordsOut
    t.deadLettered += st.deadLettered
    t.errors += st.errors
    t.lag += st.lag
  }
  return [...byStage.values()]
}

export interface OutputTimeliness {
  name: string
  /** The output's event-time watermark: min over its actors; +Infinity at the end of input; undefined before the first. */
  watermark: number | undefined
  /** Wall clock minus watermark, ms (undefined without a finite watermark). */
  behindMs: number | undefined
  /** At the actors' last commits: commit time minus the ingest horizon, ms (the largest). */
  endToEndMs: number | undefined
}

/** How timely each output of the pipeline is, from its actors' stats. */
export function outputTimeliness(pipeline: Pipeline, stats: Record<string, ActorStats>, now = Date.now()): OutputTimeliness[] {
  return pipeline.outputs.map((o) => {
    const actors = Object.entries(stats).filter(([id]) => id.slice(0, id.lastIndexOf('/')) === o.name).map(([, s]) => s)
    const marks = actors.map((s) => s.watermark)
    const watermark = actors.length === 0 || marks.some((w) => w === -Infinity) ? undefined : Math.min(...marks)
    const e2e = actors.map((s) => s.endToEndMs).filter((x): x is number => x !== undefined)
    return {
      name: o.name,
      watermark,
      behindMs: watermark === undefined || !Number.isFinite(watermark) ? undefined : Math.max(0, now - watermark),
      endToEndMs: e2e.length === 0 ? undefined : Math.max(...e2e),
    }
  })
}

/** Sub-second figures in ms, longer ones as durations. */
function formatLatency(ms: number): string {
  return ms < 1000 ? `${Math.round(ms)} ms` : formatDuration(ms)
}

/** "watermark …, 2.3s behind now, end-to-end 840 ms at the last commit" / "complete (end of input)" / "no watermark yet". */
export function formatTimeliness(t: OutputTimeliness): string {
  const e2e = t.endToEndMs === undefined ? '' : `, end-to-end ${formatLatency(t.endToEndMs)} at the last commit`
  if (t.watermark === undefined) return `no watermark yet${e2e}`
  if (t.watermark === Infinity) return `complete (end of input)${e2e}`
  return `watermark ${new Date(t.watermark).toISOString()}, ${formatLatency(t.behindMs!)} behind now${e2e}`
}

/** Records a stage moved: what a source emitted, what any other stage consumed. */
export function throughputOf(t: StageTotals): number {
  return t.kind === 'source' ? t.recordsOut : t.recordsIn
}

/** The newest epoch every actor that ran has committed (at least the coordinator's figure). */
export function lastEpoch(coordinatorEpoch: number, stats: Record<string, ActorStats>): number {
  const epochs = Object.values(stats).map((s) => s.lastEpoch)
  return Math.max(coordinatorEpoch, epochs.length === 0 ? 0 : Math.min(...epochs))
}

export function formatDuration(ms: number): string {
  if (ms < 60_000) return `${(ms / 1000).toFixed(1)}s`
  const s = Math.floor(ms / 1000)
  const h = Math.floor(s / 3600)
  const m = Math.floor((s % 3600) / 60)
  const sec = String(s % 60).padStart(2, '0')
  return h > 0 ? `${h}h ${String(m).padStart(2, '0')}m ${sec}s` : `${m}m ${sec}s`
}
