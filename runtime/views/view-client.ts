/**
 * Asks a pipeline's views over the control bus, from anywhere on it: an HTTP server on any
 * worker, `weir peek`, the monitor's dashboard. A point lookup goes to the one actor that
 * holds the key's partition (the pipe's murmur2 partitioner, as keyBy wrote it); a scan, or
 * a key of a stage whose input is not keyed, asks every partition and merges the answers in
 * key order. While an actor moves nobody answers its subject for a moment: the client asks
 * again until the new holder answers (or, with `stale`, asks a standby replica) instead of
 * failing, up to `timeoutMs`.
 *
 * @example
 * const views = new ViewClient(bus, pipeline, { cluster: 'local' })
 * const answer = await views.get('counts', 'ant')            // { found, value, epoch, positions, … }
 * const page = await views.scan('counts', { prefix: 'a', limit: 50 })
 */
import type { Pipeline, ViewSpec } from '../api/pipeline.ts'
import { BusNoResponderError, BusTimeoutError, viewSubjects, type ControlBus } from '../control/bus.ts'
import { WeirError } from '../errors.ts'
import { keyBytes } from '../record-keys.ts'
import type { ReadBound } from './committed-reads.ts'
import { MAX_PAGE, MAX_REPLY_BYTES, type ViewEntry, type ViewReply, type ViewRequest, type ViewResponse } from './view-protocol.ts'

export interface ViewClientOptions {
  cluster: string
  /** Longest a query may take, moves and `atLeast` waits included, ms. Default 15 000. */
  timeoutMs?: number
}

/**
 * What an answer must include (Kafka Streams' Position bound): a checkpoint epoch, and/or
 * positions in the view stage's input topics. Each partition checks the positions of its own
 * input partitions; `offset` is the position to reach (records below it are included).
 */
export interface AtLeast {
  epoch?: number
  positions?: Array<{ topic: string; partition: number; offset: number }>
}

export interface ReadOptions {
  /** Wait until the answering state includes this (read-your-writes); see parseAtLeast. */
  atLeast?: AtLeast
  /** While the actor moves, a standby replica may answer (its state may be behind the actor's). */
  stale?: boolean
  /** Overrides the client's timeout for this query, ms. */
  timeoutMs?: number
}

/** Which checkpoint of one partition an answer reflects. */
export interface PartitionState {
  partition: number
  epoch: number
  positions: Record<string, number>
  committedAt: number
  standby?: boolean
}

export interface LookupAnswer extends PartitionState {
  view: string
  key: string
  found: boolean
  value?: unknown
}

export interface ScanAnswer {
  view: string
  entries: Array<ViewEntry & { partition: number }>
  /** The `after` of the next page; absent on the last page. */
  next?: string
  partitions: PartitionState[]
}

export interface ScanQuery {
  prefix?: string
  gte?: string
  lt?: string
  after?: string
  limit?: number
}

/** A view query failed; `status` is the HTTP status it maps to. */
export class ViewQueryError extends WeirError {
  constructor(code: string, message: string, readonly status: number, context: Record<string, unknown> = {}) {
    super(code, message, context)
  }
}

const DEFAULT_TIMEOUT_MS = 15_000
/**
 * The first attempt's timeout, doubled on each retry. A request NATS handed to a worker
 * that just died (or is paused) gets no answer: with one request for the whole budget the
 * query would wait it out; short attempts ask again and reach the new holder. Doubling keeps
 * a slow but live holder (a big scan on a loaded machine) answerable.
 */
const FIRST_ATTEMPT_MS = 1_000

export class ViewClient {
  private readonly timeoutMs: number

  constructor(private readonly bus: ControlBus, private readonly pipeline: Pipeline, private readonly options: ViewClientOptions) {
    this.timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS
  }

  /** The view, or a 404 naming the views there are. */
  view(name: string): ViewSpec {
    const view = this.pipeline.view(name)
    if (view === undefined) {
      const names = this.pipeline.views.map((v) => v.name)
      throw new ViewQueryError('WEIR_VIEW_UNKNOWN', `pipeline ${this.pipeline.name} has no view '${name}' (${names.length === 0 ? 'it serves none' : `views: ${names.join(', ')}`})`, 404, { view: name })
    }
    return view
  }

