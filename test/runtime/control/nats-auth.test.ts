/**
 * The NATS bus and the coordinator's KV against private nats-servers with authorization
 * (runtime/control/nats/): the documented per-role permissions of deploy/nats/weir-auth.conf,
 * a token, an nkey over mutual TLS. Refused credentials are a BusAuthError naming the server
 * and never the secret; a publish the server refuses is dropped and logged; a worker
 * credential can neither assign nor open the lease.
 */
import { randomUUID } from 'node:crypto'
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { nkeys } from '@nats-io/transport-node'
import { pino } from 'pino'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { LeaderLease } from '../../../coordinator/leader-lease.ts'
import { subjects, type ControlBus } from '../../../runtime/control/bus.ts'
import { NatsBus } from '../../../runtime/control/nats/nats-bus.ts'
import { resolveNatsTarget, type NatsTarget } from '../../../runtime/control/nats/nats-connection.ts'
import { openBus } from '../../../runtime/open-bus.ts'
import { makeTlsFiles, operatorMode, requireNatsServerBinary, startNatsServer, WEIR_AUTH_CONF, type NatsServer } from '../../support/nats-server.ts'
import { tempDirs, until } from '../../support/weir-cli.ts'

const installed = requireNatsServerBinary()
const tempDir = tempDirs('weir-nats-auth-')
const PASSWORDS = { WEIR_COORDINATOR_PASSWORD: `c-${randomUUID()}`, WEIR_WORKER_PASSWORD: `w-${randomUUID()}`, WEIR_MONITOR_PASSWORD: `m-${randomUUID()}`, WEIR_OPERATOR_PASSWORD: `o-${randomUUID()}` }

/** A logger whose lines land in `lines`, parsed. */
function capture(): { log: pino.Logger; lines: Array<Record<string, unknown>> } {
  const lines: Array<Record<string, unknown>> = []
  const log = pino({ level: 'debug' }, { write: (line: string) => void lines.push(JSON.parse(line) as Record<string, unknown>) })
  return { log, lines }
}

function as(server: NatsServer, user: string, password: string): NatsTarget {
  return resolveNatsTarget({ url: server.url, env: { WEIR_NATS_USER: user, WEIR_NATS_PASSWORD: password } })
}

async function rejection(p: Promise<unknown>): Promise<Error & { code?: string; retriable?: boolean }> {
  try {
    await p
  } catch (err) {
    return err as Error & { code?: string; retriable?: boolean }
  }
  throw new Error('expected a rejection')
}

