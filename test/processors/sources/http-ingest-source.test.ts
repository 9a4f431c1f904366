/**
 * HttpIngestSource's answers, one by one, against real runs on the embedded pipe: a 200 that
 * names the checkpoint once it committed, every refusal with its status and reason
 * (400, 401, 404, 409, 413, 415, 421, 422, 429, 503), Idempotency-Key replays, a retry while
 * the first request still waits for its checkpoint, an expired key, received mode, and
 * options refused naming the field. The recovery property (SIGKILLs) is in
 * http-ingest-recovery.test.ts.
 */
import { readFileSync } from 'node:fs'
import { request as httpRequest } from 'node:http'
import { join } from 'node:path'
import { Agent, request as undiciRequest } from 'undici'
import pino from 'pino'
import { afterEach, describe, expect, it } from 'vitest'
import { partitionForKey, startEmbedded, type RunningPipeline } from '../../../index.ts'
import { HttpIngestSource, type AckBody } from '../../../processors/index.ts'
import { serverFor, type IngestEndpoint, type IngestRequest, type StreamSettings } from '../../../processors/sources/http-ingest/server.ts'
import { readStageOutput, removeDir, tempDataDir } from '../../../testing/index.ts'
import { itRefusesOptions } from '../../support/option-errors.ts'
import { makeTlsFiles } from '../../support/nats-server.ts'
import { freePort, sleep } from '../../support/weir-cli.ts'
import { ingestPipeline, type IngestParams } from './fixtures/http-ingest-pipeline.ts'

interface Answer {
  status: number
  body: Record<string, unknown> & { error?: { code: string; message: string } }
  headers: Record<string, string | string[] | undefined>
  ms: number
}

async function post(port: number, body: string, headers: Record<string, string> = {}, path = '/ingest/events'): Promise<Answer> {
  const started = Date.now()
  const r = await fetch(`http://127.0.0.1:${port}${path}`, { method: 'POST', body, headers: { 'content-type': 'application/json', ...headers } })
  const text = await r.text()
  return { status: r.status, body: text === '' ? {} : (JSON.parse(text) as Answer['body']), headers: Object.fromEntries(r.headers), ms: Date.now() - started }
}

/** A chunked body (no Content-Length): the size limit must hold while it streams. */
function postChunked(port: number, chunks: Buffer[]): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = httpRequest({ host: '127.0.0.1', port, path: '/ingest/events', method: 'POST', headers: { 'content-type': 'application/json', 'transfer-encoding': 'chunked' } }, (res) => {
      res.resume()
      resolve(res.statusCode!)
    })
    req.on('error', reject)
    for (const c of chunks) req.write(c)
    req.end()
  })
}

const events = (n: number, from = 0): string => JSON.stringify(Array.from({ length: n }, (_, i) => ({ user: `u${(from + i) % 5}`, n: from + i })))

