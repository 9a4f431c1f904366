/**
 * The HTTP sink (processors/sinks/http-sink.ts) against a real HTTP server in the test
 * (fixtures/dedup-server.ts: it takes each Idempotency-Key once and logs every request):
 * exactly-once content under real SIGKILLs at generated points, resends visible as repeated
 * keys; an endpoint answering 503 for a while holds the sink back (the monitor says what it
 * waits for) and loses nothing; a refused request becomes one dead letter with the response;
 * Retry-After, timeouts, the rate limit and the concurrency limit; configuration errors name
 * the field.
 *
 * WEIR_HTTP_PROPERTY_RUNS sets the property's cases (default 20: with 10, one run had no resent request to check); WEIR_PROPERTY_SEED replays one.
 */
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import fc from 'fast-check'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { Pipeline } from '../../../index.ts'
import { HttpSink } from '../../../processors/index.ts'
import { startEmbedded } from '../../../runner/embedded-runner.ts'
import { stateCodec } from '../../../runtime/codec.ts'
import { naming } from '../../../runtime/naming.ts'
import { EmbeddedPipe } from '../../../runtime/pipe/embedded/embedded-pipe.ts'
import { readRange } from '../../../runtime/pipe/read-range.ts'
import { isControlRecord } from '../../../runtime/watermarks.ts'
import { readCommittedState, readDeadLetters, removeDir, runFileToCompletion, runToCompletion, tempDataDir, type CrashPoint, type ProcessCrash } from '../../../testing/index.ts'
import { NatsBus } from '../../../runtime/control/nats/nats-bus.ts'
import { actorProgress, progressSubjects } from '../../../runtime/control/progress.ts'
import { requireService } from '../../support/services.ts'
import { startWeir, until } from '../../support/weir-cli.ts'
import { DedupServer, type Answer, type Incoming, type LoggedRequest } from './fixtures/dedup-server.ts'
import { allItems, httpPipeline, sortItems, type Item } from './fixtures/http-pipeline.ts'

const nats = await requireService('nats')
const dirs: string[] = []
function dataDir(): string {
  const d = tempDataDir('weir-http-')
  dirs.push(d)
  return join(d, 'data')
}

let server: DedupServer
beforeAll(async () => {
  server = await DedupServer.start()
})
afterAll(async () => {
  await server.close()
  for (const d of dirs) removeDir(d)
})

const FAST_RETRY = { initialDelayMs: 20, maxDelayMs: 200 }

