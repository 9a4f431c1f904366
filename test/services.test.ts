/**
 * The services `scripts/services.sh up` starts answer their own protocols (not just TCP),
 * with the URLs and credentials of test/support/services.ts. Skipped per service when it is
 * not running; under WEIR_REQUIRE_SERVICES=1 (CI) a missing service fails instead.
 */
import { execFile } from 'node:child_process'
import { connect } from 'node:net'
import { promisify } from 'node:util'
import { Kafka, logLevel } from 'kafkajs'
import { describe, expect, it } from 'vitest'
import { requireService } from './support/services.ts'

const run = promisify(execFile)

const kafka = await requireService('kafka')
const nats = await requireService('nats')
const postgres = await requireService('postgres')
const redis = await requireService('redis')
const mariadb = await requireService('mariadb')

/** Host and port of a service URL (`scheme://user:pass@host:port/db` or `host:port`). */
function address(url: string): URL {
  return new URL(url.includes('://') ? url : `tcp://${url}`)
}

/**
 * Opens a TCP connection, writes `request` (after the server's greeting when `greeting` is
 * set), and resolves with everything received once `done` says the answer is complete.
 */
function exchange(url: string, request: string, done: (received: string) => boolean, greeting = false): Promise<string> {
  const { hostname, port } = address(url)
  return new Promise((resolve, reject) => {
    const socket = connect({ host: hostname, port: Number(port) })
    let received = ''
    let sent = false
    const send = (): void => {
      if (!sent) socket.write(request)
      sent = true
    }
    socket.setTimeout(5000, () => {
      socket.destroy()
      reject(new Error(`no complete answer from ${url} within 5 s; got ${JSON.stringify(received)}`))
    })
    socket.once('error', reject)
    socket.once('connect', () => {
      if (!greeting) send()
    })
    socket.on('data', (chunk) => {
      received += chunk.toString('utf8')
      if (greeting) send()
      if (done(received)) {
        socket.destroy()
        resolve(received)
      }
    })
  })
}

describe.skipIf(!kafka.available)('kafka', () => {
  it('answers a kafkajs admin describeCluster with a live broker and a controller', async () => {
    const admin = new Kafka({ clientId: 'weir-services-test', brokers: kafka.url.split(','), logLevel: logLevel.NOTHING }).admin()
    await admin.connect()
    try {
      const cluster = await admin.describeCluster()
      expect(cluster.brokers.length).toBeGreaterThanOrEqual(1)
      expect(cluster.controller).not.toBeNull()
      expect(cluster.clusterId).toMatch(/^[A-Za-z0-9_-]{22}$/)
    } finally {
      await admin.disconnect()
    }
  })
})

describe.skipIf(!nats.available)('nats', () => {
  it('greets with JetStream enabled and answers PING with PONG', async () => {
    const received = await exchange(nats.url, 'CONNECT {"verbose":false,"pedantic":false}\r\nPING\r\n', (r) => r.includes('PONG\r\n'), true)
    const info = JSON.parse(/^INFO (.*)\r\n/.exec(received)![1]!) as { jetstream?: boolean }
    expect(info.jetstream).toBe(true)
    expect(received).toMatch(/\r\nPONG\r\n$/)
  })
})

describe.skipIf(!postgres.available)('postgres', () => {
  it('lets the weir user run a query in the weir database', async () => {
    const { stdout } = await run('psql', [postgres.url, '-tAc', 'select current_user, current_database(), 1'], { timeout: 10_000 })
    expect(stdout.trim()).toBe('weir|weir|1')
  })
})

describe.skipIf(!redis.available)('redis', () => {
  it('answers a RESP PING with +PONG', async () => {
    const received = await exchange(redis.url, '*1\r\n$4\r\nPING\r\n', (r) => r.endsWith('\r\n'))
    expect(received).toBe('+PONG\r\n')
  })
})

describe.skipIf(!mariadb.available)('mariadb', () => {
  it('lets the weir user run a query in the weir database', async () => {
    const u = address(mariadb.url)
    const { stdout } = await run(
      'mariadb',
      [`-h${u.hostname}`, `-P${u.port}`, `-u${decodeURIComponent(u.username)}`, `-p${decodeURIComponent(u.password)}`, '--batch', '--skip-column-names', '-e', 'select current_user(), database(), 1', u.pathname.slice(1)],
      { timeout: 10_000 },
    )
    expect(stdout.trim()).toBe('weir@%\tweir\t1')
  })
})
