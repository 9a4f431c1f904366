/**
 * The HTTP sink (processors/sinks/http-sink.ts) against a real HTTP server in the test
 * (fixtures/dedup-server.ts: it takes each Idempotency-Key once and logs every request):
 * exactly-once content under real SIGKILLs at generated points, resends visible as repeated
 * keys; an endpoint answering 503 for a while holds the sink back (the monitor says what it
 * waits for) and loses nothing; a refused request becomes one dead letter with the response;
 * Retry-After, timeouts, the rate limit and the concurrency limit; configuration errors name
 * the field.
 *
 * WEIR_HTTP_PROPERTY_RUNS sets the property's cases (default 20); WEIR_PROPERTY_SEED replays one.
 */
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { HttpSink } from '../../../processors/index.ts'
import { startEmbedded } from '../../../runner/embedded-runner.ts'
import { readDeadLetters, removeDir, runToCompletion, tempDataDir } from '../../../testing/index.ts'
import { DedupServer } from './fixtures/dedup-server.ts'
import { allItems, httpPipeline, sortItems } from './fixtures/http-pipeline.ts'

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
    const byKey = Map.groupBy(server.log, (r) => r.key)
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
        expect(reqs[1]!.at - reqs[0]!.at, `${key}: retried after the 300 ms timeout`).toBeGreaterThanOrEqual(280)
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
    // 40 requests of 5 records: at 20/s they take at least 1.95 s.
    const p = httpPipeline({ url: server.url, counts: [200], name: 'http-rate', sink: { batch: { maxRecords: 5 }, ratePerSecond: rate, concurrency: 4, retry: FAST_RETRY } })
    await runToCompletion(p, { dataDir: dataDir(), epochIntervalMs: 20, actorConfig: { maxBatch: 50 } })
    expect(sortItems(server.items())).toEqual(allItems([200]))
    const starts = server.log.map((r) => r.at).sort((a, b) => a - b)
    expect(starts).toHaveLength(40)
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