describe('HTTP sink', () => {
  it('delivers every record once, in requests of at most maxRecords, with a deterministic Idempotency-Key', async () => {
    server.reset()
    const counts = [230, 170]
    const p = httpPipeline({ url: server.url, counts, name: 'http-basic', sink: { batch: { maxRecords: 7 }, retry: FAST_RETRY } })
    await runToCompletion(p, { dataDir: dataDir(), epochIntervalMs: 20, actorConfig: { maxBatch: 50 } })
    expect(sortItems(server.items())).toEqual(allItems(counts))
    expect(server.repeats()).toEqual([])
    for (const r of server.log) {
      expect(r.key).toMatch(/^http-basic\/hook\/[01]\/[^/]+\/(\d+)-(\d+)$/)
      expect(r.items.length).toBeGreaterThan(0)
      expect(r.items.length).toBeLessThanOrEqual(7)
      expect(r.method).toBe('POST')
      expect(r.headers['content-type']).toBe('application/json')
    }
  })
  it('dead-letters a request the endpoint refuses (422) with the response, once, and delivers every other record once', async () => {
    server.reset()
    const counts = [300]
    const poison = (items: unknown[]): boolean => items.some((x) => (x as { i: number }).i === 137)
    server.answer = (req) => (poison(req.items) ? { status: 422, headers: { 'content-type': 'application/json', 'x-request-id': 'r-1' }, body: JSON.stringify({ error: 'item 137 is not acceptable', pad: 'x'.repeat(6000) }) } : undefined)
    const p = httpPipeline({ url: server.url, counts, name: 'http-poison', sink: { batch: { maxRecords: 5 }, retry: FAST_RETRY } })
    const d = dataDir()
    await runToCompletion(p, { dataDir: d, epochIntervalMs: 20, actorConfig: { maxBatch: 50 } })
    const dead = await readDeadLetters(p, d, 'hook')
    expect(dead).toHaveLength(1)
    const letter = dead[0]!.value
    const refused = JSON.parse(letter.value!.toString('utf8')) as unknown[]
    expect(refused.some((x) => (x as { i: number }).i === 137)).toBe(true)
    const refusedReq = server.log.find((r) => poison(r.items))!
    expect(server.log.filter((r) => r.key === refusedReq.key), 'a refused request is not retried').toHaveLength(1)
    expect(letter.key!.toString()).toBe(refusedReq.key)
    expect(letter.error.code).toBe('WEIR_HTTP_REFUSED')
    expect(letter.error.message).toContain('422')
    const detail = letter.detail as { status: number; headers: Record<string, string>; body: string; idempotencyKey: string }
    expect(detail.status).toBe(422)
    expect(detail.headers['x-request-id']).toBe('r-1')
    expect(detail.body.startsWith('{"error":"item 137 is not acceptable"')).toBe(true)
    expect(Buffer.byteLength(detail.body), 'the response body is kept truncated').toBeLessThanOrEqual(4096)
    const [first, last] = refusedReq.key.split('/').at(-1)!.split('-').map(Number)
    expect(letter.origin).toMatchObject({ partition: 0, offset: first, lastOffset: last })
    // Delivered and dead-lettered records together are the input, each once.
    expect(sortItems([...server.items(), ...refused])).toEqual(allItems(counts))
  })

  it('dead-letters a record its format cannot turn into JSON, and sends the others', async () => {
    server.reset()
    const p = httpPipeline({ url: server.url, counts: [50], name: 'http-format', sink: { format: (r) => (r.value.i === 20 ? { n: 1n } : r.value), retry: FAST_RETRY } })
    const d = dataDir()
    await runToCompletion(p, { dataDir: d, epochIntervalMs: 20 })
    const dead = await readDeadLetters(p, d, 'hook')
    expect(dead.map((x) => [x.value.error.message.includes('BigInt'), x.value.origin?.partition])).toEqual([[true, 0]])
    expect(sortItems(server.items())).toEqual(allItems([50]).filter((x) => x.i !== 20))
  })

  it('honours Retry-After on 429 and retries requests that time out, delivering each record once', async () => {
    server.reset()
    const counts = [120]
    // One record per request: a request is named by its record's index.
    const indexOf = (items: unknown[]): number => (items[0] as { i: number }).i
    // The first attempt of every 3rd request is throttled (Retry-After: 1 s); of every 5th, stalled past the sink's timeout.
    server.answer = (req) => {
      if (req.earlier > 0) return undefined
      const first = indexOf(req.items)
      if (first % 3 === 0) return { status: 429, headers: { 'retry-after': '1' }, body: 'slow down' }
      if (first % 5 === 1) return { delayMs: 3000 }
      return undefined
    }
    const p = httpPipeline({ url: server.url, counts, name: 'http-429', sink: { batch: { maxRecords: 1 }, concurrency: 8, timeoutMs: 300, retry: FAST_RETRY } })
    await runToCompletion(p, { dataDir: dataDir(), epochIntervalMs: 20, actorConfig: { maxBatch: 50 } })
    expect(sortItems(server.items())).toEqual(allItems(counts))
    expect(server.conflicts).toEqual([])
    const byKey = new Map<string, LoggedRequest[]>()
    for (const r of server.log) byKey.set(r.key, [...(byKey.get(r.key) ?? []), r])
    let throttled = 0
    let timedOut = 0
    for (const [key, reqs] of byKey) {
      const first = indexOf(reqs[0]!.items)
      if (first % 3 === 0) {
        throttled++
        expect(reqs.length, key).toBe(2)
        // The retry waited the second Retry-After asked for (the backoff alone would be 20 ms); 50 ms for clocks.
        expect(reqs[1]!.at - reqs[0]!.end, `${key}: wait after 429`).toBeGreaterThanOrEqual(950)
      } else if (first % 5 === 1) {
        timedOut++
        expect(reqs.length, key).toBe(2)
        expect(reqs[0]!.status, `${key}: the first attempt got no answer`).toBe(0)
        // Measured at the server, where the first attempt arrives some time after the sink's
        // timer started (264 ms after it once, on a busy CI machine): the bound tells a retry at
        // the timeout from one at once (backoff 20 ms), and the cut from the server's 3 s stall.
        expect(reqs[1]!.at - reqs[0]!.at, `${key}: retried after the 300 ms timeout`).toBeGreaterThanOrEqual(150)
        expect(reqs[0]!.end - reqs[0]!.at, `${key}: the sink cut the first attempt, before the server's 3 s stall ended`).toBeLessThan(2500)
      } else {
        expect(reqs.length, key).toBe(1)
      }
    }
    expect(throttled).toBe(40)
    expect(timedOut).toBe(16)
  })

  it('keeps to ratePerSecond and to concurrency (measured at the server)', async () => {
    server.reset()
    const rate = 20
    // At least 40 requests of up to 5 records (a checkpoint's last one can be shorter): at 20/s they take at least 1.95 s.
    const p = httpPipeline({ url: server.url, counts: [200], name: 'http-rate', sink: { batch: { maxRecords: 5 }, ratePerSecond: rate, concurrency: 4, retry: FAST_RETRY } })
    await runToCompletion(p, { dataDir: dataDir(), epochIntervalMs: 20, actorConfig: { maxBatch: 50 } })
    expect(sortItems(server.items())).toEqual(allItems([200]))
    const starts = server.log.map((r) => r.at).sort((a, b) => a - b)
    expect(starts.length).toBeGreaterThanOrEqual(40)
    const spanMs = starts.at(-1)! - starts[0]!
    expect(spanMs, 'started at most 20 per second').toBeGreaterThanOrEqual(((starts.length - 1) * 1000) / rate - 100)
    // In any second at most rate + 1 requests started (network jitter can bring two a little closer).
    const mostInASecond = Math.max(...starts.map((t) => starts.filter((u) => u >= t && u < t + 1000).length))
    expect(mostInASecond).toBeLessThanOrEqual(rate + 1)

    server.reset()
    // Each request takes 150 ms at the server: with more queued than the limit, the limit is reached and kept.
    server.answer = () => ({ delayMs: 150 })
    const q = httpPipeline({ url: server.url, counts: [300], name: 'http-concurrency', sink: { batch: { maxRecords: 5 }, concurrency: 3, retry: FAST_RETRY } })
    await runToCompletion(q, { dataDir: dataDir(), epochIntervalMs: 20, actorConfig: { maxBatch: 50 } })
    expect(sortItems(server.items())).toEqual(allItems([300]))
    const most = Math.max(...server.log.map((r) => r.inFlight))
    expect(most, 'requests in flight at most concurrency').toBeLessThanOrEqual(3)
    expect(most, 'the limit was reached').toBe(3)
  })

  it('sends secret headers read from the environment or a file; refuses bad options naming the field', async () => {
    server.reset()
    const d = dataDir()
    const tokenFile = join(d, '..', 'token')
    writeFileSync(tokenFile, 'file-secret\n')
    process.env.WEIR_TEST_HOOK_TOKEN = 'Bearer env-secret'
    try {
      const p = httpPipeline({ url: server.url, counts: [20], name: 'http-secret', sink: { method: 'PUT', headers: { 'X-Source': 'weir' }, secretHeaders: { Authorization: { env: 'WEIR_TEST_HOOK_TOKEN' }, 'X-Signature': { file: tokenFile } } } })
      await runToCompletion(p, { dataDir: d, epochIntervalMs: 20 })
    } finally {
      delete process.env.WEIR_TEST_HOOK_TOKEN
    }
    expect(server.log.length).toBeGreaterThan(0)
    for (const r of server.log) expect([r.method, r.headers.authorization, r.headers['x-signature'], r.headers['x-source']]).toEqual(['PUT', 'Bearer env-secret', 'file-secret', 'weir'])

    const refused = (options: unknown): unknown => {
      try {
        new HttpSink(options as ConstructorParameters<typeof HttpSink>[0])
      } catch (err) {
        return err
      }
      return undefined
    }
    const cases: Array<[unknown, string]> = [
      [{ url: 'ftp://example.com/x' }, 'url'],
      [{ url: 'not a url' }, 'url'],
      [{ url: 'https://user:pw@example.com/' }, 'url'],
      [{ url: { env: 'A', file: 'b' } }, 'url'],
      [{ url: server.url, method: 'GET' }, 'method'],
      [{ url: server.url, headers: { Authorization: 'Bearer inline' } }, 'headers.Authorization'],
      [{ url: server.url, headers: { 'Idempotency-Key': 'x' } }, 'headers.Idempotency-Key'],
      [{ url: server.url, headers: { 'bad name': 'x' } }, 'headers.bad name'],
      [{ url: server.url, secretHeaders: { Authorization: 'Bearer inline' } }, 'secretHeaders.Authorization'],
      [{ url: server.url, batch: { maxRecords: 0 } }, 'batch.maxRecords'],
      [{ url: server.url, batch: { maxBytes: 1.5 } }, 'batch.maxBytes'],
      [{ url: server.url, timeoutMs: -1 }, 'timeoutMs'],
      [{ url: server.url, concurrency: 0 }, 'concurrency'],
      [{ url: server.url, ratePerSecond: 0 }, 'ratePerSecond'],
      [{ url: server.url, retry: { initialDelayMs: 500, maxDelayMs: 100 } }, 'retry.maxDelayMs'],
      [{ url: server.url, format: 'json' }, 'format'],
      [{ url: server.url, keyPrefix: 'with space' }, 'keyPrefix'],
    ]
    for (const [options, field] of cases) {
      const err = refused(options)
      expect(err, JSON.stringify(options)).toMatchObject({ code: 'WEIR_CONFIG_INVALID', context: { field } })
      expect((err as Error).message.startsWith(`${field}: `)).toBe(true)
    }
    // Read at start: a missing variable fails the run naming the header.
    const missing = httpPipeline({ url: server.url, counts: [5], name: 'http-missing', sink: { secretHeaders: { Authorization: { env: 'WEIR_TEST_NOT_SET' } } } })
    const run = await startEmbedded(missing, { dataDir: dataDir() })
    await expect(run.done).rejects.toMatchObject({ code: 'WEIR_CONFIG_INVALID', context: { field: 'secretHeaders.Authorization' } })
  })
})

