/**
 * The services of the integration tests, where they listen and how to tell one answers: what
 * test/support/services.ts (in test files) and the global setup test/support/services-setup.ts
 * (in vitest's own process, where `vitest` cannot be imported) share.
 */
import { connect } from 'node:net'

export type ServiceName = 'kafka' | 'nats' | 'postgres' | 'redis' | 'mariadb' | 's3' | 'kafka2' | 'nats2'

export const serviceNames: readonly ServiceName[] = ['kafka', 'nats', 'postgres', 'redis', 'mariadb', 's3', 'kafka2', 'nats2']

/** What the global setup hands every test file (vitest's `provide`/`inject`). */
export interface ServicesRun {
  /** The run's folder: requireService appends a line to `missing.jsonl` per service a file misses. */
  dir: string
  /** Why the setup did not start a service, by name; a service it started or found running is absent. */
  notStarted: Partial<Record<ServiceName, string>>
}

// Types only (nothing is imported at run time): what `provide`/`inject` carry.
declare module 'vitest' {
  export interface ProvidedContext {
    weirServices: ServicesRun | undefined
  }
}

/** A line of `missing.jsonl`: a test file that asked for a service and did not find it. */
export interface MissingService {
  file: string
  service: ServiceName
}

/** Where each service listens; the environment variable overrides the default. */
export const services: Record<ServiceName, { env: string; url: string }> = {
  kafka: { env: 'WEIR_KAFKA_BROKERS', url: '127.0.0.1:9092' },
  nats: { env: 'WEIR_NATS_URL', url: 'nats://127.0.0.1:4222' },
  postgres: { env: 'WEIR_POSTGRES_URL', url: 'postgres://weir:weir@127.0.0.1:5432/weir' },
  redis: { env: 'WEIR_REDIS_URL', url: 'redis://127.0.0.1:6379' },
  mariadb: { env: 'WEIR_MARIADB_URL', url: 'mysql://weir:weir@127.0.0.1:3306/weir' },
  // versitygw: credentials in WEIR_S3_ACCESS_KEY / WEIR_S3_SECRET_KEY (see test/support/s3.ts).
  s3: { env: 'WEIR_S3_URL', url: 'http://127.0.0.1:9000' },
  // A second site, for moving a pipeline between clusters (test/e2e/savepoint-migration.test.ts).
  kafka2: { env: 'WEIR_KAFKA2_BROKERS', url: '127.0.0.1:19092' },
  nats2: { env: 'WEIR_NATS2_URL', url: 'nats://127.0.0.1:14222' },
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
