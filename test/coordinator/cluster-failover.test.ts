/**
 * Cluster mode on real processes: `weir coordinator` and `weir worker`s on Kafka and NATS.
 * A worker SIGKILLed mid-run is declared dead (after the heartbeat timeout, or at once by
 * its unanswered liveness probes), its actors move
 * to the workers left (and to one that joins), and the output equals the crash-free
 * reference: every word counted once, counts 1..N per word. A worker running a different
 * topology of the pipeline is refused with a clear error on both sides.
 */
import { randomUUID } from 'node:crypto'
import { existsSync } from 'node:fs'
import { join } from 'node:path'
import { describe, expect, it, onTestFinished } from 'vitest'
import { assignmentMessage, type AssignmentMessage } from '../../runtime/control/messages.ts'
import { NatsBus } from '../../runtime/control/nats/nats-bus.ts'
import { progressSubjects, workerHealth } from '../../runtime/control/progress.ts'
import { requireService } from '../support/services.ts'
import { coordinatedPipeline } from '../../coordinator/coordinator.ts'
import { loadPipeline } from '../../runtime/pipeline-file.ts'
import { expectExactWordCounts, ROOT, sleep, startWeir, tempDirs, weir, wordcountReference, type Outcome } from '../support/weir-cli.ts'
import { runsAlone } from '../support/file-lock.ts'

// Bounds real processes' timing: no other test file runs beside it (test/support/file-lock.ts).
runsAlone()

const kafka = await requireService('kafka')
const nats = await requireService('nats')
const tempDir = tempDirs('weir-cluster-')
const LINES = 400

function start(args: string[]): { done: Promise<Outcome>; kill(signal?: NodeJS.Signals): void; stdout(): string } {
  const p = startWeir(args, { env: { WEIR_LOG_LEVEL: 'warn' } })
  let out = ''
  p.child.stdout!.on('data', (d: Buffer) => (out += d.toString()))
  onTestFinished(() => void p.child.kill('SIGKILL'))
  return { done: p.done, kill: (signal = 'SIGKILL') => void p.child.kill(signal), stdout: () => out }
}