// ---- the recovery property ------------------------------------------------------------

const RUNS = Number(process.env.WEIR_HTTP_PROPERTY_RUNS ?? 20)
const SEED = process.env.WEIR_PROPERTY_SEED === undefined ? undefined : Number(process.env.WEIR_PROPERTY_SEED)
const FIXTURE = join(import.meta.dirname, 'fixtures', 'http-pipeline.ts')
const MAX_BATCH = 64
const EPOCH_MS = 20
/** The points a sink's crash can hit (source-poll and during-replay are the other tests' business). */
const SINK_POINTS = ['mid-batch', 'before-commit', 'after-pipe-commit', 'after-local-write', 'before-publish', 'after-publish'] as const satisfies readonly CrashPoint[]
/** A timed SIGKILL comes within this long of the child's start; its source is paced to emit for longer. */
const KILL_WINDOW_MS = 1000

interface Plan {
  point: (typeof SINK_POINTS)[number] | 'timer'
  /** Where in the run: a fraction of what it still has to do. */
  at: number
}

/** Records per partition, skewed: a few, a few hundred, up to 1500 (explicit bounds: fast-check's default size would cap nothing here, but say so). */
const count = fc.oneof({ weight: 1, arbitrary: fc.integer({ min: 0, max: 20 }) }, { weight: 2, arbitrary: fc.integer({ min: 20, max: 400 }) }, { weight: 2, arbitrary: fc.integer({ min: 400, max: 1500 }) })
const caseArb = fc.record({
  counts: fc.array(count, { minLength: 1, maxLength: 2, size: 'max' }),
  maxRecords: fc.integer({ min: 1, max: 25 }),
  concurrency: fc.integer({ min: 1, max: 4 }),
  /** The receiver refuses (422) every request holding a poison record. */
  poison: fc.boolean(),
  plans: fc.array(fc.record({ point: fc.oneof({ weight: 3, arbitrary: fc.constantFrom(...SINK_POINTS) }, { weight: 1, arbitrary: fc.constant('timer' as const) }), at: fc.integer({ min: 0, max: 1000 }).map((n) => n / 1000) }), { minLength: 1, maxLength: 3, size: 'max' }),
})

