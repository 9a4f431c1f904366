/**
 * The probe endpoints of runtime/health.ts as an orchestrator meets them: /livez and
 * /readyz answer 200 or 503 with a JSON status and reason, need no token where /metrics
 * does, give up (503) on a check that throws or hangs, and every other path keeps its
 * refusal (404, 413 for a body). Real HTTP servers on loopback; no services needed.
 */
import { request } from 'node:http'
import { Registry } from 'prom-client'
import { afterEach, describe, expect, it } from 'vitest'
import { serveHealth, type HealthProbes, type ProbeResult } from '../../runtime/health.ts'
import { serveMetrics } from '../../runtime/metrics.ts'

const closers: Array<() => Promise<void>> = []
afterEach(async () => {
  for (const c of closers.splice(0)) await c()
})

/** One request; `body` is sent with a content-length. */
function call(url: string, options: { method?: string; headers?: Record<string, string>; body?: string } = {}): Promise<{ status: number; text: string }> {
  return new Promise((resolve, reject) => {
    const req = request(url, { method: options.method ?? 'GET', headers: options.headers }, (res) => {
      let text = ''
      res.on('data', (d: Buffer) => (text += d.toString()))
      res.on('end', () => resolve({ status: res.statusCode!, text }))
    })
    req.on('error', reject)
    req.end(options.body)
  })
}

function switchable(): HealthProbes & { liveNow: ProbeResult; readyNow: ProbeResult } {
  const p = {
    liveNow: { ok: true } as ProbeResult,
    readyNow: { ok: false, reason: 'restoring', details: [{ actor: 'count/0', stage: 'count', partition: 0, state: 'restoring' }] } as ProbeResult,
    live: () => p.liveNow,
    ready: async () => p.readyNow,
  }
  return p
}

describe('probes beside /metrics (serveMetrics)', () => {
  it('answer without the token while /metrics still needs it; 503 carries the reason, 200 once ready', async () => {
    const registry = new Registry()
    const probes = switchable()
    const server = await serveMetrics(registry, { port: 0, token: 's3cret', probes })
    closers.push(() => server.close())
    const base = server.url.replace(/\/metrics$/, '')

    const live = await call(`${base}/livez`)
    expect(live.status).toBe(200)
    expect(JSON.parse(live.text)).toEqual({ status: 'live' })
    const notReady = await call(`${base}/readyz`)
    expect(notReady.status).toBe(503)
    expect(JSON.parse(notReady.text)).toEqual({ status: 'not ready', reason: 'restoring', details: [{ actor: 'count/0', stage: 'count', partition: 0, state: 'restoring' }] })
    probes.readyNow = { ok: true }
    expect(await call(`${base}/readyz`)).toEqual({ status: 200, text: '{"status":"ready"}\n' })
    probes.liveNow = { ok: false, reason: 'the worker failed (WEIR_X)' }
    expect(await call(`${base}/livez`)).toMatchObject({ status: 503 })

    expect((await call(server.url)).status).toBe(401)
    expect((await call(server.url, { headers: { authorization: 'Bearer s3cret' } })).status).toBe(200)
    // Other paths and methods keep their refusals; the token comes first for them, as before.
    expect((await call(`${base}/healthz`, { headers: { authorization: 'Bearer s3cret' } })).status).toBe(404)
    expect((await call(`${base}/readyz`, { method: 'POST', headers: { authorization: 'Bearer s3cret' } })).status).toBe(404)
    expect((await call(`${base}/readyz`, { method: 'POST', body: 'x' })).status).toBe(413)
    const head = await call(`${base}/readyz`, { method: 'HEAD' })
    expect(head).toEqual({ status: 200, text: '' })
  })

  it('serves the probes before the registry exists, /metrics 503 until then', async () => {
    let registry: Registry | undefined
    const server = await serveMetrics(() => registry, { port: 0, probes: { live: () => ({ ok: true }), ready: () => ({ ok: false, reason: 'joining' }) } })
    closers.push(() => server.close())
    expect((await call(server.url)).status).toBe(503)
    expect((await call(server.url.replace(/metrics$/, 'livez'))).status).toBe(200)
    registry = new Registry()
    expect((await call(server.url)).status).toBe(200)
  })

  it('without probes, /livez and /readyz are 404 as any other path', async () => {
    const server = await serveMetrics(new Registry(), { port: 0 })
    closers.push(() => server.close())
    expect((await call(server.url.replace(/metrics$/, 'readyz'))).status).toBe(404)
  })
})

describe('serveHealth (weir coordinator --health-port)', () => {
  it('answers only /livez and /readyz; a check that throws or hangs is a 503 naming it, within a kubelet timeout', async () => {
    const server = await serveHealth({ live: () => { throw new Error('boom') }, ready: () => new Promise<ProbeResult>(() => undefined) }, { port: 0 })
    closers.push(() => server.close())
    const live = await call(`${server.url}/livez`)
    expect(live.status).toBe(503)
    expect(JSON.parse(live.text)).toEqual({ status: 'failed', reason: 'the check failed: boom' })
    const started = Date.now()
    const ready = await call(`${server.url}/readyz`)
    expect(ready.status).toBe(503)
    expect(JSON.parse(ready.text).reason).toMatch(/did not finish within 900 ms/)
    expect(Date.now() - started).toBeLessThan(1000)
    expect((await call(`${server.url}/metrics`)).status).toBe(404)
    expect((await call(`${server.url}/livez?verbose`, { body: '{}', headers: { 'content-type': 'application/json', 'content-length': '2' } })).status).toBe(413)
  })

  it('refuses a bad port naming the option', async () => {
    await expect(serveHealth({ live: () => ({ ok: true }), ready: () => ({ ok: true }) }, { port: 70000 })).rejects.toThrow(/--health-port/)
  })
})
