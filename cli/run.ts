/**
 * `weir run <pipeline.ts>`: loads a pipeline file and runs it in this process, on the
 * embedded pipe or on Kafka (`--pipe kafka://…`), optionally serving the timeliness monitor
 * (`--monitor`, docs/monitoring.md) on the run's own bus. Every refusal (bad option, missing or broken file, changed topology) happens
 * before the data dir is created or written.
 */
import { statSync } from 'node:fs'
import { resolve } from 'node:path'
import type { Logger } from 'pino'
import { startEmbedded, type RunResult, type RunningPipeline } from '../runner/embedded-runner.ts'
import { ConfigError, TopologyMismatchError } from '../runtime/errors.ts'
import { SavepointError } from '../runtime/savepoint/manifest.ts'
import { SavepointFileError } from '../runtime/savepoint/frames.ts'
import { DataDirPipeMismatchError } from '../runtime/topology-guard.ts'
import { Faults } from '../runtime/faults.ts'
import { checkClusterName, type ControlBus } from '../runtime/control/bus.ts'
import { localBus, openBus, type BusTarget } from '../runtime/open-bus.ts'
import { checkMetricsBinding, serveMetrics, type MetricsServer } from '../runtime/metrics.ts'
import { parseReadyMaxLag, WorkerProbes } from '../runtime/worker-probes.ts'
import { checkPublicBinding } from '../runtime/http-token.ts'
import { serveViews, type ViewsServer } from '../runtime/views/serve-views.ts'
import { tuneHeap } from '../runtime/heap.ts'
import { checkPipeUrl, openPipe } from '../runtime/open-pipe.ts'
import type { Pipe } from '../runtime/pipe/pipe.ts'
import type { Pipeline } from '../runtime/api/pipeline.ts'
import { loadPipeline } from '../runtime/pipeline-file.ts'
import { checkMonitorBinding, DEFAULT_MONITOR_HOST, DEFAULT_MONITOR_PORT, parsePort, parseSloFlag, startMonitor, type RunningMonitor } from '../monitor/monitor.ts'
import { busTargetOf, NATS_OPTIONS, refuseNatsOptionsWithoutBus } from './nats-options.ts'
import { parseCommandArgs } from './options.ts'
import { connectProgress } from './connect-progress.ts'
import { ProgressDisplay } from './progress.ts'
import { commandLogger, printError, printRefusal, UsageError } from './report.ts'
import { lastEpoch } from './stats.ts'
import { formatSummary } from './summary.ts'
import { readToken } from './token.ts'
import { RUN_USAGE } from './usage.ts'
import { DEFAULT_EPOCH_INTERVAL_MS } from '../coordinator/epochs.ts'

export interface RunArgs {
  file: string
  /** Undefined until the pipeline is loaded: the default is `./.weir/<pipeline name>`. */
  dataDir: string | undefined
  epochIntervalMs: number
  params: Record<string, string>
  quiet: boolean
  /** `embedded` (default) or a kafka:// URL. */
  pipe: string
  pipeConfig: string | undefined
  /** A nats:// URL to coordinate over (and be observed on) instead of the in-process bus. */
  bus: string | undefined
  /** Its server, credentials and TLS. */
  busTarget: BusTarget | undefined
  /** Namespace of the control subjects on the bus. */
  cluster: string
  /** `--monitor`: serve the monitor from this process, watching this run's bus. */
  monitor: RunMonitorArgs | undefined
  /** `--metrics-port`: serve the worker's Prometheus metrics and its /livez and /readyz (loopback unless --metrics-host, which needs a token). */
  metrics: MetricsArgs | undefined
  /** `--views-port` etc.: where the pipeline's views are served (a free loopback port by default). */
  views: ViewsArgs
  /** `--savepoint-dir DIR`: where savepoints of the running pipeline go (`weir savepoint create --bus`); default `<data-dir>/savepoints`. */
  savepointDir: string | undefined
  /** `--from-savepoint DIR [--allow-dropped-state]`. */
  fromSavepoint: { dir: string; allowDroppedState: boolean } | undefined
}

export interface MetricsArgs {
  port: number
  host: string
  /** Needed by /metrics, never by the probes. */
  token: string | undefined
  /** `--ready-max-lag`: records behind the input end an actor may be while /readyz says ready. */
  readyMaxLag: number
}