/** What the runs so far left: records the sink still has to process, lines each source partition still has to emit. */
async function measure(pipeline: Pipeline, dataDir: string, counts: number[]): Promise<{ sinkRemaining: number; sourceRemaining: number[] }> {
  const pipe = await EmbeddedPipe.open(dataDir)
  try {
    const source = await readCommittedState(pipeline, pipe, 'numbers')
    const sourceRemaining = counts.map((n, p) => n - ((source.actor[p]?.next as number | undefined) ?? 0))
    let sinkRemaining = sourceRemaining.reduce((a, b) => a + b, 0)
    const topic = pipeline.outputTopic(pipeline.stage('numbers')!)
    const group = naming.group(pipeline.name, 'hook')
    if ((await pipe.describeTopic(topic)) !== undefined) {
      for (let p = 0; p < counts.length; p++) {
        const start = await pipe.startOffset(topic, p)
        const from = Math.max(start, (await pipe.committedOffset(group, topic, p)) ?? start)
        await readRange(pipe, topic, p, from, await pipe.endOffset(topic, p), (batch) => {
          for (const r of batch) if (!isControlRecord(r)) sinkRemaining++
        })
      }
    }
    return { sinkRemaining, sourceRemaining }
  } finally {
    await pipe.close()
  }
}

/**
 * A crash the run is certain to reach. At a protocol point once the sink processed `at` of
 * the records it still has (less a micro-batch, as the count moves a batch at a time): a
 * record is left then, so the sink reads one more batch and takes one more checkpoint, which
 * commits and is published (a hit of every point); at 0, hit 1: every actor takes a last
 * checkpoint. A timed SIGKILL within KILL_WINDOW_MS of the child's start, its sources paced to
 * emit for longer than that; with too little left to pace, a crash at before-commit instead.
 */
