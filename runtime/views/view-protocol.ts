/**
 * The view request and reply that travel on the control bus between whoever asks (an HTTP
 * server on any worker, `weir peek`, the dashboard) and the actor holding the partition
 * (bus subjects `viewSubjects.actor`), and how an actor answers one from its committed
 * state. Replies are msgpack on the wire, so values keep their types.
 *
 * @example
 * const reply = await answerView(reads, view, { v: 1, view: 'counts', partition: 0, keys: ['ant'], waitMs: 0, maxBytes: 1 << 20 }, 'count/0')
 */
import { z } from 'zod'
import type { ViewSpec } from '../api/pipeline.ts'
import { stateCodec } from '../codec.ts'
import { WeirError } from '../errors.ts'
import { keyBytes, keyString } from '../record-keys.ts'
import { freezeLoaded } from '../values.ts'
import { keyedPrefix } from '../actor/state-keys.ts'
import { storeKeyBytes } from '../record-keys.ts'
import type { CommittedReads, CommittedMeta } from './committed-reads.ts'

/** Page size: the largest `limit` a scan may ask for. */
export const MAX_PAGE = 1000
/** Largest reply, bytes of keys and stored values (NATS' default max_payload is 1 MiB). */
export const MAX_REPLY_BYTES = 512 * 1024
/** Point lookups in one request. */
export const MAX_KEYS = 100

export const viewRequest = z
  .object({
    v: z.literal(1),
    view: z.string().min(1).max(64),
    partition: z.number().int().min(0),
    keys: z.array(z.string().max(4096)).min(1).max(MAX_KEYS).optional(),
    scan: z
      .object({
        prefix: z.string().max(4096).optional(),
        gte: z.string().max(4096).optional(),
        lt: z.string().max(4096).optional(),
        after: z.string().max(4096).optional(),
        limit: z.number().int().min(1).max(MAX_PAGE),
      })
      .strict()
      .optional(),
    atLeast: z.object({ epoch: z.number().int().min(0).optional(), positions: z.record(z.string(), z.number().int().min(0)).optional() }).strict().optional(),
    waitMs: z.number().int().min(0).max(60_000),
    maxBytes: z.number().int().min(1024).max(MAX_REPLY_BYTES),
  })
  .strict()

export type ViewRequest = z.infer<typeof viewRequest>

export interface ViewEntry {
  key: string
  value: unknown
}

export interface ViewReply {
  ok: true
  partition: number
  epoch: number
  positions: Record<string, number>
  committedAt: number
  /** Found entries: for point lookups those that exist, for a scan in key order. */
  entries: ViewEntry[]
  /** A scan stopped at its limit or byte budget: ask again with `after` = the last key. */
  more: boolean
  /** Answered by a standby replica (stale read), not the actor. */
  standby?: boolean
}

export interface ViewFailure {
  ok: false
  error: { code: string; message: string; retriable: boolean }
}

export type ViewResponse = ViewReply | ViewFailure

export function failure(err: unknown): ViewFailure {
  if (err instanceof WeirError) return { ok: false, error: { code: err.code, message: err.message, retriable: err.retriable } }
  return { ok: false, error: { code: 'WEIR_VIEW_FAILED', message: (err as Error)?.message ?? String(err), retriable: false } }
}

/**
 * A responder's side of a view request: checks the message, that it is for `partition`, and
 * answers it with `query`; every failure is a reply (ViewFailure), never a throw.
 */
export async function respondToView(raw: unknown, partition: number, holder: string, query: (request: ViewRequest) => Promise<ViewReply>): Promise<ViewResponse> {
  const request = viewRequest.safeParse(raw)
  if (!request.success) return failure(new WeirError('WEIR_VIEW_BAD_REQUEST', `malformed view request: ${request.error.issues[0]?.path.join('.')} ${request.error.issues[0]?.message}`, { actor: holder }))
  if (request.data.partition !== partition) return failure(new WeirError('WEIR_VIEW_BAD_REQUEST', `request for partition ${request.data.partition} reached ${holder}`, { actor: holder }))
  try {
    return await query(request.data)
  } catch (err) {
    return failure(err)
  }
}

/** The smallest byte string greater than every string starting with `prefix` (undefined: none). */
export function prefixEnd(prefix: Buffer): Buffer | undefined {
  const end = Buffer.from(prefix)
  for (let i = end.length - 1; i >= 0; i--) {
    if (end[i]! < 0xff) {
      end[i]!++
      return end.subarray(0, i + 1)
    }
  }
  return undefined
}

/** Answers `request` for `view` from the committed state in `reads`. */
export async function answerView(reads: CommittedReads, view: ViewSpec, request: ViewRequest, actor: string, standby = false): Promise<ViewReply> {
  if (request.atLeast !== undefined) await reads.reach(request.atLeast, request.waitMs)
  const statePrefix = Buffer.from(keyedPrefix(view.state), 'utf8')
  return reads.read(async (snapshot, meta) => {
    const entries: ViewEntry[] = []
    let more = false
    if (request.keys !== undefined) {
      const values = await snapshot.getMany(request.keys.map((k) => storeKeyBytes(keyedPrefix(view.state) + k)))
      request.keys.forEach((key, i) => {
        const raw = values[i]
        if (raw !== null && raw !== undefined) entries.push({ key, value: project(view, key, raw, actor) })
      })
    } else if (request.scan !== undefined) {
      const { prefix, gte, lt, after, limit } = request.scan
      let from = Buffer.concat([statePrefix, keyBytes(gte ?? prefix ?? '')])
      if (after !== undefined) {
        // The smallest key after `after`: a scan page resumes there.
        const next = Buffer.concat([statePrefix, keyBytes(after), Buffer.from([0])])
        if (Buffer.compare(next, from) > 0) from = next
      }
      let to = prefixEnd(statePrefix)!
      if (prefix !== undefined) to = minBuffer(to, prefixEnd(Buffer.concat([statePrefix, keyBytes(prefix)])) ?? to)
      if (lt !== undefined) to = minBuffer(to, Buffer.concat([statePrefix, keyBytes(lt)]))
      if (Buffer.compare(from, to) < 0) {
        // One more than asked: tells whether a next page exists.
        const found = await snapshot.range(from, to, limit + 1)
        let bytes = 0
        for (const { key, value } of found) {
          if (entries.length === limit || bytes > request.maxBytes) {
            more = true
            break
          }
          const userKey = keyString(key.subarray(statePrefix.length))
          bytes += key.length + value.length
          entries.push({ key: userKey, value: project(view, userKey, value, actor) })
        }
      }
    }
    return reply(request.partition, meta, entries, more, standby)
  })
}

function reply(partition: number, meta: CommittedMeta, entries: ViewEntry[], more: boolean, standby: boolean): ViewReply {
  const r: ViewReply = { ok: true, partition, epoch: meta.epoch, positions: meta.positions, committedAt: meta.committedAt, entries, more }
  if (standby) r.standby = true
  return r
}

function minBuffer(a: Buffer, b: Buffer): Buffer {
  return Buffer.compare(a, b) <= 0 ? a : b
}

function project(view: ViewSpec, key: string, raw: Buffer, actor: string): unknown {
  const value = freezeLoaded(stateCodec.decode(raw))
  if (view.project === undefined) return value
  try {
    return view.project(value, key)
  } catch (err) {
    throw new WeirError('WEIR_VIEW_PROJECTION_FAILED', `view ${view.name}: its projection threw on key ${JSON.stringify(key)}: ${(err as Error).message}`, { view: view.name, stage: view.stage, actor, key }, { cause: err })
  }
}
