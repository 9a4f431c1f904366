/**
 * `weir savepoint create|inspect|diff|restore`: portable snapshots of a pipeline's state
 * (docs/savepoints.md). create drains a stopped pipeline and writes its state; inspect
 * prints a savepoint's manifest (and checks its files with --verify); diff says what a
 * restore into a pipeline would map, drop, add and refuse; restore writes a savepoint into
 * a pipe before a cluster's workers start (`weir run --from-savepoint` does it itself).
 */
import { existsSync, mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import type { ParseArgsConfig } from 'node:util'
import { createSavepoint } from '../runner/create-savepoint.ts'
import type { Pipeline } from '../runtime/api/pipeline.ts'
import { checkClusterName } from '../runtime/control/bus.ts'
import { openBus } from '../runtime/open-bus.ts'
import { takeLiveSavepoint } from '../runtime/savepoint/live.ts'
import { busTargetOf, NATS_OPTIONS } from './nats-options.ts'
import { ensureTopics } from '../runner/embedded-runner.ts'
import { ConfigError, TopologyMismatchError } from '../runtime/errors.ts'
import { checkPipeUrl, openPipe } from '../runtime/open-pipe.ts'
import { EmbeddedPipe } from '../runtime/pipe/embedded/embedded-pipe.ts'
import type { Pipe } from '../runtime/pipe/pipe.ts'
import { loadPipeline } from '../runtime/pipeline-file.ts'
import { readFrames, SavepointFileError } from '../runtime/savepoint/frames.ts'
import { readManifest, SavepointError, type SavepointManifest } from '../runtime/savepoint/manifest.ts'
import { formatPlan, planRestore } from '../runtime/savepoint/plan.ts'
import { restoreSavepoint } from '../runtime/savepoint/restore.ts'
import { checkPipe, checkTopology, DataDirPipeMismatchError, recordPipe, recordTopology } from '../runtime/topology-guard.ts'
import { parseCommandArgs } from './options.ts'
import { commandLogger, printError, printRefusal, UsageError } from './report.ts'
import { parseParams } from './run.ts'
import { SAVEPOINT_USAGE } from './usage.ts'

const SUBCOMMANDS = ['create', 'inspect', 'diff', 'restore'] as const

/**
 * What the config file's `savepoint` section holds (and `WEIR_<OPTION>` gives): where the
 * pipe is and how the pipeline is loaded, shared by create, restore and diff (which reads only
 * `param`, so it loads the pipeline as restore will). --target and --allow-dropped-state are
 * decisions for one savepoint, taken on the command line each time.
 */
export const SAVEPOINT_OPTIONS = { pipe: { type: 'string' }, 'pipe-config': { type: 'string' }, 'data-dir': { type: 'string' }, param: { type: 'string', multiple: true } } as const

const PIPE_OPTIONS = SAVEPOINT_OPTIONS

function parse(sub: string, argv: string[], options: NonNullable<ParseArgsConfig['options']>): { values: Record<string, string | boolean | string[] | undefined>; positionals: string[] } {
  const section = sub === 'inspect' ? undefined : { name: 'savepoint', options: SAVEPOINT_OPTIONS }
  return parseCommandArgs(`savepoint ${sub}`, { args: argv, allowPositionals: true, options: { ...options, help: { type: 'boolean', short: 'h' } } }, {}, section)
}

/** `weir savepoint <create|inspect|diff|restore> …` */
export async function savepointCommand(argv: string[]): Promise<number> {
  const [sub, ...rest] = argv
  if (sub === undefined || sub === '--help' || sub === '-h' || sub === 'help') {
    process.stdout.write(SAVEPOINT_USAGE)
    return sub === undefined ? 2 : 0
  }
  try {
    switch (sub) {
      case 'create':
        return await create(rest)
      case 'inspect':
        return await inspect(rest)
      case 'diff':
        return await diff(rest)
      case 'restore':
        return await restore(rest)
      default:
        throw new UsageError(`savepoint: unknown subcommand '${sub}'; it is one of ${SUBCOMMANDS.join(', ')}`)
    }
  } catch (err) {
    if (err instanceof UsageError || err instanceof ConfigError || err instanceof SavepointError || err instanceof SavepointFileError || err instanceof TopologyMismatchError || err instanceof DataDirPipeMismatchError) return printRefusal(err, 'savepoint')
    printError(err)
    return 1
  }
}

/** The pipe a subcommand works on: the embedded one in the data dir, or Kafka (whose actors' local state goes to a temporary dir). */
async function pipeOf(values: Record<string, unknown>, pipelineName: string, mustExist: boolean): Promise<{ pipe: Pipe; dataDir: string; cleanup(): void }> {
  const url = (values.pipe as string | undefined) ?? process.env.WEIR_PIPE ?? 'embedded'
  checkPipeUrl(url)
  const log = commandLogger('weir-savepoint', 'warn')
  if (url === 'embedded') {
    if (values['pipe-config'] !== undefined) throw new ConfigError('--pipe-config', 'only a kafka:// pipe takes a config file')
    const dataDir = resolve((values['data-dir'] as string | undefined) ?? join('.weir', pipelineName))
    if (mustExist && !existsSync(join(dataDir, 'pipe.json'))) throw new ConfigError('--data-dir', `${dataDir} holds no run of pipeline '${pipelineName}' (no pipe.json): give the run's --data-dir`)
    try {
      return { pipe: await EmbeddedPipe.open(dataDir), dataDir, cleanup: () => undefined }
    } catch (err) {
      // RocksDB's lock: another process (a weir run) has the data dir open.
      if ((err as { code?: string }).code === 'WEIR_PIPE_OPEN_FAILED' && /LOCK/.test((err as Error).message)) {
        throw new SavepointError('WEIR_SAVEPOINT_PIPELINE_RUNNING', `data dir ${dataDir} is in use by a running pipeline: stop it first (Ctrl-C or SIGTERM takes a final checkpoint), then take the savepoint`, { field: '--data-dir', dataDir })
      }
      throw err
    }
  }
  const given = values['data-dir'] as string | undefined
  const dataDir = given === undefined ? mkdtempSync(join(tmpdir(), 'weir-savepoint-')) : resolve(given)
  const pipe = await openPipe(url, { dataDir, configFile: values['pipe-config'] === undefined ? undefined : resolve(values['pipe-config'] as string), log })
  return { pipe, dataDir, cleanup: () => (given === undefined ? rmSync(dataDir, { recursive: true, force: true }) : undefined) }
}

async function create(argv: string[]): Promise<number> {
  const { values, positionals } = parse('create', argv, { ...PIPE_OPTIONS, target: { type: 'string' }, bus: { type: 'string' }, cluster: { type: 'string' }, 'timeout-ms': { type: 'string' }, ...NATS_OPTIONS })
  if (values.help) return help()
  if (positionals.length !== 1) throw new UsageError(`savepoint create: expected one pipeline file, got ${positionals.length}`)
  const target = values.target as string | undefined
  if (target === undefined || target.trim() === '') throw new ConfigError('--target', 'the directory to write the savepoint to is required: --target ./savepoints/<name>')
  const pipeline = await loadPipeline(resolve(positionals[0]!), parseParams(values.param as string[] | undefined))
  if (values.bus !== undefined) return createLive(pipeline, values, resolve(target))
  const { pipe, dataDir, cleanup } = await pipeOf(values, pipeline.name, (values.pipe ?? process.env.WEIR_PIPE ?? 'embedded') === 'embedded')
  try {
    checkTopology(dataDir, pipeline)
    const manifest = await createSavepoint(pipeline, { dataDir, pipe, target: resolve(target), log: commandLogger('weir-savepoint', 'warn') })
    process.stdout.write(`savepoint ${manifest.id} of pipeline ${manifest.pipeline} written to ${resolve(target)}\n`)
    process.stdout.write(summary(manifest))
    return 0
  } finally {
    await pipe.close()
    cleanup()
  }
}

/** A savepoint of the running pipeline, through its workers (runtime/savepoint/live.ts). */
async function createLive(pipeline: Pipeline, values: Record<string, unknown>, target: string): Promise<number> {
  if (values.pipe !== undefined || values['data-dir'] !== undefined) throw new ConfigError(values.pipe !== undefined ? '--pipe' : '--data-dir', 'a savepoint of a running pipeline (--bus) is written by its workers, each under its --savepoint-dir: give --target as that directory (shared by every worker and this command) plus the savepoint name')
  const cluster = (values.cluster as string | undefined) ?? 'default'
  checkClusterName(cluster, '--cluster')
  const rawTimeout = values['timeout-ms'] as string | undefined
  const timeoutMs = rawTimeout === undefined ? 300_000 : Number(rawTimeout)
  if (!Number.isInteger(timeoutMs) || timeoutMs < 1000 || timeoutMs > 86_400_000) throw new ConfigError('--timeout-ms', `expected whole milliseconds in 1000..86400000, got '${rawTimeout}'`)
  const log = commandLogger('weir-savepoint', 'warn')
  const bus = await openBus(busTargetOf(values.bus as string, '--bus', values as Record<string, string | undefined>, process.env), { name: `weir-savepoint-${pipeline.name}`, log })
  try {
    const { manifest, heldMs, rounds } = await takeLiveSavepoint({ bus, pipeline, cluster, dir: target, log, timeoutMs })
    process.stdout.write(`savepoint ${manifest.id} of pipeline ${manifest.pipeline} (running) written to ${target}: inputs held ${heldMs} ms (${rounds} freeze${rounds === 1 ? '' : 's'})\n`)
    process.stdout.write(summary(manifest))
    return 0
  } finally {
    await bus.close()
  }
}

function summary(m: SavepointManifest): string {
  const lines: string[] = []
  for (const [name, s] of Object.entries(m.stages)) {
    const keys = s.actors.reduce((n, a) => n + Object.values(a.keys).reduce((x, y) => x + y, 0), 0)
    const timers = s.actors.reduce((n, a) => n + a.timers, 0)
    const states = s.states.map((st) => `${st.name}${st.keyed ? '' : ' (actor)'} v${st.version}`).join(', ')
    lines.push(`  ${name} (${s.kind}, ${s.parallelism} actor${s.parallelism === 1 ? '' : 's'}${s.keyPartitioned ? ', keyed' : ''}): ${keys} keys, ${timers} timers${states === '' ? '' : `; states ${states}`}${s.actors.some((a) => a.finished) ? `; finished partitions ${s.actors.filter((a) => a.finished).map((a) => a.partition).join(',')}` : ''}`)
  }
  const topics = Object.entries(m.topicPositions).map(([t, ps]) => `  ${t}: ${Object.entries(ps).map(([p, o]) => `${p}@${o}`).join(' ')}`)
  return `${lines.join('\n')}\n${topics.length > 0 ? `topic positions:\n${topics.join('\n')}\n` : ''}`
}

async function inspect(argv: string[]): Promise<number> {
  const { values, positionals } = parse('inspect', argv, { json: { type: 'boolean' }, verify: { type: 'boolean' } })
  if (values.help) return help()
  if (positionals.length !== 1) throw new UsageError(`savepoint inspect: expected one savepoint directory, got ${positionals.length}`)
  const dir = resolve(positionals[0]!)
  const m = readManifest(dir)
  let verified = 0
  if (values.verify === true) {
    for (const s of Object.values(m.stages)) {
      for (const a of s.actors) {
        for (const f of Object.values(a.files)) {
          for await (const frame of readFrames(join(dir, f.path), f)) void frame
          verified++
        }
      }
    }
  }
  if (values.json === true) {
    process.stdout.write(JSON.stringify(values.verify === true ? { ...m, verifiedFiles: verified } : m, null, 2) + '\n')
    return 0
  }
  process.stdout.write(`savepoint ${m.id}\n  pipeline ${m.pipeline} (fingerprint ${m.fingerprint}), taken ${m.createdAt} from the ${m.pipe.kind} pipe ${m.pipe.identity}\n  format ${m.format} version ${m.formatVersion}; drained in ${m.drain.rounds} run${m.drain.rounds === 1 ? '' : 's'} (${m.drain.records} records in flight processed)\n`)
  process.stdout.write(summary(m))
  if (values.verify === true) process.stdout.write(`verified: ${verified} files match the manifest's sizes, entry counts and SHA-256\n`)
  return 0
}

async function diff(argv: string[]): Promise<number> {
  const { values, positionals } = parse('diff', argv, { param: { type: 'string', multiple: true }, json: { type: 'boolean' } })
  if (values.help) return help()
  if (positionals.length !== 2) throw new UsageError(`savepoint diff: expected a savepoint directory and a pipeline file, got ${positionals.length} arguments`)
  const m = readManifest(resolve(positionals[0]!))
  const pipeline = await loadPipeline(resolve(positionals[1]!), parseParams(values.param as string[] | undefined))
  const plan = planRestore(m, pipeline)
  process.stdout.write(values.json === true ? JSON.stringify(plan, null, 2) + '\n' : formatPlan(plan))
  return plan.refused.length > 0 ? 2 : plan.dropped.length > 0 ? 1 : 0
}

async function restore(argv: string[]): Promise<number> {
  const { values, positionals } = parse('restore', argv, { ...PIPE_OPTIONS, 'allow-dropped-state': { type: 'boolean' } })
  if (values.help) return help()
  if (positionals.length !== 2) throw new UsageError(`savepoint restore: expected a savepoint directory and a pipeline file, got ${positionals.length} arguments`)
  const dir = resolve(positionals[0]!)
  readManifest(dir)
  const pipeline = await loadPipeline(resolve(positionals[1]!), parseParams(values.param as string[] | undefined))
  const { pipe, dataDir, cleanup } = await pipeOf(values, pipeline.name, false)
  try {
    const embedded = pipe.kind === 'embedded'
    if (embedded) {
      checkTopology(dataDir, pipeline)
      checkPipe(dataDir, pipe)
    }
    await ensureTopics(pipe, pipeline)
    const report = await restoreSavepoint(pipeline, pipe, dir, { allowDroppedState: values['allow-dropped-state'] === true, log: commandLogger('weir-savepoint', 'warn') })
    if (embedded) {
      recordTopology(dataDir, pipeline)
      recordPipe(dataDir, pipe)
    }
    process.stdout.write(report.alreadyRestored
      ? `savepoint ${report.savepoint} was already restored onto this pipe: nothing written\n`
      : `savepoint ${report.savepoint} restored for pipeline ${pipeline.name}: ${report.keys} keys, ${report.timers} timers${report.migrated > 0 ? `, ${report.migrated} values migrated` : ''} in ${Math.round(report.ms)} ms; start the pipeline (weir run --data-dir, or the cluster's workers) as usual\n`)
    return 0
  } finally {
    await pipe.close()
    cleanup()
  }
}

function help(): number {
  process.stdout.write(SAVEPOINT_USAGE)
  return 0
}