function translate(plan: Plan, run: { sinkRemaining: number; sourceRemaining: number[] }): { crash: ProcessCrash; moved: boolean } {
  const atPoint = (point: CrashPoint): ProcessCrash => {
    // A micro-batch per sink actor (one per source partition): the count moves at a batch's
    // end and every actor's last batch may be in flight at once.
    const records = Math.round(plan.at * Math.max(0, run.sinkRemaining - MAX_BATCH * run.sourceRemaining.length))
    return { kind: 'point', spec: records === 0 ? { point, hit: 1 } : { point, hit: 1, afterRecords: { stage: 'hook', records } } }
  }
  if (plan.point !== 'timer') return { crash: atPoint(plan.point), moved: false }
  const most = Math.max(...run.sourceRemaining)
  if (most < 2) return { crash: atPoint('before-commit'), moved: true }
  // Paced at `rate`, a partition's last line comes (most - 1) / rate s after its source started, at the earliest.
  const rate = Math.max(1, Math.floor(((most - 1) * 1000) / (KILL_WINDOW_MS * 1.5)))
  return { crash: { kind: 'timer', afterMs: Math.floor(plan.at * KILL_WINDOW_MS), params: { rate: String(rate) } }, moved: false }
}

/** Checkpoints the sink's actors took in all (their newest committed checkpoint's number), from the changelog. */
async function sinkCheckpoints(pipeline: Pipeline, dataDir: string, partitions: number): Promise<number> {
  const pipe = await EmbeddedPipe.open(dataDir)
  try {
    const topic = naming.changelog(pipeline.name, 'hook')
    let n = 0
    for (let p = 0; p < partitions; p++) {
      let newest = 0
      await readRange(pipe, topic, p, await pipe.startOffset(topic, p), await pipe.endOffset(topic, p), (batch) => {
        for (const r of batch) if (r.key?.toString('latin1') === '\u0002#checkpoint' && r.value !== null) newest = (stateCodec.decode(r.value) as { checkpoint: number }).checkpoint
      })
      n += newest
    }
    return n
  } finally {
    await pipe.close()
  }
}

