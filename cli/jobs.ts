/**
 * `weir jobs <pipeline.ts> [--data-dir D | --pipe kafka://…]`: the runs of every
 * FileSetSource stage and their state, read from the committed state (the stage's changelog,
 * as a restart would recover it), so it works while the pipeline runs, after it stopped, and
 * after it was killed. Nothing is written.
 *
 * Exit codes: 0 printed, 1 the pipe could not be read, 2 refused (bad option, no such data
 * dir, no FileSetSource stage).
 */
import { existsSync } from 'node:fs'
import { resolve } from 'node:path'
import { instantiate, type Pipeline, type StageSpec } from '../runtime/api/pipeline.ts'
import { constructProcessor } from '../runtime/api/state.ts'
import { ConfigError } from '../runtime/errors.ts'
import { checkPipeUrl, openPipe } from '../runtime/open-pipe.ts'
import type { Pipe } from '../runtime/pipe/pipe.ts'
import { loadPipeline } from '../runtime/pipeline-file.ts'
import { ACTOR_PREFIX } from '../runtime/actor/state-keys.ts'
import { stateCodec } from '../runtime/codec.ts'
import { naming } from '../runtime/naming.ts'
import { EmbeddedPipe } from '../runtime/pipe/embedded/embedded-pipe.ts'
import { readRange } from '../runtime/pipe/read-range.ts'
import { FileSetSource } from '../processors/sources/file-set-source.ts'
import { JOB_STATE, RUNS_STATE, summaryOf, type JobState, type JobStatus, type JobSummary } from '../processors/sources/file-set/job-state.ts'
import { parseCommandArgs } from './options.ts'
import { printError, printRefusal, UsageError } from './report.ts'
import { parseParams } from './run.ts'
import { JOBS_USAGE } from './usage.ts'

/** Version of the `--json` document; bumped when a field changes meaning or goes away. */
export const JOBS_JSON_VERSION = 1

export interface JobsArgs {
  file: string
  dataDir: string | undefined
  pipe: string
  pipeConfig: string | undefined
  params: Record<string, string>
  json: boolean
}

/** One partition's share of a run. `state` absent: this actor has not started the run (yet). */
export interface JobPartition {
  partition: number
  state: JobStatus | 'not started'
  done: number
  total: number
  records: number
  deadLetters: number
  failure?: { code: string; message: string; object: string; pinned: string; current: string | null }
}

/** A run of a stage, over its partitions. */
export interface JobRun {
  run: string
  /**
   * failed: a partition refused an object (changed or vanished) and recorded it; finished: every
   * partition read all its objects; listed: every partition pinned its objects, none read yet;
   * abandoned: a newer run id took over before it finished; running otherwise (including a
   * job whose process was killed: the committed state cannot tell, `weir status` can).
   */
  state: JobStatus
  objects: { done: number; total: number }
  records: number
  deadLetters: number
  /** ms since the epoch; the earliest listing among the partitions. */
  listedAt: number | null
  /** When the last partition finished, once every one did. */
  finishedAt: number | null
  partitions: JobPartition[]
}

export interface JobsStage {
  stage: string
  partitions: number
  runs: JobRun[]
}

export interface JobsReport {
  v: typeof JOBS_JSON_VERSION
  pipeline: string
  /** `embedded <data dir>` or the kafka:// URL. */
  source: string
  stages: JobsStage[]
}

/** The options of `weir jobs` (a config file's `jobs` section takes the same, camelCased). */
export const JOBS_OPTIONS = { 'data-dir': { type: 'string' }, pipe: { type: 'string' }, 'pipe-config': { type: 'string' }, param: { type: 'string', multiple: true }, json: { type: 'boolean' }, help: { type: 'boolean', short: 'h' } } as const

