/**
 * `weir monitor` and `weir run --monitor` as real processes: bad input is refused naming
 * the field (exit 2) before anything starts, an unreachable bus fails clearly (exit 1), and
 * a started monitor answers its API until it is stopped.
 */
import { randomUUID } from 'node:crypto'
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { parseMonitorArgs } from '../../cli/monitor.ts'
import { NatsBus } from '../../runtime/control/nats/nats-bus.ts'
import { progressSubjects } from '../../runtime/control/progress.ts'
import { health, progress } from '../monitor/fixtures.ts'
import { requireService } from '../support/services.ts'
import { ROOT, startWeir, tempDirs, waitFor, weir } from '../support/weir-cli.ts'

const nats = await requireService('nats')
const tempDir = tempDirs('weir-cli-monitor-')
const BUS = 'nats://127.0.0.1:4222'

describe('weir monitor', () => {
  it('refuses bad input naming the field', () => {
    const dir = tempDir()
    const typo = join(dir, 'typo.json')
    writeFileSync(typo, JSON.stringify({ slos: [], prot: 80 }))
    const cases: Array<[string[], RegExp]> = [
      [['--bus', BUS, '--slo', 'sink=2s'], /^--slo: expected \[CLUSTER\/\]PIPELINE\/OUTPUT=DURATION/],
      [['--bus', BUS, '--slo', 'p/sink=0ms'], /^--slo: '0ms' must be above 0/],
      [['--bus', BUS, '--config', typo], /^prot: /],
      [['--bus', BUS, '--config', join(dir, 'missing.json')], /^--config: cannot read/],
      [['--bus', BUS, '--host', '0.0.0.0'], /^--host: '0\.0\.0\.0' is reachable from other machines/],
      [['--bus', BUS, '--port', '99999'], /^--port: expected a port number/],
      [['--bus', BUS, '--cluster', 'a.b'], /^--cluster: /],
      [['--bus', 'localhost:4222'], /^--bus: 'localhost:4222' is not a nats:\/\/host:port URL/],
      [[], /^--bus: the monitor reads the control bus/],
    ]
    for (const [args, message] of cases) expect(() => parseMonitorArgs(args, dir, {}), args.join(' ')).toThrow(message)
    // A token makes a public host acceptable; the file's whitespace is trimmed.
    writeFileSync(join(dir, 'token'), 's3cret\n')
    expect(parseMonitorArgs(['--bus', BUS, '--host', '0.0.0.0', '--token-file', 'token', '--slo', 'prod/p/sink=1.5s'], dir, {})).toMatchObject({
      host: '0.0.0.0', token: 's3cret', cluster: '*', port: 9464, slos: [{ cluster: 'prod', pipeline: 'p', output: 'sink', timelinessMs: 1500 }],
    })
  })

  it('exits 2 on bad input before connecting, naming the field', async () => {
    const dir = tempDir()
    const config = join(dir, 'monitor.json')
    writeFileSync(config, JSON.stringify({ slos: [{ pipeline: 'p', output: 'sink', timelinessMs: -5 }] }))
    const cases: Array<[string[], RegExp]> = [
      [['monitor', '--bus', BUS, '--slo', 'p/sink=soon'], /weir: error: --slo: 'soon' is not a duration.*WEIR_CONFIG_INVALID/],
      [['monitor', '--bus', BUS, '--config', config], /weir: error: slos\.0\.timelinessMs: .*WEIR_CONFIG_INVALID/],
      [['monitor', '--bogus'], /unknown option --bogus; weir monitor takes --bus, [\s\S]*weir monitor --help/],
    ]
    const results = await Promise.all(cases.map(([args]) => weir(args)))
    results.forEach((r, i) => {
      expect(r.code, cases[i]![0].join(' ')).toBe(2)
      expect(r.stderr, cases[i]![0].join(' ')).toMatch(cases[i]![1])
      expect(r.stdout).toBe('')
    })
  })

  it('fails with WEIR_BUS_UNAVAILABLE naming the server when NATS does not answer, exit 1', async () => {
    const t0 = Date.now()
    const r = await weir(['monitor', '--bus', 'nats://127.0.0.1:1', '--port', '0'])
    expect(r.code).toBe(1)
    expect(r.stderr).toMatch(/WEIR_BUS_UNAVAILABLE[\s\S]*nats:\/\/127\.0\.0\.1:1/)
    expect(Date.now() - t0).toBeLessThan(8000)
  })

  it('prints its usage for help monitor and monitor --help', async () => {
    const [a, b] = await Promise.all([weir(['help', 'monitor']), weir(['monitor', '--help'])])
    expect(a.code).toBe(0)
    expect(a.stdout).toContain('Usage: weir monitor --bus nats://host:port')
    expect(b.stdout).toBe(a.stdout)
  })

  it.skipIf(!nats.available)('serves the status of what it hears on NATS until stopped', async () => {
    const cluster = `c${randomUUID().slice(0, 8)}`
    const m = startWeir(['monitor', '--bus', nats.url, '--port', '0', '--cluster', cluster, '--slo', 'p/sink=2s'], { env: { WEIR_LOG_LEVEL: 'warn' } })
    const pub = await NatsBus.connect({ servers: [nats.url] })
    try {
      const [line, url] = await waitFor(m.child.stdout!, /weir monitor: dashboard (http:\/\/127\.0\.0\.1:\d+\/) \(cluster \S+, 1 SLOs\)\n/)
      expect(line).toContain(`(cluster ${cluster}, 1 SLOs)`)
      const publish = (): void => {
        const now = Date.now()
        pub.publish(progressSubjects.health(cluster, 'p'), health({ cluster, at: now }))
        pub.publish(progressSubjects.progress(cluster, 'p'), progress({ cluster, stage: 'sink', partition: 0, at: now, watermark: now - 500 }))
      }
      let body: { pipelines: Array<{ cluster: string; outputs: Array<{ output: string; slo: { state: string } | null }> }> } = { pipelines: [] }
      for (let i = 0; i < 60 && body.pipelines.length === 0; i++) {
        publish()
        await new Promise((r) => setTimeout(r, 100))
        const res = await fetch(`${url}api/status`)
        expect(res.status).toBe(200)
        body = await res.json()
      }
      expect(body.pipelines).toMatchObject([{ cluster, outputs: [{ output: 'sink', slo: { timelinessMs: 2000 } }] }])
    } finally {
      await pub.close()
      m.child.kill('SIGTERM')
    }
    const r = await m.done
    expect(r.code, r.stderr).toBe(0)
  })
})

