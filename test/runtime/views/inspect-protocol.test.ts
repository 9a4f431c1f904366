/**
 * answerInspect, the worker's side of inspect requests, on its own: malformed requests and
 * unknown names are failures with the HTTP status they map to, sampled values become
 * JSON-safe, long ones are cut, and a reply stays within its budget by leaving out the
 * oldest records. Every reply fits the schema the monitor checks it against. (The lookups
 * through a real run's views are in test/monitor/inspect.test.ts.)
 */
import { describe, expect, it } from 'vitest'
import { Pipeline, Processor, Source, type Context, type SourceStatus, type StreamRecord } from '../../../index.ts'
import { LocalBus } from '../../../runtime/control/local/local-bus.ts'
import { PipeError, TopicError } from '../../../runtime/errors.ts'
import type { TailedRecord } from '../../../runtime/tail.ts'
import { answerInspect, inspectReply, MAX_INSPECT_REPLY_CHARS, MAX_VALUE_CHARS, type InspectDeps, type InspectReply } from '../../../runtime/views/inspect-protocol.ts'
import { ViewClient } from '../../../runtime/views/view-client.ts'
import { pino } from 'pino'

class Idle extends Source<number> {
  override poll(): SourceStatus {
    return 'idle'
  }
}

class Keep extends Processor<number, number> {
  private readonly last = this.state.value<number>('last')
  override onRecord(r: StreamRecord<number>, ctx: Context<number>): void {
    this.last.set(r.value)
    ctx.emit(r.key, r.value)
  }
}

function pipeline(): Pipeline {
  const p = new Pipeline('insp')
  const src = p.source<number>('src', () => new Idle(), { partitions: 2 })
  src.keyBy(4).process('keyed', Keep, { views: { lastByKey: 'last' } })
  src.process('forwarded', Keep, { views: { lastSeen: 'last' } })
  return p
}

function deps(sample: InspectDeps['sample'] = async () => []): InspectDeps {
  const p = pipeline()
  return { pipeline: p, views: new ViewClient(new LocalBus(pino({ level: 'silent' })), p, { cluster: 'c', timeoutMs: 200 }), sample }
}

function record(i: number, fields: Partial<TailedRecord> = {}): TailedRecord {
  return { stage: 'keyed', topic: 'weir.insp.keyed', partition: i % 4, offset: i, key: `k${i}`, timestamp: 1_700_000_000_000 + i, headers: {}, value: i, ...fields }
}

/** The reply, checked against the schema the monitor uses. */
async function ask(request: unknown, d: InspectDeps = deps()): Promise<InspectReply> {
  const reply = await answerInspect(request, d)
  expect(inspectReply.safeParse(reply).success, JSON.stringify(reply).slice(0, 500)).toBe(true)
  return reply
}

