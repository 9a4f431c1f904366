/**
 * `weir status` as a real process against a real `weir run --bus` on NATS: it lists the
 * run's worker and every actor with its lag and last epoch (as tables and as JSON), says
 * so with exit 3 when nothing is heard, fails clearly on an unreachable bus (exit 1) and
 * refuses bad options naming them before connecting (exit 2).
 */
import { randomUUID } from 'node:crypto'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { buildReport, formatStatus, parseStatusArgs, type StatusReport } from '../../cli/status.ts'
import { MonitorView } from '../../monitor/model.ts'
import { NatsBus } from '../../runtime/control/nats/nats-bus.ts'
import { progressSubjects } from '../../runtime/control/progress.ts'
import { health, progress } from '../monitor/fixtures.ts'
import { requireService } from '../support/services.ts'
import { ROOT, startWeir, tempDirs, weir, type Outcome } from '../support/weir-cli.ts'

const nats = await requireService('nats')
const tempDir = tempDirs('weir-cli-status-')

/** examples/wordcount.ts: lines ×2 → split ×2 → count ×4 → sink ×4. */
const WORDCOUNT_ACTORS = ['lines/0', 'lines/1', 'split/0', 'split/1', 'count/0', 'count/1', 'count/2', 'count/3', 'sink/0', 'sink/1', 'sink/2', 'sink/3']

/** Resolves once every actor the cluster's worker runs has reported a committed epoch. */
async function untilEveryActorCommitted(cluster: string, withinMs = 20_000): Promise<void> {
  const bus = await NatsBus.connect({ servers: [nats.url] })
  try {
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`the run on cluster ${cluster} did not report every actor committed within ${withinMs} ms`)), withinMs)
      let expected: string[] = []
      const committed = new Set<string>()
      const check = (): void => {
        if (expected.length > 0 && expected.every((a) => committed.has(a))) {
          clearTimeout(timer)
          resolve()
        }
      }
      bus.subscribe(progressSubjects.allHealth(cluster), (m) => {
        expected = (m as { actors: string[] }).actors
        check()
      })
      bus.subscribe(progressSubjects.allProgress(cluster), (m) => {
        const p = m as { actor: string; lastEpoch: number }
        if (p.lastEpoch >= 1) committed.add(p.actor)
        check()
      })
    })
  } finally {
    await bus.close()
  }
}

/** The cells of the table rows under `  worker <id>` (columns are separated by two or more spaces). */
function actorTable(stdout: string, worker: string): Array<Record<string, string>> {
  const lines = stdout.split('\n')
  const start = lines.indexOf(`  worker ${worker}`)
  expect(start, stdout).toBeGreaterThanOrEqual(0)
  const header = lines[start + 1]!.trim().split(/\s{2,}/)
  const rows: Array<Record<string, string>> = []
  for (const line of lines.slice(start + 2)) {
    if (!line.startsWith('    ')) break
    const cells = line.trim().split(/\s{2,}/)
    rows.push(Object.fromEntries(header.map((h, i) => [h, cells[i]!])))
  }
  return rows
}