/** Poison records, when a case has them: about 1 in 150. */
const isPoison = (x: Item): boolean => x.i % 151 === 77
const refusePoison = (req: Incoming): Answer | undefined => ((req.items as Item[]).some(isPoison) ? { status: 422, body: '{"error":"poison"}' } : undefined)

/** The items of every dead letter of the sink stage, and the letters' keys. */
async function deadItems(pipeline: Pipeline, dir: string): Promise<{ items: Item[]; keys: string[] }> {
  const dead = await readDeadLetters(pipeline, dir, 'hook')
  return { items: dead.flatMap((d) => JSON.parse(d.value.value!.toString('utf8')) as Item[]), keys: dead.map((d) => d.value.key!.toString()) }
}

describe('HTTP sink recovery', () => {
  it(`the receiver's deduplicated content after real SIGKILLs equals the crash-free reference (${RUNS} generated cases)`, async () => {
    const stats = { cases: 0, planned: 0, crashed: 0, moved: 0, timers: 0, points: {} as Record<string, number>, records: 0, requests: 0, repeats: 0, checkpoints: 0, withRepeats: 0, deadLetters: 0 }
    const started = Date.now()
    try {
      await fc.assert(
        fc.asyncProperty(caseArb, async (c) => {
          const name = `http-prop`
          const sink = { batch: { maxRecords: c.maxRecords }, concurrency: c.concurrency, timeoutMs: 2000, retry: { initialDelayMs: 20, maxDelayMs: 300 } }
          // The crash-free reference, in this process.
          server.reset()
          if (c.poison) server.answer = refusePoison
          const refDir = dataDir()
          const refPipeline = httpPipeline({ url: server.url, counts: c.counts, name, sink })
          await runToCompletion(refPipeline, { dataDir: refDir, epochIntervalMs: EPOCH_MS, actorConfig: { maxBatch: MAX_BATCH } })
          const reference = sortItems(server.items())
          const refDead = await deadItems(refPipeline, refDir)
          expect(sortItems([...reference, ...refDead.items]), 'the reference delivers or dead-letters the input').toEqual(allItems(c.counts))

          server.reset()
          if (c.poison) server.answer = refusePoison
          const d = dataDir()
          const pipeline = httpPipeline({ url: server.url, counts: c.counts, name, sink })
          const params = { url: server.url, counts: c.counts.join(','), name, maxRecords: String(c.maxRecords), concurrency: String(c.concurrency) }
          let moved = 0
          const planner = (plan: Plan) => async (): Promise<ProcessCrash> => {
            const t = translate(plan, await measure(pipeline, d, c.counts))
            if (t.moved) moved++
            return t.crash
          }
          const r = await runFileToCompletion(FIXTURE, { dataDir: d, params, crashes: c.plans.map(planner), epochIntervalMs: EPOCH_MS, env: { WEIR_MAX_BATCH: String(MAX_BATCH) } })
          const label = `${JSON.stringify({ ...c, counts: c.counts })} → ${JSON.stringify(r.planned)}`
          expect(r.crashed, `${label}: every planned crash must fire`).toEqual(r.planned)
          expect(server.conflicts, label).toEqual([])
          const delivered = sortItems(server.items())
          const dead = await deadItems(pipeline, d)
          if (c.poison) {
            // Which records share a refused request depends on where checkpoints fell: the reference's
            // batch mates of a poison record can differ. What must hold: each record delivered or
            // dead-lettered, once; no poison record delivered; each refused request dead-lettered once.
            expect(sortItems([...delivered, ...dead.items]), `${label}: delivered and dead-lettered records`).toEqual(sortItems([...reference, ...refDead.items]))
            expect(delivered.filter(isPoison), label).toEqual([])
            expect(dead.keys.length, `${label}: a dead letter per refused request`).toBe(new Set(dead.keys).size)
            expect(dead.items.filter(isPoison).length, label).toBe(refDead.items.filter(isPoison).length)
            stats.deadLetters += dead.keys.length
          } else {
            expect(delivered, `${label}: deduplicated content`).toEqual(reference)
            expect(dead.keys, label).toEqual([])
          }
          stats.cases++
          stats.planned += r.planned.length
          stats.crashed += r.crashed.length
          stats.moved += moved
          for (const k of r.crashed) {
            const point = k.kind === 'timer' ? 'timer' : k.spec.point
            stats.points[point] = (stats.points[point] ?? 0) + 1
          }
          stats.records += reference.length
          stats.requests += server.log.length
          stats.repeats += server.repeats().length
          if (server.repeats().length > 0) stats.withRepeats++
          stats.checkpoints += await sinkCheckpoints(pipeline, d, c.counts.length)
        }),
        { numRuns: RUNS, seed: SEED, verbose: 1, endOnFailure: true },
      )
    } finally {
      console.log(`HTTP sink recovery: ${stats.cases} cases in ${((Date.now() - started) / 1000).toFixed(0)} s; ${stats.crashed} of ${stats.planned} planned SIGKILLs fired (${JSON.stringify(stats.points)}, ${stats.moved} moved to before-commit); ${stats.records} records in ${stats.requests} requests over ${stats.checkpoints} sink checkpoints; ${stats.repeats} resent requests (repeated keys) in ${stats.withRepeats} cases; ${stats.deadLetters} dead letters of refused requests`)
    }
    expect(stats.repeats, 'resends after crashes show as repeated keys').toBeGreaterThan(0)
  }, Math.max(600_000, RUNS * 30_000))
})

