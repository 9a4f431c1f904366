/**
 * The ControlBus port: the lightweight channel for epochs, assignments, progress and
 * health. It carries no data records, so losing it may slow coordination but never loses
 * or duplicates a record. Adapters: `local/` (in-process), `nats/`.
 */
import { ConfigError, WeirError } from '../errors.ts'

export interface Subscription {
  unsubscribe(): void
}

export type Handler = (message: unknown, subject: string) => void

/** Answers a request; what it returns (or resolves to) is the reply. */
export type Responder = (message: unknown, subject: string) => unknown

/**
 * Whether the bus delivers now: `reconnecting` while the adapter tries to get its
 * server back (publishes are buffered or dropped meanwhile), `closed` once it gave up or
 * was closed, which only a restart of the process mends (health probes read it).
 */
export type BusState = 'connected' | 'reconnecting' | 'closed'

export interface ControlBus {
  readonly kind: string
  readonly state: BusState
  /**
   * When the adapter last got its server back after losing it, ms since the epoch; 0 if it
   * never lost it. For a while after, a subscriber missing may only not have reconnected yet.
   */
  readonly reconnectedAt: number
  /** Fire-and-forget; never blocks the caller on delivery. */
  publish(subject: string, message: unknown): void
  /** `*` matches one token, `>` the rest (NATS subject rules). */
  subscribe(subject: string, handler: Handler): Subscription
  /**
   * Request-reply: one of the responders on `subject` answers (NATS queue-group
   * semantics). Rejects with BusNoResponderError when none listens (at once, so a caller
   * can tell "nobody holds this" from "slow"), BusTimeoutError after `timeoutMs`.
   * Requests and replies may carry binary values (msgpack on the wire), unlike publish.
   */
  request(subject: string, message: unknown, options: { timeoutMs: number }): Promise<unknown>
  /** Answers requests on `subject` (no wildcards); a responder that throws answers nothing (the requester times out). */
  respond(subject: string, responder: Responder): Subscription
  close(): Promise<void>
}

/** Nobody answers requests on the subject now. */
export class BusNoResponderError extends WeirError {
  constructor(subject: string) {
    super('WEIR_BUS_NO_RESPONDER', `nobody answers on ${subject}`, { subject }, { retriable: true })
  }
}

/** A request got no reply in time. */
export class BusTimeoutError extends WeirError {
  constructor(subject: string, timeoutMs: number) {
    super('WEIR_BUS_TIMEOUT', `no reply on ${subject} within ${timeoutMs} ms`, { subject, timeoutMs }, { retriable: true })
  }
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
  /**
   * A worker answers requests here while its process and its bus connection live
   * (`workerProbeToken` makes the id a subject token): the coordinator tells a dead worker
   * by nobody answering, before its heartbeat timeout.
   */
  workerProbe: (cluster: string, pipeline: string, worker: string): string => `weir.${cluster}.${pipeline}.worker-probe.${workerProbeToken(worker)}`,
  workerLeave: (cluster: string, pipeline: string): string => `weir.${cluster}.${pipeline}.worker-leave`,
  workerRefused: (cluster: string, pipeline: string): string => `weir.${cluster}.${pipeline}.worker-refused`,
  progress: (cluster: string, pipeline: string): string => `weir.${cluster}.${pipeline}.progress`,
  /** Steps of a live savepoint, to every worker (runtime/savepoint/live.ts). */
  savepoint: (cluster: string, pipeline: string): string => `weir.${cluster}.${pipeline}.savepoint`,
  /** Workers' answers to them. */
  savepointReply: (cluster: string, pipeline: string): string => `weir.${cluster}.${pipeline}.savepoint-reply`,
  /** Requests any worker of the pipeline answers (samples of an edge's records). */
  inspect: (cluster: string, pipeline: string): string => `weir.${cluster}.${pipeline}.inspect`,
}

/**
 * A worker id as one subject token: as it is when it is made of A-Z a-z 0-9 _ - (not
 * starting with `_`), else `_` and the hex of its UTF-8 bytes, so two ids never share a token.
 */
export function workerProbeToken(worker: string): string {
  return /^[A-Za-z0-9-][A-Za-z0-9_-]*$/.test(worker) ? worker : `_${Buffer.from(worker, 'utf8').toString('hex')}`
}

/** Request subjects of views: one per actor (partition of a stage). */
export const viewSubjects = {
  /** Requests to the actor holding `stage`'s partition, for its views. */
  actor: (cluster: string, pipeline: string, stage: string, partition: number): string => `weir.${cluster}.${pipeline}.view.${stage}.${partition}`,
  /** Requests to a standby replica of `stage`'s partition (stale reads while the actor moves). */
  standby: (cluster: string, pipeline: string, stage: string, partition: number): string => `weir.${cluster}.${pipeline}.view-standby.${stage}.${partition}`,
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