export interface ViewsArgs {
  /** 0: a free port. */
  port: number
  host: string
  token: string | undefined
}

export interface RunMonitorArgs {
  port: number
  host: string
  token: string | undefined
  /** `--slo OUTPUT=DURATION`: the pipeline is the one being run. */
  slos: Array<{ output: string; timelinessMs: number }>
}

/** Each pipeline gets its own data dir under this one, so examples run side by side. */
const DEFAULT_DATA_ROOT = '.weir'
const MAX_EPOCH_MS = 86_400_000
const PARAM_KEY = /^[A-Za-z_][A-Za-z0-9_.-]*$/

export { UsageError }

/** The options of `weir run` (parseArgs definitions; a config file's `run` section takes the same, camelCased). */
export const RUN_OPTIONS = {
  'data-dir': { type: 'string' },
  'epoch-ms': { type: 'string' },
  param: { type: 'string', multiple: true },
  quiet: { type: 'boolean', short: 'q' },
  pipe: { type: 'string' },
  'pipe-config': { type: 'string' },
  bus: { type: 'string' },
  cluster: { type: 'string' },
  monitor: { type: 'boolean' },
  'monitor-port': { type: 'string' },
  'monitor-host': { type: 'string' },
  slo: { type: 'string', multiple: true },
  'metrics-port': { type: 'string' },
  'metrics-host': { type: 'string' },
  'metrics-token-file': { type: 'string' },
  'ready-max-lag': { type: 'string' },
  'views-port': { type: 'string' },
  'views-host': { type: 'string' },
  'views-token-file': { type: 'string' },
  'from-savepoint': { type: 'string' },
  'allow-dropped-state': { type: 'boolean' },
  'savepoint-dir': { type: 'string' },
  ...NATS_OPTIONS,
  help: { type: 'boolean', short: 'h' },
} as const

/** Parses and validates `run`'s arguments; `help` when --help was given. Throws UsageError or ConfigError. */
export function parseRunArgs(argv: string[], cwd = process.cwd()): RunArgs | 'help' {
  const parsed = parseCommandArgs('run', { args: argv, allowPositionals: true, options: RUN_OPTIONS }, { cwd, env: process.env })
  const { values, positionals } = parsed
  if (values.help) return 'help'
  if (positionals.length === 0) throw new UsageError('run: missing the pipeline file (weir run <pipeline.ts>)')
  if (positionals.length > 1) throw new UsageError(`run: expected one pipeline file, got ${positionals.length}: ${positionals.join(' ')}`)

  const rawEpoch = values['epoch-ms']
  let epochIntervalMs = DEFAULT_EPOCH_INTERVAL_MS
  if (rawEpoch !== undefined) {
    epochIntervalMs = Number(rawEpoch)
    if (!/^\d+$/.test(rawEpoch) || epochIntervalMs < 1 || epochIntervalMs > MAX_EPOCH_MS) {
      throw new ConfigError('--epoch-ms', `expected a whole number of milliseconds in 1..${MAX_EPOCH_MS}, got '${rawEpoch}'`)
    }
  }

  const rawDir = values['data-dir']
  if (rawDir !== undefined && rawDir.trim() === '') throw new ConfigError('--data-dir', 'must not be empty')

  const params = parseParams(values.param)

  const pipe = values.pipe ?? process.env.WEIR_PIPE ?? 'embedded'
  checkPipeUrl(pipe)
  const pipeConfig = values['pipe-config'] === undefined ? undefined : resolve(cwd, values['pipe-config'])
  if (pipeConfig !== undefined && pipe === 'embedded') throw new ConfigError('--pipe-config', 'only a kafka:// pipe takes a config file')

  const bus = values.bus ?? process.env.WEIR_BUS
  if (bus === undefined) refuseNatsOptionsWithoutBus(values)
  const busTarget = bus === undefined ? undefined : busTargetOf(bus, values.bus === undefined ? 'WEIR_BUS' : '--bus', values, process.env, cwd)
  const cluster = values.cluster ?? 'embedded'
  checkClusterName(cluster, '--cluster')
  if (values.cluster !== undefined && bus === undefined) throw new ConfigError('--cluster', 'only with --bus')

  const metrics = parseMetricsOptions(values, cwd, process.env)

  const rawSavepoint = values['from-savepoint']
  if (rawSavepoint !== undefined && rawSavepoint.trim() === '') throw new ConfigError('--from-savepoint', 'must name a savepoint directory')
  if (rawSavepoint === undefined && values['allow-dropped-state'] === true) throw new ConfigError('--allow-dropped-state', 'only with --from-savepoint')
  const fromSavepoint = rawSavepoint === undefined ? undefined : { dir: resolve(cwd, rawSavepoint), allowDroppedState: values['allow-dropped-state'] === true }

  return {
    savepointDir: values['savepoint-dir'] === undefined ? undefined : resolve(cwd, values['savepoint-dir']),
    fromSavepoint,
    metrics,
    views: parseViewsOptions(values, cwd, process.env),
    monitor: parseMonitorOptions(values),
    bus,
    busTarget,
    cluster,
    pipe,
    pipeConfig,
    file: resolve(cwd, positionals[0]!),
    dataDir: rawDir === undefined ? undefined : resolve(cwd, rawDir),
    epochIntervalMs,
    params,
    quiet: values.quiet ?? false,
  }
}

