/**
 * The probes of real `weir worker` and `weir coordinator` processes on Kafka and NATS, as
 * a kubelet meets them: a worker started before any coordinator answers /livez 200 and
 * /readyz 503 (joining) from the start, and /readyz 200 once it is assigned, restored and
 * caught up; its /metrics keeps needing the token while the probes need none. Two
 * coordinators with --health-port: one leads, the other stands by behind it, both ready;
 * the standby becomes the leader when the leader stops.
 */
import { randomUUID } from 'node:crypto'
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { describe, expect, it, onTestFinished } from 'vitest'
import { TestCluster } from '../support/cluster.ts'
import { requireService } from '../support/services.ts'
import { freePort, tempDirs, until } from '../support/weir-cli.ts'

const kafka = await requireService('kafka')
const nats = await requireService('nats')
const tempDir = tempDirs('weir-health-probes-')

async function probe(url: string, headers: Record<string, string> = {}): Promise<{ status: number; body: { status?: string; reason?: string; details?: unknown[] } | string }> {
  const res = await fetch(url, { headers })
  const text = await res.text()
  try {
    return { status: res.status, body: JSON.parse(text) as { status?: string; reason?: string } }
  } catch {
    return { status: res.status, body: text }
  }
}

describe.skipIf(!kafka.available || !nats.available)('health probes of weir worker and weir coordinator', () => {
  it('a worker is live and not ready before its coordinator exists, ready once caught up; coordinators lead or stand by, both ready; no token on probes', async () => {
    const dir = tempDir()
    const cluster = `h${randomUUID().slice(0, 8)}`
    const name = `health-${randomUUID().slice(0, 8)}`
    const c = new TestCluster({ cluster, kafka: `kafka://${kafka.url}`, nats: nats.url, logDir: join(dir, 'logs') })
    onTestFinished(() => c.killAll())
    onTestFinished((ctx) => {
      if (ctx.task.result?.state === 'fail') console.error(c.logTails(40))
    })
    const tokenFile = join(dir, 'token')
    writeFileSync(tokenFile, 'probe-test-token\n')
    const [workerPort, c1Port, c2Port] = [await freePort(), await freePort(), await freePort()]
    const worker = `http://127.0.0.1:${workerPort}`

    c.startWorker('w', 'examples/wordcount.ts', ['--state-dir', join(dir, 'w'), '--epoch-ms', '300', '--heartbeat-ms', '250',
      '--metrics-port', String(workerPort), '--metrics-token-file', tokenFile, '--ready-max-lag', '5000',
      '--param', `name=${name}`, '--param', 'lines=1000000', '--param', 'rate=20', '--param', 'sink=false'])
    // Listening before it joined: live, not ready, and the reason says why.
    const joining = await until(() => probe(`${worker}/readyz`).catch(() => undefined), 15_000, 'the worker\'s /readyz answering')
    expect(joining).toMatchObject({ status: 503, body: { status: 'not ready', reason: expect.stringMatching(/joining/) } })
    expect(await probe(`${worker}/livez`)).toEqual({ status: 200, body: { status: 'live' } })
    expect((await probe(`${worker}/metrics`)).status).toBe(401)

    c.startCoordinator('c1', ['--settle-ms', '300', '--epoch-ms', '300', '--lease-ttl-ms', '1500', '--health-port', String(c1Port)])
    const leader = await c.waitForLeader(15_000)
    expect(leader?.name).toBe('c1')
    c.startCoordinator('c2', ['--settle-ms', '300', '--epoch-ms', '300', '--lease-ttl-ms', '1500', '--health-port', String(c2Port), '--health-host', '127.0.0.1'])
    expect(await until(async () => {
      const r = await probe(`http://127.0.0.1:${c1Port}/readyz`).catch(() => undefined)
      return r?.status === 200 ? r : undefined
    }, 10_000, 'c1 ready')).toEqual({ status: 200, body: { status: 'ready', reason: expect.stringMatching(/^leading \(term \d+\)$/) } })
    const standby = await until(async () => {
      const r = await probe(`http://127.0.0.1:${c2Port}/readyz`).catch(() => undefined)
      return r?.status === 200 ? r : undefined
    }, 15_000, 'c2 ready as a standby')
    expect(standby.body).toEqual({ status: 'ready', reason: expect.stringMatching(/^standing by: following c1 \(term \d+\)$/) })
    expect(await probe(`http://127.0.0.1:${c2Port}/livez`)).toEqual({ status: 200, body: { status: 'live' } })
    expect((await probe(`http://127.0.0.1:${c2Port}/metrics`)).status).toBe(404)

    // The worker: assigned, its actors restored and within the lag bound.
    const ready = await until(async () => {
      const r = await probe(`${worker}/readyz`)
      return r.status === 200 ? r : undefined
    }, 30_000, 'the worker ready')
    // lines/0-1 (split runs in them, chained) and count/0-3.
    expect(ready.body).toEqual({ status: 'ready', reason: expect.stringMatching(/^6 assigned actors restored and caught up/) })
    expect((await probe(`${worker}/metrics`)).status).toBe(401)
    const metrics = await probe(`${worker}/metrics`, { authorization: 'Bearer probe-test-token' })
    expect(metrics.status).toBe(200)
    expect(metrics.body).toMatch(/weir_actor_lag_records/)

    // The leader stops: the standby takes over and says so.
    c.coordinators[0]!.signal('SIGTERM')
    await until(async () => {
      const r = await probe(`http://127.0.0.1:${c2Port}/readyz`)
      return r.status === 200 && typeof r.body === 'object' && /^leading/.test(r.body.reason ?? '') ? r : undefined
    }, 15_000, 'c2 leading')
    c.workers[0]!.signal('SIGTERM')
    expect((await c.workers[0]!.done).code).toBe(0)
  }, 60_000)
})
