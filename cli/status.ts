/**
 * `weir status --bus nats://…`: a one-shot look at what runs. It listens to the progress
 * channel (the same `.progress` and `.health` messages `weir monitor` reads, folded by the
 * same MonitorView) for a little more than two progress intervals, then prints every
 * pipeline's workers and actors and exits. It needs nothing but the bus, like the monitor.
 *
 * Exit codes: 0 printed, 1 the bus failed, 2 refused (bad option, nothing connected),
 * 3 nothing heard within the wait.
 */
import { checkClusterName, type ControlBus } from '../runtime/control/bus.ts'
import { progressSubjects } from '../runtime/control/progress.ts'
import { ConfigError } from '../runtime/errors.ts'
import { openBus, redactBusUrl, type BusTarget } from '../runtime/open-bus.ts'
import { busTargetOf, NATS_OPTIONS } from './nats-options.ts'
import { monitorClock, MonitorView, type ActorEntry, type PipelineEntry } from '../monitor/model.ts'
import { pipelineStatus } from '../monitor/status.ts'
import { formatCount, formatSeconds, isMissing, stageDepths, watermarkLag } from '../monitor/timeliness.ts'
import { parseCommandArgs } from './options.ts'
import { printError, printRefusal } from './report.ts'

import { STATUS_USAGE } from './usage.ts'

/** A bit more than two progress intervals (workers publish about once a second): every live actor is heard at least once. */
export const DEFAULT_STATUS_WAIT_MS = 2500
const MAX_WAIT_MS = 10 * 60_000
/** Exit code when nothing was heard: distinct from a failure, so scripts can tell "nothing runs" from "cannot tell". */
export const NOTHING_HEARD_EXIT = 3
/** Version of the `--json` document; bumped when a field changes meaning or goes away. */
export const STATUS_JSON_VERSION = 1

export interface StatusArgs {
  /** The bus URL as shown in the report: credentials replaced by `***`. */
  bus: string
  /** The bus's server, credentials and TLS (absent: the URL alone). */
  busTarget?: BusTarget
  /** A cluster name, or `*` for every cluster. */
  cluster: string
  waitMs: number
  json: boolean
}

/** One worker as `weir status` shows it. Ages are ms before the report was made. */
export interface StatusWorker {
  worker: string
  hostname: string
  pid: number
  /** `missing`: silent for more than 3 of its progress intervals (only seen with a long --wait-ms). */
  state: 'ok' | 'missing'
  rssBytes: number
  heapUsedBytes: number
  eventLoopP99Ms: number
  intervalMs: number
  lastHeardAgoMs: number
  /** The actors the worker says it runs (from its health message). */
  actors: string[]
  /** Standby replicas it keeps warm and how many changelog records each trails (null: not measured yet). */
  standbys: Array<{ actor: string; lag: number | null }>
}

/** One actor as `weir status` shows it: its newest progress message, plus ages. */
export interface StatusActor {
  actor: string
  stage: string
  partition: number
  worker: string
  /** False when no health message came from `worker` (shown under "(no worker heard)"). */
  workerHeard: boolean
  state: 'ok' | 'missing'
  lifecycle: string
  /** Unprocessed input records. */
  lag: number
  lastEpoch: number
  watermark: number | null
  /** now − watermark (0 once ended, null without a watermark). */
  watermarkLagMs: number | null
  idle: boolean
  ended: boolean
  recordsIn: number
  recordsOut: number
  errors: number
  deadLettered: number
  lastCommitAt: number | null
  /** null: never committed. */
  lastCommitAgoMs: number | null
  lastHeardAgoMs: number
  /** The actor failed for good (lifecycle 'failed'): its error, where it failed, and whether it is quarantined. */
  failure: { code: string; message: string; quarantined: boolean; failedOn: string[] } | null
}

export interface StatusPipeline {
  cluster: string
  pipeline: string
  fingerprint: string | null
  workers: StatusWorker[]
  /** Ordered by stage (sources first), then partition. */
  actors: StatusActor[]
}

/** The `--json` document. */
export interface StatusReport {
  v: typeof STATUS_JSON_VERSION
  bus: string
  cluster: string
  waitMs: number
  /** When the report was made, ms since the epoch. */
  at: number
  messages: { received: number; malformed: number; stale: number }
  pipelines: StatusPipeline[]
}