describe('weir status: refusals and failures', () => {
  it('refuses bad options naming the option, exit 2, before connecting', async () => {
    // 127.0.0.1:1 refuses connections: a refusal that connected first would be exit 1.
    const dead = 'nats://127.0.0.1:1'
    const cases: Array<[string[], RegExp]> = [
      [['status', '--bus', dead, '--wait-ms', '0'], /weir: error: --wait-ms: '0' must be a whole number.*WEIR_CONFIG_INVALID/],
      [['status', '--bus', dead, '--wait-ms', '2s'], /weir: error: --wait-ms: '2s'/],
      [['status', '--bus', dead, '--cluster', 'a.b'], /weir: error: --cluster: 'a\.b' must be/],
      [['status', '--bus', 'localhost:4222'], /weir: error: --bus: 'localhost:4222' is not a nats:\/\/host:port URL/],
      [['status'], /weir: error: --bus: weir status listens on the control bus/],
      [['status', '--bus', dead, '--bogus'], /unknown option --bogus; weir status takes --bus, [\s\S]*weir status --help/],
    ]
    const results = await Promise.all(cases.map(([args]) => weir(args)))
    results.forEach((r, i) => {
      expect(r.code, cases[i]![0].join(' ')).toBe(2)
      expect(r.stderr, cases[i]![0].join(' ')).toMatch(cases[i]![1])
      expect(r.stdout).toBe('')
    })
    expect(parseStatusArgs(['--bus', dead], {})).toMatchObject({ bus: dead, cluster: '*', waitMs: 2500, json: false, busTarget: { servers: [dead], credentials: { kind: 'none' } } })
    expect(() => parseStatusArgs([], { WEIR_BUS: 'nats:/x' })).toThrow(/^WEIR_BUS: /)
  })

  it('fails with WEIR_BUS_UNAVAILABLE naming the server when NATS does not answer, exit 1', async () => {
    const t0 = Date.now()
    const r = await weir(['status', '--bus', 'nats://127.0.0.1:1'])
    expect(r.code).toBe(1)
    expect(r.stderr).toMatch(/WEIR_BUS_UNAVAILABLE[\s\S]*nats:\/\/127\.0\.0\.1:1/)
    expect(r.stdout).toBe('')
    expect(Date.now() - t0).toBeLessThan(8000)
  })

  it('prints its usage, with the JSON shape and exit 3, for help status and status --help', async () => {
    const [a, b] = await Promise.all([weir(['help', 'status']), weir(['status', '--help'])])
    expect(a.code).toBe(0)
    expect(a.stdout).toContain('Usage: weir status --bus nats://host:port')
    expect(a.stdout).toContain('"workerHeard"')
    expect(a.stdout).toMatch(/3 no weir worker heard/)
    expect(b.stdout).toBe(a.stdout)
  })

  it('lists actors whose worker sent no health message under (no worker heard)', () => {
    const view = new MonitorView()
    const now = Date.now()
    view.apply(progressSubjects.health('test', 'p'), health({ worker: 'w1', actors: ['source/0'], at: now }))
    view.apply(progressSubjects.progress('test', 'p'), progress({ stage: 'source', partition: 0, worker: 'w1', at: now, lag: 7, lastEpoch: 3 }))
    view.apply(progressSubjects.progress('test', 'p'), progress({ stage: 'sink', partition: 1, worker: 'w9', at: now, lag: 12_400, lastEpoch: 2, lastCommitAt: null }))
    const report = buildReport(view, { bus: 'nats://x:4222', cluster: 'test', waitMs: 2500, json: false }, now)
    expect(report.pipelines[0]!.actors.map((a) => [a.actor, a.worker, a.workerHeard])).toEqual([['source/0', 'w1', true], ['sink/1', 'w9', false]])
    const text = formatStatus(report)
    const orphans = text.slice(text.indexOf('  (no worker heard)'))
    expect(orphans).toMatch(/^ {2}\(no worker heard\)\n {4}ACTOR.*\n {4}sink\/1 +sink +1 +running +12 400 +2 .* never/)
    expect(text.slice(text.indexOf('  worker w1'), text.indexOf('  (no worker heard)'))).toMatch(/source\/0 +source +0 +running +7 +3 /)
  })
})