describe('weir run --monitor', () => {
  it('refuses monitor options without --monitor and an SLO on a stage the pipeline lacks, exit 2', async () => {
    const dir = tempDir()
    const ticker = join(ROOT, 'test/cli/fixtures/ticker.ts')
    const [lonely, unknown, host] = await Promise.all([
      weir(['run', ticker, '--data-dir', join(dir, 'a'), '--monitor-port', '0']),
      weir(['run', ticker, '--data-dir', join(dir, 'b'), '--monitor', '--slo', 'nope=2s']),
      weir(['run', ticker, '--data-dir', join(dir, 'c'), '--monitor', '--monitor-host', '0.0.0.0']),
    ])
    expect(lonely.code).toBe(2)
    expect(lonely.stderr).toContain('--monitor-port: only with --monitor')
    expect(unknown.code).toBe(2)
    expect(unknown.stderr).toContain("--slo: 'nope' is not a stage of pipeline 'ticker'")
    expect(host.code).toBe(2)
    expect(host.stderr).toContain('--monitor-host')
  })

  it('serves the monitor from the run on its in-process bus', async () => {
    const dir = tempDir()
    const run = startWeir(['run', join(ROOT, 'test/cli/fixtures/ticker.ts'), '--data-dir', join(dir, 'data'), '--monitor', '--monitor-port', '0', '--slo', 'count=5s', '-q'])
    try {
      const [, url] = await waitFor(run.child.stderr!, /weir: monitor at (http:\/\/127\.0\.0\.1:\d+\/)\n/)
      const res = await fetch(`${url}api/status`)
      expect(res.status).toBe(200)
      expect(await res.json()).toMatchObject({ pipelines: expect.any(Array) })
      // The monitor's metrics and the worker's, on one /metrics.
      const deadline = Date.now() + 10_000
      let text = ''
      while (Date.now() < deadline && !/weir_actor_records_in_total\{[^}]*stage="count"/.test(text)) {
        text = await (await fetch(`${url}metrics`)).text()
        await new Promise((r) => setTimeout(r, 200))
      }
      expect(text).toContain('weir_monitor_events_received_total')
      expect(text).toMatch(/weir_actor_records_in_total\{pipeline="ticker",stage="count",partition="0"\} \d+/)
      expect(text).toContain('weir_worker_process_resident_memory_bytes')
    } finally {
      run.child.kill('SIGTERM')
    }
    const r = await run.done
    expect(r.code, r.stderr).toBe(0)
  })

  it('--metrics-port serves the worker metrics without the monitor; refused without a valid port', async () => {
    const dir = tempDir()
    const bad = await weir(['run', join(ROOT, 'test/cli/fixtures/ticker.ts'), '--data-dir', join(dir, 'bad'), '--metrics-port', 'x'])
    expect(bad.code).toBe(2)
    expect(bad.stderr).toContain('--metrics-port')
    const run = startWeir(['run', join(ROOT, 'test/cli/fixtures/ticker.ts'), '--data-dir', join(dir, 'data'), '--metrics-port', '0', '-q'])
    try {
      const [, url] = await waitFor(run.child.stderr!, /weir: metrics at (http:\/\/127\.0\.0\.1:\d+\/metrics)\n/)
      const res = await fetch(url!)
      expect(res.status).toBe(200)
      expect(await res.text()).toContain('# TYPE weir_actor_records_in_total counter')
      expect((await fetch(url!.replace('/metrics', '/other'))).status).toBe(404)
    } finally {
      run.child.kill('SIGTERM')
    }
    const r = await run.done
    expect(r.code, r.stderr).toBe(0)
  })
})