/** The options of `weir status` (a config file's `status` section takes the same, camelCased). */
export const STATUS_OPTIONS = {
  bus: { type: 'string' },
  cluster: { type: 'string' },
  'wait-ms': { type: 'string' },
  json: { type: 'boolean' },
  ...NATS_OPTIONS,
  help: { type: 'boolean', short: 'h' },
} as const

/**
 * Parses and validates `status`'s arguments; `help` when --help was given. Throws UsageError or ConfigError.
 *
 * @example
 * const args = parseStatusArgs(['--bus', 'nats://127.0.0.1:4222', '--cluster', 'prod'])
 * if (args !== 'help') console.log(args.waitMs) // 2500
 */
export function parseStatusArgs(argv: string[], env: NodeJS.ProcessEnv = process.env): StatusArgs | 'help' {
  const parsed = parseCommandArgs('status', { args: argv, allowPositionals: false, options: STATUS_OPTIONS }, { env })
  const { values } = parsed
  if (values.help) return 'help'
  const bus = values.bus ?? env.WEIR_BUS
  if (bus === undefined) throw new ConfigError('--bus', 'weir status listens on the control bus: give --bus nats://host:port (or WEIR_BUS)')
  const busTarget = busTargetOf(bus, values.bus === undefined ? 'WEIR_BUS' : '--bus', values, env)
  const cluster = values.cluster ?? '*'
  if (cluster !== '*') checkClusterName(cluster, '--cluster')
  return { bus: redactBusUrl(bus), busTarget, cluster, waitMs: parseWaitMs(values['wait-ms']), json: values.json ?? false }
}

function parseWaitMs(raw: string | undefined): number {
  if (raw === undefined) return DEFAULT_STATUS_WAIT_MS
  const n = Number(raw)
  if (!/^\d+$/.test(raw) || n < 1 || n > MAX_WAIT_MS) throw new ConfigError('--wait-ms', `'${raw}' must be a whole number of milliseconds from 1 to ${MAX_WAIT_MS}`)
  return n
}

/**
 * Listens on `bus` for `waitMs` and returns what every worker and actor of `cluster` said.
 *
 * @example
 * const bus = await openBus('nats://127.0.0.1:4222')
 * const report = await collectStatus(bus, { bus: 'nats://127.0.0.1:4222', cluster: 'prod', waitMs: 2500, json: false })
 * await bus.close()
 */
export async function collectStatus(bus: ControlBus, args: StatusArgs, signal?: AbortSignal): Promise<StatusReport> {
  const view = new MonitorView()
  const subs = [
    bus.subscribe(progressSubjects.allProgress(args.cluster), (m, s) => view.apply(s, m)),
    bus.subscribe(progressSubjects.allHealth(args.cluster), (m, s) => view.apply(s, m)),
  ]
  try {
    await sleep(args.waitMs, signal)
  } finally {
    for (const s of subs) s.unsubscribe()
  }
  return buildReport(view, args, monitorClock())
}

function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(done, ms)
    function done(): void {
      clearTimeout(timer)
      signal?.removeEventListener('abort', done)
      resolve()
    }
    signal?.addEventListener('abort', done, { once: true })
  })
}

/** The report of everything `view` holds at `now` (monitor clock). */
export function buildReport(view: MonitorView, args: StatusArgs, now: number): StatusReport {
  return {
    v: STATUS_JSON_VERSION,
    bus: args.bus,
    cluster: args.cluster,
    waitMs: args.waitMs,
    at: Math.round(now),
    messages: { ...view.counters },
    pipelines: view.pipelines().map((p) => pipelineReport(p, view.intervalOf(p), now)),
  }
}