/** Parses `jobs`' arguments; `help` when --help was given. Throws UsageError or ConfigError. */
export function parseJobsArgs(argv: string[], cwd = process.cwd(), env: NodeJS.ProcessEnv = process.env): JobsArgs | 'help' {
  const { values, positionals } = parseCommandArgs('jobs', { args: argv, allowPositionals: true, options: JOBS_OPTIONS }, { cwd, env })
  if (values.help) return 'help'
  if (positionals.length !== 1) throw new UsageError(`jobs: expected one pipeline file (weir jobs <pipeline.ts>), got ${positionals.length}`)
  const rawDir = values['data-dir']
  if (rawDir !== undefined && rawDir.trim() === '') throw new ConfigError('--data-dir', 'must not be empty')
  const pipe = values.pipe ?? env.WEIR_PIPE ?? 'embedded'
  checkPipeUrl(pipe)
  if (values['pipe-config'] !== undefined && pipe === 'embedded') throw new ConfigError('--pipe-config', 'only a kafka:// pipe takes a config file')
  return {
    file: resolve(cwd, positionals[0]!),
    dataDir: rawDir === undefined ? undefined : resolve(cwd, rawDir),
    pipe,
    pipeConfig: values['pipe-config'] === undefined ? undefined : resolve(cwd, values['pipe-config']),
    params: parseParams(values.param),
    json: values.json ?? false,
  }
}

/** The stages whose processor is a FileSetSource. */
function fileSetStages(pipeline: Pipeline): StageSpec[] {
  return pipeline.actorStages.filter((s) => s.kind === 'source' && constructProcessor(s.name, () => instantiate(s)) instanceof FileSetSource)
}

/**
 * The runs of every FileSetSource stage, from the committed state in `from` (an embedded data
 * dir or an open pipe).
 *
 * @example
 * const report = await readJobs(pipeline, './.weir/daily-import')
 * for (const s of report) for (const r of s.runs) console.log(s.stage, r.run, r.state)
 */
export async function readJobs(pipeline: Pipeline, from: string | Pipe): Promise<JobsStage[]> {
  const stages: JobsStage[] = []
  for (const spec of fileSetStages(pipeline)) {
    const state = await readActorState(pipeline, from, spec, [JOB_STATE, RUNS_STATE])
    const byRun = new Map<string, Map<number, JobSummary>>()
    for (let p = 0; p < spec.parallelism; p++) {
      const actor = state[p] ?? {}
      const history = (actor[RUNS_STATE] as Record<string, JobSummary> | undefined) ?? {}
      const current = actor[JOB_STATE] as JobState | undefined
      const entries: JobSummary[] = Object.values(history)
      if (current !== undefined) entries.push(summaryOf(current))
      for (const e of entries) {
        const runs = byRun.get(e.run) ?? byRun.set(e.run, new Map()).get(e.run)!
        runs.set(p, e)
      }
    }
    const runs = [...byRun].map(([run, parts]) => runOf(run, parts, spec.parallelism))
    runs.sort((a, b) => (a.listedAt ?? Infinity) - (b.listedAt ?? Infinity) || (a.run < b.run ? -1 : 1))
    stages.push({ stage: spec.name, partitions: spec.parallelism, runs })
  }
  return stages
}

/**
 * Actor-scoped state `names` of every partition of `spec`, as its changelog has it committed
 * (the newest record per key; Kafka readers are read_committed): what a restart recovers.
 */
async function readActorState(pipeline: Pipeline, from: string | Pipe, spec: StageSpec, names: string[]): Promise<Array<Record<string, unknown>>> {
  const pipe = typeof from === 'string' ? await EmbeddedPipe.open(from, { readOnly: true, refreshMs: 0 }) : from
  const wanted = new Map(names.map((n) => [ACTOR_PREFIX + n, n]))
  const out: Array<Record<string, unknown>> = []
  try {
    const topic = naming.changelog(pipeline.name, spec.name)
    const exists = (await pipe.describeTopic(topic)) !== undefined
    for (let p = 0; p < spec.parallelism; p++) {
      const latest = new Map<string, Buffer | null>()
      if (exists) {
        await readRange(pipe, topic, p, await pipe.startOffset(topic, p), await pipe.endOffset(topic, p), (batch) => {
          for (const r of batch) {
            const name = r.key === null ? undefined : wanted.get(r.key.toString('utf8'))
            if (name !== undefined) latest.set(name, r.value)
          }
        })
      }
      const actor: Record<string, unknown> = {}
      for (const [name, value] of latest) if (value !== null) actor[name] = stateCodec.decode(value)
      out.push(actor)
    }
    return out
  } finally {
    if (typeof from === 'string') await pipe.close()
  }
}

