/**
 * The global setup (test/support/services-setup.ts) in child `vitest run`s of the fixture files
 * in test/fixtures/services/: what it starts, and the closing line naming the services that
 * were missing with the tests skipped for each. Services it must not find answering point at
 * free ports, and what it starts lives in a private WEIR_SERVICES_DIR stopped afterwards: the
 * shared services on their default ports are only probed.
 */
import { execFile } from 'node:child_process'
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { servicesAskedForBy } from './support/services-setup.ts'
import { requireService } from './support/services.ts'
import { freePort } from './support/weir-cli.ts'

const repo = resolve(import.meta.dirname, '..')
const kafka = await requireService('kafka')
const redis = await requireService('redis')

let work: string
/** A PATH with every program of this one except `java`. */
let pathWithoutJava: string

beforeAll(() => {
  work = mkdtempSync(join(tmpdir(), 'weir-services-setup-'))
  // Searchable by the user `nobody` the check below runs as.
  chmodSync(work, 0o755)
  pathWithoutJava = join(work, 'bin')
  mkdirSync(pathWithoutJava)
  for (const dir of (process.env.PATH ?? '').split(':')) {
    if (dir === '' || !existsSync(dir)) continue
    for (const name of readdirSync(dir)) {
      if (name === 'java' || existsSync(join(pathWithoutJava, name))) continue
      symlinkSync(join(dir, name), join(pathWithoutJava, name))
    }
  }
})

afterAll(() => {
  rmSync(work, { recursive: true, force: true })
})

/** Every service on a free port, and a data dir of its own: nothing shared can answer or be touched. */
async function privateServices(dir: string): Promise<Record<string, string>> {
  return {
    WEIR_SERVICES_DIR: dir,
    WEIR_KAFKA_BROKERS: `127.0.0.1:${await freePort()}`,
    WEIR_KAFKA_CONTROLLER_PORT: String(await freePort()),
    WEIR_NATS_URL: `nats://127.0.0.1:${await freePort()}`,
    WEIR_NATS_MONITOR_PORT: String(await freePort()),
    WEIR_POSTGRES_URL: `postgres://weir:weir@127.0.0.1:${await freePort()}/weir`,
    WEIR_REDIS_URL: `redis://127.0.0.1:${await freePort()}`,
    WEIR_MARIADB_URL: `mysql://weir:weir@127.0.0.1:${await freePort()}/weir`,
    WEIR_S3_URL: `http://127.0.0.1:${await freePort()}`,
  }
}

interface Run {
  code: number
  stdout: string
  stderr: string
  ms: number
}

/** `vitest run` of the fixture config (the repository's config on the fixture files). */
function vitestRun(args: string[], env: Record<string, string | undefined>): Promise<Run> {
  const childEnv: Record<string, string | undefined> = {}
  // Not the variables vitest sets for this worker, nor the ones the child is told afresh.
  for (const [key, value] of Object.entries(process.env)) {
    if (!/^(VITEST|TEST$|WEIR_SERVICES|WEIR_REQUIRE_SERVICES|JAVA_HOME$)/.test(key)) childEnv[key] = value
  }
  const started = Date.now()
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      [join(repo, 'node_modules/vitest/vitest.mjs'), 'run', '--config', 'test/fixtures/services/vitest.config.ts', ...args],
      { cwd: repo, env: { ...childEnv, NO_COLOR: '1', FORCE_COLOR: '0', ...env }, timeout: 50_000 },
      (error, stdout, stderr) => {
        const code = error === null ? 0 : typeof error.code === 'number' ? error.code : 1
        resolve({ code, stdout, stderr, ms: Date.now() - started })
      },
    )
  })
}

function lastLine(text: string): string {
  return text.trimEnd().split('\n').at(-1) ?? ''
}

