/**
 * vitest global setup: before any test file runs, starts the services the run's test files
 * ask for (`requireService('kafka')` in their source) that do not answer yet, with
 * `scripts/services.sh up`, where this machine has what they need (`services.sh check`);
 * after the run, prints one line naming each service that was missing and how many tests
 * were skipped for it. A service that already answers costs one TCP connect.
 *
 * WEIR_SERVICES picks what it may do: `auto` (the default) starts services and, as root with
 * apt-get, lets services.sh install their Debian packages; `no-install` starts only services
 * whose programs are installed; `off` starts nothing. Under WEIR_REQUIRE_SERVICES=1 (.ci/run)
 * a service it cannot start fails the run before any test.
 *
 * The closing line is printed from the teardown rather than by a reporter: `--reporter` on
 * the command line (as .ci/run passes) replaces the configured reporters, the teardown runs
 * whatever they are, after them.
 */
import { execFile, spawn } from 'node:child_process'
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { dirname, join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import type { TestProject } from 'vitest/node'
import { reachable, serviceNames, serviceUrl, type MissingService, type ServiceName, type ServicesRun } from './service-urls.ts'

const repo = resolve(dirname(fileURLToPath(import.meta.url)), '../..')
const servicesScript = join(repo, 'scripts/services.sh')

type Mode = 'auto' | 'no-install' | 'off'

function servicesMode(): Mode {
  const value = process.env.WEIR_SERVICES ?? 'auto'
  if (value === 'auto' || value === 'no-install' || value === 'off') return value
  throw new Error(`WEIR_SERVICES=${value}: expected auto (the default: start what is missing, installing packages as root), no-install or off`)
}

function say(line: string): void {
  process.stderr.write(`[services] ${line}\n`)
}

/** The services test files ask for, by the `requireService('<name>')` calls in their source. */
export function servicesAskedForBy(files: readonly string[]): ServiceName[] {
  const asked = new Set<string>()
  for (const file of files) {
    for (const m of readFileSync(file, 'utf8').matchAll(/requireService\(\s*['"]([a-z0-9]+)['"]/g)) asked.add(m[1]!)
  }
  return serviceNames.filter((name) => asked.has(name))
}

async function notAnswering(names: readonly ServiceName[]): Promise<ServiceName[]> {
  const answers = await Promise.all(names.map(async (name) => (await reachable(serviceUrl(name), 2000)) || (await reachable(serviceUrl(name), 2000))))
  return names.filter((_, i) => !answers[i])
}

interface Prerequisites {
  state: 'ready' | 'install' | 'missing'
  /** Why not ready (install, missing), or a note (ready). */
  why: string
  /** What to do (missing) or what `up` installs (install). */
  advice: string
}

/** `services.sh check`: whether `up` could start each service here, starting nothing. */
function checkPrerequisites(names: readonly ServiceName[]): Promise<Map<ServiceName, Prerequisites>> {
  return new Promise((resolve, reject) => {
    // Exit 1 means one is missing: the lines say which.
    execFile('bash', [servicesScript, 'check', ...names], { timeout: 30_000 }, (error, stdout, stderr) => {
      const found = new Map<ServiceName, Prerequisites>()
      for (const line of stdout.split('\n')) {
        const m = /^([a-z0-9]+)\s+(ready|install|missing)\s*(.*)$/.exec(line)
        if (m === null) continue
        const [why = '', advice = ''] = m[3]!.split(' | ')
        found.set(m[1] as ServiceName, { state: m[2] as Prerequisites['state'], why: m[2] === 'ready' ? '' : why, advice: m[2] === 'ready' ? why : advice })
      }
      if (names.every((name) => found.has(name))) resolve(found)
      else reject(new Error(`scripts/services.sh check ${names.join(' ')} failed: ${error?.message ?? ''}\n${stdout}${stderr}`))
    })
  })
}

/** `services.sh up NAMES`, its output shown as it comes, with a line every 15 s meanwhile. */
function servicesUp(names: readonly ServiceName[]): Promise<void> {
  if (names.length === 0) return Promise.resolve()
  const started = Date.now()
  return new Promise((resolve) => {
    const child = spawn('bash', [servicesScript, 'up', ...names], { stdio: ['ignore', 'pipe', 'pipe'] })
    const show = (chunk: Buffer): void => {
      for (const line of chunk.toString('utf8').split('\n')) if (line !== '') say(`  ${line}`)
    }
    child.stdout.on('data', show)
    child.stderr.on('data', show)
    const ticker = setInterval(() => say(`  still starting ${names.join(', ')} (${Math.round((Date.now() - started) / 1000)} s)`), 15_000)
    child.on('error', (error) => say(`  could not run scripts/services.sh: ${error.message}`))
    child.on('close', () => {
      clearInterval(ticker)
      resolve()
    })
  })
}

/**
 * Starts what it may of NAMES; returns why each service it did not get answering is missing.
 */
async function bringUp(names: readonly ServiceName[], mode: Mode): Promise<Partial<Record<ServiceName, string>>> {
  const notStarted: Partial<Record<ServiceName, string>> = {}
  const missing = await notAnswering(names)
  if (missing.length === 0) return notStarted
  if (mode === 'off') {
    for (const name of missing) notStarted[name] = 'not running; WEIR_SERVICES=off'
    return notStarted
  }
  const prerequisites = await checkPrerequisites(missing)
  const ready: ServiceName[] = []
  const installable: ServiceName[] = []
  for (const name of missing) {
    const p = prerequisites.get(name)!
    if (p.state === 'ready') ready.push(name)
    else if (p.state === 'install' && mode === 'auto') installable.push(name)
    else {
      notStarted[name] = p.state === 'install' ? `${p.why}; WEIR_SERVICES=no-install` : p.why
      const advice = p.state === 'install' ? `WEIR_SERVICES=no-install; without it, scripts/services.sh ${p.advice}` : p.advice
      say(`cannot start ${name}: ${p.why}${advice === '' ? '' : ` (${advice})`}`)
    }
  }
  const starting = [...ready, ...installable]
  if (starting.length === 0) return notStarted
  const notes = starting.flatMap((name) => (prerequisites.get(name)!.advice === '' ? [] : [`${name}: ${prerequisites.get(name)!.advice}`]))
  say(`starting ${starting.join(', ')} with scripts/services.sh up${notes.length > 0 ? ` (${notes.join('; ')})` : ''}; WEIR_SERVICES=off skips this`)
  const started = Date.now()
  // Services that need no package start first: an apt-get install (minutes, or a failure) does not hold them back.
  await servicesUp(ready)
  await servicesUp(installable)
  const failed = await notAnswering(starting)
  for (const name of failed) notStarted[name] = 'scripts/services.sh up failed; its output is above'
  const up = starting.filter((name) => !failed.includes(name))
  if (up.length > 0) say(`started ${up.join(', ')} in ${((Date.now() - started) / 1000).toFixed(1)} s`)
  return notStarted
}

interface TaskLike {
  type: string
  mode: string
  result?: { state?: string }
  tasks?: TaskLike[]
}

function skippedTests(task: TaskLike): number {
  if (task.type === 'test') return task.mode === 'skip' || task.result?.state === 'skip' ? 1 : 0
  return (task.tasks ?? []).reduce((sum, t) => sum + skippedTests(t), 0)
}

/**
 * The closing line: each service a test file found missing (or the setup could not start)
 * with the tests skipped in the files that asked for it; a test that needed two missing
 * services counts for both.
 */
export function closingLine(asked: readonly ServiceName[], run: ServicesRun, files: readonly (TaskLike & { filepath: string })[]): string | undefined {
  if (asked.length === 0) return undefined
  const missingIn = new Map<string, Set<ServiceName>>()
  const missingFile = join(run.dir, 'missing.jsonl')
  if (existsSync(missingFile)) {
    for (const line of readFileSync(missingFile, 'utf8').split('\n')) {
      if (line === '') continue
      const { file, service } = JSON.parse(line) as MissingService
      missingIn.set(file, (missingIn.get(file) ?? new Set()).add(service))
    }
  }
  const skipped = new Map<ServiceName, number>()
  for (const name of Object.keys(run.notStarted) as ServiceName[]) skipped.set(name, 0)
  let total = 0
  for (const file of files) {
    const services = missingIn.get(file.filepath)
    if (services === undefined) continue
    const n = skippedTests(file)
    total += n
    for (const name of services) skipped.set(name, (skipped.get(name) ?? 0) + n)
  }
  if (skipped.size === 0) return `[services] ${asked.join(', ')} answered: no test skipped for a missing service`
  const parts = serviceNames
    .filter((name) => skipped.has(name))
    .map((name) => {
      const n = skipped.get(name)!
      return `${name} (${run.notStarted[name] ?? `not reachable at ${serviceUrl(name)}`}) ${n} test${n === 1 ? '' : 's'}`
    })
  return `[services] skipped for missing services: ${parts.join(', ')}${parts.length > 1 ? `; ${total} tests in all` : ''}`
}

export default async function setup(project: TestProject): Promise<() => void> {
  const mode = servicesMode()
  const asked = servicesAskedForBy(project.vitest.state.getPaths())
  const notStarted = await bringUp(asked, mode)
  const names = Object.keys(notStarted) as ServiceName[]
  if (process.env.WEIR_REQUIRE_SERVICES === '1' && names.length > 0) {
    throw new Error(`WEIR_REQUIRE_SERVICES=1 and ${names.map((name) => `${name} (${notStarted[name]})`).join(', ')} could not be started`)
  }
  const run: ServicesRun = { dir: mkdtempSync(join(tmpdir(), 'weir-services-run-')), notStarted }
  project.provide('weirServices', run)
  return () => {
    try {
      const line = closingLine(asked, run, project.vitest.state.getFiles())
      if (line !== undefined) process.stdout.write(`${line}\n`)
    } finally {
      rmSync(run.dir, { recursive: true, force: true })
    }
  }
}
