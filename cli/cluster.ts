/**
 * `weir coordinator` and `weir worker`: the two processes of cluster mode. Every refusal
 * (bad option, a pipe that cannot be shared, a changed topology) happens before anything
 * connects (exit 2); an unreachable bus or pipe at start is exit 1.
 */
import { resolve } from 'node:path'
import type { ParseArgsConfig } from 'node:util'
import type { Logger } from 'pino'
import { hostname } from 'node:os'
import { startCoordinatorService, type CoordinatorService } from '../coordinator/coordinator-service.ts'
import { DEFAULT_RELEASE_TIMEOUT_MS, DEFAULT_WORKER_PROBE_MS } from '../coordinator/coordinator.ts'
import { ClusterMetadata } from '../coordinator/cluster-metadata.ts'
import { LeaderLease } from '../coordinator/leader-lease.ts'
import { startClusterWorker, type ClusterWorker } from '../runner/cluster-worker.ts'
import { checkClusterName, type ControlBus } from '../runtime/control/bus.ts'
import { ConfigError, describeError, TopologyMismatchError } from '../runtime/errors.ts'
import { DataDirPipeMismatchError } from '../runtime/topology-guard.ts'
import { serveMetrics, type MetricsServer } from '../runtime/metrics.ts'
import { serveHealth, type HealthServer } from '../runtime/health.ts'
import { WorkerProbes } from '../runtime/worker-probes.ts'
import { coordinatorProbes } from '../coordinator/coordinator-probes.ts'
import { serveViews, type ViewsServer } from '../runtime/views/serve-views.ts'
import { openBus, redactBusUrl } from '../runtime/open-bus.ts'
import { tuneHeap } from '../runtime/heap.ts'
import { checkPipeUrl, openPipe } from '../runtime/open-pipe.ts'
import type { Pipe } from '../runtime/pipe/pipe.ts'
import { loadPipeline } from '../runtime/pipeline-file.ts'
import { busTargetOf, NATS_OPTIONS } from './nats-options.ts'
import { parseCommandArgs } from './options.ts'
import { commandLogger, printError, printRefusal, UsageError } from './report.ts'
import { parseMetricsOptions, parseParams, parseViewsOptions } from './run.ts'
import { parsePort } from '../monitor/monitor.ts'
import { COORDINATOR_USAGE, WORKER_USAGE } from './usage.ts'
import { DEFAULT_EPOCH_INTERVAL_MS } from '../coordinator/epochs.ts'

/** The options of `weir coordinator` (parseArgs definitions; a config file's `coordinator` section takes the same, camelCased). */
export const COORDINATOR_OPTIONS = {
  bus: { type: 'string' }, cluster: { type: 'string' }, 'epoch-ms': { type: 'string' }, 'worker-timeout-ms': { type: 'string' }, 'worker-probe-ms': { type: 'string' }, 'settle-ms': { type: 'string' }, 'release-timeout-ms': { type: 'string' }, 'lease-ttl-ms': { type: 'string' }, name: { type: 'string' }, 'health-port': { type: 'string' }, 'health-host': { type: 'string' },
  ...NATS_OPTIONS,
} as const

/** The options of `weir worker` (a config file's `worker` section takes the same, camelCased). */
export const WORKER_OPTIONS = {
  pipe: { type: 'string' }, 'pipe-config': { type: 'string' }, bus: { type: 'string' }, cluster: { type: 'string' }, 'state-dir': { type: 'string' },
  id: { type: 'string' }, param: { type: 'string', multiple: true }, 'metrics-port': { type: 'string' }, 'metrics-host': { type: 'string' }, 'metrics-token-file': { type: 'string' }, 'ready-max-lag': { type: 'string' }, 'views-port': { type: 'string' }, 'views-host': { type: 'string' }, 'views-token-file': { type: 'string' }, 'epoch-ms': { type: 'string' }, 'heartbeat-ms': { type: 'string' }, 'savepoint-dir': { type: 'string' },
  ...NATS_OPTIONS,
} as const

function logger(service: string): Logger {
  return commandLogger(service, 'info')
}

