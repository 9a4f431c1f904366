/**
 * `weir peek <pipeline> <view> [key | --prefix P | --gte A --lt B]`: prints a view's value for
 * a key (or a page of keys) as of its last committed checkpoint, with the epoch and input
 * positions it reflects. It asks a running `weir run` or `weir worker` over HTTP (found in
 * the data dir's views.json, or --url), or any worker over the NATS bus (--bus: an inspect
 * request, runtime/views/inspect-protocol.ts, which the worker routes to the key's holder).
 *
 * Exit codes: 0 printed, 1 the key is absent or no answer came, 2 refused (bad option, no run found).
 */
import { existsSync, readFileSync } from 'node:fs'
import { join, resolve } from 'node:path'
import { checkClusterName, subjects, BusNoResponderError } from '../runtime/control/bus.ts'
import { ConfigError, WeirError } from '../runtime/errors.ts'
import { openBus, type BusTarget } from '../runtime/open-bus.ts'
import { INSPECT_VERSION, MAX_SCAN, type InspectReply } from '../runtime/views/inspect-protocol.ts'
import { VIEWS_FILE } from '../runtime/views/serve-views.ts'
import { busTargetOf, NATS_OPTIONS, refuseNatsOptionsWithoutBus } from './nats-options.ts'
import { parseCommandArgs } from './options.ts'
import { printError, printRefusal, UsageError } from './report.ts'
import { readToken } from './token.ts'
import { PEEK_USAGE } from './usage.ts'

export interface PeekArgs {
  pipeline: string
  view: string
  key: string | undefined
  scan: { prefix?: string; gte?: string; lt?: string; after?: string; limit?: number } | undefined
  atLeast: string | undefined
  stale: boolean
  timeoutMs: number | undefined
  /** Where to ask: a views server over HTTP, or any worker on the bus. */
  target: { kind: 'http'; url: string; token: string | undefined } | { kind: 'bus'; bus: BusTarget; cluster: string }
  json: boolean
}

const NAME = /^[A-Za-z0-9_-]{1,64}$/

/** The options of `weir peek` (a config file's `peek` section takes the same, camelCased). */
export const PEEK_OPTIONS = {
  prefix: { type: 'string' }, gte: { type: 'string' }, lt: { type: 'string' }, after: { type: 'string' }, limit: { type: 'string' },
  'at-least': { type: 'string' }, stale: { type: 'boolean' }, 'timeout-ms': { type: 'string' },
  url: { type: 'string' }, 'data-dir': { type: 'string' }, 'token-file': { type: 'string' },
  bus: { type: 'string' }, cluster: { type: 'string' }, ...NATS_OPTIONS,
  json: { type: 'boolean' }, help: { type: 'boolean', short: 'h' },
} as const