  /** The value of `key` in view `name`, as of its partition's last committed checkpoint. */
  async get(name: string, key: string, options: ReadOptions = {}): Promise<LookupAnswer> {
    const view = this.view(name)
    const stage = this.pipeline.stage(view.stage)!
    const owner = this.pipeline.partitionOfKey(stage, keyBytes(key))
    const partitions = owner === undefined ? range(stage.parallelism) : [owner]
    const deadline = Date.now() + (options.timeoutMs ?? this.timeoutMs)
    const replies = await Promise.all(partitions.map((p) => this.ask(view, { v: 1, view: name, partition: p, keys: [key], ...bound(options, p), waitMs: 0, maxBytes: MAX_REPLY_BYTES }, options, deadline)))
    const hit = replies.find((r) => r.entries.length > 0) ?? replies[0]!
    const answer: LookupAnswer = { view: name, key, found: hit.entries.length > 0, ...state(hit) }
    if (answer.found) answer.value = hit.entries[0]!.value
    return answer
  }

  /** A page of view `name` in key order: a prefix, a key range [gte, lt), or everything; `after` continues from a page's `next`. */
  async scan(name: string, query: ScanQuery, options: ReadOptions = {}): Promise<ScanAnswer> {
    const view = this.view(name)
    const stage = this.pipeline.stage(view.stage)!
    const limit = Math.min(query.limit ?? 100, MAX_PAGE)
    const deadline = Date.now() + (options.timeoutMs ?? this.timeoutMs)
    const scan = { limit, ...definedOnly({ prefix: query.prefix, gte: query.gte, lt: query.lt, after: query.after }) }
    // A partition's part of the budget, so the merged page stays within one reply's size.
    const maxBytes = Math.max(1024, Math.floor(MAX_REPLY_BYTES / stage.parallelism))
    const replies = await Promise.all(range(stage.parallelism).map((p) => this.ask(view, { v: 1, view: name, partition: p, scan, ...bound(options, p), waitMs: 0, maxBytes }, options, deadline)))
    const merged = replies.flatMap((r) => r.entries.map((e) => ({ ...e, partition: r.partition }))).sort((a, b) => Buffer.compare(keyBytes(a.key), keyBytes(b.key)))
    const entries = merged.slice(0, limit)
    // Entries past a partition's last one may exist only if it said `more`; the page ends
    // before the first key some truncated partition could still hold below.
    const cutoffs = replies.filter((r) => r.more && r.entries.length > 0).map((r) => keyBytes(r.entries[r.entries.length - 1]!.key))
    const cutoff = cutoffs.sort(Buffer.compare)[0]
    const page = cutoff === undefined ? entries : entries.filter((e) => Buffer.compare(keyBytes(e.key), cutoff) <= 0)
    const more = merged.length > page.length || replies.some((r) => r.more)
    const answer: ScanAnswer = { view: name, entries: page, partitions: replies.map(state) }
    if (more && page.length > 0) answer.next = page[page.length - 1]!.key
    return answer
  }

  /**
   * One partition's answer. Nobody answering (the actor is moving or restoring) and a
   * holder that is stopping are asked again, with a growing pause, until the deadline; with
   * `stale` a standby replica is asked in between.
   */
  private async ask(view: ViewSpec, request: ViewRequest, options: ReadOptions, deadline: number): Promise<ViewReply> {
    const { cluster } = this.options
    const subject = viewSubjects.actor(cluster, this.pipeline.name, view.stage, request.partition)
    const standby = viewSubjects.standby(cluster, this.pipeline.name, view.stage, request.partition)
    let pause = 25
    let attemptMs = FIRST_ATTEMPT_MS
    let last: string = 'no answer'
    for (let attempt = 0; ; attempt++) {
      const left = deadline - Date.now()
      if (left <= 0) break
      const subjectNow = options.stale === true && attempt % 2 === 1 ? standby : subject
      // The holder waits for `atLeast` up to what is left of the budget, and says so itself if it runs out.
      const waitMs = request.atLeast === undefined ? 0 : Math.max(0, left - 50)
      try {
        const response = (await this.bus.request(subjectNow, { ...request, waitMs }, { timeoutMs: Math.max(50, Math.min(left, waitMs + attemptMs)) })) as ViewResponse
        if (response.ok) return response
        if (!response.error.retriable) throw new ViewQueryError(response.error.code, response.error.message, statusOf(response.error.code), { view: view.name, partition: request.partition })
        last = response.error.message
      } catch (err) {
        if (err instanceof ViewQueryError) throw err
        if (!(err instanceof BusNoResponderError) && !(err instanceof BusTimeoutError)) throw err
        if (err instanceof BusTimeoutError) attemptMs *= 2
        last = err.message
      }
      await new Promise((r) => setTimeout(r, Math.min(pause, Math.max(1, deadline - Date.now()))))
      pause = Math.min(500, pause * 2)
    }
    throw new ViewQueryError('WEIR_VIEW_UNAVAILABLE', `view ${view.name}, partition ${request.partition}: no holder answered in time (last: ${last})`, 503, { view: view.name, stage: view.stage, partition: request.partition })
  }
}