function wholeMs(raw: string | undefined, field: string, fallback: number, min = 1): number {
  if (raw === undefined) return fallback
  const n = Number(raw)
  if (!/^\d+$/.test(raw) || n < min || n > 86_400_000) throw new ConfigError(field, `expected whole milliseconds in ${min}..86400000, got '${raw}'`)
  return n
}

function parse(command: string, argv: string[], options: NonNullable<ParseArgsConfig['options']>, positionals: boolean): { values: Record<string, string | boolean | string[] | undefined>; positionals: string[] } {
  return parseCommandArgs(command, { args: argv, allowPositionals: positionals, options: { ...options, help: { type: 'boolean', short: 'h' } } })
}

/**
 * `--health-port N [--health-host H]`: where a coordinator answers /livez and /readyz. Any
 * host is allowed without a token: the probes tell a status and a reason, nothing else.
 */
function parseHealthOptions(values: { 'health-port'?: string; 'health-host'?: string }): { port: number; host: string } | undefined {
  if (values['health-port'] === undefined) {
    if (values['health-host'] !== undefined) throw new ConfigError('--health-host', 'only with --health-port')
    return undefined
  }
  const host = values['health-host'] ?? '127.0.0.1'
  if (host.trim() === '') throw new ConfigError('--health-host', 'must not be empty')
  return { port: parsePort(values['health-port'], '--health-port'), host }
}

function waitForSignal(): Promise<NodeJS.Signals> {
  return new Promise((resolveSignal) => {
    process.once('SIGINT', () => resolveSignal('SIGINT'))
    process.once('SIGTERM', () => resolveSignal('SIGTERM'))
  })
}

function refused(err: unknown, command: string): number {
  if (err instanceof UsageError || err instanceof ConfigError || err instanceof TopologyMismatchError || err instanceof DataDirPipeMismatchError) return printRefusal(err, command)
  printError(err)
  return 1
}

