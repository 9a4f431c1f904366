/**
 * Inspect requests: what any worker of a pipeline answers on `subjects.inspect(cluster,
 * pipeline)` for a client that knows only names (the monitor's dashboard hears progress
 * events, never the pipeline's code, so it cannot route a view lookup itself): which views
 * the pipeline serves, a lookup or prefix scan in one (the worker runs a ViewClient), and a
 * sample of a stage's latest committed records. Replies are JSON-safe, so the monitor passes
 * them on as they are, and bounded (NATS' max_payload, a browser's table): a value longer
 * than MAX_VALUE_CHARS as JSON comes as the start of its JSON, and a reply stops before
 * MAX_INSPECT_REPLY_CHARS, saying how many items it left out.
 *
 * @example
 * bus.respond(subjects.inspect(cluster, pipeline.name), (raw) => answerInspect(raw, {
 *   pipeline, views: new ViewClient(bus, pipeline, { cluster }), sample: (stage, n) => sampleEdge(pipe, pipeline, stage, n),
 * }))
 */
import { z } from 'zod'
import type { Pipeline } from '../api/pipeline.ts'
import { UnknownStageError, WeirError } from '../errors.ts'
import { closestName } from '../suggest.ts'
import { jsonSafe, type TailedRecord } from '../tail.ts'
import { parseAtLeast, ViewQueryError, type PartitionState, type ReadOptions, type ViewClient } from './view-client.ts'

export const INSPECT_VERSION = 1
/** Most records a sample may ask for. */
export const MAX_SAMPLE = 50
/** Most entries a prefix lookup may ask for. */
export const MAX_SCAN = 50
/** Longest a request may let the worker take, ms. */
export const MAX_INSPECT_MS = 10_000
/** What the worker takes when the request does not say, ms. */
export const DEFAULT_INSPECT_MS = 4_000
/** Largest reply: characters of its JSON (NATS' default max_payload is 1 MiB). */
export const MAX_INSPECT_REPLY_CHARS = 256 * 1024
/** A value whose JSON is longer is sent as the start of its JSON (`truncated`). */
export const MAX_VALUE_CHARS = 4096
/** Record keys, header values and undecodable bytes are cut to these lengths. */
const MAX_KEY_CHARS = 1024
const MAX_HEADER_CHARS = 512
const MAX_HEADERS = 32
const MAX_RAW_CHARS = 1024

/** A view name (pipeline.ts's rule). */
const viewName = z.string().regex(/^[A-Za-z0-9_-]{1,64}$/, 'a view name is 1-64 of A-Z a-z 0-9 _ -')
/** A stage name, a side output's (`stage.side`) or a keyed stream's (`stage.keyBy.1`) included. */
export const stageNamePattern = /^[A-Za-z0-9_-]{1,64}(\.[A-Za-z0-9_-]{1,64}){0,2}$/
const stageName = z.string().regex(stageNamePattern, 'a stage name is 1-64 of A-Z a-z 0-9 _ - (a side output: stage.side)')
const budget = z.number().int().min(100).max(MAX_INSPECT_MS).optional()
const key = z.string().max(4096)

export const inspectRequest = z
  .discriminatedUnion('kind', [
    z.object({ v: z.literal(INSPECT_VERSION), kind: z.literal('views') }).strict(),
    z
      .object({
        v: z.literal(INSPECT_VERSION),
        kind: z.literal('lookup'),
        view: viewName,
        /** One key's value (a point lookup)… */
        key: key.optional(),
        /** …or the entries whose keys start with this, in key order ('' for all). */
        prefix: key.optional(),
        /** A prefix lookup's next page starts after this key (the previous page's `next`). */
        after: key.optional(),
        limit: z.number().int().min(1).max(MAX_SCAN).optional(),
        /** Wait until the state includes this (`epoch:N` or `<input>:<partition>:<offset>,…`; docs/views.md). */
        atLeast: z.string().min(1).max(2048).optional(),
        /** A standby may answer while the key's actor moves. */
        stale: z.boolean().optional(),
        timeoutMs: budget,
      })
      .strict(),
    z.object({ v: z.literal(INSPECT_VERSION), kind: z.literal('sample'), stage: stageName, n: z.number().int().min(1).max(MAX_SAMPLE), timeoutMs: budget }).strict(),
  ])
  .superRefine((r, ctx) => {
    if (r.kind !== 'lookup') return
    if ((r.key === undefined) === (r.prefix === undefined)) ctx.addIssue({ code: z.ZodIssueCode.custom, path: ['key'], message: 'give either a key or a prefix' })
    if (r.key !== undefined && (r.after !== undefined || r.limit !== undefined)) ctx.addIssue({ code: z.ZodIssueCode.custom, path: ['after'], message: 'after and limit go with a prefix, not a key' })
  })

