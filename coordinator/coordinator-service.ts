/**
 * What `weir coordinator` runs: one Coordinator per pipeline of a cluster, created when
 * the first worker of that pipeline speaks (hello or heartbeat: both carry the pipeline's
 * shape, so the coordinator never loads a pipeline file). A coordinator that starts while
 * workers already run listens for `settleMs` first and continues their generation, epochs
 * and placement. With `metadata`, a new leader starts from what the previous one stored in
 * NATS KV (members, generation, placement, epochs, finished actors) and stops listening as
 * soon as every stored member was heard.
 *
 * @example
 * const service = startCoordinatorService(bus, { cluster: 'prod', log })
 * // … later
 * service.stop()
 */
import type { Logger } from 'pino'
import { subjects, type ControlBus, type Subscription } from '../runtime/control/bus.ts'
import { describeError } from '../runtime/errors.ts'
import type { ClusterMetadata, PipelineMetadata } from './cluster-metadata.ts'
import { Coordinator } from './coordinator.ts'
import { LeaderFencedError } from './leader-lease.ts'
import { MAX_ACTORS, pipelineShape, workerHeartbeat, workerHello, type PipelineShape } from '../runtime/control/messages.ts'
import { DEFAULT_EPOCH_INTERVAL_MS } from './epochs.ts'

export interface CoordinatorServiceOptions {
  cluster: string
  log: Logger
  /** Checkpoint epoch interval, ms. Default DEFAULT_EPOCH_INTERVAL_MS (epochs.ts). */
  epochIntervalMs?: number
  /** A worker silent this long is declared dead and its actors move. Default 10 000. */
  workerTimeoutMs?: number
  /** How often each worker's liveness is probed, ms; 0 turns it off. Default DEFAULT_WORKER_PROBE_MS (coordinator.ts). */
  workerProbeMs?: number
  /** Listening time before the first placement of a pipeline, ms. Default 3000. */
  settleMs?: number
  /** How long a planned move waits for the old owner's release before fencing it, ms. Default 10 000. */
  releaseTimeoutMs?: number
  /** Passed to each Coordinator: the leader's term × 1e6. */
  generationBase?: number
  /**
   * The leader's metadata in NATS KV: pipelines stored there get their coordinator at once,
   * continuing from what was stored, and every change is written back under `term`.
   */
  metadata?: {
    store: ClusterMetadata
    term: number
    /** What the store held when this leader claimed it. */
    restored: Record<string, PipelineMetadata>
    /** A write was refused because a newer leader exists: stop leading. */
    onFenced: (err: LeaderFencedError) => void
  }
}

/** Epoch progress is written at most this often; placement changes at once. */
const METADATA_INTERVAL_MS = 1000
/**
 * Pipelines one coordinator service coordinates at most, and their actors in all: each hello
 * of an unknown pipeline makes a coordinator, so without a bound forged hellos would make
 * coordinators without end.
 */
export const MAX_PIPELINES = 64
export const MAX_COORDINATED_ACTORS = 4 * MAX_ACTORS

export interface CoordinatorService {
  /** Coordinators by pipeline name. */
  readonly coordinators: ReadonlyMap<string, Coordinator>
  stop(): void
}

