/**
 * Bad input to `weir coordinator` and `weir worker` (cli/cluster.ts): invalid options are
 * refused naming the field before anything connects (exit 2); an unreachable NATS fails
 * clearly, naming it (exit 1); malformed messages on every control subject of a running
 * cluster are logged with their subject and dropped, and change nothing: no new
 * assignment generation, the run finishes, the output is exact.
 */
import { randomUUID } from 'node:crypto'
import { join } from 'node:path'
import { connect } from '@nats-io/transport-node'
import { describe, expect, it, onTestFinished } from 'vitest'
import { assignmentMessage, workerHeartbeat } from '../../runtime/control/messages.ts'
import { subjects } from '../../runtime/control/bus.ts'
import { requireService } from '../support/services.ts'
import { expectExactWordCounts, freePort, sleep, startWeir, tempDirs, weir, wordcountReference } from '../support/weir-cli.ts'

const kafka = await requireService('kafka')
const nats = await requireService('nats')
const tempDir = tempDirs('weir-cli-cluster-')

describe('weir coordinator and weir worker refuse bad configuration', () => {
  it('names the field of an invalid option, before connecting to anything (exit 2)', async () => {
    const cases: Array<[string[], RegExp]> = [
      [['coordinator'], /--bus/],
      [['coordinator', '--bus', 'http://127.0.0.1:4222'], /--bus/],
      [['coordinator', '--bus', 'nats://127.0.0.1:4222', '--worker-timeout-ms', 'soon'], /--worker-timeout-ms/],
      [['coordinator', '--bus', 'nats://127.0.0.1:4222', '--cluster', 'a.b'], /--cluster/],
      [['worker', 'examples/wordcount.ts', '--bus', 'nats://127.0.0.1:4222'], /--pipe/],
      [['worker', 'examples/wordcount.ts', '--pipe', 'embedded', '--bus', 'nats://127.0.0.1:4222'], /--pipe/],
      [['worker', 'examples/wordcount.ts', '--pipe', 'kafka://127.0.0.1:9092'], /--bus/],
      [['worker', 'examples/wordcount.ts', '--pipe', 'kafka://127.0.0.1:9092', '--bus', 'nats://127.0.0.1:4222', '--id', 'no spaces'], /--id/],
      [['coordinator', '--bus', 'nats://127.0.0.1:4222', '--health-port', 'eighty'], /--health-port/],
      [['coordinator', '--bus', 'nats://127.0.0.1:4222', '--health-host', '0.0.0.0'], /--health-host: only with --health-port/],
      [['worker', 'examples/wordcount.ts', '--pipe', 'kafka://127.0.0.1:9092', '--bus', 'nats://127.0.0.1:4222', '--ready-max-lag', '10'], /--ready-max-lag: only with --metrics-port/],
      [['worker', 'examples/wordcount.ts', '--pipe', 'kafka://127.0.0.1:9092', '--bus', 'nats://127.0.0.1:4222', '--metrics-port', '0', '--ready-max-lag', 'lots'], /--ready-max-lag/],
    ]
    for (const [args, field] of cases) {
      const r = await weir(args)
      expect(r.code, `${args.join(' ')}: ${r.stderr}`).toBe(2)
      expect(r.stderr, args.join(' ')).toMatch(field)
    }
  }, 60_000)

  it('a coordinator or worker started against an unreachable NATS fails clearly, naming it (exit 1)', async () => {
    const url = `nats://127.0.0.1:${await freePort()}`
    const started = Date.now()
    const coordinator = await weir(['coordinator', '--bus', url, '--cluster', 'nowhere'])
    expect(coordinator.code, coordinator.stderr).toBe(1)
    expect(coordinator.stderr).toContain(url)
    const worker = await weir(['worker', 'examples/wordcount.ts', '--pipe', `kafka://${kafka.url || '127.0.0.1:9092'}`, '--bus', url, '--cluster', 'nowhere', '--state-dir', join(tempDir(), 'w')])
    expect(worker.code, worker.stderr).toBe(1)
    expect(worker.stderr).toContain(url)
    expect(Date.now() - started).toBeLessThan(40_000)
  }, 60_000)
})

