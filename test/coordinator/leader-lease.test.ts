/**
 * The coordinator leader lease and cluster metadata on a real NATS (JetStream). Crashes and
 * pauses are real: the leader runs in a child process that is SIGKILLed or SIGSTOPped.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process'
import { createInterface } from 'node:readline'
import { fileURLToPath } from 'node:url'
import { Kvm } from '@nats-io/kv'
import { connect } from '@nats-io/transport-node'
import { afterAll, afterEach, describe, expect, it } from 'vitest'
import { ClusterMetadata, type PipelineMetadata } from '../../coordinator/cluster-metadata.ts'
import { bucketName, KvUnavailableError, LeaderFencedError, LeaderLease } from '../../coordinator/leader-lease.ts'
import { requireService } from '../support/services.ts'
import { freePort, sleep } from '../support/weir-cli.ts'

const nats = await requireService('nats')
const TTL = 600

let seq = 0
const clusters: string[] = []
/** A cluster (and so a bucket) of its own for every test. */
function uniqueCluster(): string {
  const name = `lease-${process.pid}-${Date.now().toString(36)}-${seq++}`
  clusters.push(name)
  return name
}

const cleanups: Array<() => Promise<void> | void> = []
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c()
})
afterAll(async () => {
  if (!nats.available) return
  const nc = await connect({ servers: [nats.url] })
  const kvm = new Kvm(nc)
  for (const c of clusters) await (await kvm.open(bucketName(c))).destroy().catch(() => undefined)
  await nc.close()
})

async function openLease(cluster: string, holder: string, ttlMs = TTL): Promise<LeaderLease> {
  const lease = await LeaderLease.open({ servers: [nats.url], cluster, holder, ttlMs })
  cleanups.push(() => lease.release())
  return lease
}