/** Parses `peek`'s arguments; `help` for --help. Throws UsageError or ConfigError naming the option. */
export function parsePeekArgs(argv: string[], cwd: string, env: NodeJS.ProcessEnv): PeekArgs | 'help' {
  const { values, positionals } = parseCommandArgs('peek', { args: argv, allowPositionals: true, options: PEEK_OPTIONS }, { cwd, env })
  if (values.help) return 'help'
  if (positionals.length < 2) throw new UsageError('peek: expected <pipeline> <view> [key] (weir peek --help)')
  if (positionals.length > 3) throw new UsageError(`peek: expected <pipeline> <view> [key], got ${positionals.length} arguments (quote a key with spaces)`)
  const [pipeline, view, key] = positionals as [string, string, string | undefined]
  if (!NAME.test(pipeline)) throw new ConfigError('pipeline', `'${pipeline}' is not a pipeline name (1-64 of A-Z a-z 0-9 _ -)`)
  if (!NAME.test(view)) throw new ConfigError('view', `'${view}' is not a view name (1-64 of A-Z a-z 0-9 _ -)`)
  const scanning = values.prefix !== undefined || values.gte !== undefined || values.lt !== undefined || values.after !== undefined || values.limit !== undefined
  if (key !== undefined && scanning) throw new ConfigError(values.prefix !== undefined ? '--prefix' : '--gte', 'give a key or a scan (--prefix, --gte/--lt, --after, --limit), not both')
  if (values.prefix !== undefined && (values.gte !== undefined || values.lt !== undefined)) throw new ConfigError('--prefix', 'give either --prefix or a --gte/--lt range, not both')
  let limit: number | undefined
  if (values.limit !== undefined) {
    limit = Number(values.limit)
    if (!/^\d+$/.test(values.limit) || limit < 1 || limit > 1000) throw new ConfigError('--limit', `expected a whole number in 1..1000, got '${values.limit}'`)
  }
  let timeoutMs: number | undefined
  if (values['timeout-ms'] !== undefined) {
    timeoutMs = Number(values['timeout-ms'])
    if (!/^\d+$/.test(values['timeout-ms']) || timeoutMs < 1 || timeoutMs > 60_000) throw new ConfigError('--timeout-ms', `expected a whole number of milliseconds in 1..60000, got '${values['timeout-ms']}'`)
  }
  const common = {
    pipeline, view, key,
    scan: key === undefined ? { prefix: values.prefix, gte: values.gte, lt: values.lt, after: values.after, limit } : undefined,
    atLeast: values['at-least'], stale: values.stale ?? false, timeoutMs, json: values.json ?? false,
  }
  // WEIR_BUS is a default: an explicit HTTP target wins over it.
  const httpGiven = values.url !== undefined || values['data-dir'] !== undefined || values['token-file'] !== undefined
  const busUrl = values.bus ?? (httpGiven ? undefined : env.WEIR_BUS)
  if (busUrl !== undefined) {
    for (const option of ['url', 'data-dir', 'token-file'] as const) if (values[option] !== undefined) throw new ConfigError(`--${option}`, 'not with --bus (it asks a views server over HTTP; --bus asks any worker on NATS)')
    if (values.gte !== undefined || values.lt !== undefined) throw new ConfigError(values.gte !== undefined ? '--gte' : '--lt', 'a key range needs HTTP (--url or --data-dir); over --bus use --prefix')
    if (limit !== undefined && limit > MAX_SCAN) throw new ConfigError('--limit', `at most ${MAX_SCAN} over --bus (up to 1000 over HTTP), got ${limit}`)
    if (timeoutMs !== undefined && (timeoutMs < 100 || timeoutMs > 10_000)) throw new ConfigError('--timeout-ms', `over --bus it is 100..10000 ms, got ${timeoutMs}`)
    const cluster = values.cluster ?? 'default'
    checkClusterName(cluster, '--cluster')
    const bus = busTargetOf(busUrl, values.bus === undefined ? 'WEIR_BUS' : '--bus', values, env, cwd)
    return { ...common, target: { kind: 'bus', bus, cluster } }
  }
  refuseNatsOptionsWithoutBus(values)
  if (values.cluster !== undefined) throw new ConfigError('--cluster', 'only with --bus')
  if (values.url !== undefined && values['data-dir'] !== undefined) throw new ConfigError('--url', 'give --url or --data-dir, not both')
  const url = values.url ?? urlFromDataDir(resolve(cwd, values['data-dir'] ?? join('.weir', pipeline)), values['data-dir'] === undefined ? '--data-dir (default ./.weir/<pipeline>)' : '--data-dir')
  if (!/^https?:\/\/[^/]+$/.test(url.replace(/\/$/, ''))) throw new ConfigError('--url', `expected http://host:port of a views server, got '${url}'`)
  const token = readToken({ file: values['token-file'], fileOption: '--token-file', envName: 'WEIR_VIEWS_TOKEN' }, cwd, env)
  return { ...common, target: { kind: 'http', url: url.replace(/\/$/, ''), token } }
}

/** The views server of the run using `dir` (its views.json). */
function urlFromDataDir(dir: string, option: string): string {
  const file = join(dir, VIEWS_FILE)
  if (!existsSync(file)) throw new ConfigError(option, `no running weir serves views from ${dir} (no ${VIEWS_FILE}): start the pipeline with weir run, or give --url http://host:port of a worker's --views-port`)
  try {
    return (JSON.parse(readFileSync(file, 'utf8')) as { url: string }).url
  } catch (err) {
    throw new ConfigError(option, `${file} is unreadable: ${(err as Error).message}`)
  }
}

/** What a views server answered that was not a value: its status and error. */
export class PeekFailedError extends WeirError {
  constructor(readonly status: number, code: string, message: string) {
    super(code, message, { status })
  }
}

export async function peekCommand(argv: string[]): Promise<number> {
  let args: PeekArgs
  try {
    const parsed = parsePeekArgs(argv, process.cwd(), process.env)
    if (parsed === 'help') {
      process.stdout.write(PEEK_USAGE)
      return 0
    }
    args = parsed
  } catch (err) {
    return printRefusal(err, 'peek')
  }
  let answer: { status: number; body: any }
  try {
    answer = args.target.kind === 'http' ? await askHttp(args, args.target) : await askBus(args, args.target)
  } catch (err) {
    printError(err)
    return 1
  }
  const { status, body } = answer
  const absent = args.key !== undefined && status === 404 && body?.found === false
  if (status !== 200 && !absent) {
    printError(new PeekFailedError(status, body?.error?.code ?? 'WEIR_PEEK_FAILED', body?.error?.message ?? `HTTP ${status}`))
    return status === 400 || status === 404 ? 2 : 1
  }
  if (args.json) {
    process.stdout.write(JSON.stringify(body) + '\n')
    return absent ? 1 : 0
  }
  if (args.key !== undefined) {
    process.stdout.write(absent ? `${args.key}: not found ${describeState(body)}\n` : `${args.key} = ${JSON.stringify(body.value)}  ${describeState(body)}\n`)
    return absent ? 1 : 0
  }
  for (const e of body.entries as Array<{ key: string; value: unknown; partition: number }>) process.stdout.write(`${e.key} = ${JSON.stringify(e.value)}\n`)
  const partitions = body.partitions as Array<{ partition: number; epoch: number }>
  const epochs = partitions.map((p) => p.epoch)
  process.stdout.write(`(${body.entries.length} ${body.entries.length === 1 ? 'entry' : 'entries'} from ${partitions.length} partition${partitions.length === 1 ? '' : 's'} at epochs ${Math.min(...epochs)}..${Math.max(...epochs)}${body.next === undefined ? '' : `; more: --after ${JSON.stringify(body.next)}`})\n`)
  return 0
}

