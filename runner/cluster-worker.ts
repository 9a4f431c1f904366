/**
 * A worker process of a cluster (`weir worker`): runs the actors the coordinator assigns
 * it, on a shared pipe (Kafka) and the NATS control bus, with state in its own state dir.
 * Unlike the embedded runner there is no coordinator in the process: if none answers, the
 * worker waits (and keeps processing what it holds).
 *
 * @example
 * const worker = await startClusterWorker(pipeline, { pipe, bus, cluster: 'prod', stateDir: './state', id: 'w1', log })
 * await worker.done // the pipeline finished (bounded), or the worker stopped or failed
 */
import { hostname } from 'node:os'
import { randomUUID } from 'node:crypto'
import type { Logger } from 'pino'
import type { Registry } from 'prom-client'
import { actorConfigFor, type ActorConfig } from '../runtime/actor/actor.ts'
import { checkClusterName, subjects, type ControlBus } from '../runtime/control/bus.ts'
import { assignmentMessage, workerHelloOf, workerRefused } from '../runtime/control/messages.ts'
import { ensureTopics, validateFactories } from './embedded-runner.ts'
import { Faults } from '../runtime/faults.ts'
import { workerMetrics } from '../runtime/metrics.ts'
import type { Pipe } from '../runtime/pipe/pipe.ts'
import type { Pipeline } from '../runtime/api/pipeline.ts'
import { checkPipe, checkTopology, recordPipe, recordTopology, refusalReason } from '../runtime/topology-guard.ts'
import { answerProbes, Worker, WorkerRefusedError } from '../runtime/worker.ts'

export interface ClusterWorkerOptions {
  pipe: Pipe
  bus: ControlBus
  cluster: string
  /** Where this worker's actors keep their local RocksDB state. */
  stateDir: string
  /** Unique in the cluster; default `<host>-<random>`. */
  id?: string
  log: Logger
  epochIntervalMs?: number
  heartbeatMs?: number
  actorConfig?: Partial<ActorConfig>
  faults?: Faults
  /** How long to wait for the coordinator to accept (or refuse) this worker before touching any topic, ms. Default 10 000. */
  joinTimeoutMs?: number
  /** Where this worker writes its actors' state for a savepoint of the running pipeline; undefined: it takes part in none. */
  savepointDir?: string
}

export interface ClusterWorker {
  readonly id: string
  /** Resolves 'finished' when the pipeline finished, 'stopped' after stop(); rejects when the worker failed. */
  readonly done: Promise<'finished' | 'stopped'>
  readonly metrics: Registry
  readonly worker: Worker
  /** Graceful: announce the leave, let the coordinator move the actors (up to `handoffMs`), then stop what is left. */
  stop(handoffMs?: number): Promise<void>
}

export async function startClusterWorker(pipeline: Pipeline, options: ClusterWorkerOptions): Promise<ClusterWorker> {
  checkClusterName(options.cluster)
  checkTopology(options.stateDir, pipeline)
  checkPipe(options.stateDir, options.pipe)
  validateFactories(pipeline)
  const id = options.id ?? `${hostname()}-${randomUUID().slice(0, 8)}`
  // Hello every second until the worker's heartbeats start: a coordinator that starts (or
  // takes over) meanwhile hears it, and it is not declared dead while topics are created.
  const hello = (): void => options.bus.publish(subjects.workerHello(options.cluster, pipeline.name), workerHelloOf(pipeline, id))
  // The hellos say this worker answers liveness probes: it does from before the first one
  // (the Worker answers once started), or the coordinator would find nobody answering while
  // topics are created, and declare it dead.
  const answering = answerProbes(options.bus, options.cluster, pipeline.name, id)
  const helloLoop = setInterval(hello, 1000)
  try {
    // A worker the coordinator refuses (another topology under this name) must change nothing.
    const joined = await join(pipeline, id, options, hello)
    if (joined === 'no answer') options.log.warn({ worker: id, cluster: options.cluster }, 'no coordinator answered; starting anyway (actors start once one assigns them)')
    await ensureTopics(options.pipe, pipeline)
    recordTopology(options.stateDir, pipeline)
    recordPipe(options.stateDir, options.pipe)
  } catch (err) {
    answering.unsubscribe()
    throw err
  } finally {
    clearInterval(helloLoop)
  }
  let settle!: { resolve(r: 'finished' | 'stopped'): void; reject(e: unknown): void }
  const done = new Promise<'finished' | 'stopped'>((resolve, reject) => { settle = { resolve, reject } })
  let ending = false
  const worker: Worker = new Worker(options.bus, options.pipe, pipeline, {
    id,
    cluster: options.cluster,
    dataDir: options.stateDir,
    log: options.log,
    faults: options.faults ?? Faults.none(),
    actorConfig: actorConfigFor(options.pipe, options.actorConfig),
    epochIntervalMs: options.epochIntervalMs,
    heartbeatMs: options.heartbeatMs,
    savepointDir: options.savepointDir,
    onPipelineFinished: () => {
      if (ending) return
      ending = true
      worker.stop().then(() => settle.resolve('finished'), (err: unknown) => settle.reject(err))
    },
  })
  const metrics = workerMetrics(pipeline, () => worker.actorList)
  worker.start((err) => {
    if (ending) return
    ending = true
    void worker.abandon().finally(() => settle.reject(err))
  })
  // The worker answers from here on (a drained subscription still answers what is on its way).
  answering.unsubscribe()
  return {
    id,
    done,
    metrics,
    worker,
    async stop(handoffMs = 10_000) {
      if (ending) {
        await done.catch(() => undefined)
        return
      }
      ending = true
      worker.announceLeave()
      // The coordinator releases our actors: each stops (final checkpoint, producer closed) when
      // the releasing assignment comes and is reported released; only then does another worker open it.
      const deadline = Date.now() + handoffMs
      // Finished actors too: each is released to its new owner like a running one.
      while (worker.actorList.length > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100))
      await worker.stop()
      settle.resolve('stopped')
      await done
    },
  }
}

/**
 * Says hello and waits for the coordinator's answer: an assignment (accepted) or a
 * refusal (throws WorkerRefusedError). No answer within the timeout is not an error: the
 * coordinator may be restarting, and the worker's hellos and heartbeats go on.
 */
async function join(pipeline: Pipeline, worker: string, options: ClusterWorkerOptions, hello: () => void): Promise<'accepted' | 'no answer'> {
  const { bus, cluster } = options
  return new Promise((resolve, reject) => {
    const subs = [
      bus.subscribe(subjects.assignment(cluster, pipeline.name), (raw) => {
        // Accepted once an assignment counts this worker in (others' assignments say nothing about it).
        const msg = assignmentMessage.safeParse(raw)
        if (msg.success && (Object.values(msg.data.actors).includes(worker) || Object.values(msg.data.releasing ?? {}).some((r) => r.to === worker))) finish(() => resolve('accepted'))
      }),
      bus.subscribe(subjects.workerRefused(cluster, pipeline.name), (raw) => {
        const msg = workerRefused.safeParse(raw)
        if (msg.success && msg.data.worker === worker) {
          finish(() => reject(new WorkerRefusedError(refusalReason(msg.data, pipeline), { worker, pipeline: pipeline.name, fingerprint: msg.data.fingerprint, expectedFingerprint: msg.data.expectedFingerprint })))
        }
      }),
    ]
    const timer = setTimeout(() => finish(() => resolve('no answer')), options.joinTimeoutMs ?? 10_000)
    function finish(settle: () => void): void {
      clearTimeout(timer)
      for (const s of subs) s.unsubscribe()
      settle()
    }
    hello()
  })
}