function nextEvent<T extends unknown[]>(emitter: LeaderLease, event: 'elected' | 'lost', timeoutMs: number): Promise<T> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no '${event}' within ${timeoutMs} ms`)), timeoutMs)
    emitter.once(event, (...args: unknown[]) => {
      clearTimeout(timer)
      resolve(args as T)
    })
  })
}

// A leader in its own process, so it can be SIGKILLed or SIGSTOPped for real. It prints one JSON
// line per event; when it loses the lease it still tries a metadata write with its old term.
const CHILD = `
const { LeaderLease } = await import(process.env.LEASE_MODULE)
const { ClusterMetadata } = await import(process.env.META_MODULE)
const o = JSON.parse(process.env.LEASE_CHILD)
const out = (e) => process.stdout.write(JSON.stringify(e) + '\\n')
const lease = await LeaderLease.open({ servers: [o.url], cluster: o.cluster, holder: o.holder, ttlMs: o.ttlMs })
const meta = await ClusterMetadata.open({ servers: [o.url], cluster: o.cluster })
lease.on('elected', (term) => void meta.claim(term).then(() => out({ event: 'elected', term })))
lease.on('lost', (reason) => {
  out({ event: 'lost', reason, isLeader: lease.isLeader, term: lease.term })
  meta.putPipelines(lease.term, { wordcount: { fingerprint: 'f', shape: { stages: [], standbys: 0 }, members: [], generation: 0, assignment: {}, standbys: {}, epoch: 99, completedEpoch: 99, finished: [] } }).then(
    () => out({ event: 'write', ok: true }),
    (e) => out({ event: 'write', ok: false, code: e.code }),
  )
})
await lease.start()
`

interface ChildLeader {
  proc: ChildProcess
  events: Array<Record<string, unknown>>
  waitFor(event: string, timeoutMs: number): Promise<Record<string, unknown>>
}

function spawnLeader(cluster: string, holder: string): ChildLeader {
  const proc = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', CHILD], {
    env: {
      ...process.env,
      LEASE_MODULE: fileURLToPath(new URL('../../coordinator/leader-lease.ts', import.meta.url)),
      META_MODULE: fileURLToPath(new URL('../../coordinator/cluster-metadata.ts', import.meta.url)),
      LEASE_CHILD: JSON.stringify({ url: nats.url, cluster, holder, ttlMs: TTL }),
    },
    stdio: ['ignore', 'pipe', 'inherit'],
  })
  cleanups.push(() => {
    if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGKILL')
  })
  const events: Array<Record<string, unknown>> = []
  const waiters: Array<() => void> = []
  createInterface({ input: proc.stdout! }).on('line', (line) => {
    events.push(JSON.parse(line) as Record<string, unknown>)
    waiters.splice(0).forEach((w) => w())
  })
  const waitFor = async (event: string, timeoutMs: number): Promise<Record<string, unknown>> => {
    const until = Date.now() + timeoutMs
    for (;;) {
      const found = events.find((e) => e.event === event)
      if (found !== undefined) return found
      if (Date.now() > until) throw new Error(`child ${holder}: no '${event}' within ${timeoutMs} ms; saw ${JSON.stringify(events)}`)
      await new Promise<void>((r) => {
        waiters.push(r)
        setTimeout(r, 50)
      })
    }
  }
  return { proc, events, waitFor }
}

describe.skipIf(!nats.available)('LeaderLease on NATS KV', () => {
  it('exactly one of two contenders leads, and keeps leading while it renews', async () => {
    const cluster = uniqueCluster()
    const [a, b] = await Promise.all([openLease(cluster, 'a'), openLease(cluster, 'b')])
    const lost: string[] = []
    a.on('lost', () => lost.push('a'))
    b.on('lost', () => lost.push('b'))
    await Promise.all([a.start(), b.start()])

    // Several TTLs: the leader must renew, and the standby must not mistake it for expired.
    for (let i = 0; i < 8; i++) {
      expect([a.isLeader, b.isLeader].filter(Boolean)).toHaveLength(1)
      await sleep(TTL / 3)
    }
    expect(lost).toEqual([])
    expect((a.isLeader ? a : b).term).toBe(1)
  })

  it("a leader's release hands over within a second, and the successor continues its metadata", async () => {
    const cluster = uniqueCluster()
    // A long TTL: only the release, not expiry, can hand over within a second.
    const a = await openLease(cluster, 'a', 10_000)
    await a.start()
    expect(a.isLeader).toBe(true)
    const meta = await ClusterMetadata.open({ servers: [nats.url], cluster })
    cleanups.push(() => meta.close())
    await meta.putPipelines(a.term, { wordcount: pipelineMeta({ members: ['w1', 'w2'], generation: 3, assignment: { 'count/0': 'w1' } }) })
    await meta.putPipelines(a.term, { wordcount: pipelineMeta({ members: ['w1', 'w2'], generation: 3, assignment: { 'count/0': 'w1' }, completedEpoch: 7 }) })

    const b = await openLease(cluster, 'b', 10_000)
    await b.start()
    expect(b.isLeader).toBe(false)
    const elected = nextEvent<[number]>(b, 'elected', 1000)
    const releasedAt = Date.now()
    await a.release()
    const [term] = await elected
    expect(Date.now() - releasedAt).toBeLessThan(1000)
    expect(term).toBeGreaterThan(1)
    expect(a.isLeader).toBe(false)

    const continued = await meta.claim(term)
    expect(continued).toMatchObject({ term, pipelines: { wordcount: { members: ['w1', 'w2'], generation: 3, assignment: { 'count/0': 'w1' }, completedEpoch: 7 } } })
  })

  it('a SIGKILLed leader is replaced after its TTL, with a higher term', async () => {
    const cluster = uniqueCluster()
    const child = spawnLeader(cluster, 'doomed')
    const { term: childTerm } = await child.waitFor('elected', 10_000)
    const standby = await openLease(cluster, 'standby')
    await standby.start()
    await sleep(TTL) // the child keeps renewing: the standby must stay a standby
    expect(standby.isLeader).toBe(false)

    const elected = nextEvent<[number]>(standby, 'elected', 5000)
    child.proc.kill('SIGKILL')
    const killedAt = Date.now()
    const [term] = await elected
    const after = Date.now() - killedAt
    // The last renewal was at most TTL/3 before the kill, so expiry is at least 2/3 TTL later.
    expect(after).toBeGreaterThanOrEqual((TTL * 2) / 3 - 50)
    expect(after).toBeLessThan(TTL * 4)
    expect(term).toBeGreaterThan(childTerm as number)
  })

  it('a paused leader sees lost when it resumes, and its metadata write with the old term is refused', async () => {
    const cluster = uniqueCluster()
    const child = spawnLeader(cluster, 'paused')
    const { term: oldTerm } = await child.waitFor('elected', 10_000)
    const standby = await openLease(cluster, 'standby')
    const meta = await ClusterMetadata.open({ servers: [nats.url], cluster })
    cleanups.push(() => meta.close())
    await standby.start()

    const elected = nextEvent<[number]>(standby, 'elected', 5000)
    child.proc.kill('SIGSTOP') // a GC pause or a stopped VM: no timers, no renewals, socket still open
    const [term] = await elected
    expect(term).toBeGreaterThan(oldTerm as number)
    await meta.claim(term)
    child.proc.kill('SIGCONT')

    const lost = await child.waitFor('lost', 5000)
    expect(lost).toMatchObject({ isLeader: false, term: oldTerm })
    expect(await child.waitFor('write', 5000)).toEqual({ event: 'write', ok: false, code: 'WEIR_LEADER_FENCED' })
    expect(child.events.filter((e) => e.event === 'elected')).toHaveLength(1)
    expect((await meta.read()).pipelines).toEqual({})
    expect(standby.isLeader).toBe(true)
  })

  it('a leader paused past its TTL stops leading on resume even if nobody took over, then wins a new term', async () => {
    const cluster = uniqueCluster()
    const a = await openLease(cluster, 'a')
    await a.start()
    expect(a.isLeader).toBe(true)
    const lost = nextEvent<[string]>(a, 'lost', 2000)

    // Block this process's event loop, as a long GC pause would: no timers, no renewals.
    Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, TTL * 2)
    expect(a.isLeader).toBe(false) // on its own clock, before any timer has run

    const [reason] = await lost
    expect(reason).toMatch(/expired/)
    // The lease it could not renew in time is taken over like anyone's: after the TTL, with a new term.
    const [term] = await nextEvent<[number]>(a, 'elected', TTL * 4)
    expect(term).toBe(2)
  })

  it("refuses a deposed leader's metadata write even before its successor wrote any", async () => {
    const cluster = uniqueCluster()
    const a = await openLease(cluster, 'a')
    await a.start()
    const oldTerm = a.term
    const b = await openLease(cluster, 'b')
    await b.start()
    const meta = await ClusterMetadata.open({ servers: [nats.url], cluster })
    cleanups.push(() => meta.close())
    await meta.putPipelines(oldTerm, { wordcount: pipelineMeta({ completedEpoch: 1 }) })

    const elected = nextEvent<[number]>(b, 'elected', 2000)
    await a.release()
    const [term] = await elected
    const refused = await meta.putPipelines(oldTerm, { wordcount: pipelineMeta({ completedEpoch: 2 }) }).catch((e: unknown) => e)
    expect(refused).toBeInstanceOf(LeaderFencedError)
    expect(refused).toMatchObject({ code: 'WEIR_LEADER_FENCED', retriable: false, context: { term: oldTerm, currentTerm: term } })
    expect(await meta.putPipelines(term, { wordcount: pipelineMeta({ completedEpoch: 2 }) })).toMatchObject({ term, pipelines: { wordcount: { completedEpoch: 2 } } })
  })
})

function pipelineMeta(overrides: Partial<PipelineMetadata>): PipelineMetadata {
  return { fingerprint: 'f1', shape: { stages: [{ name: 'count', parallelism: 2 }], standbys: 0 }, members: [], generation: 0, assignment: {}, standbys: {}, epoch: 0, completedEpoch: 0, finished: [], releasing: {}, failures: {}, ...overrides }
}

const natsServerBinary = spawnSync('nats-server', ['--version']).status === 0

describe('LeaderLease when the KV bucket cannot be reached', () => {
  it('NATS unreachable: a retriable WEIR_KV_UNAVAILABLE naming the servers', async () => {
    const url = `nats://127.0.0.1:${await freePort()}`
    const err = await LeaderLease.open({ servers: [url], cluster: 'nowhere', holder: 'a', connectTimeoutMs: 1000 }).catch((e: unknown) => e)
    expect(err).toBeInstanceOf(KvUnavailableError)
    expect(err).toMatchObject({ code: 'WEIR_KV_UNAVAILABLE', retriable: true, context: { servers: [url] } })
    expect((err as Error).message).toContain(url)
  })

  it.skipIf(!natsServerBinary)('JetStream not enabled: a non-retriable WEIR_KV_UNAVAILABLE that says so', async () => {
    const port = await freePort()
    const server = spawn('nats-server', ['-a', '127.0.0.1', '-p', String(port)], { stdio: 'ignore' })
    cleanups.push(() => void server.kill('SIGTERM'))
    const url = `nats://127.0.0.1:${port}`
    let err: unknown
    for (let i = 0; i < 20; i++) {
      err = await LeaderLease.open({ servers: [url], cluster: 'nojs', holder: 'a', connectTimeoutMs: 1000 }).catch((e: unknown) => e)
      if (!(err instanceof KvUnavailableError) || !err.retriable) break
      await sleep(100) // the server is still starting
    }
    expect(err).toBeInstanceOf(KvUnavailableError)
    expect(err).toMatchObject({ code: 'WEIR_KV_UNAVAILABLE', retriable: false })
    expect((err as Error).message).toMatch(/JetStream is not enabled/)
    expect((err as Error).message).toContain(url)
  })
})