/** `weir coordinator --bus nats://… [--cluster NAME] [--epoch-ms N] [--worker-timeout-ms N] [--worker-probe-ms N] [--settle-ms N] [--release-timeout-ms N] [--health-port N [--health-host H]]` */
export async function coordinatorCommand(argv: string[]): Promise<number> {
  let bus: ControlBus | undefined
  let metadata: ClusterMetadata | undefined
  let health: HealthServer | undefined
  try {
    const { values } = parse('coordinator', argv, COORDINATOR_OPTIONS, false)
    if (values.help) {
      process.stdout.write(COORDINATOR_USAGE)
      return 0
    }
    const url = (values.bus as string | undefined) ?? process.env.WEIR_BUS
    if (url === undefined) throw new ConfigError('--bus', 'a coordinator needs the NATS control bus: --bus nats://host:port')
    // The bus, the lease and the metadata connect with the same credentials and TLS.
    const target = busTargetOf(url, values.bus === undefined ? 'WEIR_BUS' : '--bus', values, process.env)
    const cluster = (values.cluster as string | undefined) ?? 'default'
    checkClusterName(cluster, '--cluster')
    const epochIntervalMs = wholeMs(values['epoch-ms'] as string | undefined, '--epoch-ms', DEFAULT_EPOCH_INTERVAL_MS)
    const workerTimeoutMs = wholeMs(values['worker-timeout-ms'] as string | undefined, '--worker-timeout-ms', 10_000, 100)
    const workerProbeMs = wholeMs(values['worker-probe-ms'] as string | undefined, '--worker-probe-ms', DEFAULT_WORKER_PROBE_MS, 0)
    const settleMs = wholeMs(values['settle-ms'] as string | undefined, '--settle-ms', 3000, 0)
    const releaseTimeoutMs = wholeMs(values['release-timeout-ms'] as string | undefined, '--release-timeout-ms', DEFAULT_RELEASE_TIMEOUT_MS, 0)
    const leaseTtlMs = wholeMs(values['lease-ttl-ms'] as string | undefined, '--lease-ttl-ms', 5000, 300)
    const name = (values.name as string | undefined) ?? `${hostname()}-${process.pid}`
    const healthOptions = parseHealthOptions(values as Record<string, string | undefined>)
    const log = logger('weir-coordinator').child({ coordinator: name })
    bus = await openBus(target, { name: `weir-coordinator-${cluster}`, log })
    // One coordinator of the cluster leads (a lease in NATS KV); the others wait to take over.
    const lease = await LeaderLease.open({ ...target, cluster, holder: name, ttlMs: leaseTtlMs, log })
    // The leader keeps its metadata beside the lease: a successor continues from it.
    metadata = await ClusterMetadata.open({ ...target, cluster, log })
    const store = metadata
    let service: CoordinatorService | undefined
    let leading = 0
    const busForService = bus
    const standDown = (): void => {
      leading = 0
      service?.stop()
      service = undefined
    }
    lease.on('elected', (term: number) => {
      leading = term
      log.info({ term }, 'leading the cluster')
      // Stamping our term on the metadata fences every write of an older leader.
      store.claim(term).then(
        (record) => {
          if (leading !== term) return
          process.stdout.write(`weir coordinator ${name}: leading cluster ${cluster} (term ${term})${Object.keys(record.pipelines).length > 0 ? `; continuing ${Object.keys(record.pipelines).join(', ')}` : ''}\n`)
          service = startCoordinatorService(busForService, {
            cluster, log, epochIntervalMs, workerTimeoutMs, workerProbeMs, settleMs, releaseTimeoutMs, generationBase: term * 1_000_000,
            metadata: {
              store, term, restored: record.pipelines,
              onFenced: () => {
                standDown()
                void lease.release().catch(() => undefined)
              },
            },
          })
        },
        (err: unknown) => {
          // Fenced (a newer leader) or KV unreachable: give the lease up, so someone who can lead does.
          log.error({ term, err: describeError(err) }, 'cannot claim the cluster metadata: giving up the lease')
          if (leading === term) standDown()
          void lease.release().catch(() => undefined)
        },
      )
    })
    lease.on('lost', (reason: string) => {
      log.warn({ reason }, 'leadership lost: standing by')
      standDown()
    })
    if (healthOptions !== undefined) health = await serveHealth(coordinatorProbes({ bus, lease, leading: () => service !== undefined }), healthOptions)
    await lease.start()
    process.stdout.write(`weir coordinator ${name}: cluster ${cluster} on ${redactBusUrl(url)} (worker timeout ${workerTimeoutMs} ms, ${workerProbeMs > 0 ? `probes every ${workerProbeMs} ms` : 'no probes'}, lease ${leaseTtlMs} ms)${health === undefined ? '' : `, health at ${health.url}/readyz`}\n`)
    const signal = await waitForSignal()
    log.info({ signal }, 'coordinator stopping')
    await health?.close()
    service?.stop()
    // Released at once, so a standby takes over without waiting for the lease to expire.
    await lease.release().catch(() => undefined)
    await metadata.close()
    await bus.close().catch(() => undefined)
    return 0
  } catch (err) {
    await health?.close()
    await metadata?.close()
    await bus?.close().catch(() => undefined)
    return refused(err, 'coordinator')
  }
}

