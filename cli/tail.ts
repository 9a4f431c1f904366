/**
 * `weir tail <pipeline.ts> <stage> [--from …] [--key K] [--limit N] [--follow]`: the
 * committed records flowing on an edge (a stage's output, a side output `stage.side`, or
 * with --dead-letter its dead-letter topic), decoded, one line each. The embedded pipe is
 * opened read-only, so it works beside a running `weir run` holding the data dir; Kafka is
 * read read_committed. Nothing is written.
 *
 * Exit codes: 0 printed (also when Ctrl-C ends --follow), 1 the pipe could not be read,
 * 2 refused (bad option, unknown stage, no data dir, no such topic), 130 interrupted
 * without --follow.
 */
import { existsSync } from 'node:fs'
import { join, resolve } from 'node:path'
import type { Pipeline } from '../runtime/api/pipeline.ts'
import { ConfigError, TopicError } from '../runtime/errors.ts'
import { checkPipeUrl, openPipe } from '../runtime/open-pipe.ts'
import type { Pipe } from '../runtime/pipe/pipe.ts'
import { loadPipeline } from '../runtime/pipeline-file.ts'
import { edgeOf, jsonSafe, parseFrom, tailEdge, type DeadLetterView, type TailedRecord, type TailResult } from '../runtime/tail.ts'
import { parseCommandArgs } from './options.ts'
import { commandLogger, printError, printRefusal, UsageError } from './report.ts'
import { parseParams } from './run.ts'
import { TAIL_USAGE } from './usage.ts'

/** Records shown without --limit and without --follow. */
export const DEFAULT_LIMIT = 100
/** How often a read-only embedded pipe looks for newer commits while following, ms. */
const FOLLOW_REFRESH_MS = 500

export interface TailArgs {
  file: string
  stage: string
  dataDir: string | undefined
  pipe: string
  pipeConfig: string | undefined
  params: Record<string, string>
  from: 'now' | 'earliest' | number
  key: string | undefined
  /** Undefined: no limit (--follow without --limit). */
  limit: number | undefined
  /** --limit was not given: the default applies. */
  defaultLimit: boolean
  follow: boolean
  deadLetter: boolean
  partitions: number[] | undefined
  json: boolean
}

/** The options of `weir tail` (a config file's `tail` section takes the same, camelCased). */
export const TAIL_OPTIONS = {
  'data-dir': { type: 'string' },
  pipe: { type: 'string' },
  'pipe-config': { type: 'string' },
  param: { type: 'string', multiple: true },
  from: { type: 'string' },
  key: { type: 'string' },
  limit: { type: 'string' },
  follow: { type: 'boolean', short: 'f' },
  'dead-letter': { type: 'boolean' },
  partition: { type: 'string', multiple: true },
  json: { type: 'boolean' },
  help: { type: 'boolean', short: 'h' },
} as const

/** Parses `tail`'s arguments; `help` when --help was given. Throws UsageError or ConfigError. */
export function parseTailArgs(argv: string[], cwd = process.cwd(), env: NodeJS.ProcessEnv = process.env): TailArgs | 'help' {
  const { values, positionals } = parseCommandArgs('tail', { args: argv, allowPositionals: true, options: TAIL_OPTIONS }, { cwd, env })
  if (values.help) return 'help'
  if (positionals.length !== 2) throw new UsageError(`tail: expected a pipeline file and a stage (weir tail <pipeline.ts> <stage>), got ${positionals.length} argument${positionals.length === 1 ? '' : 's'}`)
  const rawDir = values['data-dir']
  if (rawDir !== undefined && rawDir.trim() === '') throw new ConfigError('--data-dir', 'must not be empty')
  const pipe = values.pipe ?? env.WEIR_PIPE ?? 'embedded'
  checkPipeUrl(pipe)
  if (values['pipe-config'] !== undefined && pipe === 'embedded') throw new ConfigError('--pipe-config', 'only a kafka:// pipe takes a config file')
  const follow = values.follow ?? false
  let limit: number | undefined = follow ? undefined : DEFAULT_LIMIT
  if (values.limit !== undefined) {
    limit = /^\d+$/.test(values.limit.trim()) ? Number(values.limit.trim()) : Number.NaN
    if (!Number.isSafeInteger(limit) || limit < 1) throw new ConfigError('--limit', `must be a positive integer, got '${values.limit}'`)
  }
  const partitions = values.partition?.map((raw) => {
    if (!/^\d+$/.test(raw.trim())) throw new ConfigError('--partition', `must be a partition number (0, 1, …), got '${raw}'`)
    return Number(raw.trim())
  })
  return {
    file: resolve(cwd, positionals[0]!),
    stage: positionals[1]!,
    dataDir: rawDir === undefined ? undefined : resolve(cwd, rawDir),
    pipe,
    pipeConfig: values['pipe-config'] === undefined ? undefined : resolve(cwd, values['pipe-config']),
    params: parseParams(values.param),
    from: values.from === undefined ? (follow ? 'now' : 'earliest') : parseFrom(values.from),
    key: values.key,
    limit,
    defaultLimit: values.limit === undefined,
    follow,
    deadLetter: values['dead-letter'] ?? false,
    partitions,
    json: values.json ?? false,
  }
}

/** One record as a `--json` line's object (version 1: fields are only added). */
export function recordJson(r: TailedRecord): Record<string, unknown> {
  return {
    stage: r.stage,
    topic: r.topic,
    partition: r.partition,
    offset: r.offset,
    key: r.key,
    timestamp: r.timestamp,
    time: isoTime(r.timestamp),
    headers: r.headers,
    ...(r.decodeError === undefined ? { value: jsonSafe(r.value) } : { decodeError: r.decodeError, raw: r.raw }),
  }
}

