/**
 * A weir cluster on a NATS server with authorization: the documented per-role permissions of
 * deploy/nats/weir-auth.conf, cluster `prod`, on a private nats-server. Every command given
 * wrong credentials exits 1 naming the server, never the password; with the right ones a
 * coordinator and a worker on Kafka run the word count to its exact output, `weir status`
 * with the monitor's credentials sees them, `weir actor clear` with the operator's gets the
 * leader's answer, and an assignment published with a worker's credentials is refused by
 * the server and changes nothing.
 */
import { randomUUID } from 'node:crypto'
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { connect, type NatsConnection } from '@nats-io/transport-node'
import { beforeAll, describe, expect, it, onTestFinished } from 'vitest'
import { subjects } from '../../runtime/control/bus.ts'
import { assignmentMessage, workerHeartbeat } from '../../runtime/control/messages.ts'
import { requireNatsServerBinary, startNatsServer, WEIR_AUTH_CONF, type NatsServer } from '../support/nats-server.ts'
import { requireService } from '../support/services.ts'
import { expectExactWordCounts, finalCounts, sleep, startWeir, tempDirs, until, weir, wordcountReference } from '../support/weir-cli.ts'

const kafka = await requireService('kafka')
const installed = requireNatsServerBinary()
const tempDir = tempDirs('weir-cli-cluster-auth-')
const PASSWORDS = { WEIR_COORDINATOR_PASSWORD: `c-${randomUUID()}`, WEIR_WORKER_PASSWORD: `w-${randomUUID()}`, WEIR_MONITOR_PASSWORD: `m-${randomUUID()}`, WEIR_OPERATOR_PASSWORD: `o-${randomUUID()}` }
const role = (user: string, password: string): Record<string, string> => ({ WEIR_NATS_USER: user, WEIR_NATS_PASSWORD: password })
const COORDINATOR = role('weir-coordinator', PASSWORDS.WEIR_COORDINATOR_PASSWORD)
const WORKER = role('weir-worker', PASSWORDS.WEIR_WORKER_PASSWORD)
const MONITOR = role('weir-monitor', PASSWORDS.WEIR_MONITOR_PASSWORD)
const OPERATOR = role('weir-operator', PASSWORDS.WEIR_OPERATOR_PASSWORD)

function json(m: { json(): unknown }): unknown {
  try {
    return m.json()
  } catch {
    return undefined
  }
}

