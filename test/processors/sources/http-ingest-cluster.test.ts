/**
 * HttpIngestSource on a real cluster (Kafka, NATS, a coordinator, two workers each serving
 * on its own port): each worker serves the partitions it holds; a request sent to the other
 * gets 421 with the Location of the worker that serves its key's partition (found by asking
 * the peers), and following it gets the 200. When a worker is killed its actors move, serving
 * moves with them, and a retry of a request the dead worker acknowledged gets the stored
 * answer from its new home (the key moved with the actor's state). The stream read
 * read_committed holds every acknowledged event once.
 */
import { randomUUID } from 'node:crypto'
import { join } from 'node:path'
import pino from 'pino'
import { describe, expect, it, onTestFailed, onTestFinished } from 'vitest'
import { openPipe, partitionForKey } from '../../../index.ts'
import { readStageOutput } from '../../../testing/index.ts'
import { TestCluster } from '../../support/cluster.ts'
import { requireService } from '../../support/services.ts'
import { freePort, sleep, tempDirs, until } from '../../support/weir-cli.ts'
import { ingestPipeline } from './fixtures/http-ingest-pipeline.ts'

const kafka = await requireService('kafka')
const nats = await requireService('nats')
const FIXTURE = join(import.meta.dirname, 'fixtures', 'http-ingest-pipeline.ts')
const PARTITIONS = 4

interface Served { servedHere: number[] }

describe.skipIf(!kafka.available || !nats.available)('HTTP ingest in a cluster', () => {
  const tempDir = tempDirs('weir-ingest-cluster-')

  it('each worker serves its partitions, sends clients to the other with 421 and Location, and serving moves with the actors when a worker dies', async () => {
    const dir = tempDir()
    const name = `ic${randomUUID().slice(0, 8)}`
    const ports = { a: await freePort(), b: await freePort() }
    const url = (w: 'a' | 'b'): string => `http://127.0.0.1:${ports[w]}`
    const peers = `${url('a')},${url('b')}`
    const c = new TestCluster({ cluster: name, kafka: `kafka://${kafka.url}`, nats: nats.url, logDir: join(dir, 'logs'), logLevel: 'info' })
    onTestFinished(() => c.killAll())
    onTestFailed(() => console.log(c.logTails(30)))
    c.startCoordinator('c1', ['--epoch-ms', '200', '--worker-timeout-ms', '2000', '--settle-ms', '300'])
    const args = (w: 'a' | 'b'): string[] => ['--epoch-ms', '200', '--heartbeat-ms', '250', '--state-dir', join(dir, w), '--param', `name=${name}`, '--param', `port=${ports[w]}`, '--param', `partitions=${PARTITIONS}`, '--param', `peers=${peers}`]
    const workers = { a: c.startWorker('a', FIXTURE, args('a')), b: c.startWorker('b', FIXTURE, args('b')) }
    const served = async (w: 'a' | 'b'): Promise<number[]> => {
      try {
        return ((await (await fetch(`${url(w)}/ingest/events`)).json()) as Served).servedHere ?? []
      } catch {
        return []
      }
    }
    const placement = await until(async () => {
      const [a, b] = [await served('a'), await served('b')]
      return a.length > 0 && b.length > 0 && a.length + b.length === PARTITIONS ? { a, b } : undefined
    }, 90_000, 'both workers serving')
    const keyFor = (p: number, n: number): string => {
      for (let i = 0; ; i++) {
        const k = `${name}-p${p}-${n}-${i}`
        if (partitionForKey(Buffer.from(k), PARTITIONS) === p) return k
      }
    }
    const post = (base: string, key: string, body: unknown): Promise<Response> => fetch(`${base}/ingest/events`, { method: 'POST', body: JSON.stringify(body), headers: { 'content-type': 'application/json', 'idempotency-key': key }, redirect: 'manual' })
    const acked = new Map<string, { partition: number; positions: { from: number; to: number } }>()
    const bodyOf = (key: string): unknown[] => [{ user: key, n: 1 }, { user: key, n: 2 }]
    // Every partition: first to the worker that does not serve it (421 + Location), then where the Location says.
    for (let p = 0; p < PARTITIONS; p++) {
      const home = placement.a.includes(p) ? 'a' : 'b'
      const other = home === 'a' ? 'b' : 'a'
      const key = keyFor(p, 0)
      const wrong = await post(url(other), key, bodyOf(key))
      const err = (await wrong.json()) as { error: { code: string; location: string; partition: number } }
      expect([wrong.status, err.error.code, err.error.partition], JSON.stringify(err)).toEqual([421, 'WEIR_INGEST_MISDIRECTED', p])
      expect(wrong.headers.get('location')).toBe(`${url(home)}/ingest/events`)
      const right = await fetch(wrong.headers.get('location')!, { method: 'POST', body: JSON.stringify(bodyOf(key)), headers: { 'content-type': 'application/json', 'idempotency-key': key } })
      expect(right.status).toBe(200)
      acked.set(key, (await right.json()) as { partition: number; positions: { from: number; to: number } })
    }
    // b dies: its actors move to a, which then serves every partition; b's acknowledged keys replay from a.
    workers.b.signal('SIGKILL')
    await until(async () => ((await served('a')).length === PARTITIONS ? true : undefined), 90_000, 'a serving every partition after b died')
    for (const p of placement.b) {
      const key = keyFor(p, 0)
      const again = await post(url('a'), key, bodyOf(key))
      expect(again.status).toBe(200)
      expect(again.headers.get('idempotent-replayed')).toBe('true')
      // A replay has everything the first answer had but its atLeast (the commit's offsets are not kept in state).
      const { atLeast: _atLeast, ...first } = acked.get(key) as { atLeast?: string }
      expect(await again.json()).toMatchObject({ ...first, replayed: true })
      const fresh = keyFor(p, 1)
      const r = await post(url('a'), fresh, bodyOf(fresh))
      expect(r.status).toBe(200)
      acked.set(fresh, (await r.json()) as { partition: number; positions: { from: number; to: number } })
    }
    expect((await fetch(`${url('a')}/ingest/events/_end`, { method: 'POST' })).status).toBe(200)
    const outcome = await workers.a.done
    expect(outcome.code, outcome.stderr.slice(-2000)).toBe(0)
    await sleep(100)
    const pipe = await openPipe(`kafka://${kafka.url}`, { dataDir: join(dir, 'reader'), log: pino({ level: 'silent' }) })
    onTestFinished(() => pipe.close())
    const out = await readStageOutput<{ user: string; n: number }>(ingestPipeline({ name, port: 1, partitions: PARTITIONS }), pipe, 'events')
    const want = [...acked.keys()].flatMap((k) => bodyOf(k).map((e) => JSON.stringify(e))).sort()
    expect(out.map((r) => JSON.stringify(r.value)).sort()).toEqual(want)
    console.log(`ingest cluster: a served ${JSON.stringify(placement.a)}, b ${JSON.stringify(placement.b)}; ${acked.size} requests acknowledged, ${out.length} events read_committed`)
  }, 240_000)
})
