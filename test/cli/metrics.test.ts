/**
 * The Prometheus `/metrics` of real `weir run --monitor`, `weir run --metrics-port` and
 * `weir worker --metrics-port` processes: Prometheus' own linter (`promtool check
 * metrics`, from scripts/promtool.sh) accepts each exposition, and a worker's metrics off
 * loopback follow the monitor's rule: refused at start without a token (exit 2, naming
 * the option), and with one every request needs `Authorization: Bearer <token>`.
 */
import { spawn } from 'node:child_process'
import { randomUUID } from 'node:crypto'
import { existsSync, writeFileSync } from 'node:fs'
import { homedir } from 'node:os'
import { join } from 'node:path'
import { describe, expect, it, onTestFinished } from 'vitest'
import { TestCluster } from '../support/cluster.ts'
import { requireService } from '../support/services.ts'
import { ROOT, startWeir, tempDirs, until, waitFor, weir } from '../support/weir-cli.ts'

const kafka = await requireService('kafka')
const nats = await requireService('nats')
const tempDir = tempDirs('weir-cli-metrics-')
const TICKER = join(ROOT, 'test/cli/fixtures/ticker.ts')

function findPromtool(): string | undefined {
  const candidates = [process.env.WEIR_PROMTOOL, join(homedir(), '.cache/weir/tools/promtool'), '/usr/bin/promtool']
  const found = candidates.find((c) => c !== undefined && c !== '' && existsSync(c))
  if (found !== undefined) return found
  const message = 'no promtool (WEIR_PROMTOOL, ~/.cache/weir/tools/promtool, /usr/bin/promtool); get it with scripts/promtool.sh'
  if (process.env.WEIR_REQUIRE_SERVICES === '1') throw new Error(`WEIR_REQUIRE_SERVICES=1: ${message}`)
  console.warn(`skipping the promtool checks: ${message}`)
  return undefined
}
const promtool = findPromtool()

/** `promtool check metrics` on `text`: its exit code and what it said (the problems it found). */
function promtoolCheck(text: string): Promise<{ code: number | null; output: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(promtool!, ['check', 'metrics'], { stdio: ['pipe', 'pipe', 'pipe'] })
    let output = ''
    child.stdout.on('data', (d: Buffer) => (output += d.toString()))
    child.stderr.on('data', (d: Buffer) => (output += d.toString()))
    child.on('error', reject)
    child.on('close', (code) => resolve({ code, output }))
    child.stdin.end(text)
  })
}