function runOf(run: string, parts: Map<number, JobSummary>, partitions: number): JobRun {
  const partitionsOut: JobPartition[] = []
  for (let p = 0; p < partitions; p++) {
    const s = parts.get(p)
    partitionsOut.push(s === undefined
      ? { partition: p, state: 'not started', done: 0, total: 0, records: 0, deadLetters: 0 }
      : { partition: p, state: s.status, done: s.done, total: s.total, records: s.emitted, deadLetters: s.deadLetters, ...(s.failure === undefined ? {} : { failure: s.failure }) })
  }
  const states = partitionsOut.map((p) => p.state)
  const state: JobStatus = states.includes('failed') ? 'failed'
    : states.every((s) => s === 'finished') ? 'finished'
    : states.includes('abandoned') ? 'abandoned'
    : states.every((s) => s === 'listed') ? 'listed'
    : 'running'
  const summaries = [...parts.values()]
  const sum = (f: (p: JobPartition) => number): number => partitionsOut.reduce((a, p) => a + f(p), 0)
  return {
    run,
    state,
    objects: { done: sum((p) => p.done), total: sum((p) => p.total) },
    records: sum((p) => p.records),
    deadLetters: sum((p) => p.deadLetters),
    listedAt: summaries.length === 0 ? null : Math.min(...summaries.map((s) => s.listedAt)),
    finishedAt: state === 'finished' ? Math.max(...summaries.map((s) => s.finishedAt ?? 0)) : null,
    partitions: partitionsOut,
  }
}

/** The report as text: a table per stage, and each failed partition's error under its run. */
export function formatJobs(report: JobsReport): string {
  const lines = [`pipeline ${report.pipeline} (${report.source})`]
  for (const s of report.stages) {
    lines.push('', `stage ${s.stage} (FileSetSource, ${s.partitions} partition${s.partitions === 1 ? '' : 's'})`)
    if (s.runs.length === 0) {
      lines.push('  no job yet')
      continue
    }
    const rows = [['RUN', 'STATE', 'OBJECTS', 'RECORDS', 'DEAD', 'LISTED', 'FINISHED']]
    for (const r of s.runs) rows.push([r.run, r.state, `${r.objects.done}/${r.objects.total}`, String(r.records), String(r.deadLetters), time(r.listedAt), time(r.finishedAt)])
    const widths = rows[0]!.map((_, i) => Math.max(...rows.map((row) => row[i]!.length)))
    const tableLines = rows.map((row) => '  ' + row.map((c, i) => c.padEnd(widths[i]!)).join('  ').trimEnd())
    lines.push(tableLines[0]!)
    s.runs.forEach((r, i) => {
      lines.push(tableLines[i + 1]!)
      for (const p of r.partitions) if (p.failure !== undefined) lines.push(`    partition ${p.partition}: ${p.failure.message} [${p.failure.code}]`)
    })
  }
  return lines.join('\n') + '\n'
}

function time(ms: number | null): string {
  return ms === null ? '-' : new Date(ms).toISOString().replace(/\.\d{3}Z$/, 'Z')
}

/** `weir jobs …`. Returns the exit code. */
export async function jobsCommand(argv: string[]): Promise<number> {
  let args: JobsArgs
  let pipeline: Pipeline
  let dataDir: string
  try {
    const parsed = parseJobsArgs(argv)
    if (parsed === 'help') {
      process.stdout.write(JOBS_USAGE)
      return 0
    }
    args = parsed
    pipeline = await loadPipeline(args.file, args.params)
    dataDir = args.dataDir ?? resolve('.weir', pipeline.name)
    if (args.pipe === 'embedded' && !existsSync(dataDir)) throw new ConfigError('--data-dir', `${dataDir} does not exist: has pipeline ${pipeline.name} run with this data dir?`)
    if (fileSetStages(pipeline).length === 0) throw new ConfigError('pipeline', `pipeline ${pipeline.name} has no FileSetSource stage (stages: ${pipeline.actorStages.map((s) => s.name).join(', ')})`)
  } catch (err) {
    return printRefusal(err, 'jobs')
  }
  let pipe: Pipe | undefined
  let report: JobsReport
  try {
    if (args.pipe !== 'embedded') pipe = await openPipe(args.pipe, { dataDir, configFile: args.pipeConfig })
    const stages = await readJobs(pipeline, pipe ?? dataDir)
    report = { v: JOBS_JSON_VERSION, pipeline: pipeline.name, source: pipe === undefined ? `embedded ${dataDir}` : args.pipe, stages }
  } catch (err) {
    printError(err)
    return 1
  } finally {
    await pipe?.close().catch(() => undefined)
  }
  process.stdout.write(args.json ? JSON.stringify(report) + '\n' : formatJobs(report))
  return 0
}