/** GET /views/… on a views server; the answer as the server gave it. */
async function askHttp(args: PeekArgs, target: { url: string; token: string | undefined }): Promise<{ status: number; body: any }> {
  const query = new URLSearchParams()
  for (const [k, v] of Object.entries(args.scan ?? {})) if (v !== undefined) query.set(k, String(v))
  if (args.atLeast !== undefined) query.set('atLeast', args.atLeast)
  if (args.stale) query.set('stale', 'ok')
  if (args.timeoutMs !== undefined) query.set('timeoutMs', String(args.timeoutMs))
  const path = `/views/${args.pipeline}/${args.view}${args.key === undefined ? '' : `/${encodeURIComponent(args.key)}`}`
  try {
    const res = await fetch(`${target.url}${path}${query.size === 0 ? '' : `?${query}`}`, { headers: target.token === undefined ? {} : { authorization: `Bearer ${target.token}` }, signal: AbortSignal.timeout((args.timeoutMs ?? 15_000) + 5_000) })
    return { status: res.status, body: await res.json() }
  } catch (err) {
    throw new WeirError('WEIR_PEEK_UNREACHABLE', `cannot reach the views server at ${target.url}: ${(err as Error).message} (is the run still going? its address is in views.json)`, { url: target.url })
  }
}

/** An inspect lookup on the bus, answered by any worker of the pipeline; shaped as the HTTP answer. */
async function askBus(args: PeekArgs, target: { bus: BusTarget; cluster: string }): Promise<{ status: number; body: any }> {
  const bus = await openBus(target.bus, { name: 'weir-peek' })
  try {
    const timeoutMs = args.timeoutMs ?? 4_000
    const request = {
      v: INSPECT_VERSION, kind: 'lookup', view: args.view, timeoutMs,
      ...(args.key !== undefined ? { key: args.key } : { prefix: args.scan?.prefix ?? '', ...(args.scan?.after === undefined ? {} : { after: args.scan.after }), ...(args.scan?.limit === undefined ? {} : { limit: args.scan.limit }) }),
      ...(args.atLeast === undefined ? {} : { atLeast: args.atLeast }),
      ...(args.stale ? { stale: true } : {}),
    }
    let reply: InspectReply
    try {
      reply = (await bus.request(subjects.inspect(target.cluster, args.pipeline), request, { timeoutMs: timeoutMs + 1_000 })) as InspectReply
    } catch (err) {
      if (err instanceof BusNoResponderError) throw new WeirError('WEIR_PEEK_NO_WORKER', `no worker of pipeline ${args.pipeline} in cluster ${target.cluster} answers on the bus (is it running? is --cluster right?)`, { pipeline: args.pipeline, cluster: target.cluster })
      throw err
    }
    if (!reply.ok) return { status: reply.error.status, body: { error: reply.error } }
    if (reply.kind === 'lookup') {
      const value = reply.truncated === undefined ? reply.value : `${reply.truncated.json}… (${reply.truncated.chars} characters)`
      return { status: reply.found ? 200 : 404, body: { ...reply, value } }
    }
    if (reply.kind === 'scan') return { status: 200, body: { ...reply, entries: reply.entries.map((e) => ({ ...e, value: e.truncated === undefined ? e.value : `${e.truncated.json}…` })) } }
    throw new WeirError('WEIR_PEEK_BAD_REPLY', `unexpected reply kind '${reply.kind}'`, {})
  } finally {
    await bus.close()
  }
}

/** `(partition 3, epoch 42, weir.wc.split@1200, committed 0.4 s ago)` */
function describeState(body: { partition: number; epoch: number; positions: Record<string, number>; committedAt: number; standby?: boolean }): string {
  const positions = Object.entries(body.positions).map(([t, o]) => `${t}@${o}`).join(' ')
  const age = Math.max(0, (Date.now() - body.committedAt) / 1000)
  return `(partition ${body.partition}, epoch ${body.epoch}${positions === '' ? '' : `, ${positions}`}, committed ${age.toFixed(1)} s ago${body.standby === true ? ', from a standby' : ''})`
}