function pipelineReport(p: PipelineEntry, intervalMs: number, now: number): StatusPipeline {
  // The worker figures (and their ok/missing rule) are the monitor's.
  const status = pipelineStatus(p, intervalMs, now, () => null)
  const depth = p.topology === null ? new Map<string, number>() : stageDepths(p.topology)
  const order = new Map((p.topology?.stages ?? []).map((s, i) => [s.name, i]))
  const rank = (stage: string): [number, number] => [depth.get(stage) ?? Infinity, order.get(stage) ?? Infinity]
  const byStage = (a: { stage: string; partition: number }, b: { stage: string; partition: number }): number => {
    const [da, oa] = rank(a.stage)
    const [db, ob] = rank(b.stage)
    return da - db || oa - ob || a.stage.localeCompare(b.stage) || a.partition - b.partition
  }
  // A worker lists its actors as it runs them (a chain's stages together): shown in the actor table's order.
  const actorId = (id: string): { stage: string; partition: number } => ({ stage: id.slice(0, id.lastIndexOf('/')), partition: Number(id.slice(id.lastIndexOf('/') + 1)) })
  const workers = status.workers
    .map((w): StatusWorker => ({
      worker: w.worker,
      hostname: w.hostname,
      pid: w.pid,
      state: w.state,
      rssBytes: w.rssBytes,
      heapUsedBytes: w.heapUsedBytes,
      eventLoopP99Ms: w.eventLoopDelayMs.p99,
      intervalMs: w.intervalMs,
      lastHeardAgoMs: Math.round(now - w.seenAt),
      actors: [...w.actors].sort((a, b) => byStage(actorId(a), actorId(b))),
      standbys: w.standbys,
    }))
    .sort((a, b) => a.worker.localeCompare(b.worker))
  const actors = [...p.actors.values()]
    .map((a) => actorReport(a, p.workers.has(a.progress.worker), now))
    .sort(byStage)
  return { cluster: p.cluster, pipeline: p.pipeline, fingerprint: status.fingerprint, workers, actors }
}

function actorReport(a: ActorEntry, workerHeard: boolean, now: number): StatusActor {
  const e = a.progress
  const watermark = e.ended ? Infinity : e.watermark
  const lagMs = watermarkLag(now, watermark)
  return {
    actor: e.actor,
    stage: e.stage,
    partition: e.partition,
    worker: e.worker,
    workerHeard,
    state: isMissing(a, now) ? 'missing' : 'ok',
    lifecycle: e.lifecycle,
    lag: e.lag,
    lastEpoch: e.lastEpoch,
    watermark: e.watermark,
    watermarkLagMs: lagMs === null ? null : Math.round(lagMs),
    idle: e.idle,
    ended: e.ended,
    recordsIn: e.recordsIn,
    recordsOut: e.recordsOut,
    errors: e.errors,
    deadLettered: e.deadLettered,
    lastCommitAt: e.lastCommitAt,
    lastCommitAgoMs: e.lastCommitAt === null ? null : Math.max(0, Math.round(now - e.lastCommitAt)),
    lastHeardAgoMs: Math.round(now - a.seenAt),
    failure: e.failure === undefined ? null : { code: e.failure.code, message: e.failure.message, quarantined: e.failure.quarantined, failedOn: e.failure.failedOn },
  }
}

/** A table with a header row; columns in `right` are right-aligned (numbers). */
function table(header: string[], rows: string[][], right: ReadonlySet<number>, indent: string): string[] {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)))
  const line = (cells: string[]): string => indent + cells.map((c, i) => (right.has(i) ? c.padStart(widths[i]!) : c.padEnd(widths[i]!))).join('  ').trimEnd()
  return [line(header), ...rows.map(line)]
}

function megabytes(bytes: number): string {
  return `${Math.round(bytes / 1048576)} MB`
}

function age(ms: number | null): string {
  return ms === null ? '-' : formatSeconds(ms)
}

const ACTOR_HEADER = ['ACTOR', 'STAGE', 'PARTITION', 'LIFECYCLE', 'LAG', 'LAST EPOCH', 'WM LAG', 'IN', 'OUT', 'LAST COMMIT']
const ACTOR_NUMBERS = new Set([2, 4, 5, 6, 7, 8, 9])

function actorRow(a: StatusActor): string[] {
  const base = a.failure?.quarantined === true ? 'failed, quarantined' : a.lifecycle
  const lifecycle = a.state === 'missing' ? `${base} (silent ${formatSeconds(a.lastHeardAgoMs)})` : base
  const wm = a.ended ? 'ended' : age(a.watermarkLagMs)
  return [a.actor, a.stage, String(a.partition), lifecycle, formatCount(a.lag), String(a.lastEpoch), wm, formatCount(a.recordsIn), formatCount(a.recordsOut), a.lastCommitAgoMs === null ? 'never' : `${formatSeconds(a.lastCommitAgoMs)} ago`]
}