/** The exposition once it holds a per-actor series (actors assigned and counted). */
async function metricsWithActors(url: string, headers: Record<string, string> = {}): Promise<string> {
  return until(async () => {
    const res = await fetch(url, { headers })
    const text = await res.text()
    return res.status === 200 && /^weir_actor_records_in_total\{/m.test(text) ? text : undefined
  }, 30_000, `per-actor series on ${url}`)
}

describe.skipIf(promtool === undefined)('promtool check metrics', () => {
  it('accepts the /metrics of weir run --monitor (monitor and worker metrics) and of weir run --metrics-port', async () => {
    const dir = tempDir()
    const monitored = startWeir(['run', TICKER, '--data-dir', join(dir, 'm'), '--monitor', '--monitor-port', '0', '-q'])
    const alone = startWeir(['run', TICKER, '--data-dir', join(dir, 'w'), '--metrics-port', '0', '-q'])
    onTestFinished(() => {
      monitored.child.kill('SIGKILL')
      alone.child.kill('SIGKILL')
    })
    // Both listened for at once: a line printed before its listener is attached is not seen.
    const [[, monitorUrl], [, metricsUrl]] = await Promise.all([
      waitFor(monitored.child.stderr!, /weir: monitor at (http:\/\/127\.0\.0\.1:\d+\/)\n/, 30_000),
      waitFor(alone.child.stderr!, /weir: metrics at (http:\/\/127\.0\.0\.1:\d+\/metrics)\n/, 30_000),
    ])
    const monitorText = await metricsWithActors(`${monitorUrl}metrics`)
    expect(monitorText).toContain('# TYPE weir_monitor_events_received_total counter')
    expect(await promtoolCheck(monitorText)).toEqual({ code: 0, output: '' })
    const workerText = await metricsWithActors(metricsUrl!)
    expect(await promtoolCheck(workerText)).toEqual({ code: 0, output: '' })
    // The per-type gauges stay: the dropped *_total gauges were their sums.
    expect(workerText).toMatch(/^weir_worker_nodejs_active_handles\{type="\w+"\} \d+$/m)
    expect(workerText).not.toContain('nodejs_active_handles_total')
    for (const run of [monitored, alone]) run.child.kill('SIGTERM')
    for (const run of [monitored, alone]) expect((await run.done).code).toBe(0)
  }, 90_000)

  it.skipIf(!kafka.available || !nats.available)('accepts the /metrics of a cluster worker (weir worker --metrics-port)', async () => {
    const dir = tempDir()
    const name = `m${randomUUID().slice(0, 8)}`
    const c = new TestCluster({ cluster: name, kafka: `kafka://${kafka.url}`, nats: nats.url, logDir: join(dir, 'logs') })
    onTestFinished(() => c.killAll())
    c.startCoordinator('c1', ['--settle-ms', '300'])
    const worker = c.startWorker('a', 'examples/wordcount.ts', ['--state-dir', join(dir, 'a'), '--metrics-port', '0',
      '--param', `name=${name}`, '--param', 'lines=100000', '--param', 'rate=20', '--param', `out=${dir}/out/c-{partition}.jsonl`])
    const url = await until(() => /metrics at (http:\/\/127\.0\.0\.1:\d+\/metrics)/.exec(worker.stdout())?.[1], 30_000, 'the worker serving metrics')
    const text = await metricsWithActors(url)
    expect(text).toMatch(new RegExp(`^weir_actor_records_in_total\\{pipeline="${name}",stage="count",partition="\\d+"\\} \\d+$`, 'm'))
    expect(await promtoolCheck(text), c.logTails()).toEqual({ code: 0, output: '' })
  }, 90_000)
})

/** Status of GET `url` with these headers. */
async function status(url: string, headers: Record<string, string> = {}): Promise<{ status: number; authenticate: string | null }> {
  const res = await fetch(url, { headers })
  await res.arrayBuffer()
  return { status: res.status, authenticate: res.headers.get('www-authenticate') }
}

/** Every request to /metrics (or anywhere) needs the token; with it the worker's metrics are served. */
async function expectTokenRequired(url: string, token: string): Promise<void> {
  const unauthorized = { status: 401, authenticate: 'Bearer realm="weir-metrics"' }
  expect(await status(url)).toEqual(unauthorized)
  expect(await status(url, { authorization: 'Bearer wrong' })).toEqual(unauthorized)
  expect(await status(url, { authorization: token })).toEqual(unauthorized)
  expect(await status(url.replace('/metrics', '/other'))).toEqual(unauthorized)
  expect(await metricsWithActors(url, { authorization: `Bearer ${token}` })).toContain('# TYPE weir_actor_records_in_total counter')
}

describe("a worker's /metrics off loopback", () => {
  it('is refused at start without a token, naming the option, before anything is created (weir run and weir worker, exit 2)', async () => {
    const dir = tempDir()
    writeFileSync(join(dir, 'empty-token'), '\n')
    const worker = ['worker', 'examples/wordcount.ts', '--pipe', 'kafka://127.0.0.1:9092', '--bus', 'nats://127.0.0.1:4222', '--state-dir', join(dir, 'state')]
    const run = ['run', TICKER, '--data-dir', join(dir, 'data')]
    const noToken = /--metrics-host: '0\.0\.0\.0' is reachable from other machines: give a token \(--metrics-token-file FILE or WEIR_METRICS_TOKEN\)/
    const cases: Array<[string[], RegExp]> = [
      [[...run, '--metrics-port', '0', '--metrics-host', '0.0.0.0'], noToken],
      [[...worker, '--metrics-port', '0', '--metrics-host', '0.0.0.0'], noToken],
      [[...run, '--metrics-port', '0', '--metrics-host', '0.0.0.0', '--metrics-token-file', join(dir, 'empty-token')], /--metrics-token-file: .*empty-token is empty/],
      [[...worker, '--metrics-port', '0', '--metrics-host', '0.0.0.0', '--metrics-token-file', join(dir, 'missing')], /--metrics-token-file: cannot read/],
      [[...worker, '--metrics-host', '127.0.0.1'], /--metrics-host: only with --metrics-port/],
    ]
    const results = await Promise.all(cases.map(([args]) => weir(args, { env: { WEIR_METRICS_TOKEN: '' } })))
    results.forEach((r, i) => {
      expect(r.code, `${cases[i]![0].join(' ')}: ${r.stderr}`).toBe(2)
      expect(r.stderr).toMatch(cases[i]![1])
    })
    expect(existsSync(join(dir, 'data'))).toBe(false)
    expect(existsSync(join(dir, 'state'))).toBe(false)
  }, 60_000)

  it('with a token, weir run --metrics-host 0.0.0.0 answers 401 to a request without it and serves the metrics with it', async () => {
    const dir = tempDir()
    const run = startWeir(['run', TICKER, '--data-dir', join(dir, 'data'), '--metrics-port', '0', '--metrics-host', '0.0.0.0', '-q'], { env: { WEIR_METRICS_TOKEN: 's3cret' } })
    onTestFinished(() => {
      run.child.kill('SIGKILL')
    })
    const [, port] = await waitFor(run.child.stderr!, /weir: metrics at http:\/\/0\.0\.0\.0:(\d+)\/metrics\n/, 30_000)
    await expectTokenRequired(`http://127.0.0.1:${port}/metrics`, 's3cret')
    run.child.kill('SIGTERM')
    expect((await run.done).code).toBe(0)
  }, 60_000)

  it.skipIf(!kafka.available || !nats.available)('with a token file, weir worker --metrics-host 0.0.0.0 answers 401 to a request without it and serves the metrics with it', async () => {
    const dir = tempDir()
    writeFileSync(join(dir, 'token'), 'w0rker-t0ken\n')
    const name = `t${randomUUID().slice(0, 8)}`
    const c = new TestCluster({ cluster: name, kafka: `kafka://${kafka.url}`, nats: nats.url, logDir: join(dir, 'logs') })
    onTestFinished(() => c.killAll())
    c.startCoordinator('c1', ['--settle-ms', '300'])
    const worker = c.startWorker('a', 'examples/wordcount.ts', ['--state-dir', join(dir, 'a'), '--metrics-port', '0', '--metrics-host', '0.0.0.0', '--metrics-token-file', join(dir, 'token'),
      '--param', `name=${name}`, '--param', 'lines=100000', '--param', 'rate=20', '--param', `out=${dir}/out/c-{partition}.jsonl`])
    const port = await until(() => /metrics at http:\/\/0\.0\.0\.0:(\d+)\/metrics/.exec(worker.stdout())?.[1], 30_000, 'the worker serving metrics')
    await expectTokenRequired(`http://127.0.0.1:${port}/metrics`, 'w0rker-t0ken')
  }, 90_000)
})