export type InspectRequest = z.infer<typeof inspectRequest>

/**
 * A value as sent: `value` itself (JSON-safe: bytes as base64, bigints as strings) when its
 * JSON fits MAX_VALUE_CHARS; otherwise `truncated` holds the start of its JSON and its length.
 */
const shownValue = {
  value: z.unknown().optional(),
  truncated: z.object({ json: z.string(), chars: z.number().int().nonnegative() }).strict().optional(),
}

const partitionState = z
  .object({ partition: z.number().int().nonnegative(), epoch: z.number().int().nonnegative(), positions: z.record(z.string(), z.number()), committedAt: z.number(), standby: z.boolean().optional() })
  .strict()

export const inspectViewInfo = z
  .object({
    name: z.string(),
    stage: z.string(),
    /** The keyed state it serves. */
    state: z.string(),
    parallelism: z.number().int().positive(),
    /** A key's lookup goes to one partition (the stage's input is keyBy'd); otherwise every partition is asked. */
    keyed: z.boolean(),
  })
  .strict()

export const sampledRecord = z
  .object({
    partition: z.number().int().nonnegative(),
    offset: z.number().int().nonnegative(),
    /** As user code sees it (keyString); null for none; cut at 1024 characters (then `keyTruncated`). */
    key: z.string().nullable(),
    keyTruncated: z.boolean().optional(),
    /** Event time, ms since the epoch. */
    timestamp: z.number(),
    headers: z.record(z.string(), z.string()),
    ...shownValue,
    /** The value could not be decoded: why, and the start of its bytes in base64. */
    decodeError: z.string().optional(),
    raw: z.string().optional(),
  })
  .strict()

const viewsReply = z.object({ ok: z.literal(true), kind: z.literal('views'), pipeline: z.string(), views: z.array(inspectViewInfo).max(1000) }).strict()
const lookupReply = partitionState
  .extend({ ok: z.literal(true), kind: z.literal('lookup'), view: z.string(), stage: z.string(), key: z.string(), found: z.boolean(), ...shownValue })
  .strict()
const scanReply = z
  .object({
    ok: z.literal(true),
    kind: z.literal('scan'),
    view: z.string(),
    stage: z.string(),
    prefix: z.string(),
    entries: z.array(z.object({ key: z.string(), partition: z.number().int().nonnegative(), ...shownValue }).strict()).max(MAX_SCAN),
    /** The `after` of the next page; absent on the last page. */
    next: z.string().optional(),
    partitions: z.array(partitionState),
    /** Entries left out to keep the reply within MAX_INSPECT_REPLY_CHARS (`next` continues before them). */
    omitted: z.number().int().nonnegative(),
  })
  .strict()
const sampleReply = z
  .object({
    ok: z.literal(true),
    kind: z.literal('sample'),
    stage: z.string(),
    topic: z.string(),
    /** Oldest first (by timestamp, then partition and offset); the newest is last. */
    records: z.array(sampledRecord).max(MAX_SAMPLE),
    /** The oldest records left out to keep the reply within MAX_INSPECT_REPLY_CHARS. */
    omitted: z.number().int().nonnegative(),
    /**
     * The edge's records are deleted once every stage reading them committed past them
     * (PipelineOptions.purgeConsumedRecords): the sample holds only what some reader has not
     * committed yet, so an edge that keeps up is often empty.
     */
    purged: z.boolean(),
  })
  .strict()
export const inspectFailure = z
  .object({
    ok: z.literal(false),
    /** `status` is the HTTP status it maps to: 400 a bad request, 404 no such view or stage, 503 nobody could answer, 504 too slow. */
    error: z.object({ code: z.string(), message: z.string(), status: z.number().int().min(400).max(599) }).strict(),
  })
  .strict()

/** Every reply an inspect request may get: what the monitor checks a worker's answer against. */
export const inspectReply = z.union([viewsReply, lookupReply, scanReply, sampleReply, inspectFailure])