describe.skipIf(!installed)('NATS with the documented per-role permissions (deploy/nats/weir-auth.conf)', () => {
  let server: NatsServer
  const open: ControlBus[] = []
  beforeAll(async () => {
    server = await startNatsServer({ include: { file: WEIR_AUTH_CONF, env: PASSWORDS } })
  })
  afterAll(async () => {
    await Promise.all(open.map((b) => b.close()))
  })

  it('refuses a wrong password or no credentials with a BusAuthError naming the server, never the password', async () => {
    const wrong = await rejection(NatsBus.connect({ ...as(server, 'weir-worker', 'not-the-password'), connectTimeoutMs: 3000 }))
    expect(wrong).toMatchObject({ code: 'WEIR_BUS_UNAUTHORIZED', retriable: false })
    expect(wrong.message).toContain(server.url)
    expect(wrong.message).toContain("user 'weir-worker' (WEIR_NATS_USER)")
    expect(wrong.message).toMatch(/Authorization Violation/)
    expect(wrong.message).not.toContain('not-the-password')
    // In the URL, the same: the message names the server without the credentials.
    const inUrl = await rejection(openBus(server.url.replace('nats://', 'nats://weir-worker:hunter2@')))
    expect(inUrl).toMatchObject({ code: 'WEIR_BUS_UNAUTHORIZED' })
    expect(inUrl.message).toContain(server.url)
    expect(inUrl.message).not.toContain('hunter2')
    expect(await rejection(openBus(server.url))).toMatchObject({ code: 'WEIR_BUS_UNAUTHORIZED', message: expect.stringContaining('no credentials') })
    // Credentials in a server URL given straight to the adapter would be dropped by nats.js: refused.
    expect(await rejection(NatsBus.connect({ servers: [server.url.replace('nats://', 'nats://weir-worker:x@')] }))).toMatchObject({ code: 'WEIR_CONFIG_INVALID', message: expect.stringMatching(/^bus\.servers\.0: give credentials in `credentials`/) })
  })

  it('a worker credential cannot publish an assignment: the server refuses it, the bus logs it, no subscriber gets it', async () => {
    const prefix = `p${randomUUID().slice(0, 8)}`
    const assignment = subjects.assignment('prod', prefix)
    const worker = capture()
    const workerBus = await NatsBus.connect({ ...as(server, 'weir-worker', PASSWORDS.WEIR_WORKER_PASSWORD), log: worker.log })
    const coordinatorBus = await NatsBus.connect(as(server, 'weir-coordinator', PASSWORDS.WEIR_COORDINATOR_PASSWORD))
    open.push(workerBus, coordinatorBus)
    // Workers may listen to assignments: this one hears every assignment that gets through.
    const heard: unknown[] = []
    workerBus.subscribe(assignment, (m) => heard.push(m))
    await new Promise((r) => setTimeout(r, 200))

    workerBus.publish(assignment, { v: 1, generation: 9_000_000_000, actors: {} })
    await until(() => worker.lines.find((l) => l.msg === 'NATS refused a publish: the credentials lack permission to publish on this subject'), 5000, 'the refused publish logged')
    expect(worker.lines.find((l) => String(l.msg).startsWith('NATS refused a publish'))).toMatchObject({ level: 50, subject: assignment, refused: 1 })
    expect(workerBus.droppedMessages).toBe(1)
    expect(server.log()).toMatch(new RegExp(`Publish Violation - User "weir-worker", Subject "${assignment}"`))

    // The coordinator's assignment does arrive: the subscription works, the forged one never came.
    coordinatorBus.publish(assignment, { v: 1, generation: 7, actors: {} })
    await until(() => heard.length > 0, 5000, 'the coordinator\'s assignment heard')
    await new Promise((r) => setTimeout(r, 200))
    expect(heard).toEqual([{ v: 1, generation: 7, actors: {} }])
  })

  it('a worker credential may not subscribe to what coordinators hear; the refusal is logged', async () => {
    const worker = capture()
    const bus = await NatsBus.connect({ ...as(server, 'weir-worker', PASSWORDS.WEIR_WORKER_PASSWORD), log: worker.log })
    open.push(bus)
    bus.subscribe(subjects.workerHello('prod', '*'), () => undefined)
    await until(() => worker.lines.find((l) => String(l.msg).startsWith('NATS refused this subscription')), 5000, 'the refused subscription logged')
  })

  it('only the coordinator credential opens the lease bucket; a worker credential is refused for good', async () => {
    const workerTry = await rejection(LeaderLease.open({ ...as(server, 'weir-worker', PASSWORDS.WEIR_WORKER_PASSWORD), cluster: 'prod', holder: 'w', connectTimeoutMs: 3000 }))
    expect(workerTry).toMatchObject({ code: 'WEIR_KV_UNAVAILABLE', retriable: false })
    expect(workerTry.message).toMatch(/Permissions Violation/)
    expect(workerTry.message).not.toContain(PASSWORDS.WEIR_WORKER_PASSWORD)
    const wrong = await rejection(LeaderLease.open({ ...as(server, 'weir-coordinator', 'nope'), cluster: 'prod', holder: 'c' }))
    expect(wrong).toMatchObject({ code: 'WEIR_BUS_UNAUTHORIZED', message: expect.stringContaining(server.url) })
    const lease = await LeaderLease.open({ ...as(server, 'weir-coordinator', PASSWORDS.WEIR_COORDINATOR_PASSWORD), cluster: 'prod', holder: 'c1', ttlMs: 1000 })
    try {
      await lease.start()
      expect(lease.isLeader).toBe(true)
      expect(lease.term).toBeGreaterThan(0)
    } finally {
      await lease.release()
    }
  })
})

describe.skipIf(!installed)('NATS with a token', () => {
  it('connects with WEIR_NATS_TOKEN or a token file and refuses a wrong one', async () => {
    const token = randomUUID()
    const server = await startNatsServer({ authorization: `token: "${token}"` })
    const dir = tempDir()
    writeFileSync(join(dir, 'token'), `${token}\n`)
    const viaEnv = await openBus(resolveNatsTarget({ url: server.url, env: { WEIR_NATS_TOKEN: token } }))
    const viaFile = await openBus(resolveNatsTarget({ url: server.url, options: { tokenFile: join(dir, 'token') } }))
    try {
      const got: unknown[] = []
      viaFile.subscribe('t.x', (m) => got.push(m))
      await new Promise((r) => setTimeout(r, 100))
      viaEnv.publish('t.x', { v: 1 })
      await until(() => got.length === 1, 5000, 'a message between the two token connections')
    } finally {
      await viaEnv.close()
      await viaFile.close()
    }
    const wrong = await rejection(openBus(resolveNatsTarget({ url: server.url, env: { WEIR_NATS_TOKEN: 'wrong-token' } })))
    expect(wrong).toMatchObject({ code: 'WEIR_BUS_UNAUTHORIZED', message: expect.stringContaining('a token (WEIR_NATS_TOKEN)') })
    expect(wrong.message).not.toContain('wrong-token')
  })
})