describe.skipIf(!kafka.available || !nats.available)('cluster mode', () => {
  it('a worker SIGKILLed mid-run: its actors move, a new worker joins, and the output is exact', async () => {
    const dir = tempDir()
    const expected = await wordcountReference(dir, LINES)

    const cluster = `f${randomUUID().slice(0, 8)}`
    const name = `cluster-${randomUUID().slice(0, 8)}`
    const out = join(dir, 'out')
    const common = ['--pipe', `kafka://${kafka.url}`, '--bus', nats.url, '--cluster', cluster, '--epoch-ms', '300', '--heartbeat-ms', '250',
      '--param', `name=${name}`, '--param', `lines=${LINES}`, '--param', 'rate=40', '--param', `out=${out}/c-{partition}.jsonl`]
    const coordinator = start(['coordinator', '--bus', nats.url, '--cluster', cluster, '--epoch-ms', '300', '--worker-timeout-ms', '2000', '--settle-ms', '300'])
    const a = start(['worker', 'examples/wordcount.ts', ...common, '--id', 'a', '--state-dir', join(dir, 'a')])
    const b = start(['worker', 'examples/wordcount.ts', ...common, '--id', 'b', '--state-dir', join(dir, 'b')])
    await sleep(5000)
    a.kill('SIGKILL')
    expect((await a.done).signal).toBe('SIGKILL')
    await sleep(1000)
    const c = start(['worker', 'examples/wordcount.ts', ...common, '--id', 'c', '--state-dir', join(dir, 'c')])
    const [rb, rc] = await Promise.all([b.done, c.done])
    expect(rb.code, rb.stderr).toBe(0)
    expect(rc.code, rc.stderr).toBe(0)
    expect(rb.stdout).toMatch(/weir worker b: finished/)
    expectExactWordCounts(out, expected)
    coordinator.kill('SIGTERM')
  }, 180_000)

  it('with standbys: 1, every actor keeps a warm replica on another worker, a SIGKILLed worker\'s actors move to their replicas, and the output is exact', async () => {
    const dir = tempDir()
    const expected = await wordcountReference(dir, LINES)
    const cluster = `s${randomUUID().slice(0, 8)}`
    const name = `standby-${randomUUID().slice(0, 8)}`
    const out = join(dir, 'out')
    const observer = await NatsBus.connect({ servers: [nats.url], name: 'standby-test' })
    onTestFinished(() => observer.close())
    const assignments: AssignmentMessage[] = []
    const receivedAt = new Map<number, number>()
    observer.subscribe(`weir.${cluster}.${name}.assignment`, (m) => {
      const a = assignmentMessage.safeParse(m)
      if (!a.success) return
      assignments.push(a.data)
      if (!receivedAt.has(a.data.generation)) receivedAt.set(a.data.generation, Date.now())
    })
    // Each worker reports the replicas it keeps warm, and how far each trails, on the progress channel.
    const standbyLag = new Map<string, { worker: string; lag: number | null }>()
    observer.subscribe(progressSubjects.health(cluster, name), (m) => {
      const h = workerHealth.safeParse(m)
      if (h.success) for (const r of h.data.standbys ?? []) standbyLag.set(r.actor, { worker: h.data.worker, lag: r.lag })
    })
    const kafkaUrl = `kafka://${kafka.url}`
    const common = ['--pipe', kafkaUrl, '--bus', nats.url, '--cluster', cluster, '--epoch-ms', '300', '--heartbeat-ms', '250', '--param', `name=${name}`, '--param', `lines=${LINES}`, '--param', 'rate=40', '--param', 'standbys=1', '--param', `out=${out}/c-{partition}.jsonl`]
    // The default worker timeout (10 s): the killed worker's closed connection is noticed by the coordinator's probes.
    start(['coordinator', '--bus', nats.url, '--cluster', cluster, '--epoch-ms', '300', '--settle-ms', '300'])
    const workers = ['a', 'b', 'c'].map((id) => start(['worker', 'examples/wordcount.ts', ...common, '--id', id, '--state-dir', join(dir, id)]))
    // All three placed, then a moment for the replicas to warm up.
    for (let i = 0; i < 300 && !assignments.some((x) => new Set(Object.values(x.actors)).size === 3); i++) await sleep(100)
    await sleep(1500)
    const before = assignments.at(-1)!
    expect(before, 'no assignment with all three workers').toBeDefined()
    // Every actor the coordinator places: chain heads only (split runs in the actors of lines).
    const actors = coordinatedPipeline(await loadPipeline(join(ROOT, 'examples/wordcount.ts'), { name, lines: String(LINES), rate: '40', standbys: '1', out: `${out}/c-{partition}.jsonl` })).shape.stages
      .flatMap((s) => Array.from({ length: s.parallelism }, (_, p) => `${s.name}/${p}`))
    expect(Object.keys(before.actors).sort()).toEqual([...actors].sort())
    for (const [actor, worker] of Object.entries(before.actors)) {
      expect(before.standbys?.[actor], actor).toHaveLength(1)
      expect(before.standbys![actor]).not.toContain(worker)
    }
    for (let i = 0; i < 50 && [...standbyLag.values()].filter((r) => r.lag !== null).length < actors.length; i++) await sleep(100)
    for (const [actor, replicas] of Object.entries(before.standbys!)) {
      expect(standbyLag.get(actor)?.worker, `${actor}'s replica is reported by its worker`).toBe(replicas[0])
      expect(standbyLag.get(actor)?.lag, `${actor}'s replica lag`).toBeTypeOf('number')
    }
    const killedAt = Date.now()
    workers[0]!.kill('SIGKILL')
    const [rb, rc] = await Promise.all([workers[1]!.done, workers[2]!.done])
    expect(rb.code, rb.stderr).toBe(0)
    expect(rc.code, rc.stderr).toBe(0)
    const after = assignments.find((x) => x.generation > before.generation && !Object.values(x.actors).includes('a'))!
    // Declared dead by its unanswered probes, far within the 10 s heartbeat timeout.
    const detectionMs = receivedAt.get(after.generation)! - killedAt
    console.log(`standby failover: the killed worker's actors were reassigned ${detectionMs} ms after SIGKILL (worker timeout 10000 ms, probes every 250 ms)`)
    expect(detectionMs).toBeLessThan(5000)
    const moved = Object.keys(before.actors).filter((x) => before.actors[x] === 'a')
    expect(moved.length).toBeGreaterThan(0)
    // Placement prefers the worker that kept the replica warm (as long as balance allows).
    expect(moved.filter((x) => after.actors[x] === before.standbys![x]![0]).length).toBeGreaterThan(0)
    expectExactWordCounts(out, expected)
  }, 180_000)

  it('the leading coordinator SIGKILLed mid-run: the standby takes over the lease, workers go on, and the output is exact', async () => {
    const dir = tempDir()
    // Twice the input of the other tests: the run must still be going when c2 takes over.
    const lines = LINES * 2
    const expected = await wordcountReference(dir, lines)
    const cluster = `l${randomUUID().slice(0, 8)}`
    const name = `leader-${randomUUID().slice(0, 8)}`
    const out = join(dir, 'out')
    const kafkaUrl = `kafka://${kafka.url}`
    const coordinatorArgs = (n: string): string[] => ['coordinator', '--bus', nats.url, '--cluster', cluster, '--name', n, '--epoch-ms', '300', '--worker-timeout-ms', '2000', '--settle-ms', '500', '--lease-ttl-ms', '1500']
    const c1 = start(coordinatorArgs('c1'))
    await sleep(1500)
    const c2 = start(coordinatorArgs('c2'))
    const common = ['--pipe', kafkaUrl, '--bus', nats.url, '--cluster', cluster, '--epoch-ms', '300', '--heartbeat-ms', '250', '--param', `name=${name}`, '--param', `lines=${lines}`, '--param', 'rate=40', '--param', `out=${out}/c-{partition}.jsonl`]
    // c1 must have placed both workers (and so stored the pipeline in its metadata) before it
    // dies: on a busy machine the workers take seconds to start.
    const observer = await NatsBus.connect({ servers: [nats.url], name: 'leader-test' })
    onTestFinished(() => observer.close())
    let placedOnBoth = false
    observer.subscribe(`weir.${cluster}.${name}.assignment`, (m) => {
      const x = assignmentMessage.safeParse(m)
      if (x.success && new Set(Object.values(x.data.actors)).size === 2) placedOnBoth = true
    })
    const a = start(['worker', 'examples/wordcount.ts', ...common, '--id', 'a', '--state-dir', join(dir, 'a')])
    const b = start(['worker', 'examples/wordcount.ts', ...common, '--id', 'b', '--state-dir', join(dir, 'b')])
    for (let i = 0; i < 300 && !placedOnBoth; i++) await sleep(100)
    expect(placedOnBoth, 'c1 placed actors on both workers').toBe(true)
    await sleep(1500)
    expect(c1.stdout()).toMatch(/c1: leading cluster \S+ \(term \d+\)/)
    c1.kill('SIGKILL')
    const [ra, rb] = await Promise.all([a.done, b.done])
    expect(ra.code, ra.stderr).toBe(0)
    expect(rb.code, rb.stderr).toBe(0)
    // The standby took over with a higher term.
    const terms = [...(c1.stdout() + c2.stdout()).matchAll(/leading cluster \S+ \(term (\d+)\)/g)].map((m) => Number(m[1]))
    // It continued from the metadata c1 kept in NATS KV.
    expect(c2.stdout()).toMatch(new RegExp(`c2: leading cluster \\S+ \\(term \\d+\\); continuing ${name}`))
    expect(terms[1]).toBeGreaterThan(terms[0]!)
    expectExactWordCounts(out, expected)
    c2.kill('SIGTERM')
  }, 180_000)

  it('refuses a worker whose pipeline differs, with a clear error on both sides', async () => {
    const dir = tempDir()
    const cluster = `r${randomUUID().slice(0, 8)}`
    const name = `refuse-${randomUUID().slice(0, 8)}`
    const kafkaUrl = `kafka://${kafka.url}`
    const coordinator = startWeir(['coordinator', '--bus', nats.url, '--cluster', cluster, '--settle-ms', '200'], { env: { WEIR_LOG_LEVEL: 'warn' } })
    onTestFinished(() => void coordinator.child.kill('SIGKILL'))
    let said = ''
    coordinator.child.stdout!.on('data', (d: Buffer) => (said += d.toString()))
    for (let i = 0; i < 100 && !said.includes('leading cluster'); i++) await sleep(100)
    const first = start(['worker', 'examples/wordcount.ts', '--pipe', kafkaUrl, '--bus', nats.url, '--cluster', cluster, '--id', 'one', '--state-dir', join(dir, 'one'), '--param', `name=${name}`, '--param', 'lines=100000', '--param', 'rate=5', '--param', `out=${dir}/o1/c-{partition}.jsonl`])
    await sleep(3000)
    // Same pipeline name, another topology: a different keyBy count comes from another file.
    const other = await weir(['worker', 'test/coordinator/fixtures/wordcount-other-shape.ts', '--pipe', kafkaUrl, '--bus', nats.url, '--cluster', cluster, '--id', 'two', '--state-dir', join(dir, 'two'), '--param', `name=${name}`], { env: { WEIR_LOG_LEVEL: 'warn' } })
    expect(other.code, other.stdout + other.stderr).toBe(1)
    expect(other.stderr).toMatch(/WEIR_WORKER_REFUSED/)
    expect(other.stderr).toMatch(/different topology of pipeline/)
    // What differs, and the way to change a topology: a savepoint, or a new pipeline name.
    expect(other.stderr).toContain("This pipeline file differs from the cluster's: stage 'count' has 7 partitions, the cluster's 4")
    expect(other.stderr).toMatch(/weir savepoint create.*--from-savepoint/)
    expect(other.stderr).toMatch(/under a new pipeline name/)
    // Refused before it touched anything: no topics ensured, no state dir recorded.
    expect(existsSync(join(dir, 'two', 'topology.json'))).toBe(false)
    first.kill('SIGTERM')
    coordinator.child.kill('SIGTERM')
    const c = await coordinator.done
    expect(c.stderr).toMatch(/worker runs a different pipeline topology; refused/)
  }, 120_000)
})