describe.skipIf(!nats.available)('weir status of a running wordcount on NATS', () => {
  const cluster = `st${randomUUID().slice(0, 8)}`
  let run: { child: import('node:child_process').ChildProcess; done: Promise<Outcome> }
  let ready: Promise<void>

  beforeAll(() => {
    const dir = tempDir()
    run = startWeir(['run', join(ROOT, 'examples/wordcount.ts'), '--bus', nats.url, '--cluster', cluster, '--data-dir', join(dir, 'data'),
      '--param', 'rate=50', '--param', 'lines=100000', '--param', `out=${join(dir, 'out/counts-{partition}.jsonl')}`, '-q'])
    ready = untilEveryActorCommitted(cluster)
    // Awaited by the tests that need it, so the others run while the pipeline starts.
    ready.catch(() => undefined)
  })

  afterAll(async () => {
    run.child.kill('SIGTERM')
    const r = await run.done
    expect(r.code, r.stderr).toBe(0)
  })

  it('says nothing was heard, exit 3, on a cluster nobody runs', async () => {
    const r = await weir(['status', '--bus', nats.url, '--cluster', `${cluster}x`, '--wait-ms', '1000'])
    expect(r.code).toBe(3)
    expect(r.stderr).toBe(`weir status: no weir workers heard on ${nats.url} (cluster ${cluster}x) within 1000 ms\n`)
    expect(r.stdout).toBe('')
  })

  it('shows the worker and every actor with its lag and last epoch', async () => {
    await ready
    const r = await weir(['status', '--bus', nats.url, '--cluster', cluster])
    expect(r.code, r.stderr).toBe(0)
    expect(r.stdout).toContain(`wordcount (cluster ${cluster}): 1 worker, ${WORDCOUNT_ACTORS.length} actors`)
    const workerRow = r.stdout.split('\n').find((l) => new RegExp(`^ {2}\\S+ +\\S+ +${run.child.pid} +ok +\\d+ MB +[\\d.]+ ms +${WORDCOUNT_ACTORS.length}$`).test(l))
    expect(workerRow, r.stdout).toBeDefined()
    const worker = workerRow!.trim().split(/\s+/)[0]!
    const rows = actorTable(r.stdout, worker)
    expect(rows.map((row) => row.ACTOR)).toEqual(WORDCOUNT_ACTORS)
    for (const row of rows) {
      expect(row.STAGE, row.ACTOR).toBe(row.ACTOR!.split('/')[0])
      expect(row.LAG, row.ACTOR).toMatch(/^\d[\d ]*$/)
      expect(Number(row['LAST EPOCH']), row.ACTOR).toBeGreaterThanOrEqual(1)
      expect(row.LIFECYCLE, row.ACTOR).toMatch(/^(running|committing)$/)
      expect(row['LAST COMMIT'], row.ACTOR).toMatch(/^\d+\.\d s ago$/)
    }
    expect(r.stdout).not.toContain('(no worker heard)')
  })

  it('--json prints one document with the same worker and actors', async () => {
    await ready
    const r = await weir(['status', '--bus', nats.url, '--cluster', cluster, '--json', '--wait-ms', '2000'])
    expect(r.code, r.stderr).toBe(0)
    const report = JSON.parse(r.stdout) as StatusReport
    expect(report).toMatchObject({ v: 1, bus: nats.url, cluster, waitMs: 2000 })
    expect(report.pipelines).toHaveLength(1)
    const [p] = report.pipelines
    expect(p).toMatchObject({ cluster, pipeline: 'wordcount', workers: [{ pid: run.child.pid, state: 'ok', actors: WORDCOUNT_ACTORS }] })
    expect(p!.actors.map((a) => a.actor)).toEqual(WORDCOUNT_ACTORS)
    for (const a of p!.actors) {
      expect(a, a.actor).toMatchObject({ worker: p!.workers[0]!.worker, workerHeard: true, state: 'ok', stage: a.actor.split('/')[0] })
      expect(a.lag, a.actor).toBeGreaterThanOrEqual(0)
      expect(a.lastEpoch, a.actor).toBeGreaterThanOrEqual(1)
      expect(a.lastCommitAgoMs, a.actor).toBeGreaterThanOrEqual(0)
    }
    // Sources emit; everything downstream has read something by the first commit.
    expect(p!.actors.filter((a) => a.stage === 'lines').every((a) => a.recordsOut > 0)).toBe(true)
  })
})
