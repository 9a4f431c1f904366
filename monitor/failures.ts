/**
 * Alerts on actors that fail for good, one state machine per actor:
 *
 *   ok ──(reported failed)──▶ failed                [alert 'failed']
 *   failed ──(reported quarantined)──▶ quarantined  [alert 'failed', quarantined]
 *   failed | quarantined ──(reported running)──▶ ok [alert 'recovered']
 *
 * Each transition publishes one ActorAlert on `weir.<cluster>.<pipeline>.alerts` (beside
 * the SLO alerts) and logs it; evaluating again without a change publishes nothing. An
 * actor that just falls silent is not "recovered": only its progress from a running
 * instance says so.
 *
 * @example
 * const failures = new FailureAlerts({ publish: bus.publish.bind(bus), log })
 * failures.evaluate(status.pipelines, view, Date.now())
 */
import type { Logger } from 'pino'
import { actorAlert, progressSubjects, PROGRESS_VERSION, type ActorAlert } from '../runtime/control/progress.ts'
import type { MonitorView } from './model.ts'
import type { PipelineStatus } from './status.ts'

export interface FailureAlertsDeps {
  publish: (subject: string, alert: ActorAlert) => void
  log: Logger
}

type State = 'failed' | 'quarantined'

export class FailureAlerts {
  /** cluster\0pipeline\0actor → its alerted state; absent: ok. */
  private readonly states = new Map<string, State>()

  constructor(private readonly deps: FailureAlertsDeps) {}

  /** Publishes and returns the alerts of the transitions since the last evaluation. */
  evaluate(pipelines: readonly PipelineStatus[], view: MonitorView, now: number): ActorAlert[] {
    const alerts: ActorAlert[] = []
    const seen = new Set<string>()
    for (const p of pipelines) {
      for (const f of p.failedActors) {
        const k = key(p.cluster, p.pipeline, f.actor)
        seen.add(k)
        const next: State = f.quarantined ? 'quarantined' : 'failed'
        if (this.states.get(k) === next) continue
        this.states.set(k, next)
        const what = f.quarantined ? `quarantined after failing on ${f.failedOn.join(' and ')}; it runs nowhere until cleared (weir actor clear ${p.pipeline} ${f.actor})` : 'the coordinator moves it to another worker'
        alerts.push(this.fire(p, f.actor, f.stage, f.worker, 'failed', f.quarantined, { code: f.code, message: f.message }, `${f.actor} failed for good on ${f.worker}: ${f.message}; ${what}`, now))
      }
    }
    for (const [k] of this.states) {
      if (seen.has(k)) continue
      const [cluster, pipeline, actor] = k.split('\0') as [string, string, string]
      const entry = view.find(cluster, pipeline)?.actors.get(actor)
      const lifecycle = entry?.progress.lifecycle
      if (entry === undefined || entry.progress.failure !== undefined || (lifecycle !== 'running' && lifecycle !== 'committing' && lifecycle !== 'finished')) continue
      this.states.delete(k)
      const p = pipelines.find((x) => x.cluster === cluster && x.pipeline === pipeline)
      if (p === undefined) continue
      alerts.push(this.fire(p, actor, entry.progress.stage, entry.progress.worker, 'recovered', false, null, `${actor} runs again on ${entry.progress.worker}`, now))
    }
    return alerts
  }

  private fire(p: PipelineStatus, actor: string, stage: string, worker: string, state: ActorAlert['state'], quarantined: boolean, error: ActorAlert['error'], reason: string, now: number): ActorAlert {
    const alert = actorAlert.parse({ v: PROGRESS_VERSION, kind: 'actor', cluster: p.cluster, pipeline: p.pipeline, actor, stage, worker, state, quarantined, error, reason, at: now })
    this.deps.publish(progressSubjects.alerts(p.cluster, p.pipeline), alert)
    const fields = { cluster: p.cluster, pipeline: p.pipeline, actor, worker, state, quarantined }
    if (state === 'failed') this.deps.log.warn(fields, `actor failed: ${reason}`)
    else this.deps.log.info(fields, `actor recovered: ${reason}`)
    return alert
  }
}

function key(cluster: string, pipeline: string, actor: string): string {
  return `${cluster}\0${pipeline}\0${actor}`
}
