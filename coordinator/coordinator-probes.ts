/**
 * A coordinator's answers to /livez and /readyz (`weir coordinator --health-port`,
 * runtime/health.ts). Ready: connected to the control bus, and either leading (lease held,
 * cluster metadata claimed, pipelines coordinated) or standing by behind a leader whose
 * lease it sees renewed, so it can take over. A standby is ready on purpose: during a
 * rolling update of the coordinators' Deployment the second replica must count as available.
 *
 * @example
 * const probes = coordinatorProbes({ bus, lease, leading: () => service !== undefined })
 * const health = await serveHealth(probes, { port: 9466, host: '0.0.0.0' })
 */
import type { ControlBus } from '../runtime/control/bus.ts'
import type { HealthProbes, ProbeResult } from '../runtime/health.ts'
import type { LeaderLease } from './leader-lease.ts'

export interface CoordinatorProbeDeps {
  bus: ControlBus
  lease: Pick<LeaderLease, 'isLeader' | 'term' | 'following'>
  /** True once this leader claimed the metadata and coordinates (its service runs). */
  leading: () => boolean
}

export function coordinatorProbes(deps: CoordinatorProbeDeps): HealthProbes {
  const live = (): ProbeResult => deps.bus.state === 'closed'
    ? { ok: false, reason: 'the control bus connection is closed for good (credentials refused on reconnect?); a restart connects again' }
    : { ok: true }
  const ready = (): ProbeResult => {
    if (deps.bus.state !== 'connected') return { ok: false, reason: `the control bus is ${deps.bus.state}` }
    const { lease } = deps
    if (lease.isLeader) {
      return deps.leading() ? { ok: true, reason: `leading (term ${lease.term})` } : { ok: false, reason: `elected (term ${lease.term}): claiming the cluster metadata` }
    }
    const leader = lease.following
    if (leader !== undefined) return { ok: true, reason: `standing by: following ${leader.holder} (term ${leader.term})` }
    return { ok: false, reason: 'no live leader seen: contending for the lease (or NATS KV cannot be read)' }
  }
  return { live, ready }
}