describe.skipIf(!kafka.available || !nats.available)('malformed control messages', () => {
  it('are dropped with their subject and change nothing: same generation, the run finishes, exact output', async () => {
    const dir = tempDir()
    const LINES = 300
    const expected = await wordcountReference(dir, LINES)
    const cluster = `m${randomUUID().slice(0, 8)}`
    const name = `malformed-${randomUUID().slice(0, 8)}`
    const out = join(dir, 'out')
    const env = { WEIR_LOG_LEVEL: 'warn' }
    const coordinator = startWeir(['coordinator', '--bus', nats.url, '--cluster', cluster, '--epoch-ms', '300', '--worker-timeout-ms', '2000', '--settle-ms', '300'], { env })
    const worker = startWeir(['worker', 'examples/wordcount.ts', '--pipe', `kafka://${kafka.url}`, '--bus', nats.url, '--cluster', cluster, '--id', 'a', '--state-dir', join(dir, 'a'),
      '--epoch-ms', '300', '--heartbeat-ms', '250', '--param', `name=${name}`, '--param', `lines=${LINES}`, '--param', 'rate=30', '--param', `out=${out}/c-{partition}.jsonl`], { env })
    onTestFinished(() => {
      coordinator.child.kill('SIGKILL')
      worker.child.kill('SIGKILL')
    })
    const nc = await connect({ servers: nats.url })
    onTestFinished(() => nc.close())
    const generations: number[] = []
    nc.subscribe(subjects.assignment(cluster, name), {
      callback: (_err, m) => {
        let raw: unknown
        try {
          raw = m.json()
        } catch {
          return // our own garbage
        }
        const parsed = assignmentMessage.safeParse(raw)
        if (parsed.success) generations.push(parsed.data.generation)
      },
    })
    // The worker heartbeats once it runs its actors (its subscriptions are all in place by then).
    let running = false
    nc.subscribe(subjects.workerHeartbeat(cluster, name), {
      callback: (_err, m) => {
        const hb = workerHeartbeat.safeParse((() => { try { return m.json() } catch { return undefined } })())
        if (hb.success && hb.data.actors.length > 0) running = true
      },
    })
    for (let i = 0; i < 300 && !(running && generations.length > 0); i++) await sleep(100)
    expect(running && generations.length > 0, 'the worker was placed and runs its actors').toBe(true)
    await sleep(500)
    const before = Math.max(...generations)

    // Garbage on every subject: not JSON, JSON of the wrong shape, the right shape with bad values.
    const garbage = ['{not json', '[]', JSON.stringify({ v: 2 }), JSON.stringify({ v: 1, worker: '', generation: -1, actors: 'all', epoch: 0 })]
    const kinds = ['workerHello', 'workerHeartbeat', 'workerLeave', 'assignment', 'epoch', 'epochAck', 'actorFinished', 'actorReleased', 'actorFailed', 'actorClear', 'workerRefused'] as const
    for (const kind of kinds) for (const g of garbage) nc.publish(subjects[kind](cluster, name), g)
    await nc.flush()
    await sleep(1500)
    expect(Math.max(...generations), 'no new generation came of the garbage').toBe(before)

    const w = await Promise.race([worker.done, sleep(90_000).then(() => undefined)])
    if (w === undefined) {
      worker.child.kill('SIGKILL')
      const killed = await worker.done
      coordinator.child.kill('SIGKILL')
      throw new Error(`the worker did not finish within 90 s after the garbage:\n${killed.stderr.slice(-4000)}\ncoordinator:\n${(await coordinator.done).stderr.slice(-3000)}`)
    }
    expect(w.code, w.stderr).toBe(0)
    expectExactWordCounts(out, expected)
    coordinator.child.kill('SIGTERM')
    const c = await coordinator.done
    // Each side names what it dropped and where it came from.
    expect(c.stderr).toMatch(/malformed worker hello dropped/)
    expect(c.stderr).toMatch(/malformed worker heartbeat dropped/)
    expect(c.stderr).toMatch(/malformed release report dropped/)
    expect(c.stderr).toMatch(/malformed actor failure report dropped/)
    expect(c.stderr).toMatch(/malformed clear request dropped/)
    expect(c.stderr).toMatch(/malformed control message \(not JSON\) dropped/)
    expect(c.stderr).toContain(subjects.workerHello(cluster, name))
    expect(w.stderr).toMatch(/malformed assignment dropped/)
    expect(w.stderr).toMatch(/malformed epoch dropped/)
  }, 180_000)
})