export type InspectViewInfo = z.infer<typeof inspectViewInfo>
export type SampledRecord = z.infer<typeof sampledRecord>
export type InspectViewsReply = z.infer<typeof viewsReply>
export type InspectLookupReply = z.infer<typeof lookupReply>
export type InspectScanReply = z.infer<typeof scanReply>
export type InspectSampleReply = z.infer<typeof sampleReply>
export type InspectFailure = z.infer<typeof inspectFailure>
export type InspectReply = z.infer<typeof inspectReply>

/** What a worker answers inspect requests with. */
export interface InspectDeps {
  pipeline: Pipeline
  /** A view client of this pipeline on the worker's bus: it routes a lookup to the partition's holder. */
  views: ViewClient
  /** The latest `n` committed records of `stage`'s output, oldest first: sampleEdge(pipe, pipeline, stage, n). */
  sample(stage: string, n: number): Promise<TailedRecord[]>
}

/** An inspect request could not be answered; `status` is the HTTP status it maps to. */
export class InspectError extends WeirError {
  constructor(code: string, message: string, readonly status: number, context: Record<string, unknown> = {}, options: { retriable?: boolean; cause?: unknown } = {}) {
    super(code, message, context, options)
  }
}

/**
 * Answers one inspect request (as it came off the bus: it is parsed here). Never throws: a
 * malformed request, an unknown view or stage, a lookup nobody answered and a slow sample
 * are failures in the reply, with the HTTP status they map to.
 *
 * @example
 * const reply = await answerInspect({ v: 1, kind: 'lookup', view: 'counts', key: 'ant' }, deps)
 * if (reply.ok && reply.kind === 'lookup') console.log(reply.found, reply.value, reply.epoch)
 */
export async function answerInspect(raw: unknown, deps: InspectDeps): Promise<InspectReply> {
  const parsed = inspectRequest.safeParse(raw)
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!
    return failed(new InspectError('WEIR_INSPECT_BAD_REQUEST', `malformed inspect request: ${issue.path.join('.') || 'request'}: ${issue.message}`, 400))
  }
  const request = parsed.data
  try {
    switch (request.kind) {
      case 'views':
        return views(deps.pipeline)
      case 'lookup':
        return await lookup(request, deps)
      case 'sample':
        return await sample(request, deps)
    }
  } catch (err) {
    return failed(err)
  }
}

function views(pipeline: Pipeline): InspectViewsReply {
  const infos = pipeline.views.map((v): InspectViewInfo => {
    const stage = pipeline.stage(v.stage)!
    return { name: v.name, stage: v.stage, state: v.state, parallelism: stage.parallelism, keyed: pipeline.partitionOfKey(stage, Buffer.alloc(0)) !== undefined }
  })
  return { ok: true, kind: 'views', pipeline: pipeline.name, views: infos }
}

type Lookup = Extract<InspectRequest, { kind: 'lookup' }>
type Sample = Extract<InspectRequest, { kind: 'sample' }>

async function lookup(request: Lookup, deps: InspectDeps): Promise<InspectLookupReply | InspectScanReply> {
  const timeoutMs = request.timeoutMs ?? DEFAULT_INSPECT_MS
  const stage = deps.views.view(request.view).stage
  const read: ReadOptions = { timeoutMs }
  if (request.atLeast !== undefined) read.atLeast = parseAtLeast(deps.pipeline, request.view, request.atLeast)
  if (request.stale === true) read.stale = true
  if (request.key !== undefined) {
    const answer = await deps.views.get(request.view, request.key, read)
    const reply: InspectLookupReply = { ok: true, kind: 'lookup', view: request.view, stage, key: answer.key, found: answer.found, ...partitionStateOf(answer) }
    return answer.found ? { ...reply, ...show(answer.value) } : reply
  }
  const prefix = request.prefix ?? ''
  const answer = await deps.views.scan(request.view, { prefix, after: request.after, limit: request.limit ?? 20 }, read)
  const entries = answer.entries.map((e) => ({ key: e.key, partition: e.partition, ...show(e.value) }))
  // The first entries that fit: a page cut short continues after its last kept key.
  const kept = fitting(entries, 'first')
  const reply: InspectScanReply = { ok: true, kind: 'scan', view: request.view, stage, prefix, entries: kept, partitions: answer.partitions.map(partitionStateOf), omitted: entries.length - kept.length }
  const next = kept.length < entries.length ? kept[kept.length - 1]?.key ?? request.after : answer.next
  if (next !== undefined) reply.next = next
  return reply
}