function formatPipeline(p: StatusPipeline): string[] {
  const lines = [`${p.pipeline} (cluster ${p.cluster}): ${p.workers.length} worker${p.workers.length === 1 ? '' : 's'}, ${p.actors.length} actor${p.actors.length === 1 ? '' : 's'}`]
  if (p.workers.length > 0) {
    const rows = p.workers.map((w) => [w.worker, w.hostname, String(w.pid), w.state, megabytes(w.rssBytes), `${w.eventLoopP99Ms.toFixed(1)} ms`, String(w.actors.length)])
    lines.push('', ...table(['WORKER', 'HOST', 'PID', 'STATE', 'RSS', 'LOOP P99', 'ACTORS'], rows, new Set([2, 4, 5, 6]), '  '))
  }
  const groups: Array<{ title: string; actors: StatusActor[]; notHeard: string[] }> = p.workers.map((w) => {
    const actors = p.actors.filter((a) => a.worker === w.worker)
    const heard = new Set(actors.map((a) => a.actor))
    return { title: `worker ${w.worker}`, actors, notHeard: w.actors.filter((id) => !heard.has(id)) }
  })
  const orphans = p.actors.filter((a) => !a.workerHeard)
  if (orphans.length > 0) groups.push({ title: '(no worker heard)', actors: orphans, notHeard: [] })
  for (const g of groups) {
    lines.push('', `  ${g.title}`)
    if (g.actors.length > 0) lines.push(...table(ACTOR_HEADER, g.actors.map(actorRow), ACTOR_NUMBERS, '    '))
    else lines.push('    no actor progress heard')
    if (g.notHeard.length > 0) lines.push(`    runs but sent no progress: ${g.notHeard.join(', ')}`)
    for (const a of g.actors.filter((x) => x.failure !== null)) {
      const f = a.failure!
      const what = f.quarantined ? `quarantined after failing on ${f.failedOn.join(' and ')}; clear it with 'weir actor clear ${p.pipeline} ${a.actor}'` : 'being moved to another worker'
      lines.push(`    ${a.actor} failed [${f.code}]: ${f.message} (${what})`)
    }
    const standbys = p.workers.find((w) => `worker ${w.worker}` === g.title)?.standbys ?? []
    if (standbys.length > 0) lines.push(`    standbys (changelog records behind): ${standbys.map((r) => `${r.actor} ${r.lag === null ? '?' : formatCount(r.lag)}`).join(', ')}`)
  }
  return lines
}

/**
 * The report as text: per pipeline its workers, then each worker's actors.
 *
 * @example
 * process.stdout.write(formatStatus(report))
 * // wordcount (cluster prod): 1 worker, 10 actors
 * //   WORKER  HOST  PID  STATE  RSS  LOOP P99  ACTORS ...
 */
export function formatStatus(r: StatusReport): string {
  const head = `weir status: ${r.bus}, cluster ${r.cluster}, listened ${formatSeconds(r.waitMs)} (${formatCount(r.messages.received)} messages${r.messages.malformed > 0 ? `, ${formatCount(r.messages.malformed)} malformed dropped` : ''})`
  const blocks = r.pipelines.map((p) => formatPipeline(p).join('\n'))
  return [head, ...blocks].join('\n\n') + '\n'
}

function nothingHeard(r: StatusReport): string {
  const malformed = r.messages.malformed > 0 ? ` (${r.messages.malformed} malformed messages dropped: a newer or foreign publisher?)` : ''
  return `weir status: no weir workers heard on ${r.bus} (cluster ${r.cluster}) within ${r.waitMs} ms${malformed}\n`
}

/** `weir status`. Returns the exit code. */
export async function statusCommand(argv: string[]): Promise<number> {
  let args: StatusArgs
  try {
    const parsed = parseStatusArgs(argv)
    if (parsed === 'help') {
      process.stdout.write(STATUS_USAGE)
      return 0
    }
    args = parsed
  } catch (err) {
    return printRefusal(err, 'status')
  }

  let bus: ControlBus
  try {
    bus = await openBus(args.busTarget ?? args.bus, { name: 'weir-status' })
  } catch (err) {
    printError(err)
    return err instanceof ConfigError ? 2 : 1
  }
  // Ctrl-C while listening: print what was heard so far rather than nothing.
  const interrupted = new AbortController()
  const onSignal = (): void => interrupted.abort()
  process.once('SIGINT', onSignal)
  let report: StatusReport
  try {
    report = await collectStatus(bus, args, interrupted.signal)
  } finally {
    process.off('SIGINT', onSignal)
    await bus.close().catch(() => undefined)
  }

  if (report.pipelines.length === 0) {
    process.stderr.write(nothingHeard(report))
    return NOTHING_HEARD_EXIT
  }
  process.stdout.write(args.json ? JSON.stringify(report, null, 2) + '\n' : formatStatus(report))
  return 0
}