export function startCoordinatorService(bus: ControlBus, options: CoordinatorServiceOptions): CoordinatorService {
  const coordinators = new Map<string, Coordinator>()
  const log = options.log.child({ cluster: options.cluster })
  const meta = options.metadata
  const written = new Map<string, string>()
  let writing: Promise<void> | undefined
  let again = false
  let stopped = false
  /** Writes what changed since the last write; one write at a time, the latest state wins. */
  const store = (): void => {
    if (meta === undefined || stopped) return
    if (writing !== undefined) return void (again = true)
    const changed: Record<string, PipelineMetadata> = {}
    for (const [name, c] of coordinators) {
      const m = c.metadata()
      const json = JSON.stringify(m)
      if (written.get(name) !== json) changed[name] = m
    }
    if (Object.keys(changed).length === 0) return
    writing = meta.store.putPipelines(meta.term, changed).then(
      () => {
        for (const [name, m] of Object.entries(changed)) written.set(name, JSON.stringify(m))
      },
      (err: unknown) => {
        if (err instanceof LeaderFencedError) {
          log.warn({ err: describeError(err) }, 'a newer leader exists: metadata write refused')
          stopped = true
          return meta.onFenced(err)
        }
        // NATS KV unreachable: coordination goes on, the next change or tick writes again.
        log.warn({ err: describeError(err) }, 'cannot store cluster metadata; retrying')
      },
    ).finally(() => {
      writing = undefined
      if (again) {
        again = false
        store()
      }
    })
  }
  const ticker = meta === undefined ? undefined : setInterval(store, METADATA_INTERVAL_MS)
  ticker?.unref()
  const create = (pipeline: string, fingerprint: string, shape: PipelineShape, restored?: PipelineMetadata): void => {
    const coordinator = new Coordinator(bus, { name: pipeline, fingerprint, shape }, {
      cluster: options.cluster,
      epochIntervalMs: options.epochIntervalMs ?? DEFAULT_EPOCH_INTERVAL_MS,
      workerTimeoutMs: options.workerTimeoutMs ?? 10_000,
      workerProbeMs: options.workerProbeMs,
      settleMs: options.settleMs ?? 3000,
      releaseTimeoutMs: options.releaseTimeoutMs,
      generationBase: options.generationBase,
      log,
      restored,
      onChange: store,
      onAllFinished: () => log.info({ pipeline }, 'every actor of the pipeline finished'),
    })
    coordinators.set(pipeline, coordinator)
    coordinator.start()
    log.info({ pipeline, fingerprint, actors: shape.stages.reduce((n, s) => n + s.parallelism, 0), restored: restored === undefined ? undefined : { generation: restored.generation, members: restored.members, completedEpoch: restored.completedEpoch } }, 'coordinating pipeline')
  }
  let coordinatedActors = 0
  const ensure = (pipeline: string, fingerprint: string, shape: unknown, subject: string): void => {
    if (coordinators.has(pipeline)) return
    const parsed = pipelineShape.safeParse(shape)
    if (!parsed.success) return
    const actors = parsed.data.stages.reduce((n, s) => n + s.parallelism, 0)
    const refusal = coordinators.size >= MAX_PIPELINES
      ? `this coordinator already coordinates ${coordinators.size} pipelines (at most ${MAX_PIPELINES})`
      : coordinatedActors + actors > MAX_COORDINATED_ACTORS
        ? `its ${actors} actors would make ${coordinatedActors + actors} coordinated here (at most ${MAX_COORDINATED_ACTORS})`
        : undefined
    if (refusal !== undefined) return void log.warn({ subject, pipeline, reason: refusal }, 'pipeline refused')
    coordinatedActors += actors
    create(pipeline, fingerprint, parsed.data)
  }
  // Pipelines the previous leader coordinated continue at once, before any worker speaks.
  for (const [pipeline, m] of Object.entries(meta?.restored ?? {})) {
    coordinatedActors += m.shape.stages.reduce((n, s) => n + s.parallelism, 0)
    create(pipeline, m.fingerprint, m.shape, m)
  }
  // The first message of a pipeline creates its coordinator; the coordinator's own
  // subscription sees messages from then on, so the creating message is replayed to it.
  const subs: Subscription[] = [
    bus.subscribe(subjects.workerHello(options.cluster, '*'), (raw, subject) => {
      const msg = workerHello.safeParse(raw)
      if (!msg.success) return void log.warn({ subject, issue: msg.error.issues[0] }, 'malformed worker hello dropped')
      // The subject says which pipeline: a hello naming another would make a coordinator the subject never reaches.
      if (msg.data.pipeline !== subject.split('.')[2]) return void log.warn({ subject, pipeline: msg.data.pipeline, reason: 'the hello names another pipeline than its subject' }, 'worker hello refused')
      if (coordinators.has(msg.data.pipeline)) return
      ensure(msg.data.pipeline, msg.data.fingerprint, msg.data.shape, subject)
      if (coordinators.has(msg.data.pipeline)) bus.publish(subject, raw)
    }),
    bus.subscribe(subjects.workerHeartbeat(options.cluster, '*'), (raw, subject) => {
      const pipeline = subject.split('.')[2]!
      if (coordinators.has(pipeline)) return
      const msg = workerHeartbeat.safeParse(raw)
      if (!msg.success) return void log.warn({ subject, issue: msg.error.issues[0] }, 'malformed worker heartbeat dropped')
      ensure(pipeline, msg.data.fingerprint, msg.data.shape, subject)
      if (coordinators.has(pipeline)) bus.publish(subject, raw)
    }),
  ]
  return {
    coordinators,
    stop() {
      stopped = true
      clearInterval(ticker)
      for (const s of subs) s.unsubscribe()
      for (const c of coordinators.values()) c.stop()
    },
  }
}
