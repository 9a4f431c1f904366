/**
 * Real services for integration tests (started by `scripts/services.sh up`). A test file
 * asks for a service at its top level and skips when it is not there, unless
 * WEIR_REQUIRE_SERVICES=1 (set by .ci/run): then a missing service fails the run.
 *
 * @example
 * const kafka = await requireService('kafka')
 * describe.skipIf(!kafka.available)('on Kafka', () => { ... kafka.url ... })
 */
import { connect } from 'node:net'

export type ServiceName = 'kafka' | 'nats' | 'postgres' | 'redis' | 'mariadb'

/** Where each service listens; the environment variable overrides the default. */
export const services: Record<ServiceName, { env: string; url: string }> = {
  kafka: { env: 'WEIR_KAFKA_BROKERS', url: '127.0.0.1:9092' },
  nats: { env: 'WEIR_NATS_URL', url: 'nats://127.0.0.1:4222' },
  postgres: { env: 'WEIR_POSTGRES_URL', url: 'postgres://weir:weir@127.0.0.1:5432/weir' },
  redis: { env: 'WEIR_REDIS_URL', url: 'redis://127.0.0.1:6379' },
  mariadb: { env: 'WEIR_MARIADB_URL', url: 'mysql://weir:weir@127.0.0.1:3306/weir' },
}

export function serviceUrl(name: ServiceName): string {
  return process.env[services[name].env] ?? services[name].url
}

function hostPort(url: string): { host: string; port: number } {
  const first = url.split(',')[0]!
  const u = new URL(first.includes('://') ? first : `tcp://${first}`)
  return { host: u.hostname, port: Number(u.port) }
}

/** True when something accepts TCP connections where the service should listen. */
export function reachable(url: string, timeoutMs = 1000): Promise<boolean> {
  const { host, port } = hostPort(url)
  return new Promise((resolve) => {
    const socket = connect({ host, port })
    const done = (ok: boolean): void => {
      socket.destroy()
      resolve(ok)
    }
    socket.setTimeout(timeoutMs, () => done(false))
    socket.once('connect', () => done(true))
    socket.once('error', () => done(false))
  })
}

export interface ServiceHandle {
  available: boolean
  url: string
}

/**
 * Checks that a service is reachable. Missing: throws under WEIR_REQUIRE_SERVICES=1,
 * otherwise prints a line naming the service and returns `available: false`.
 */
export async function requireService(name: ServiceName): Promise<ServiceHandle> {
  const url = serviceUrl(name)
  // A busy machine (a broker in GC, many test files starting at once) can miss one connect.
  let available = false
  for (let attempt = 0; attempt < 5 && !available; attempt++) {
    if (attempt > 0) await new Promise((r) => setTimeout(r, 500))
    available = await reachable(url, 2000)
  }
  if (!available) {
    const message = `${name} is not reachable at ${url} (${services[name].env}); start it with scripts/services.sh up`
    if (process.env.WEIR_REQUIRE_SERVICES === '1') throw new Error(`WEIR_REQUIRE_SERVICES=1: ${message}`)
    console.warn(`skipping tests that need ${name}: ${message}`)
  }
  return { available, url }
}