/**
 * `--metrics-port N [--metrics-host H] [--metrics-token-file F] [--ready-max-lag N]` of `weir
 * run` and `weir worker`: the worker's own /metrics, /livez and /readyz; a public host
 * without a token is refused (the probes need none, /metrics does).
 */
export function parseMetricsOptions(values: { 'metrics-port'?: string; 'metrics-host'?: string; 'metrics-token-file'?: string; 'ready-max-lag'?: string }, cwd: string, env: NodeJS.ProcessEnv): MetricsArgs | undefined {
  if (values['metrics-port'] === undefined) {
    for (const option of ['metrics-host', 'metrics-token-file', 'ready-max-lag'] as const) {
      if (values[option] !== undefined) throw new ConfigError(`--${option}`, 'only with --metrics-port')
    }
    return undefined
  }
  const port = parsePort(values['metrics-port'], '--metrics-port')
  const host = values['metrics-host'] ?? '127.0.0.1'
  const token = readToken({ file: values['metrics-token-file'], fileOption: '--metrics-token-file', envName: 'WEIR_METRICS_TOKEN' }, cwd, env)
  checkMetricsBinding(host, token)
  return { port, host, token, readyMaxLag: parseReadyMaxLag(values['ready-max-lag']) }
}

/**
 * `--views-port N [--views-host H] [--views-token-file F]` of `weir run` and `weir worker`:
 * where the pipeline's views are served (when it has any). Default: a free port on
 * 127.0.0.1, named in the data dir's views.json for `weir peek`; a public host needs a token.
 */
export function parseViewsOptions(values: { 'views-port'?: string; 'views-host'?: string; 'views-token-file'?: string }, cwd: string, env: NodeJS.ProcessEnv): ViewsArgs {
  const port = values['views-port'] === undefined ? 0 : parsePort(values['views-port'], '--views-port')
  const host = values['views-host'] ?? '127.0.0.1'
  const token = readToken({ file: values['views-token-file'], fileOption: '--views-token-file', envName: 'WEIR_VIEWS_TOKEN' }, cwd, env)
  checkPublicBinding(host, token, '--views-host', '--views-token-file FILE or WEIR_VIEWS_TOKEN')
  return { port, host, token }
}

/** The --monitor options; each of the others without --monitor is refused, naming it. */
function parseMonitorOptions(values: { monitor?: boolean; 'monitor-port'?: string; 'monitor-host'?: string; slo?: string[] }): RunMonitorArgs | undefined {
  if (!values.monitor) {
    for (const option of ['monitor-port', 'monitor-host', 'slo'] as const) {
      if (values[option] !== undefined) throw new ConfigError(`--${option}`, 'only with --monitor')
    }
    return undefined
  }
  const port = values['monitor-port'] === undefined ? DEFAULT_MONITOR_PORT : parsePort(values['monitor-port'], '--monitor-port')
  const host = values['monitor-host'] ?? DEFAULT_MONITOR_HOST
  const token = process.env.WEIR_MONITOR_TOKEN === '' ? undefined : process.env.WEIR_MONITOR_TOKEN
  checkMonitorBinding(host, token, '--monitor-host')
  // The pipeline's name is known once its file is loaded; '_' stands in until then.
  const slos = (values.slo ?? []).map((s) => parseSloFlag(s, '--slo', '_')).map(({ output, timelinessMs }) => ({ output, timelinessMs }))
  return { port, host, token, slos }
}