/** `services.sh down` of a private data dir: stops only what that dir's pid files name. */
function privateDown(env: Record<string, string>): Promise<void> {
  return new Promise((resolve, reject) => {
    execFile('bash', [join(repo, 'scripts/services.sh'), 'down'], { env: { ...process.env, ...env }, timeout: 60_000 }, (error, _out, stderr) =>
      error === null ? resolve() : reject(new Error(`services.sh down: ${stderr}`)),
    )
  })
}

describe.skipIf(!kafka.available || !redis.available)('with the services the files ask for answering', () => {
  it('starts nothing and ends with a line saying none was missing', async () => {
    const dir = join(work, 'answering')
    const run = await vitestRun([], { WEIR_SERVICES_DIR: dir })
    expect(run.code, run.stdout + run.stderr).toBe(0)
    expect(run.stdout).toMatch(/Tests {2}7 passed \(7\)/)
    expect(lastLine(run.stdout)).toBe('[services] kafka, redis answered: no test skipped for a missing service')
    expect(run.stderr).not.toContain('[services] starting')
    // services.sh up was not even run: it makes its data dir first.
    expect(existsSync(dir)).toBe(false)
    console.log(`the fixture run with every service answering took ${run.ms} ms`)
  })
})

describe('with Java missing', () => {
  it('starts Redis, names Kafka as not started and counts the tests skipped for it, under .ci/run\'s reporters', async () => {
    const env = await privateServices(join(work, 'no-java'))
    try {
      const json = join(work, 'vitest.json')
      const run = await vitestRun(['--reporter=default', '--reporter=json', `--outputFile.json=${json}`], {
        ...env,
        PATH: pathWithoutJava,
        WEIR_SERVICES: 'no-install',
      })
      expect(run.code, run.stdout + run.stderr).toBe(0)
      expect(run.stderr).toContain('[services] cannot start kafka: java not found')
      expect(run.stderr).toContain('[services] starting redis with scripts/services.sh up')
      expect(lastLine(run.stdout)).toBe('[services] skipped for missing services: kafka (java not found; WEIR_SERVICES=no-install) 3 tests')
      const report = JSON.parse(readFileSync(json, 'utf8')) as { numPassedTests: number; numPendingTests: number }
      // The Redis tests ran against the Redis the setup started.
      expect(report).toMatchObject({ numPassedTests: 4, numPendingTests: 3 })
      expect(readFileSync(join(env.WEIR_SERVICES_DIR!, 'redis/redis.pid'), 'utf8')).toMatch(/^\d+\n$/)
    } finally {
      await privateDown(env)
    }
  })

  it('under WEIR_REQUIRE_SERVICES=1 fails the run before any test, naming Kafka and why', async () => {
    const env = await privateServices(join(work, 'require'))
    const run = await vitestRun(['test/fixtures/services/kafka.fixture.ts'], {
      ...env,
      PATH: pathWithoutJava,
      WEIR_SERVICES: 'no-install',
      WEIR_REQUIRE_SERVICES: '1',
    })
    expect(run.code).not.toBe(0)
    expect(run.stdout + run.stderr).toContain('WEIR_REQUIRE_SERVICES=1 and kafka (java not found; WEIR_SERVICES=no-install) could not be started')
    expect(run.stdout).not.toMatch(/Tests {2}\d+ passed/)
  })
})

describe('when scripts/services.sh up fails', () => {
  it('shows its output and names the service with that reason', async () => {
    const env = await privateServices(join(work, 'not-ours'))
    // services.sh refuses a data dir it did not make: a real failure of `up`, nothing started.
    mkdirSync(env.WEIR_SERVICES_DIR!)
    writeFileSync(join(env.WEIR_SERVICES_DIR!, 'someone-else'), '')
    const run = await vitestRun(['test/fixtures/services/redis.fixture.ts'], env)
    expect(run.code, run.stdout + run.stderr).toBe(0)
    expect(run.stderr).toContain('[services] starting redis with scripts/services.sh up')
    expect(run.stderr).toMatch(/\[services\] {3}services\.sh: .* is not empty and was not made by services\.sh/)
    expect(lastLine(run.stdout)).toBe('[services] skipped for missing services: redis (scripts/services.sh up failed; its output is above) 2 tests')
  })
})

