/**
 * Timeliness SLOs per pipeline output, each a small state machine:
 *
 *   unknown ──(timeliness ≤ SLO)──▶ ok
 *   unknown ──(timeliness > SLO, or no watermark while the pipeline is stalled)──▶ broken  [alert]
 *   ok      ──(same)──▶ broken   [alert 'broken']
 *   broken  ──(timeliness ≤ SLO)──▶ ok   [alert 'recovered']
 *
 * Every transition into or out of `broken` publishes exactly one SloAlert on
 * `weir.<cluster>.<pipeline>.alerts` and logs it; evaluating again without a change
 * publishes nothing.
 *
 * @example
 * const slos = new SloTracker([{ pipeline: 'wordcount', output: 'count', timelinessMs: 2000 }], { publish: bus.publish.bind(bus), log })
 * slos.evaluate(status.pipelines, Date.now())
 * slos.stateOf('prod', 'wordcount', 'count') // { timelinessMs: 2000, state: 'ok' }
 */
import type { Logger } from 'pino'
import { progressSubjects, sloAlert, PROGRESS_VERSION, type SloAlert } from '../runtime/control/progress.ts'
import type { SloConfig } from './config.ts'
import type { PipelineStatus, SloView } from './status.ts'
import { formatSeconds } from './timeliness.ts'

export type SloState = SloView['state']

export interface SloTrackerDeps {
  /** Where alerts go (the control bus). Fire-and-forget. */
  publish: (subject: string, alert: SloAlert) => void
  log: Logger
}

export class SloTracker {
  private readonly states = new Map<string, SloState>()

  constructor(private readonly slos: readonly SloConfig[], private readonly deps: SloTrackerDeps) {}

  get count(): number {
    return this.slos.length
  }

  /** The SLO that applies to an output: one naming the cluster beats one for every cluster. */
  sloFor(cluster: string, pipeline: string, output: string): SloConfig | undefined {
    const matching = this.slos.filter((s) => s.pipeline === pipeline && s.output === output && (s.cluster === undefined || s.cluster === cluster))
    return matching.find((s) => s.cluster !== undefined) ?? matching[0]
  }

  stateOf(cluster: string, pipeline: string, output: string): SloView | null {
    const slo = this.sloFor(cluster, pipeline, output)
    if (slo === undefined) return null
    return { timelinessMs: slo.timelinessMs, state: this.states.get(key(cluster, pipeline, output)) ?? 'unknown' }
  }

  /** Checks every output that has an SLO; publishes and returns the alerts of the transitions. */
  evaluate(pipelines: readonly PipelineStatus[], now: number): SloAlert[] {
    const alerts: SloAlert[] = []
    for (const p of pipelines) {
      for (const o of p.outputs) {
        const slo = this.sloFor(p.cluster, p.pipeline, o.output)
        if (slo === undefined) continue
        const k = key(p.cluster, p.pipeline, o.output)
        const prev = this.states.get(k) ?? 'unknown'
        const next = nextState(prev, o.timelinessMs, slo.timelinessMs, p.stalled)
        if (next === prev) continue
        this.states.set(k, next)
        const fired = next === 'broken' ? 'broken' : prev === 'broken' ? 'recovered' : undefined
        if (fired === undefined) continue
        const alert = sloAlert.parse({
          v: PROGRESS_VERSION,
          cluster: p.cluster,
          pipeline: p.pipeline,
          output: o.output,
          state: fired,
          timelinessSloMs: slo.timelinessMs,
          timelinessMs: o.timelinessMs,
          holdingBack: o.holdingBack?.stage ?? null,
          reason: reasonOf(fired, o.timelinessMs, slo.timelinessMs, p.stalled, o.holdingBack?.reason),
          at: now,
        })
        this.deps.publish(progressSubjects.alerts(p.cluster, p.pipeline), alert)
        const fields = { cluster: p.cluster, pipeline: p.pipeline, output: o.output, state: fired, timelinessMs: o.timelinessMs, sloMs: slo.timelinessMs, holdingBack: alert.holdingBack }
        if (fired === 'broken') this.deps.log.warn(fields, `SLO broken: ${alert.reason}`)
        else this.deps.log.info(fields, `SLO recovered: ${alert.reason}`)
        alerts.push(alert)
      }
    }
    return alerts
  }
}

function key(cluster: string, pipeline: string, output: string): string {
  return `${cluster}\0${pipeline}\0${output}`
}

/** The transition table. No watermark says nothing, unless the pipeline is stalled: then it will not get one. */
export function nextState(prev: SloState, timelinessMs: number | null, sloMs: number, stalled: boolean): SloState {
  if (timelinessMs === null) return stalled ? 'broken' : prev
  return timelinessMs > sloMs ? 'broken' : 'ok'
}

function reasonOf(state: 'broken' | 'recovered', timelinessMs: number | null, sloMs: number, stalled: boolean, holdingBack: string | undefined): string {
  if (state === 'recovered') return `timeliness ${formatSeconds(timelinessMs ?? 0)} is within the SLO of ${formatSeconds(sloMs)}`
  const head = timelinessMs === null && stalled ? 'no output watermark and the pipeline is stalled' : `timeliness ${formatSeconds(timelinessMs ?? 0)} exceeds the SLO of ${formatSeconds(sloMs)}`
  return holdingBack === undefined ? head : `${head}; ${holdingBack}`
}