// ---- the endpoint restarts under a running pipeline -----------------------------------

interface HoldingBack { stage: string; reason: string }
interface Output { output: string; holdingBack: HoldingBack | null }
interface PipelineStatus { pipeline: string; outputs: Output[] }

describe.skipIf(!nats.available)('HTTP sink while the endpoint restarts', () => {
  it('answers 503, then refuses connections: the sink holds back and says what it waits for (progress and monitor); afterwards each record is there once', async () => {
    server.reset()
    const d = dataDir()
    const cluster = `h${Date.now().toString(36)}`
    const name = 'http-outage'
    const counts = [1500, 1500]
    const waitingEvents: Array<{ actor: string; on: string; message: string }> = []
    const observer = await NatsBus.connect({ servers: [nats.url], name: 'http-outage-test' })
    observer.subscribe(progressSubjects.progress(cluster, name), (m) => {
      const e = actorProgress.safeParse(m)
      if (e.success && e.data.stage === 'hook' && e.data.waiting !== undefined) waitingEvents.push({ actor: e.data.actor, ...e.data.waiting })
    })
    const monitor = startWeir(['monitor', '--bus', nats.url, '--cluster', cluster, '--port', '0'])
    // About 10 s of input (150 records/s per partition).
    const run = startWeir(['run', FIXTURE, '--bus', nats.url, '--cluster', cluster, '--epoch-ms', '250', '--data-dir', d, '-q',
      '--param', `url=${server.url}`, '--param', `counts=${counts.join(',')}`, '--param', 'rate=150', '--param', `name=${name}`, '--param', 'maxRecords=10'])
    let outage = ''
    try {
      let stdout = ''
      monitor.child.stdout!.on('data', (b: Buffer) => (stdout += b.toString()))
      const url = await until(async () => /dashboard (http:\/\/\S+?)\/? /.exec(stdout)?.[1]?.replace(/\/$/, ''), 20_000, 'monitor URL')
      const holding = async (): Promise<HoldingBack | undefined> => {
        const res = await fetch(`${url}/api/status`, { signal: AbortSignal.timeout(5000) })
        const p = ((await res.json()) as { pipelines: PipelineStatus[] }).pipelines.find((x) => x.pipeline === name)
        return p?.outputs.find((o) => o.output === 'hook')?.holdingBack ?? undefined
      }
      await until(() => server.log.length >= 5, 30_000, 'the sink delivering')
      // The endpoint says it is restarting.
      outage = '503'
      server.answer = () => ({ status: 503, headers: { 'retry-after': '0' }, body: 'restarting' })
      const takenBefore503 = server.taken.size
      const from503 = Date.now()
      const during503 = await until(async () => {
        const h = await holding()
        return h !== undefined && h.reason.includes('waits for') ? h : undefined
      }, 30_000, 'the monitor showing the sink waiting on the endpoint (503)')
      expect(during503.stage).toBe('hook')
      expect(during503.reason).toContain(`waits for HTTP POST ${server.url}`)
      expect(during503.reason).toContain('503')
      // Then it is down: connections are refused.
      outage = 'down'
      await server.stop()
      // Retry-After: 0 does not make a busy loop: the backoff still spaces the retries (4 requests in flight at most, the first wait 10-20 ms).
      const answered503 = server.log.filter((r) => r.status === 503).length
      expect(answered503, `503 answers in ${Date.now() - from503} ms`).toBeLessThanOrEqual((4 * (Date.now() - from503)) / 10)
      // While it answered 503 it took nothing (only what had passed the answer hook already: at most one request per connection, 2 actors x concurrency 2).
      expect(server.taken.size - takenBefore503).toBeLessThanOrEqual(4)
      const downSince = Date.now()
      const whileDown = await until(async () => {
        const h = await holding()
        return h !== undefined && h.reason.includes('waits for') && /ECONNREFUSED|connect/i.test(h.reason) ? h : undefined
      }, 30_000, 'the monitor showing the sink waiting on the endpoint (connection refused)')
      expect(whileDown.stage).toBe('hook')
      await until(() => Date.now() - downSince > 2000, 5000, 'two seconds down')
      server.answer = () => undefined
      outage = 'back'
      await server.restart()
      const o = await run.done
      expect(o.code, o.stderr.slice(-3000)).toBe(0)
      await until(async () => ((await holding()) === undefined || !(await holding())!.reason.includes('waits for') ? true : undefined), 20_000, 'the monitor no longer showing the sink waiting')
    } finally {
      if (outage === 'down') await server.restart().catch(() => undefined)
      run.child.kill('SIGKILL')
      monitor.child.kill('SIGKILL')
      await Promise.all([run.done, monitor.done])
      await observer.close()
    }
    expect(server.conflicts).toEqual([])
    expect(sortItems(server.items())).toEqual(allItems(counts))
    expect(server.log.filter((r) => r.status === 503).length, 'requests answered 503 were retried').toBeGreaterThan(0)
    const ons = new Set(waitingEvents.map((w) => w.on))
    expect([...ons]).toEqual([`HTTP POST ${server.url}`])
    expect(waitingEvents.some((w) => w.message.includes('503'))).toBe(true)
    expect(waitingEvents.some((w) => /ECONNREFUSED|connect/i.test(w.message))).toBe(true)
  }, 180_000)
})
