/**
 * What `weir coordinator` runs: one Coordinator per pipeline of a cluster, created when
 * the first worker of that pipeline speaks (hello or heartbeat: both carry the pipeline's
 * shape, so the coordinator never loads a pipeline file). A coordinator that starts while
 * workers already run listens for `settleMs` first and continues their generation, epochs
 * and placement.
 *
 * @example
 * const service = startCoordinatorService(bus, { cluster: 'prod', log })
 * // … later
 * service.stop()
 */
import type { Logger } from 'pino'
import { subjects, type ControlBus, type Subscription } from '../runtime/control/bus.ts'
import { Coordinator } from './coordinator.ts'
import { pipelineShape, workerHeartbeat, workerHello } from './messages.ts'

export interface CoordinatorServiceOptions {
  cluster: string
  log: Logger
  /** Checkpoint epoch interval, ms. Default 1000. */
  epochIntervalMs?: number
  /** A worker silent this long is declared dead and its actors move. Default 10 000. */
  workerTimeoutMs?: number
  /** Listening time before the first placement of a pipeline, ms. Default 3000. */
  settleMs?: number
  /** Passed to each Coordinator: the leader's term × 1e6. */
  generationBase?: number
}

export interface CoordinatorService {
  /** Coordinators by pipeline name. */
  readonly coordinators: ReadonlyMap<string, Coordinator>
  stop(): void
}

export function startCoordinatorService(bus: ControlBus, options: CoordinatorServiceOptions): CoordinatorService {
  const coordinators = new Map<string, Coordinator>()
  const log = options.log.child({ cluster: options.cluster })
  const ensure = (pipeline: string, fingerprint: string, shape: unknown): void => {
    if (coordinators.has(pipeline)) return
    const parsed = pipelineShape.safeParse(shape)
    if (!parsed.success) return
    const coordinator = new Coordinator(bus, { name: pipeline, fingerprint, shape: parsed.data }, {
      cluster: options.cluster,
      epochIntervalMs: options.epochIntervalMs ?? 1000,
      workerTimeoutMs: options.workerTimeoutMs ?? 10_000,
      settleMs: options.settleMs ?? 3000,
      generationBase: options.generationBase,
      log,
      onAllFinished: () => log.info({ pipeline }, 'every actor of the pipeline finished'),
    })
    coordinators.set(pipeline, coordinator)
    coordinator.start()
    log.info({ pipeline, fingerprint, actors: parsed.data.stages.reduce((n, s) => n + s.parallelism, 0) }, 'coordinating pipeline')
  }
  // The first message of a pipeline creates its coordinator; the coordinator's own
  // subscription sees messages from then on, so the creating message is replayed to it.
  const subs: Subscription[] = [
    bus.subscribe(subjects.workerHello(options.cluster, '*'), (raw, subject) => {
      const msg = workerHello.safeParse(raw)
      if (!msg.success) return void log.warn({ subject, issue: msg.error.issues[0] }, 'malformed worker hello dropped')
      if (coordinators.has(msg.data.pipeline)) return
      ensure(msg.data.pipeline, msg.data.fingerprint, msg.data.shape)
      if (coordinators.has(msg.data.pipeline)) bus.publish(subject, raw)
    }),
    bus.subscribe(subjects.workerHeartbeat(options.cluster, '*'), (raw, subject) => {
      const pipeline = subject.split('.')[2]!
      if (coordinators.has(pipeline)) return
      const msg = workerHeartbeat.safeParse(raw)
      if (!msg.success) return void log.warn({ subject, issue: msg.error.issues[0] }, 'malformed worker heartbeat dropped')
      ensure(pipeline, msg.data.fingerprint, msg.data.shape)
      if (coordinators.has(pipeline)) bus.publish(subject, raw)
    }),
  ]
  return {
    coordinators,
    stop() {
      for (const s of subs) s.unsubscribe()
      for (const c of coordinators.values()) c.stop()
    },
  }
}
