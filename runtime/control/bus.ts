/**
 * The ControlBus port: the lightweight channel for epochs, assignments, progress and
 * health. It carries no data records, so losing it may slow coordination but never loses
 * or duplicates a record. Adapters: `local/` (in-process), `nats/`.
 */
import { ConfigError } from '../errors.ts'

export interface Subscription {
  unsubscribe(): void
}

export type Handler = (message: unknown, subject: string) => void

export interface ControlBus {
  readonly kind: string
  /** Fire-and-forget; never blocks the caller on delivery. */
  publish(subject: string, message: unknown): void
  /** `*` matches one token, `>` the rest (NATS subject rules). */
  subscribe(subject: string, handler: Handler): Subscription
  close(): Promise<void>
}

/**
 * A cluster name is a token of every subject (`weir.<cluster>.<pipeline>.…`): no dots,
 * spaces or wildcards. Throws a ConfigError naming `field`.
 */
export function checkClusterName(cluster: string, field = 'cluster'): void {
  if (!/^[A-Za-z0-9_-]{1,64}$/.test(cluster)) throw new ConfigError(field, `'${cluster}' must be 1-64 of A-Z a-z 0-9 _ - (a subject token)`)
}

/** Subjects, namespaced by cluster and pipeline. */
export const subjects = {
  epoch: (cluster: string, pipeline: string): string => `weir.${cluster}.${pipeline}.epoch`,
  epochAck: (cluster: string, pipeline: string): string => `weir.${cluster}.${pipeline}.epoch-ack`,
  assignment: (cluster: string, pipeline: string): string => `weir.${cluster}.${pipeline}.assignment`,
  actorFinished: (cluster: string, pipeline: string): string => `weir.${cluster}.${pipeline}.actor-finished`,
  actorReleased: (cluster: string, pipeline: string): string => `weir.${cluster}.${pipeline}.actor-released`,
  actorFailed: (cluster: string, pipeline: string): string => `weir.${cluster}.${pipeline}.actor-failed`,
  actorClear: (cluster: string, pipeline: string): string => `weir.${cluster}.${pipeline}.actor-clear`,
  actorClearAnswer: (cluster: string, pipeline: string): string => `weir.${cluster}.${pipeline}.actor-clear-answer`,
  stageFinished: (cluster: string, pipeline: string): string => `weir.${cluster}.${pipeline}.stage-finished`,
  workerHello: (cluster: string, pipeline: string): string => `weir.${cluster}.${pipeline}.worker-hello`,
  workerHeartbeat: (cluster: string, pipeline: string): string => `weir.${cluster}.${pipeline}.worker-heartbeat`,
  workerLeave: (cluster: string, pipeline: string): string => `weir.${cluster}.${pipeline}.worker-leave`,
  workerRefused: (cluster: string, pipeline: string): string => `weir.${cluster}.${pipeline}.worker-refused`,
  progress: (cluster: string, pipeline: string): string => `weir.${cluster}.${pipeline}.progress`,
}

/** Matches a subject against a subscription pattern with NATS wildcards. */
export function subjectMatches(pattern: string, subject: string): boolean {
  const p = pattern.split('.')
  const s = subject.split('.')
  for (let i = 0; i < p.length; i++) {
    if (p[i] === '>') return s.length > i
    if (i >= s.length) return false
    if (p[i] !== '*' && p[i] !== s[i]) return false
  }
  return p.length === s.length
}
