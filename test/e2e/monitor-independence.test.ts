/**
 * The monitoring path fails independently of what it watches: killing the monitor does
 * not affect processing; stopping NATS mid-run does not stop processing or lose anything,
 * and the monitor recovers its view when NATS is back. Real processes (`weir run`,
 * `weir monitor`) on a NATS server of the test's own (scripts/services.sh on other ports),
 * so stopping it disturbs no other test.
 */
import { execFile } from 'node:child_process'
import { randomUUID } from 'node:crypto'
import { existsSync, readdirSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { afterAll, beforeAll, describe, expect, it, onTestFinished as after } from 'vitest'
import { tempDataDir, removeDir } from '../../testing/index.ts'
import { requireService } from '../support/services.ts'
import { finalCounts, sleep, startWeir, tempDirs, waitFor, wordcountReference, type Outcome } from '../support/weir-cli.ts'
import type { ChildProcess } from 'node:child_process'

const run = promisify(execFile)
const nats = await requireService('nats')
const SCRIPT = join(import.meta.dirname, '..', '..', 'scripts', 'services.sh')
const servicesDir = tempDataDir('weir-independence-services-')
const PRIVATE_NATS = 'nats://127.0.0.1:14222'
const env = { ...process.env, WEIR_SERVICES_DIR: servicesDir, WEIR_NATS_URL: PRIVATE_NATS, WEIR_NATS_MONITOR_PORT: '18222' }
const services = (cmd: 'up' | 'down'): Promise<unknown> => run('bash', [SCRIPT, cmd, 'nats'], { env, timeout: 60_000 })
const tempDir = tempDirs('weir-independence-')

const LINES = 600
const RATE = 50 // lines/s per partition: a run of ~12 s

interface Monitor {
  child: ChildProcess
  done: Promise<Outcome>
  url: string
}

async function startMonitor(bus: string, cluster: string): Promise<Monitor> {
  const m = startWeir(['monitor', '--bus', bus, '--cluster', cluster, '--port', '0'])
  try {
    const [, url] = await waitFor(m.child.stdout!, /dashboard (http:\/\/\S+?)\/? /, 20_000)
    return { ...m, url: url! }
  } catch (err) {
    m.child.kill('SIGKILL')
    throw new Error(`weir monitor did not start: ${(err as Error).message}\n${(await m.done).stderr}`)
  }
}

interface StatusStage { name: string; actors: { running: number; missing: number; ended: number; total: number } }
interface Status { pipelines: Array<{ pipeline: string; stalled: boolean; stages: StatusStage[] }> }

async function status(m: Monitor): Promise<Status> {
  const res = await fetch(`${m.url}/api/status`, { signal: AbortSignal.timeout(5000) })
  expect(res.status).toBe(200)
  return (await res.json()) as Status
}

/** Waits until the monitor shows every actor of the word count running (or ended). */
async function fullPicture(m: Monitor, timeoutMs: number): Promise<number> {
  const t0 = Date.now()
  for (;;) {
    const p = (await status(m)).pipelines.find((x) => x.pipeline === 'wordcount')
    const stages = p?.stages.filter((s) => s.actors.total > 0) ?? []
    if (stages.length === 4 && stages.every((s) => s.actors.running + s.actors.ended === s.actors.total && s.actors.missing === 0)) return Date.now() - t0
    if (Date.now() - t0 > timeoutMs) throw new Error(`monitor view incomplete after ${timeoutMs} ms: ${JSON.stringify(p?.stages.map((s) => [s.name, s.actors]))}`)
    await sleep(200)
  }
}

/** A `weir run` that is killed if the test ends first (a failing assertion must not leave it running). */
function runWeir(args: string[]): Promise<Outcome> {
  const r = startWeir(args)
  after(() => void r.child.kill('SIGKILL'))
  return r.done
}

function lines(dir: string): number {
  if (!existsSync(dir)) return 0
  return readdirSync(dir).filter((f) => !f.startsWith('.')).reduce((n, f) => n + readFileSync(join(dir, f), 'utf8').split('\n').filter(Boolean).length, 0)
}

/** The word count's final counts from a crash-free run without any bus. */
function reference(): Promise<Record<string, number>> {
  return wordcountReference(tempDir(), LINES)
}

describe.skipIf(!nats.available)('the monitor fails independently of the pipeline', () => {
  let expected: Record<string, number>
  beforeAll(async () => {
    expected = await reference()
  }, 60_000)

  it('killing the monitor mid-run leaves processing unaffected: the run finishes with exact output', async () => {
    const dir = tempDir()
    const cluster = `k${randomUUID().slice(0, 8)}`
    const monitor = await startMonitor(nats.url, cluster)
    after(() => void monitor.child.kill('SIGKILL'))
    const runDone = runWeir(['run', 'examples/wordcount.ts', '--bus', nats.url, '--cluster', cluster, '--epoch-ms', '200', '--data-dir', join(dir, 'data'), '--param', `lines=${LINES}`, '--param', `rate=${RATE}`, '--param', `out=${dir}/out/c-{partition}.jsonl`, '-q'])
    await fullPicture(monitor, 15_000)
    monitor.child.kill('SIGKILL')
    expect((await monitor.done).signal).toBe('SIGKILL')
    const r = await runDone
    expect(r.code, r.stderr).toBe(0)
    expect(r.stdout).toMatch(/outcome:\s+finished/)
    expect(finalCounts(join(dir, 'out'))).toEqual(expected)
  }, 90_000)

  describe('NATS stopped and restarted mid-run', () => {
    beforeAll(() => services('up'), 60_000)
    afterAll(async () => {
      await services('down').catch(() => undefined)
      removeDir(servicesDir)
    }, 60_000)

    it('processing goes on through the outage, nothing is lost or doubled, and the monitor rebuilds its view', async () => {
      const dir = tempDir()
      const out = join(dir, 'out')
      const cluster = `n${randomUUID().slice(0, 8)}`
      const monitor = await startMonitor(PRIVATE_NATS, cluster)
      try {
        const runDone = runWeir(['run', 'examples/wordcount.ts', '--bus', PRIVATE_NATS, '--cluster', cluster, '--epoch-ms', '200', '--data-dir', join(dir, 'data'), '--param', `lines=${LINES}`, '--param', `rate=${RATE}`, '--param', `out=${out}/c-{partition}.jsonl`, '-q'])
        await fullPicture(monitor, 15_000)
        await sleep(1000)
        await services('down')
        const atStop = lines(out)
        await sleep(3000)
        // The monitor still answers while its only source is gone.
        await status(monitor)
        const afterOutage = lines(out)
        // Checkpoints went on without epochs from the bus: the sink kept committing output.
        expect(afterOutage).toBeGreaterThan(atStop)
        await services('up')
        const rebuiltMs = await fullPicture(monitor, 20_000)
        const r = await runDone
        expect(r.code, r.stderr).toBe(0)
        expect(r.stdout).toMatch(/outcome:\s+finished/)
        expect(finalCounts(out)).toEqual(expected)
        expect(rebuiltMs).toBeLessThan(20_000)
      } finally {
        monitor.child.kill('SIGKILL')
        await monitor.done
      }
    }, 120_000)
  })
})