/**
 * One record as a line: `<partition>@<offset> <time> key=<key> <value as compact JSON>`,
 * then its headers as name=value; a dead letter shows its error and origin before the
 * original value.
 */
export function formatRecord(r: TailedRecord, deadLetter: boolean): string {
  const parts = [`${r.partition}@${r.offset}`, isoTime(r.timestamp), `key=${r.key === null ? '-' : r.key}`]
  if (r.decodeError !== undefined) parts.push(`<undecodable: ${r.decodeError}> raw=${r.raw ?? ''}`)
  else if (deadLetter && r.value !== null && typeof r.value === 'object') {
    const d = r.value as DeadLetterView
    const where = d.origin !== undefined ? `${d.origin.topic}/${d.origin.partition}@${d.origin.offset}` : d.timer !== undefined ? `${d.timer.domain} timer at ${isoTime(d.timer.time)}` : '?'
    parts.push(`[${d.error.code}] ${d.error.message}`, `from ${where}`, `attempts=${d.attempts}`)
    parts.push(d.valueDecodeError === undefined ? compact(d.value) : `<undecodable: ${d.valueDecodeError}> raw=${String(d.value)}`)
    if (d.detail !== undefined) parts.push(`detail=${compact(d.detail)}`)
  } else parts.push(compact(r.value))
  for (const [name, value] of Object.entries(r.headers)) parts.push(`${name}=${value}`)
  return parts.join('  ')
}

function compact(v: unknown): string {
  return JSON.stringify(jsonSafe(v))
}

function isoTime(ms: number): string {
  const d = new Date(ms)
  return Number.isFinite(d.getTime()) ? d.toISOString() : String(ms)
}

/** Writes lines to stdout, waiting when its buffer is full; a closed stdout (`| head`) ends the tail. */
class Output {
  closed = false
  constructor(private readonly onClosed: () => void) {
    process.stdout.on('error', (err: NodeJS.ErrnoException) => {
      if (err.code !== 'EPIPE') throw err
      this.closed = true
      this.onClosed()
    })
  }

  async line(text: string): Promise<void> {
    if (this.closed) return
    if (!process.stdout.write(text + '\n')) await new Promise<void>((resolveDrain) => {
      const done = (): void => {
        process.stdout.off('drain', done)
        process.stdout.off('close', done)
        resolveDrain()
      }
      process.stdout.once('drain', done)
      process.stdout.once('close', done)
    })
  }
}

/** `weir tail …`. Returns the exit code. */
export async function tailCommand(argv: string[]): Promise<number> {
  let args: TailArgs
  let pipeline: Pipeline
  let dataDir: string
  try {
    const parsed = parseTailArgs(argv)
    if (parsed === 'help') {
      process.stdout.write(TAIL_USAGE)
      return 0
    }
    args = parsed
    pipeline = await loadPipeline(args.file, args.params)
    edgeOf(pipeline, args.stage, args.deadLetter)
    dataDir = args.dataDir ?? resolve('.weir', pipeline.name)
    if (args.pipe === 'embedded' && !existsSync(join(dataDir, 'pipe'))) {
      throw new ConfigError('--data-dir', `${dataDir} holds no embedded pipe: has pipeline ${pipeline.name} run with this data dir?${args.dataDir === undefined ? ' (weir run keeps it in ./.weir/<pipeline> unless given --data-dir)' : ''}`)
    }
  } catch (err) {
    return printRefusal(err, 'tail')
  }
  const ctl = new AbortController()
  let interrupted = false
  const onSignal = (): void => {
    interrupted = true
    ctl.abort()
  }
  process.on('SIGINT', onSignal)
  process.on('SIGTERM', onSignal)
  const out = new Output(() => ctl.abort())
  let pipe: Pipe | undefined
  let result: TailResult
  try {
    pipe = await openPipe(args.pipe, {
      dataDir,
      configFile: args.pipeConfig,
      embedded: { readOnly: true, refreshMs: args.follow ? FOLLOW_REFRESH_MS : 0 },
      log: args.pipe === 'embedded' ? undefined : commandLogger('weir', 'error'),
    })
    result = await tailEdge(pipe, pipeline, { stage: args.stage, deadLetter: args.deadLetter, from: args.from, key: args.key, limit: args.limit, follow: args.follow, partitions: args.partitions, signal: ctl.signal }, (r) =>
      out.line(args.json ? JSON.stringify(recordJson(r)) : formatRecord(r, args.deadLetter)))
  } catch (err) {
    if (err instanceof ConfigError || (err instanceof TopicError && err.code === 'WEIR_TOPIC_MISSING')) return printRefusal(err, 'tail')
    printError(err)
    return 1
  } finally {
    process.off('SIGINT', onSignal)
    process.off('SIGTERM', onSignal)
    await pipe?.close().catch(() => undefined)
  }
  if (!args.json && !out.closed) {
    const what = `${result.records} record${result.records === 1 ? '' : 's'} of ${args.deadLetter ? 'dead-letter topic ' : ''}${result.positions[0]?.topic ?? args.stage}`
    const why = result.reason === 'limit' && args.defaultLimit ? `; stopped at the default limit of ${DEFAULT_LIMIT} (--limit N for more, --follow to keep reading)` : ''
    process.stderr.write(`weir tail: ${what}${why}\n`)
  }
  return interrupted && !args.follow ? 130 : 0
}