/** `weir worker <pipeline.ts> --pipe kafka://… --bus nats://… [--cluster NAME] [--state-dir D] [--id ID] [--param k=v] [--metrics-port N [--metrics-host H] [--metrics-token-file F] [--ready-max-lag N]]` */
export async function workerCommand(argv: string[]): Promise<number> {
  // Listened for from the start: a SIGTERM while the worker starts stops it cleanly once it has.
  const signalled = waitForSignal()
  let bus: ControlBus | undefined
  let pipe: Pipe | undefined
  let metrics: MetricsServer | undefined
  let views: ViewsServer | undefined
  let worker: ClusterWorker | undefined
  try {
    const { values, positionals } = parse('worker', argv, WORKER_OPTIONS, true)
    if (values.help) {
      process.stdout.write(WORKER_USAGE)
      return 0
    }
    if (positionals.length !== 1) throw new UsageError(`worker: expected one pipeline file, got ${positionals.length}`)
    const pipeUrl = (values.pipe as string | undefined) ?? process.env.WEIR_PIPE
    if (pipeUrl === undefined || pipeUrl === 'embedded') throw new ConfigError('--pipe', 'workers of a cluster share their pipe: --pipe kafka://host:port (the embedded pipe lives in one process)')
    checkPipeUrl(pipeUrl)
    const busUrl = (values.bus as string | undefined) ?? process.env.WEIR_BUS
    if (busUrl === undefined) throw new ConfigError('--bus', 'a worker needs the NATS control bus: --bus nats://host:port')
    const busTarget = busTargetOf(busUrl, values.bus === undefined ? 'WEIR_BUS' : '--bus', values, process.env)
    const cluster = (values.cluster as string | undefined) ?? 'default'
    checkClusterName(cluster, '--cluster')
    const id = values.id as string | undefined
    if (id !== undefined && !/^[A-Za-z0-9_.-]{1,64}$/.test(id)) throw new ConfigError('--id', `'${id}' must be 1-64 of A-Z a-z 0-9 _ . -`)
    const params = parseParams(values.param as string[] | undefined)
    const metricsOptions = parseMetricsOptions(values as Record<string, string | undefined>, process.cwd(), process.env)
    const viewsOptions = parseViewsOptions(values as Record<string, string | undefined>, process.cwd(), process.env)
    const epochIntervalMs = wholeMs(values['epoch-ms'] as string | undefined, '--epoch-ms', DEFAULT_EPOCH_INTERVAL_MS)
    const heartbeatMs = wholeMs(values['heartbeat-ms'] as string | undefined, '--heartbeat-ms', 1000, 50)
    const pipeline = await loadPipeline(resolve(positionals[0]!), params)
    const stateDir = resolve((values['state-dir'] as string | undefined) ?? `.weir/${pipeline.name}-worker`)
    const log = logger('weir-worker')
    tuneHeap('kafka')
    bus = await openBus(busTarget, { name: `weir-worker-${pipeline.name}`, log })
    pipe = await openPipe(pipeUrl, { dataDir: stateDir, configFile: values['pipe-config'] === undefined ? undefined : resolve(values['pipe-config'] as string), log })
    // Probes answer from before the join on (not ready until assigned, restored and caught up):
    // a kubelet that finds no server at all would count the start as a failed liveness probe.
    const probes = new WorkerProbes({ bus, maxLag: metricsOptions?.readyMaxLag })
    if (metricsOptions !== undefined) metrics = await serveMetrics(() => worker?.metrics, { ...metricsOptions, probes })
    worker = await startClusterWorker(pipeline, { pipe, bus, cluster, stateDir, id, log, epochIntervalMs, heartbeatMs, savepointDir: values['savepoint-dir'] === undefined ? undefined : resolve(values['savepoint-dir'] as string) })
    probes.attach(worker.worker)
    worker.done.catch((err: unknown) => probes.failed(err))
    // Every worker answers any key of any view: it routes the key to its holder over the bus.
    if (pipeline.views.length > 0) views = await serveViews({ pipeline, bus, cluster, ...viewsOptions, dir: stateDir, log })
    process.stdout.write(`weir worker ${worker.id}: pipeline ${pipeline.name} in cluster ${cluster}${metrics === undefined ? '' : `, metrics at ${metrics.url}`}${views === undefined ? '' : `, views at ${views.url}/views/${pipeline.name}`}\n`)
    const running = worker
    const outcome = await Promise.race([running.done, signalled.then(async (signal) => {
      log.info({ signal }, 'worker stopping: handing its actors off')
      await running.stop()
      return 'stopped' as const
    })])
    process.stdout.write(`weir worker ${running.id}: ${outcome}\n`)
    return 0
  } catch (err) {
    return refused(err, 'worker')
  } finally {
    await views?.close().catch(() => undefined)
    await metrics?.close().catch(() => undefined)
    await pipe?.close().catch(() => undefined)
    await bus?.close().catch(() => undefined)
  }
}