describe('what a run asks for', () => {
  it('finds every service a file names, s3 (a digit in its name) too', () => {
    const file = join(work, 'asks.fixture.ts')
    writeFileSync(file, "const s3 = await requireService('s3')\nconst pg = await requireService(\"postgres\")\n")
    expect(servicesAskedForBy([file])).toEqual(['postgres', 's3'])
  })

  it('a file that asks for no service starts nothing and prints no services line', async () => {
    const env = await privateServices(join(work, 'plain'))
    const run = await vitestRun(['test/fixtures/services/plain.fixture.ts'], env)
    expect(run.code, run.stdout + run.stderr).toBe(0)
    expect(run.stdout + run.stderr).not.toContain('[services]')
    expect(existsSync(env.WEIR_SERVICES_DIR!)).toBe(false)
  })

  it('WEIR_SERVICES=off starts nothing and still counts what was skipped', async () => {
    const env = await privateServices(join(work, 'off'))
    const run = await vitestRun(['test/fixtures/services/kafka.fixture.ts', 'test/fixtures/services/redis.fixture.ts'], { ...env, WEIR_SERVICES: 'off' })
    expect(run.code, run.stdout + run.stderr).toBe(0)
    expect(run.stderr).not.toContain('[services] starting')
    expect(lastLine(run.stdout)).toBe(
      '[services] skipped for missing services: kafka (not running; WEIR_SERVICES=off) 3 tests, redis (not running; WEIR_SERVICES=off) 2 tests; 5 tests in all',
    )
    expect(existsSync(env.WEIR_SERVICES_DIR!)).toBe(false)
  })
})

function servicesCheck(names: string[], env: Record<string, string>, user?: string): Promise<{ code: number; stdout: string }> {
  const script = join(repo, 'scripts/services.sh')
  const [command, args] = user === undefined ? ['bash', [script, 'check', ...names]] : ['runuser', ['-u', user, '--', 'bash', script, 'check', ...names]]
  return new Promise((resolve) => {
    execFile(command, args, { env: { ...process.env, ...env }, timeout: 30_000 }, (error, stdout) => {
      resolve({ code: error === null ? 0 : typeof error.code === 'number' ? error.code : 1, stdout })
    })
  })
}

const rootWithApt = process.getuid?.() === 0 && existsSync('/usr/bin/apt-get')

describe('scripts/services.sh check', () => {
  it.skipIf(!rootWithApt)('as root with apt-get, a missing java is for `up` to install; without it, Kafka is missing', async () => {
    const asRoot = await servicesCheck(['kafka', 'redis'], { PATH: pathWithoutJava })
    expect(asRoot.stdout).toMatch(/^kafka +install java not found \| up installs openjdk-17-jre-headless\nredis +ready\n$/)
    expect(asRoot.code).toBe(0)
    const asNobody = await servicesCheck(['kafka', 'postgres', 'mariadb'], { PATH: pathWithoutJava, HOME: work, WEIR_KAFKA_CACHE_DIR: join(work, 'kafka-cache') }, 'nobody')
    expect(asNobody.stdout).toBe(
      [
        'kafka     missing java not found | install openjdk-17-jre-headless, or run scripts/services.sh up as root',
        'postgres  missing not root: the server runs as the postgres user',
        'mariadb   missing not root: the server runs as the mysql user',
        '',
      ].join('\n'),
    )
    expect(asNobody.code).toBe(1)
  })

  it('s3 is ready where Go is, and says that its first start builds versitygw', async () => {
    const fresh = await servicesCheck(['s3'], { WEIR_VERSITYGW_CACHE_DIR: join(work, 'versitygw-cache') })
    expect(fresh.stdout).toBe('s3        ready | its first start builds versitygw 1.7.0 with Go (about 75 s)\n')
    expect(fresh.code).toBe(0)
  })
})