describe.skipIf(!installed)('NATS with an nkey over mutual TLS', () => {
  it('connects with tls://, the CA, a client certificate and an nkey seed file; refuses an untrusted server certificate', async () => {
    const dir = tempDir()
    const files = makeTlsFiles(dir)
    const user = nkeys.createUser()
    const seedFile = join(dir, 'worker.nk')
    writeFileSync(seedFile, new TextDecoder().decode(user.getSeed()))
    const server = await startNatsServer({
      authorization: `users: [{ nkey: "${user.getPublicKey()}" }]`,
      tls: `cert_file: "${files.serverCert}"\nkey_file: "${files.serverKey}"\nca_file: "${files.ca}"\nverify: true`,
    })
    const url = server.url.replace('nats://', 'tls://')
    const bus = await openBus(resolveNatsTarget({ url, env: { WEIR_NATS_NKEY: seedFile, WEIR_NATS_CA: files.ca, WEIR_NATS_CERT: files.clientCert, WEIR_NATS_KEY: files.clientKey } }))
    try {
      const got: unknown[] = []
      bus.subscribe('t.tls', (m) => got.push(m))
      await new Promise((r) => setTimeout(r, 100))
      bus.publish('t.tls', { v: 1 })
      await until(() => got.length === 1, 5000, 'a message over TLS')
    } finally {
      await bus.close()
    }
    // Without our CA the server's certificate is not trusted: a configuration error, not an outage.
    const untrusted = await rejection(openBus(resolveNatsTarget({ url, env: { WEIR_NATS_NKEY: seedFile, WEIR_NATS_CERT: files.clientCert, WEIR_NATS_KEY: files.clientKey } })))
    expect(untrusted).toMatchObject({ code: 'WEIR_BUS_UNAUTHORIZED', retriable: false })
    expect(untrusted.message).toContain(server.url)
    // Another user's seed: refused like a wrong password.
    const other = join(dir, 'other.nk')
    writeFileSync(other, new TextDecoder().decode(nkeys.createUser().getSeed()))
    const refused = await rejection(openBus(resolveNatsTarget({ url, env: { WEIR_NATS_NKEY: other, WEIR_NATS_CA: files.ca, WEIR_NATS_CERT: files.clientCert, WEIR_NATS_KEY: files.clientKey } })))
    expect(refused).toMatchObject({ code: 'WEIR_BUS_UNAUTHORIZED', message: expect.stringContaining(`the nkey seed in ${other}`) })
  })
})

describe.skipIf(!installed)('NATS in operator mode with a credentials file', () => {
  it('connects with WEIR_NATS_CREDS, keeps to the JWT\'s permissions, and refuses a user of an account the server does not trust', async () => {
    const dir = tempDir()
    const operator = operatorMode()
    const server = await startNatsServer({ raw: operator.raw, jetstream: false })
    const workerCreds = operator.userCreds(dir, 'weir-worker', { publish: ['weir.prod.*.worker-hello'], subscribe: ['weir.prod.*.assignment'] })
    const coordinatorCreds = operator.userCreds(dir, 'weir-coordinator', { publish: ['weir.prod.*.assignment'], subscribe: ['weir.prod.*.worker-hello'] })
    const worker = capture()
    const workerBus = await NatsBus.connect({ ...resolveNatsTarget({ url: server.url, env: { WEIR_NATS_CREDS: workerCreds } }), log: worker.log })
    const coordinatorBus = await openBus(resolveNatsTarget({ url: server.url, options: { creds: coordinatorCreds } }))
    try {
      const hellos: unknown[] = []
      const assignments: unknown[] = []
      coordinatorBus.subscribe(subjects.workerHello('prod', 'p'), (m) => hellos.push(m))
      workerBus.subscribe(subjects.assignment('prod', 'p'), (m) => assignments.push(m))
      await new Promise((r) => setTimeout(r, 200))
      workerBus.publish(subjects.workerHello('prod', 'p'), { v: 1 })
      workerBus.publish(subjects.assignment('prod', 'p'), { v: 1, forged: true })
      coordinatorBus.publish(subjects.assignment('prod', 'p'), { v: 1 })
      await until(() => hellos.length === 1 && assignments.length === 1, 5000, 'the allowed messages delivered')
      await until(() => worker.lines.find((l) => String(l.msg).startsWith('NATS refused a publish')), 5000, 'the worker\'s assignment refused')
      expect(assignments).toEqual([{ v: 1 }])
    } finally {
      await workerBus.close()
      await coordinatorBus.close()
    }
    const untrusted = operator.userCreds(dir, 'stranger', { publish: ['>'], subscribe: ['>'] }, { untrusted: true })
    const refused = await rejection(openBus(resolveNatsTarget({ url: server.url, env: { WEIR_NATS_CREDS: untrusted } })))
    expect(refused).toMatchObject({ code: 'WEIR_BUS_UNAUTHORIZED', message: expect.stringContaining(`refused the credentials file ${untrusted} (WEIR_NATS_CREDS)`) })
  })
})