describe('answerInspect', () => {
  it('lists the views with their stage, partitions, and whether a key goes to one partition', async () => {
    expect(await ask({ v: 1, kind: 'views' })).toEqual({
      ok: true,
      kind: 'views',
      pipeline: 'insp',
      views: [
        { name: 'lastByKey', stage: 'keyed', state: 'last', parallelism: 4, keyed: true },
        { name: 'lastSeen', stage: 'forwarded', state: 'last', parallelism: 2, keyed: false },
      ],
    })
  })

  it('a malformed request is a 400 naming the field; an unknown view or stage a 404 naming what there is', async () => {
    const cases: Array<[unknown, RegExp]> = [
      [{ v: 2, kind: 'views' }, /^malformed inspect request: v: /],
      [{ v: 1, kind: 'drop' }, /^malformed inspect request: kind: /],
      [{ v: 1, kind: 'sample', stage: 'keyed', n: 51 }, /^malformed inspect request: n: /],
      [{ v: 1, kind: 'sample', stage: 'keyed', n: 5, timeoutMs: 60_000 }, /timeoutMs/],
      [{ v: 1, kind: 'lookup', view: 'lastByKey' }, /key: give either a key or a prefix/],
      [{ v: 1, kind: 'lookup', view: 'lastByKey', key: 'a', prefix: 'a' }, /key: give either a key or a prefix/],
      [{ v: 1, kind: 'lookup', view: 'lastByKey', key: 'a', limit: 3 }, /after: after and limit go with a prefix/],
      ['views', /^malformed inspect request/],
    ]
    for (const [request, message] of cases) {
      const reply = await ask(request)
      expect(reply.ok, JSON.stringify(request)).toBe(false)
      if (reply.ok) continue
      expect(reply.error.status).toBe(400)
      expect(reply.error.code).toBe('WEIR_INSPECT_BAD_REQUEST')
      expect(reply.error.message).toMatch(message)
    }
    const view = await ask({ v: 1, kind: 'lookup', view: 'nope', key: 'a' })
    expect(view).toMatchObject({ ok: false, error: { status: 404, code: 'WEIR_VIEW_UNKNOWN' } })
    const stage = await ask({ v: 1, kind: 'sample', stage: 'keyd', n: 3 })
    expect(stage).toMatchObject({ ok: false, error: { status: 404, code: 'WEIR_STAGE_UNKNOWN' } })
    if (!stage.ok) expect(stage.error.message).toMatch(/did you mean 'keyed'\?/)
  })

  it('a lookup no actor answers is a 503 once its budget is spent', async () => {
    const started = Date.now()
    const reply = await ask({ v: 1, kind: 'lookup', view: 'lastByKey', key: 'a', timeoutMs: 150 })
    expect(reply).toMatchObject({ ok: false, error: { status: 503, code: 'WEIR_VIEW_UNAVAILABLE' } })
    expect(Date.now() - started).toBeLessThan(1000)
  })

  it('sampled values become JSON-safe; a long value comes as the start of its JSON, long keys and headers are cut', async () => {
    const big = { text: 'x'.repeat(MAX_VALUE_CHARS * 3) }
    const headers = Object.fromEntries(Array.from({ length: 40 }, (_, i) => [`h${i}`, 'v'.repeat(i === 0 ? 2000 : 3)]))
    const records = [
      record(1, { value: { bytes: Buffer.from('hi'), big: 10n ** 20n, map: new Map([['a', 1]]), set: new Set([1, 2]), nan: Number.NaN, when: new Date(0), gone: undefined } }),
      record(2, { value: big, key: 'k'.repeat(5000), headers }),
      record(3, { value: undefined, decodeError: 'not msgpack', raw: 'A'.repeat(5000) }),
    ]
    const reply = await ask({ v: 1, kind: 'sample', stage: 'keyed', n: 3 }, deps(async () => records))
    if (!reply.ok || reply.kind !== 'sample') throw new Error(JSON.stringify(reply))
    expect(reply.topic).toBe('weir.insp.keyed')
    // An output: nobody reads it, so nothing purges it.
    expect(reply.purged).toBe(false)
    const edge = await ask({ v: 1, kind: 'sample', stage: 'src', n: 3 }, deps(async () => []))
    expect(edge).toMatchObject({ ok: true, records: [], purged: true })
    const [safe, long, broken] = reply.records
    expect(safe!.value).toEqual({ bytes: 'aGk=', big: '100000000000000000000', map: { a: 1 }, set: [1, 2], nan: Number.NaN, when: '1970-01-01T00:00:00.000Z' })
    expect(long!.value).toBeUndefined()
    expect(long!.truncated!.json).toBe(JSON.stringify(big).slice(0, MAX_VALUE_CHARS))
    expect(long!.truncated!.chars).toBe(JSON.stringify(big).length)
    expect(long!.key).toHaveLength(1024)
    expect(long!.keyTruncated).toBe(true)
    expect(Object.keys(long!.headers)).toHaveLength(32)
    expect(long!.headers.h0!.length).toBeLessThanOrEqual(512)
    expect(broken).toMatchObject({ decodeError: 'not msgpack' })
    expect(broken!.raw!.length).toBeLessThanOrEqual(1024)
    expect(broken).not.toHaveProperty('value')
  })

  it('a sample stays within the reply budget by leaving out its oldest records', async () => {
    // 50 records of about 10 KB each: twice the budget.
    const records = Array.from({ length: 50 }, (_, i) => record(i, { value: 'y'.repeat(MAX_VALUE_CHARS - 10), headers: Object.fromEntries(Array.from({ length: 12 }, (_, h) => [`h${h}`, 'z'.repeat(500)])) }))
    const reply = await ask({ v: 1, kind: 'sample', stage: 'keyed', n: 50 }, deps(async () => records))
    if (!reply.ok || reply.kind !== 'sample') throw new Error(JSON.stringify(reply).slice(0, 300))
    expect(reply.omitted).toBeGreaterThan(0)
    expect(reply.records.length + reply.omitted).toBe(50)
    expect(reply.records.at(-1)!.offset).toBe(49)
    expect(reply.records[0]!.offset).toBe(reply.omitted)
    expect(JSON.stringify(reply).length).toBeLessThanOrEqual(MAX_INSPECT_REPLY_CHARS)
  })

  it('a slow sample is a 504; a missing topic a 404; a pipe that is down a 503', async () => {
    const started = Date.now()
    const slow = await ask({ v: 1, kind: 'sample', stage: 'keyed', n: 3, timeoutMs: 150 }, deps(() => new Promise(() => undefined)))
    expect(slow).toMatchObject({ ok: false, error: { status: 504, code: 'WEIR_INSPECT_TIMEOUT' } })
    expect(Date.now() - started).toBeGreaterThanOrEqual(140)
    const missing = await ask({ v: 1, kind: 'sample', stage: 'keyed', n: 3 }, deps(async () => {
      throw new TopicError('WEIR_TOPIC_MISSING', 'topic weir.insp.keyed does not exist on this pipe', { topic: 'weir.insp.keyed' })
    }))
    expect(missing).toMatchObject({ ok: false, error: { status: 404, code: 'WEIR_TOPIC_MISSING' } })
    const down = await ask({ v: 1, kind: 'sample', stage: 'keyed', n: 3 }, deps(async () => {
      throw new PipeError('broker unreachable', {}, { retriable: true })
    }))
    expect(down).toMatchObject({ ok: false, error: { status: 503 } })
  })
})