/** An SLO must name a stage of the pipeline being run: a typo would otherwise never alert. */
function checkSloOutputs(monitor: RunMonitorArgs | undefined, pipeline: Pipeline): void {
  const stages = pipeline.actorStages.map((s) => s.name)
  for (const slo of monitor?.slos ?? []) {
    if (!stages.includes(slo.output)) throw new ConfigError('--slo', `'${slo.output}' is not a stage of pipeline '${pipeline.name}' (stages: ${stages.join(', ')})`)
  }
}

/** `--param key=value` options (repeatable) for a pipeline function; ConfigError naming `--param`. */
export function parseParams(raw: readonly string[] | undefined): Record<string, string> {
  const params: Record<string, string> = {}
  for (const p of raw ?? []) {
    const eq = p.indexOf('=')
    if (eq < 0) throw new ConfigError('--param', `expected key=value, got '${p}'`)
    const key = p.slice(0, eq)
    if (!PARAM_KEY.test(key)) throw new ConfigError('--param', `'${key}' in '${p}' is not a valid key (letters, digits, _ . -, not starting with a digit)`)
    if (Object.prototype.hasOwnProperty.call(params, key)) throw new ConfigError('--param', `'${key}' is given twice`)
    params[key] = p.slice(eq + 1)
  }
  return params
}

function checkDataDir(dir: string): void {
  let stat
  try {
    stat = statSync(dir)
  } catch {
    return // created by the runtime once everything else checked out
  }
  if (!stat.isDirectory()) throw new ConfigError('--data-dir', `${dir} exists and is not a directory`)
}

/** The runtime's logger, routed through the progress display so a log line never lands inside it. */
function cliLogger(beforeWrite: () => void): Logger {
  return commandLogger('weir', 'error', (line) => {
    beforeWrite()
    process.stderr.write(line)
  })
}

/** Errors that mean "refused at start, nothing touched": exit 2. */
function isRefusal(err: unknown): boolean {
  // A savepoint that is missing, damaged or does not fit the pipeline is refused input, as a bad option is.
  return err instanceof TopologyMismatchError || err instanceof ConfigError || err instanceof DataDirPipeMismatchError || err instanceof SavepointError || err instanceof SavepointFileError
}