function statusOf(code: string): number {
  switch (code) {
    case 'WEIR_VIEW_UNKNOWN': return 404
    case 'WEIR_VIEW_BAD_REQUEST': return 400
    case 'WEIR_VIEW_NOT_YET': return 504
    default: return 500
  }
}

/** The part of `atLeast` that partition `partition` checks. */
function bound(options: ReadOptions, partition: number): Pick<ViewRequest, 'atLeast'> {
  const a = options.atLeast
  if (a === undefined) return {}
  const b: ReadBound = {}
  if (a.epoch !== undefined) b.epoch = a.epoch
  const mine = (a.positions ?? []).filter((p) => p.partition === partition)
  if (mine.length > 0) b.positions = Object.fromEntries(mine.map((p) => [p.topic, p.offset]))
  return b.epoch === undefined && b.positions === undefined ? {} : { atLeast: b }
}

function state(r: ViewReply): PartitionState {
  const s: PartitionState = { partition: r.partition, epoch: r.epoch, positions: r.positions, committedAt: r.committedAt }
  if (r.standby === true) s.standby = true
  return s
}

function range(n: number): number[] {
  return Array.from({ length: n }, (_, i) => i)
}

function definedOnly<T extends Record<string, unknown>>(o: T): Partial<T> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<T>
}

/**
 * Parses `atLeast` text: `epoch:N`, and/or comma-separated `<input>:<partition>:<offset>`
 * where input is an input stage of the view's stage or its topic, and offset the position
 * the state must reach (records below it included: for a record you produced at offset o,
 * give o + 1). Throws ViewQueryError (400) naming what is wrong.
 *
 * @example
 * parseAtLeast(pipeline, 'counts', 'split:3:1200') // { positions: [{ topic: 'weir.wc.split', partition: 3, offset: 1200 }] }
 */
export function parseAtLeast(pipeline: Pipeline, viewName: string, text: string): AtLeast {
  const view = pipeline.view(viewName)
  if (view === undefined) throw new ViewQueryError('WEIR_VIEW_UNKNOWN', `no view '${viewName}'`, 404)
  const stage = pipeline.stage(view.stage)!
  const inputs = stage.inputs.map((i) => ({ name: i, topic: pipeline.outputTopic(pipeline.stage(i)!) }))
  const out: AtLeast = {}
  const elsewhere: string[] = []
  for (const part of text.split(',')) {
    const bits = part.split(':')
    if (bits.length === 2 && bits[0] === 'epoch' && /^\d{1,15}$/.test(bits[1]!)) {
      out.epoch = Number(bits[1])
      continue
    }
    if (bits.length !== 3 || !/^\d{1,6}$/.test(bits[1]!) || !/^\d{1,15}$/.test(bits[2]!)) {
      throw new ViewQueryError('WEIR_VIEW_BAD_REQUEST', `atLeast: '${part}' is neither epoch:N nor <input>:<partition>:<offset>`, 400, { field: 'atLeast' })
    }
    // A keyed input is named after the stage it keys (`split.keyBy.1`): `split` names it too.
    const input = inputs.find((i) => i.name === bits[0] || i.topic === bits[0]) ?? inputs.find((i) => i.name.split('.')[0] === bits[0])
    // Another topic of the pipeline (an ingest's ack lists every topic its stage writes) says nothing about this view's state.
    if (input === undefined && pipeline.topology.some((s) => pipeline.outputTopic(s) === bits[0])) {
      elsewhere.push(bits[0]!)
      continue
    }
    if (input === undefined) throw new ViewQueryError('WEIR_VIEW_BAD_REQUEST', `atLeast: '${bits[0]}' is not an input of stage ${stage.name} (inputs: ${inputs.map((i) => `${i.name} (topic ${i.topic})`).join(', ')})`, 400, { field: 'atLeast' })
    ;(out.positions ??= []).push({ topic: input.topic, partition: Number(bits[1]), offset: Number(bits[2]) })
  }
  // Ignoring every term would answer at once, without the write the caller waits for: refuse instead.
  if (out.epoch === undefined && out.positions === undefined && elsewhere.length > 0) {
    throw new ViewQueryError('WEIR_VIEW_BAD_REQUEST', `atLeast: ${[...new Set(elsewhere)].join(', ')} ${elsewhere.length === 1 ? 'is' : 'are'} not read by stage ${stage.name} (inputs: ${inputs.map((i) => `${i.name} (topic ${i.topic})`).join(', ')}), so no position of its state can include it; ask a view of a stage that reads it`, 400, { field: 'atLeast' })
  }
  return out
}
