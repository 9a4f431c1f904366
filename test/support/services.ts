/**
 * Real services for integration tests (started by `scripts/services.sh up`, which the global
 * setup test/support/services-setup.ts runs for the services a run's test files ask for). A
 * test file asks for a service at its top level and skips when it is not there, unless
 * WEIR_REQUIRE_SERVICES=1 (set by .ci/run): then a missing service fails the run. The setup
 * ends the run with one line naming each missing service and the tests skipped for it: a
 * test file found asking for one counts every test it skipped.
 *
 * @example
 * const kafka = await requireService('kafka')
 * describe.skipIf(!kafka.available)('on Kafka', () => { ... kafka.url ... })
 */
import { appendFileSync } from 'node:fs'
import { join } from 'node:path'
import { expect, inject } from 'vitest'
import { reachable, serviceUrl, services, type MissingService, type ServiceName } from './service-urls.ts'

export { reachable, serviceNames, services, serviceUrl, type MissingService, type ServiceName, type ServicesRun } from './service-urls.ts'

export interface ServiceHandle {
  available: boolean
  url: string
}

/**
 * Checks that a service is reachable. Missing: throws under WEIR_REQUIRE_SERVICES=1,
 * otherwise records it for the run's closing line (or, without the global setup, prints a
 * line naming the service) and returns `available: false`.
 */
export async function requireService(name: ServiceName): Promise<ServiceHandle> {
  const url = serviceUrl(name)
  const run = inject('weirServices')
  // A busy machine (a broker in GC, many test files starting at once) can miss one connect;
  // a service the setup could not start is not worth waiting for.
  const attempts = run?.notStarted[name] === undefined ? 5 : 1
  let available = false
  for (let attempt = 0; attempt < attempts && !available; attempt++) {
    if (attempt > 0) await new Promise((r) => setTimeout(r, 500))
    available = await reachable(url, 2000)
  }
  if (!available) {
    const message = `${name} is not reachable at ${url} (${services[name].env}); start it with scripts/services.sh up`
    if (process.env.WEIR_REQUIRE_SERVICES === '1') throw new Error(`WEIR_REQUIRE_SERVICES=1: ${message}`)
    const file = expect.getState().testPath
    if (run !== undefined && file !== undefined) {
      const line: MissingService = { file, service: name }
      appendFileSync(join(run.dir, 'missing.jsonl'), `${JSON.stringify(line)}\n`)
    } else {
      console.warn(`skipping tests that need ${name}: ${message}`)
    }
  }
  return { available, url }
}