describe('HttpIngestSource', () => {
  const cleanups: Array<() => Promise<void> | void> = []
  afterEach(async () => {
    for (const c of cleanups.splice(0).reverse()) await c()
  })

  async function start(params: Omit<IngestParams, 'name' | 'port'> & { name?: string }, epochIntervalMs = 50): Promise<{ port: number; run: RunningPipeline; dir: string; end(): Promise<Array<{ key: string | null; value: unknown }>> }> {
    const port = await freePort()
    const dir = tempDataDir('weir-ingest-')
    const pipeline = ingestPipeline({ name: params.name ?? 'ingest', port, ...params })
    const run = await startEmbedded(pipeline, { dataDir: dir, epochIntervalMs, log: pino({ level: 'silent' }) })
    let ended = false
    cleanups.push(async () => {
      if (!ended) await run.stop()
      removeDir(dir)
    })
    await waitServing(port, params.partitions ?? 2)
    return {
      port, run, dir,
      end: async () => {
        expect((await post(port, '', {}, '/ingest/events/_end')).status).toBe(200)
        await run.done
        ended = true
        return (await readStageOutput(pipeline, dir, 'events')).map((r) => ({ key: r.key, value: r.value }))
      },
    }
  }

  it('answers 200 once the checkpoint holding the events committed, naming the partition, the positions, the checkpoint and its epoch; the events are in the stream once, keyed by their field', async () => {
    const s = await start({ partitions: 2 }, 200)
    const a = await post(s.port, events(3), { 'idempotency-key': 'first' })
    expect(a.status).toBe(200)
    const body = a.body as unknown as AckBody
    expect(body).toMatchObject({ status: 'committed', events: 3, partition: partitionForKey(Buffer.from('first'), 2), positions: { from: 0, to: 3 } })
    expect(body.checkpoint).toBeGreaterThan(0)
    expect(body.epoch).toBeGreaterThan(0)
    const b = await post(s.port, '{"user":"x","n":100}\n{"user":"y","n":101}\n', { 'content-type': 'application/x-ndjson' })
    expect(b.status).toBe(200)
    expect(b.body).toMatchObject({ events: 2 })
    const out = await s.end()
    expect(out.map((r) => r.value).sort((x, y) => (x as { n: number }).n - (y as { n: number }).n)).toEqual([{ user: 'u0', n: 0 }, { user: 'u1', n: 1 }, { user: 'u2', n: 2 }, { user: 'x', n: 100 }, { user: 'y', n: 101 }])
    expect(out.map((r) => r.key).sort()).toEqual(['u0', 'u1', 'u2', 'x', 'y'])
  })

  it('a retry while the first request waits for its checkpoint gets 409 with Retry-After; after the commit a retry gets the stored answer, marked replayed, and nothing is emitted twice', async () => {
    const s = await start({ partitions: 1 }, 1500)
    const first = post(s.port, events(4), { 'idempotency-key': 'slow' })
    await sleep(100)
    const during = await post(s.port, events(4), { 'idempotency-key': 'slow' })
    expect(during.status).toBe(409)
    expect(during.body.error?.code).toBe('WEIR_INGEST_IN_PROGRESS')
    expect(during.headers['retry-after']).toBe('1')
    const other = await post(s.port, events(2, 50), { 'idempotency-key': 'slow' })
    expect(other.status).toBe(422)
    const answered = await first
    expect(answered.status).toBe(200)
    const again = await post(s.port, events(4), { 'idempotency-key': 'slow' })
    expect(again.status).toBe(200)
    expect(again.headers['idempotent-replayed']).toBe('true')
    // The first answer says where its events end for a view's atLeast; a replay cannot (the commit's offsets are not kept in state).
    expect(answered.body.atLeast).toMatch(/^weir\.[^:]+:0:\d+$/)
    const { atLeast: _atLeast, ...stored } = answered.body
    expect(again.body).toEqual({ ...stored, replayed: true })
    const reused = await post(s.port, events(1, 70), { 'idempotency-key': 'slow' })
    expect(reused.status).toBe(422)
    expect(reused.body.error?.message).toMatch(/another payload/)
    expect(await s.end()).toHaveLength(4)
  })

  it('an expired key is forgotten: the same key with another payload, and the first payload again, are taken as new requests', async () => {
    const s = await start({ partitions: 1, ttlMs: 300 })
    const a = await post(s.port, events(2), { 'idempotency-key': 'k' })
    expect(a.status).toBe(200)
    expect((await post(s.port, events(1, 10), { 'idempotency-key': 'k' })).status).toBe(422)
    await sleep(700)
    const b = await post(s.port, events(1, 10), { 'idempotency-key': 'k' })
    expect(b.status).toBe(200)
    expect(b.body.replayed).toBeUndefined()
    expect(b.body.positions).toEqual({ from: 2, to: 3 })
    await sleep(700)
    const c = await post(s.port, events(2), { 'idempotency-key': 'k' })
    expect(c.status).toBe(200)
    expect(c.body.positions).toEqual({ from: 3, to: 5 })
    expect(await s.end()).toHaveLength(5)
  })

  it('refuses bad requests with the status and the reason, and takes none of their events', async () => {
    const token = 's3cret-token'
    process.env.WEIR_TEST_INGEST_TOKEN = token
    cleanups.push(() => void delete process.env.WEIR_TEST_INGEST_TOKEN)
    const s = await start({ partitions: 2, tokenEnv: 'WEIR_TEST_INGEST_TOKEN', required: true, maxBodyBytes: 2000 })
    const auth = { authorization: `Bearer ${token}` }
    const noToken = await post(s.port, events(1), { 'idempotency-key': 'a' })
    expect(noToken.status).toBe(401)
    expect(noToken.headers['www-authenticate']).toBe('Bearer')
    expect((await post(s.port, events(1), { 'idempotency-key': 'a', authorization: 'Bearer wrong' })).status).toBe(401)
    const noKey = await post(s.port, events(1), auth)
    expect([noKey.status, noKey.body.error?.code]).toEqual([400, 'WEIR_INGEST_IDEMPOTENCY_KEY'])
    const badJson = await post(s.port, '[{"user":', { ...auth, 'idempotency-key': 'b' })
    expect([badJson.status, badJson.body.error?.code]).toEqual([400, 'WEIR_INGEST_BAD_EVENTS'])
    const badLine = await post(s.port, '{"user":"a"}\n{"user":\n', { ...auth, 'idempotency-key': 'c', 'content-type': 'application/x-ndjson' })
    expect(badLine.status).toBe(400)
    expect(badLine.body.error?.message).toMatch(/^line 2 is not JSON/)
    const noField = await post(s.port, '[{"user":"a"},{"n":1}]', { ...auth, 'idempotency-key': 'd' })
    expect(noField.body.error?.message).toBe("event 2 has no key field 'user' (a string or number)")
    const empty = await post(s.port, '[]', { ...auth, 'idempotency-key': 'e' })
    expect(empty.status).toBe(400)
    const text = await post(s.port, 'hello', { ...auth, 'idempotency-key': 'f', 'content-type': 'text/plain' })
    expect([text.status, text.body.error?.code]).toEqual([415, 'WEIR_INGEST_MEDIA_TYPE'])
    const big = await post(s.port, events(100), { ...auth, 'idempotency-key': 'g' })
    expect([big.status, big.body.error?.code]).toEqual([413, 'WEIR_INGEST_TOO_LARGE'])
    const noStream = await post(s.port, events(1), { ...auth, 'idempotency-key': 'h' }, '/ingest/nope')
    expect([noStream.status, noStream.body.error?.code]).toEqual([404, 'WEIR_INGEST_NO_STREAM'])
    const ok = await post(s.port, events(2), { ...auth, 'idempotency-key': 'i' })
    expect(ok.status).toBe(200)
    const ended = await fetch(`http://127.0.0.1:${s.port}/ingest/events/_end`, { method: 'POST', headers: auth })
    expect(ended.status).toBe(200)
    await s.run.done
  })

  it('cuts off a chunked body over the limit while it arrives (413)', async () => {
    const s = await start({ partitions: 1, maxBodyBytes: 4096 })
    const chunk = Buffer.alloc(1024, 0x20)
    expect(await postChunked(s.port, [Buffer.from('['), ...Array.from({ length: 8 }, () => chunk), Buffer.from(']')])).toBe(413)
    expect(await postChunked(s.port, [Buffer.from('[{"user":"a"}'), chunk, Buffer.from(']')])).toBe(200)
  })

  it('answers 429 with Retry-After while an actor holds more bytes than it may wait with, and 503 when a checkpoint does not commit in time (a retry with the key then gets the stored answer)', async () => {
    const s = await start({ partitions: 1, maxInFlightBytes: 100, ackTimeoutMs: 300 }, 2000)
    const first = post(s.port, events(4), { 'idempotency-key': 'one' })
    await sleep(100)
    const busy = await post(s.port, events(4, 10), { 'idempotency-key': 'two' })
    expect([busy.status, busy.body.error?.code, busy.headers['retry-after']]).toEqual([429, 'WEIR_INGEST_BUSY', '1'])
    const late = await first
    expect([late.status, late.body.error?.code, late.headers['retry-after']]).toEqual([503, 'WEIR_INGEST_ACK_TIMEOUT', '1'])
    // The events were taken and commit with the next checkpoint: the retry is 409 until then, then the stored answer.
    let retry: Answer
    const deadline = Date.now() + 10_000
    do {
      retry = await post(s.port, events(4), { 'idempotency-key': 'one' })
      if (retry.status === 200) break
      expect(retry.status).toBe(409)
      await sleep(200)
    } while (Date.now() < deadline)
    expect(retry.status).toBe(200)
    expect(retry.body.replayed).toBe(true)
    expect(await s.end()).toHaveLength(4)
  })

  it('received mode answers 202 before the commit', async () => {
    const s = await start({ partitions: 1, ack: 'received' }, 2000)
    const a = await post(s.port, events(3), { 'idempotency-key': 'r' })
    expect(a.status).toBe(202)
    expect(a.ms).toBeLessThan(1500)
    expect(a.body).toMatchObject({ status: 'received', events: 3 })
    expect((await post(s.port, events(3), { 'idempotency-key': 'r' })).status).toBe(202)
    expect(await s.end()).toHaveLength(3)
  })

  it('serves HTTPS with the given certificate: a client trusting its CA gets the 200, a plain-HTTP request gets no answer', async () => {
    const dir = tempDataDir('weir-ingest-tls-')
    cleanups.push(() => removeDir(dir))
    const tls = makeTlsFiles(dir)
    const port = await freePort()
    const { Pipeline } = await import('../../../index.ts')
    const p = new Pipeline('ingest-tls')
    p.source('events', () => new HttpIngestSource({ port, tls: { certFile: tls.serverCert, keyFile: tls.serverKey }, acceptEnd: true }))
    const run = await startEmbedded(p, { dataDir: join(dir, 'data'), epochIntervalMs: 50, log: pino({ level: 'silent' }) })
    const agent = new Agent({ connect: { ca: readFileSync(tls.ca) } })
    cleanups.push(() => agent.close())
    const deadline = Date.now() + 20_000
    let answer: { statusCode: number; body: { json(): Promise<unknown> } } | undefined
    while (answer === undefined) {
      try {
        answer = await undiciRequest(`https://127.0.0.1:${port}/ingest/events`, { method: 'POST', body: '[{"a":1}]', headers: { 'content-type': 'application/json' }, dispatcher: agent })
      } catch (err) {
        if (Date.now() > deadline || !/ECONNREFUSED/.test(String((err as Error).message))) throw err
        await sleep(50)
      }
    }
    expect(answer.statusCode).toBe(200)
    expect(await answer.body.json()).toMatchObject({ status: 'committed', events: 1 })
    await expect(fetch(`http://127.0.0.1:${port}/ingest/events`, { method: 'POST', body: '[]', signal: AbortSignal.timeout(3000) })).rejects.toThrow()
    expect((await undiciRequest(`https://127.0.0.1:${port}/ingest/events/_end`, { method: 'POST', dispatcher: agent })).statusCode).toBe(200)
    await run.done
    expect(await readStageOutput(p, join(dir, 'data'), 'events')).toHaveLength(1)
  })

  describe('partitions this process does not serve', () => {
    it('503 with a hint for a partition never served here, 421 for one that moved away', async () => {
      const port = await freePort()
      const settings: StreamSettings = { stream: 's', partitions: 2, maxBodyBytes: 10_000, maxEventsPerRequest: 100, maxInFlightBytes: 10_000, key: undefined, timestampField: undefined, idempotencyKey: 'optional', retryAfterSeconds: 2, acceptEnd: false, peers: [] }
      const taken: IngestRequest[] = []
      const endpoint = (): IngestEndpoint => ({ inFlightBytes: 0, offer: (r) => (taken.push(r), r.answer({ status: 200, body: { took: r.partition } }), true), countRejection: () => undefined })
      const server = serverFor({ host: '127.0.0.1', port, token: undefined, tls: undefined }, pino({ level: 'silent' }))
      const zero = endpoint()
      await server.attach(settings, 0, zero)
      cleanups.push(() => server.detach('s', 0, zero))
      const keyFor = (p: number): string => Array.from({ length: 100 }, (_, i) => `key-${i}`).find((k) => partitionForKey(Buffer.from(k), 2) === p)!
      const notHere = await post(port, '[{"a":1}]', { 'idempotency-key': keyFor(1) }, '/ingest/s')
      expect([notHere.status, notHere.headers['retry-after']]).toEqual([503, '2'])
      expect(notHere.body.error).toMatchObject({ code: 'WEIR_INGEST_NOT_SERVED', partition: 1, partitions: 2, servedHere: [0] })
      const one = endpoint()
      await server.attach(settings, 1, one)
      expect((await post(port, '[{"a":1}]', { 'idempotency-key': keyFor(1) }, '/ingest/s')).body).toEqual({ took: 1 })
      await server.detach('s', 1, one)
      const moved = await post(port, '[{"a":1}]', { 'idempotency-key': keyFor(1) }, '/ingest/s')
      expect(moved.status).toBe(421)
      expect(moved.body.error).toMatchObject({ code: 'WEIR_INGEST_MOVED', partition: 1, servedHere: [0] })
      expect((await post(port, '[{"a":1}]', { 'idempotency-key': keyFor(0) }, '/ingest/s')).body).toEqual({ took: 0 })
    })
  })

  describe('options are checked at start, naming the field', () => {
    const make = (o: Record<string, unknown>) => () => new HttpIngestSource({ port: 8080, ...o } as never)
    itRefusesOptions([
      ['a missing port', () => new HttpIngestSource({} as never), 'port'],
      ['a port out of range', make({ port: 70000 }), 'port'],
      ['an inline token', make({ token: 'abc' }), 'token'],
      ['a key that is neither a field nor a header', make({ key: { column: 'x' } }), 'key'],
      ['an unknown ack mode', make({ ack: 'eventually' }), 'ack'],
      ['an unknown idempotency mode', make({ idempotencyKey: 'sometimes' }), 'idempotencyKey'],
      ['a zero TTL', make({ idempotencyTtlMs: 0 }), 'idempotencyTtlMs'],
      ['a stream name with a slash', make({ stream: 'a/b' }), 'stream'],
      ['TLS without a key file', make({ tls: { certFile: 'c.pem' } }), 'tls'],
      ['a peer with a path', make({ peers: ['http://127.0.0.1:8081/ingest'] }), 'peers[0]'],
    ])
    it('a public address without a token is refused when the actor opens (host)', async () => {
      const dir = tempDataDir('weir-ingest-host-')
      cleanups.push(() => removeDir(dir))
      const { Pipeline } = await import('../../../index.ts')
      const p = new Pipeline('ingest-host')
      p.source('events', () => new HttpIngestSource({ host: '0.0.0.0', port: 8080 }))
      const run = await startEmbedded(p, { dataDir: dir, log: pino({ level: 'silent' }) })
      await expect(run.done).rejects.toThrow(/host: '0.0.0.0' is reachable from other machines/)
    })
  })
})

/** Until every partition of the stream is served (GET /ingest/<stream> says which are). */
export async function waitServing(port: number, partitions: number, headers: Record<string, string> = {}): Promise<void> {
  const deadline = Date.now() + 20_000
  for (;;) {
    try {
      const r = await fetch(`http://127.0.0.1:${port}/ingest/events`, { headers })
      const body = (await r.json()) as { servedHere?: number[] }
      if (r.status === 401 || body.servedHere?.length === partitions) return
    } catch (err) {
      if (Date.now() > deadline) throw err
    }
    if (Date.now() > deadline) throw new Error(`port ${port}: not every partition of 'events' is served after 20 s`)
    await sleep(50)
  }
}