describe.skipIf(!installed || !kafka.available)('a cluster on NATS with per-role credentials', () => {
  let server: NatsServer
  beforeAll(async () => {
    server = await startNatsServer({ include: { file: WEIR_AUTH_CONF, env: PASSWORDS } })
  })

  it('every command exits 1 on wrong credentials, naming the server and not the password', async () => {
    const dir = tempDir()
    const wrong = role('weir-worker', 'wrong-password-123')
    const commands: string[][] = [
      ['coordinator', '--bus', server.url, '--cluster', 'prod'],
      ['worker', 'examples/wordcount.ts', '--pipe', `kafka://${kafka.url}`, '--bus', server.url, '--cluster', 'prod', '--state-dir', join(dir, 'w')],
      ['monitor', '--bus', server.url, '--cluster', 'prod', '--port', '0'],
      ['status', '--bus', server.url, '--cluster', 'prod'],
      ['run', 'examples/wordcount.ts', '--bus', server.url, '--cluster', 'prod', '--data-dir', join(dir, 'run'), '-q'],
    ]
    const results = await Promise.all(commands.map((args) => weir(args, { env: wrong })))
    results.forEach((r, i) => {
      const what = `${commands[i]![0]}: ${r.stderr}`
      expect(r.code, what).toBe(1)
      expect(r.stderr, what).toContain(`NATS at ${server.url} refused user 'weir-worker' (WEIR_NATS_USER): Authorization Violation [WEIR_BUS_UNAUTHORIZED]`)
      expect(r.stderr + r.stdout, what).not.toContain('wrong-password-123')
    })
    // Credentials in the URL are not printed either.
    const inUrl = await weir(['status', '--bus', server.url.replace('nats://', 'nats://weir-monitor:wrong-password-456@'), '--cluster', 'prod'])
    expect(inUrl.code, inUrl.stderr).toBe(1)
    expect(inUrl.stderr).toContain(`NATS at ${server.url} refused user 'weir-monitor' (--bus)`)
    expect(inUrl.stderr).not.toContain('wrong-password-456')
  }, 120_000)

  it('runs the word count exactly with the right credentials; an assignment published with a worker credential is refused and changes nothing', async () => {
    const dir = tempDir()
    // 20 s of input at 30 lines/s: the worker must still run (and heartbeat) after the status, clear and forged-assignment steps.
    const LINES = 600
    const expected = await wordcountReference(dir, LINES)
    const name = `auth-${randomUUID().slice(0, 8)}`
    const out = join(dir, 'out')
    const coordinator = startWeir(['coordinator', '--bus', server.url, '--cluster', 'prod', '--epoch-ms', '300', '--worker-timeout-ms', '3000', '--settle-ms', '300'], { env: { ...COORDINATOR, WEIR_LOG_LEVEL: 'warn' } })
    const worker = startWeir(['worker', 'examples/wordcount.ts', '--pipe', `kafka://${kafka.url}`, '--bus', server.url, '--cluster', 'prod', '--id', 'a', '--state-dir', join(dir, 'a'),
      '--epoch-ms', '300', '--heartbeat-ms', '250', '--param', `name=${name}`, '--param', `lines=${LINES}`, '--param', 'rate=30', '--param', `out=${out}/c-{partition}.jsonl`], { env: { ...WORKER, WEIR_LOG_LEVEL: 'warn' } })
    onTestFinished(() => {
      coordinator.child.kill('SIGKILL')
      worker.child.kill('SIGKILL')
    })

    // Observers with the roles' own credentials: a worker's may hear assignments, a coordinator's heartbeats.
    const connections: NatsConnection[] = []
    onTestFinished(async () => {
      await Promise.all(connections.map((c) => c.close()))
    })
    const asWorker = await connect({ servers: server.url, user: 'weir-worker', pass: PASSWORDS.WEIR_WORKER_PASSWORD })
    const asCoordinator = await connect({ servers: server.url, user: 'weir-coordinator', pass: PASSWORDS.WEIR_COORDINATOR_PASSWORD })
    connections.push(asWorker, asCoordinator)
    const generations: number[] = []
    asWorker.subscribe(subjects.assignment('prod', name), { callback: (_e, m) => {
      const a = assignmentMessage.safeParse(json(m))
      if (a.success) generations.push(a.data.generation)
    } })
    const heartbeats: Array<{ generation: number; actors: number }> = []
    asCoordinator.subscribe(subjects.workerHeartbeat('prod', name), { callback: (_e, m) => {
      const hb = workerHeartbeat.safeParse(json(m))
      if (hb.success) heartbeats.push({ generation: hb.data.generation, actors: hb.data.actors.length })
    } })
    await until(() => heartbeats.some((h) => h.actors > 0) && generations.length > 0, 60_000, 'the worker runs its actors')

    // The monitor's credentials see the running worker.
    const status = await weir(['status', '--bus', server.url, '--cluster', 'prod', '--json'], { env: MONITOR })
    expect(status.code, status.stderr).toBe(0)
    expect((JSON.parse(status.stdout) as { pipelines: Array<{ pipeline: string; workers: Array<{ worker: string }> }> }).pipelines.find((p) => p.pipeline === name)?.workers.map((w) => w.worker)).toEqual(['a'])

    // The operator's credentials reach the leader and hear its answer (nothing to clear here).
    const clear = await weir(['actor', 'clear', name, 'count/0', '--bus', server.url, '--cluster', 'prod'], { env: OPERATOR })
    expect(clear.code, clear.stderr).toBe(0)
    expect(clear.stdout).toContain(`count/0 of pipeline ${name} (cluster prod) has no recorded failure; nothing to clear`)

    // A worker credential publishes an assignment that would take every actor away: the server refuses it.
    const forger = await connect({ servers: server.url, user: 'weir-worker', pass: PASSWORDS.WEIR_WORKER_PASSWORD })
    connections.push(forger)
    const refusals: string[] = []
    void (async () => {
      for await (const s of forger.status()) if (s.type === 'error') refusals.push(`${s.error.name}: ${s.error.message}`)
    })()
    const before = { assigned: Math.max(...generations), running: heartbeats.at(-1)!.generation }
    forger.publish(subjects.assignment('prod', name), JSON.stringify({ v: 1, generation: 9_000_000_000, actors: { 'lines/0': 'nobody', 'lines/1': 'nobody' } }))
    await forger.flush()
    await until(() => refusals.length > 0, 10_000, 'the server refuses the forged assignment')
    expect(refusals[0]).toBe(`PermissionViolationError: Permissions Violation for Publish to "${subjects.assignment('prod', name)}"`)
    const seen = heartbeats.length
    await until(() => heartbeats.length >= seen + 4, 10_000, 'more heartbeats after the forged assignment')
    expect(Math.max(...generations), 'no assignment of the forged generation reached anyone').toBe(before.assigned)
    expect(heartbeats.slice(seen).every((h) => h.generation === before.running && h.actors > 0), `the worker kept its generation ${before.running} and its actors: ${JSON.stringify(heartbeats.slice(seen))}`).toBe(true)

    const w = await Promise.race([worker.done, sleep(90_000).then(() => undefined)])
    expect(w, 'the worker finished within 90 s').toBeDefined()
    expect(w!.code, w!.stderr).toBe(0)
    expectExactWordCounts(out, expected)
    coordinator.child.kill('SIGTERM')
    const c = await coordinator.done
    expect(c.stdout).toMatch(/leading cluster prod \(term \d+\)/)
    expect(c.stdout).toContain(`on ${server.url} `)
    expect(c.stderr).not.toMatch(/Permissions Violation/)
    expect(w!.stderr).not.toMatch(/Permissions Violation/)
  }, 240_000)

  it('weir run --bus takes a token from --nats-token-file, weir status one in the URL, and neither prints it', async () => {
    const token = `t${randomUUID().replaceAll('-', '')}`
    const tokenServer = await startNatsServer({ authorization: `token: "${token}"` })
    const dir = tempDir()
    writeFileSync(join(dir, 'token'), `${token}\n`)
    const cluster = `t${randomUUID().slice(0, 8)}`
    // 800 lines at 100/s: the run lasts about 8 s, so that a weir status started a few times
    // over on a loaded machine (each a process start and a 1.5 s wait) hears it before it ends.
    const lines = 800
    const run = startWeir(['run', 'examples/wordcount.ts', '--bus', tokenServer.url, '--nats-token-file', join(dir, 'token'), '--cluster', cluster, '--data-dir', join(dir, 'data'),
      '--param', `lines=${lines}`, '--param', 'rate=100', '--param', `out=${dir}/out/c-{partition}.jsonl`, '-q'])
    onTestFinished(() => void run.child.kill('SIGKILL'))
    const status = await until(async () => {
      const r = await weir(['status', '--bus', tokenServer.url.replace('nats://', `nats://${token}@`), '--cluster', cluster, '--wait-ms', '1500'])
      return r.code === 0 ? r : undefined
    }, 30_000, 'weir status hears the run')
    expect(status.stdout).toContain(`weir status: nats://***@127.0.0.1:${tokenServer.port}, cluster ${cluster}`)
    expect(status.stdout + status.stderr).not.toContain(token)
    const r = await run.done
    expect(r.code, r.stderr).toBe(0)
    expect(r.stdout).toMatch(/outcome:\s+finished/)
    expect(r.stdout + r.stderr).not.toContain(token)
    expect(finalCounts(join(dir, 'out'))).toEqual(await wordcountReference(tempDir(), lines))
  }, 120_000)
})