async function sample(request: Sample, deps: InspectDeps): Promise<InspectSampleReply> {
  const { pipeline } = deps
  const spec = pipeline.stage(request.stage)
  if (spec === undefined) {
    const names = pipeline.topology.map((s) => s.name)
    throw new UnknownStageError(request.stage, pipeline.name, names, closestName(request.stage, names))
  }
  const timeoutMs = request.timeoutMs ?? DEFAULT_INSPECT_MS
  const records = await withTimeout(deps.sample(request.stage, request.n), timeoutMs, () => new InspectError('WEIR_INSPECT_TIMEOUT', `the sample of stage ${request.stage} took longer than ${timeoutMs} ms (is the pipe reachable?)`, 504, { stage: request.stage }, { retriable: true }))
  const shown = records.slice(-request.n).map(sampled)
  // The newest records that fit: a sample is about what flows now.
  const kept = fitting(shown, 'last')
  // purge.ts's rule: edges read in the pipeline, except topics a user named.
  const purged = pipeline.options.purgeConsumedRecords && spec.topic === undefined && !pipeline.outputs.some((o) => o.name === spec.name)
  return { ok: true, kind: 'sample', stage: request.stage, topic: pipeline.outputTopic(spec), records: kept, omitted: shown.length - kept.length, purged }
}

function sampled(r: TailedRecord): SampledRecord {
  const out: SampledRecord = { partition: r.partition, offset: r.offset, key: r.key, timestamp: r.timestamp, headers: {} }
  if (r.key !== null && r.key.length > MAX_KEY_CHARS) {
    out.key = r.key.slice(0, MAX_KEY_CHARS)
    out.keyTruncated = true
  }
  for (const [name, value] of Object.entries(r.headers).slice(0, MAX_HEADERS)) out.headers[name.slice(0, MAX_HEADER_CHARS)] = clip(String(value), MAX_HEADER_CHARS)
  if (r.decodeError !== undefined) {
    out.decodeError = clip(r.decodeError, MAX_HEADER_CHARS)
    if (r.raw !== undefined) out.raw = clip(r.raw, MAX_RAW_CHARS)
    return out
  }
  return { ...out, ...show(r.value) }
}

/** A value as a reply carries it (see `shownValue`). */
export function show(value: unknown): { value?: unknown; truncated?: { json: string; chars: number } } {
  const safe = jsonSafe(value)
  const json = JSON.stringify(safe)
  if (json.length <= MAX_VALUE_CHARS) return { value: safe }
  return { truncated: { json: json.slice(0, MAX_VALUE_CHARS), chars: json.length } }
}

/** The items (from the first or the last) whose JSON fits the reply's budget, in their order. */
function fitting<T>(items: T[], from: 'first' | 'last'): T[] {
  // Room for the reply's other fields (partition states, names).
  let left = MAX_INSPECT_REPLY_CHARS - 16 * 1024
  const order = from === 'first' ? items : [...items].reverse()
  const kept: T[] = []
  for (const item of order) {
    left -= JSON.stringify(item).length + 1
    if (left < 0) break
    kept.push(item)
  }
  return from === 'first' ? kept : kept.reverse()
}

function partitionStateOf(s: PartitionState): PartitionState {
  const out: PartitionState = { partition: s.partition, epoch: s.epoch, positions: s.positions, committedAt: s.committedAt }
  if (s.standby === true) out.standby = true
  return out
}

function clip(s: string, max: number): string {
  return s.length <= max ? s : `${s.slice(0, max - 1)}…`
}

async function withTimeout<T>(work: Promise<T>, ms: number, onTimeout: () => Error): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(onTimeout()), ms)
  })
  try {
    return await Promise.race([work, timeout])
  } finally {
    clearTimeout(timer)
  }
}

/** A failure reply for `err`, with the HTTP status it maps to. */
export function failed(err: unknown): InspectFailure {
  const error = { code: 'WEIR_INSPECT_FAILED', message: (err as Error)?.message ?? String(err), status: 500 }
  if (err instanceof InspectError || err instanceof ViewQueryError) return { ok: false, error: { code: err.code, message: err.message, status: err.status } }
  if (err instanceof WeirError) {
    error.code = err.code
    error.status = statusOf(err)
  }
  return { ok: false, error }
}

function statusOf(err: WeirError): number {
  if (err.code === 'WEIR_STAGE_UNKNOWN' || err.code === 'WEIR_TOPIC_MISSING') return 404
  if (err.code === 'WEIR_CONFIG_INVALID') return 400
  return err.retriable ? 503 : 500
}