export async function runCommand(argv: string[]): Promise<number> {
  let args: RunArgs
  let faults: Faults
  let pipeline: Pipeline
  let display: ProgressDisplay | undefined
  let log: Logger
  let dataDir: string
  try {
    const parsed = parseRunArgs(argv)
    if (parsed === 'help') {
      process.stdout.write(RUN_USAGE)
      return 0
    }
    args = parsed
    faults = Faults.fromEnv()
    log = cliLogger(() => display?.clear())
    if (args.dataDir !== undefined) checkDataDir(args.dataDir)
    pipeline = await loadPipeline(args.file, args.params)
    checkSloOutputs(args.monitor, pipeline)
    dataDir = args.dataDir ?? resolve(DEFAULT_DATA_ROOT, pipeline.name)
    if (args.dataDir === undefined) checkDataDir(dataDir)
  } catch (err) {
    return printRefusal(err, 'run')
  }

  const startedAt = performance.now()
  if (process.stderr.isTTY && !args.quiet) display = new ProgressDisplay(pipeline, process.stderr, startedAt)

  let run: RunningPipeline | undefined
  let pipe: Pipe | undefined
  let bus: ControlBus | undefined
  let monitor: RunningMonitor | undefined
  let metricsServer: MetricsServer | undefined
  let viewsServer: ViewsServer | undefined
  let signalled: NodeJS.Signals | undefined
  const stopRun = (r: RunningPipeline): void => {
    display?.setStatus('stopping: final checkpoint (Ctrl-C again to exit at once)')
    // A failure while stopping rejects `done`, which is reported below.
    r.stop().catch(() => undefined)
  }
  const onSignal = (signal: NodeJS.Signals): void => {
    if (signalled !== undefined) {
      display?.stop()
      process.stderr.write(`weir: ${signal} again: exiting without waiting for the final checkpoint\n`)
      process.exit(signal === 'SIGINT' ? 130 : 143)
    }
    signalled = signal
    if (run !== undefined) stopRun(run)
  }
  process.on('SIGINT', onSignal)
  process.on('SIGTERM', onSignal)
  const removeHandlers = (): void => {
    process.off('SIGINT', onSignal)
    process.off('SIGTERM', onSignal)
  }

  try {
    if (args.busTarget !== undefined) bus = await openBus(args.busTarget, { name: `weir-run-${pipeline.name}`, log })
    tuneHeap(args.pipe === 'embedded' ? 'embedded' : 'kafka')
    if (args.pipe !== 'embedded') {
      const connecting = connectProgress(process.stderr, commandLogger('weir', 'warn'))
      try {
        pipe = await openPipe(args.pipe, { dataDir, configFile: args.pipeConfig, log, onConnectRetry: (r) => connecting.onRetry(r) })
      } finally {
        connecting.done()
      }
    }
    // The monitor listens on the run's own bus; without --bus that is an in-process one made here.
    if (args.monitor !== undefined) bus ??= localBus(log)
    run = await startEmbedded(pipeline, { dataDir, epochIntervalMs: args.epochIntervalMs, faults, log, pipe, bus, cluster: args.cluster, fromSavepoint: args.fromSavepoint, savepointDir: args.savepointDir })
    if (args.monitor !== undefined) {
      const slos = args.monitor.slos.map((s) => ({ ...s, cluster: args.cluster, pipeline: pipeline.name }))
      // It hears the run from its next progress interval on; its /metrics also serves the worker's.
      monitor = await startMonitor({ bus: bus!, cluster: args.cluster, port: args.monitor.port, host: args.monitor.host, token: args.monitor.token, slos, log, hostField: '--monitor-host', extraRegistries: [run.metrics] })
      process.stderr.write(`weir: monitor at ${monitor.url}\n`)
    }
    if (args.metrics !== undefined) {
      const probes = new WorkerProbes({ bus: run.bus, maxLag: args.metrics.readyMaxLag })
      probes.attach(run.worker)
      run.done.catch((err: unknown) => probes.failed(err))
      metricsServer = await serveMetrics(run.metrics, { ...args.metrics, probes })
      process.stderr.write(`weir: metrics at ${metricsServer.url}\n`)
    }
    if (pipeline.views.length > 0) {
      viewsServer = await serveViews({ pipeline, bus: run.bus, cluster: args.cluster, ...args.views, dir: dataDir, log })
      process.stderr.write(`weir: views at ${viewsServer.url}/views/${pipeline.name} (${pipeline.views.map((v) => v.name).join(', ')})\n`)
    }
  } catch (err) {
    if (run !== undefined) await run.stop().catch(() => undefined)
    await viewsServer?.close().catch(() => undefined)
    await monitor?.close().catch(() => undefined)
    await metricsServer?.close().catch(() => undefined)
    await pipe?.close().catch(() => undefined)
    await bus?.close().catch(() => undefined)
    removeHandlers()
    display?.stop()
    printError(err)
    return isRefusal(err) ? 2 : 1
  }
  display?.start(run)
  if (signalled !== undefined) stopRun(run)

  let result: RunResult | undefined
  let failure: unknown
  try {
    result = await run.done
  } catch (err) {
    failure = err
  }
  const elapsedMs = performance.now() - startedAt
  await viewsServer?.close().catch(() => undefined)
  await monitor?.close().catch(() => undefined)
  await metricsServer?.close().catch(() => undefined)
  await pipe?.close().catch(() => undefined)
  await bus?.close().catch(() => undefined)
  removeHandlers()
  display?.stop()

  const stats = result?.stats ?? run.stats()
  process.stdout.write(
    formatSummary({
      pipeline,
      outcome: result?.outcome ?? 'failed',
      elapsedMs,
      stats,
      lastEpoch: lastEpoch(run.completedEpoch(), stats),
      dataDir,
      failedActor: run.failedActor,
    }),
  )
  if (failure !== undefined) {
    printError(failure)
    return 1
  }
  return 0
}
