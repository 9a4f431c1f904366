/**
 * Failure isolation on a cluster: one actor that throws in onTimer forever stops alone.
 *
 * Real `weir coordinator`, three `weir worker`s, `weir monitor`, `weir status` and
 * `weir actor clear` processes on Kafka and NATS, running test/coordinator/fixtures/
 * failing-timer.ts: a paced word count whose count/1 throws in onTimer while a flag file
 * exists (retry twice, then fail-stop). Shown:
 * - count/1 fails for good on one worker, is moved, fails on a second and is quarantined:
 *   no later generation assigns it; no other actor fails; all three workers keep running;
 * - every word counted by the other count actors reaches its reference total, each count
 *   1..N once (exactly once while count/1 is down); count/1's words stall;
 * - the monitor's /api/status lists count/1 failed and quarantined with its error, and
 *   names it as what holds the output back; an actor alert is published; `weir status`
 *   shows it failed and quarantined;
 * - after the flag is removed, `weir actor clear` places it again, it runs, the pipeline
 *   finishes on every worker and the whole output equals the reference; the monitor
 *   publishes its recovery.
 */
import { randomUUID } from 'node:crypto'
import { rmSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { describe, expect, it, onTestFinished } from 'vitest'
import { actorFailed, assignmentMessage, type ActorFailed, type AssignmentMessage } from '../../runtime/control/messages.ts'
import { NatsBus } from '../../runtime/control/nats/nats-bus.ts'
import { actorAlert, type ActorAlert } from '../../runtime/control/progress.ts'
import { partitionForKey } from '../../runtime/partitioner.ts'
import type { MonitorStatus } from '../../monitor/status.ts'
import type { StatusReport } from '../../cli/status.ts'
import { TestCluster } from '../support/cluster.ts'
import { requireService } from '../support/services.ts'
import { countsPerWord, expectExactWordCounts, finalCounts, startWeir, tempDirs, until, waitFor, weir } from '../support/weir-cli.ts'

const kafka = await requireService('kafka')
const nats = await requireService('nats')
const tempDir = tempDirs('weir-isolation-')
const FIXTURE = 'test/coordinator/fixtures/failing-timer.ts'
/** Lines per source partition at RATE lines/s: about 12 s of input. */
const LINES = 480
const RATE = 40
const FAILING = 'count/1'

describe.skipIf(!kafka.available || !nats.available)('failure isolation', () => {
  it('an actor throwing in onTimer forever stops alone, is quarantined after two workers, is named by the monitor, and runs again once cleared', async () => {
    const dir = tempDir()
    const params = (out: string, flag: string): string[] => ['--param', `lines=${LINES}`, '--param', `out=${out}/c-{partition}.jsonl`, '--param', `flag=${flag}`]
    const reference = await weir(['run', FIXTURE, '--data-dir', join(dir, 'ref'), '-q', ...params(join(dir, 'ref-out'), join(dir, 'no-flag'))])
    expect(reference.code, reference.stderr).toBe(0)
    const expected = finalCounts(join(dir, 'ref-out'))
    const healthy = Object.keys(expected).filter((w) => partitionForKey(Buffer.from(w), 4) !== 1)
    const stalled = Object.keys(expected).filter((w) => partitionForKey(Buffer.from(w), 4) === 1)
    expect(healthy.length).toBeGreaterThan(0)
    expect(stalled.length).toBeGreaterThan(0)

    const flag = join(dir, 'flag')
    writeFileSync(flag, 'count/1 fails while this file exists\n')
    const name = `iso-${randomUUID().slice(0, 8)}`
    const out = join(dir, 'out')
    const cluster = new TestCluster({ cluster: `i${randomUUID().slice(0, 8)}`, kafka: `kafka://${kafka.url}`, nats: nats.url, logDir: join(dir, 'logs'), logLevel: 'info' })
    onTestFinished(() => cluster.killAll())
    const clusterName = cluster.options.cluster

    const observer = await NatsBus.connect({ servers: [nats.url], name: 'weir-isolation-test' })
    onTestFinished(() => observer.close())
    const failures: ActorFailed[] = []
    const assignments: AssignmentMessage[] = []
    const alerts: ActorAlert[] = []
    observer.subscribe(`weir.${clusterName}.${name}.>`, (raw, subject) => {
      const kind = subject.split('.').at(-1)
      if (kind === 'actor-failed') {
        const m = actorFailed.safeParse(raw)
        if (m.success) failures.push(m.data)
      } else if (kind === 'assignment') {
        const m = assignmentMessage.safeParse(raw)
        if (m.success) assignments.push(m.data)
      } else if (kind === 'alerts') {
        const m = actorAlert.safeParse(raw)
        if (m.success) alerts.push(m.data)
      }
    })

    const monitor = startWeir(['monitor', '--bus', nats.url, '--cluster', clusterName, '--port', '0'], { env: { WEIR_LOG_LEVEL: 'warn' } })
    onTestFinished(() => void monitor.child.kill('SIGKILL'))
    const monitorUrl = (await waitFor(monitor.child.stdout!, /dashboard (http:\/\/\S+)/, 30_000))[1]!
    const monitorStatus = async (): Promise<MonitorStatus> => (await fetch(new URL('api/status', monitorUrl))).json() as Promise<MonitorStatus>

    cluster.startCoordinator('c1', ['--epoch-ms', '300', '--worker-timeout-ms', '10000', '--settle-ms', '300'])
    expect(await cluster.waitForLeader(20_000), cluster.logTails()).toBeDefined()
    const workerArgs = (id: string): string[] => ['--epoch-ms', '300', '--heartbeat-ms', '250', '--state-dir', join(dir, id), '--param', `name=${name}`, '--param', `rate=${RATE}`, ...params(out, flag)]
    const workers = ['a', 'b', 'c'].map((id) => cluster.startWorker(id, FIXTURE, workerArgs(id)))

    // 1. count/1 fails on one worker, moves, fails on another, and is quarantined.
    const quarantine = await until(() => assignments.find((g) => g.quarantined?.[FAILING] !== undefined), 90_000, `${FAILING} quarantined`).catch((err: unknown) => {
      throw new Error(`${String(err)}\n${cluster.logTails()}`)
    })
    const failedOn = [...new Set(failures.filter((f) => f.actor === FAILING).map((f) => f.worker))]
    expect(failedOn, 'the workers count/1 failed on').toHaveLength(2)
    expect(quarantine.quarantined![FAILING]!.workers.sort()).toEqual([...failedOn].sort())
    expect(quarantine.quarantined![FAILING]!.error.message).toMatch(/count\/1 cannot tick/)
    expect(quarantine.actors[FAILING]).toBeUndefined()
    expect(failures.filter((f) => f.actor !== FAILING), 'other actors that failed').toEqual([])

    // 2. The others go on: every healthy word reaches its reference total, exactly once; no worker exited.
    await until(() => healthy.every((w) => finalCounts(out)[w] === expected[w]), 90_000, 'the words of the healthy count actors complete').catch((err: unknown) => {
      throw new Error(`${String(err)}\n${cluster.logTails()}`)
    })
    const perWord = countsPerWord(out)
    for (const w of healthy) expect(perWord.get(w)!.sort((x, y) => x - y), `${w}: counts not 1..N`).toEqual(Array.from({ length: expected[w]! }, (_, i) => i + 1))
    // count/1's words stall: at most what it committed before it failed, never a count twice.
    for (const w of stalled) {
      const counts = (perWord.get(w) ?? []).sort((x, y) => x - y)
      expect(counts, `${w}: committed counts of the failed actor`).toEqual(counts.map((_, i) => i + 1))
      expect(counts.length, `${w}: complete although its actor is quarantined`).toBeLessThan(expected[w]!)
    }
    expect(workers.map((w) => w.state), 'worker processes').toEqual(['running', 'running', 'running'])
    // Nobody was given count/1 since the quarantine.
    expect(assignments.filter((g) => g.generation > quarantine.generation && g.actors[FAILING] !== undefined)).toEqual([])

    // 3. The monitor names it failed and quarantined, as what holds the output back, and alerted.
    const seen = await until(async () => {
      const p = (await monitorStatus()).pipelines.find((x) => x.pipeline === name)
      const hb = p?.outputs.find((o) => o.output === 'sink')?.holdingBack
      return p !== undefined && p.failedActors.some((f) => f.actor === FAILING && f.quarantined) && hb?.stage === 'count' ? p : undefined
    }, 15_000, 'the monitor shows count/1 quarantined, holding the output back')
    const listed = seen.failedActors.find((f) => f.actor === FAILING)!
    expect(listed).toMatchObject({ stage: 'count', code: 'WEIR_ACTOR_FAILED', quarantined: true })
    expect(listed.failedOn.sort()).toEqual([...failedOn].sort())
    expect(listed.message).toMatch(/count\/1 cannot tick/)
    const hb = seen.outputs.find((o) => o.output === 'sink')!.holdingBack!
    expect(hb.failedActors).toEqual([FAILING])
    expect(hb.reason).toMatch(/count\/1 failed \(quarantined after failing on/)
    expect(seen.stages.find((s) => s.name === 'count')).toMatchObject({ stalled: true, actors: { failed: 1 } })
    await until(() => alerts.find((a) => a.actor === FAILING && a.state === 'failed' && a.quarantined), 10_000, 'an actor alert for count/1 quarantined')
    const status = await weir(['status', '--bus', nats.url, '--cluster', clusterName, '--json'])
    expect(status.code, status.stderr).toBe(0)
    const report = JSON.parse(status.stdout) as StatusReport
    const row = report.pipelines.find((p) => p.pipeline === name)!.actors.find((a) => a.actor === FAILING)!
    expect(row).toMatchObject({ lifecycle: 'failed', failure: { quarantined: true, code: 'WEIR_ACTOR_FAILED' } })
    const text = await weir(['status', '--bus', nats.url, '--cluster', clusterName])
    expect(text.stdout).toMatch(new RegExp(`count/1 failed \\[WEIR_ACTOR_FAILED\\]: .*quarantined after failing on .*weir actor clear ${name} count/1`))

    // 4. Fixed and cleared: it runs again and the pipeline finishes with the reference output.
    rmSync(flag)
    const cleared = await weir(['actor', 'clear', name, FAILING, '--bus', nats.url, '--cluster', clusterName])
    expect(cleared.code, cleared.stderr).toBe(0)
    expect(cleared.stdout).toMatch(new RegExp(`cleared count/1 of pipeline ${name} .*it had failed on .* and .*; placed again in generation \\d+`))
    const outcomes = await Promise.all(workers.map((w) => w.done))
    expect(outcomes.map((o) => o.code), cluster.logTails()).toEqual([0, 0, 0])
    for (const w of workers) expect(w.stdout()).toMatch(/: finished/)
    expectExactWordCounts(out, expected)
    await until(() => alerts.find((a) => a.actor === FAILING && a.state === 'recovered'), 10_000, 'the recovery alert for count/1')
    // A second clear has nothing to clear.
    const again = await weir(['actor', 'clear', name, FAILING, '--bus', nats.url, '--cluster', clusterName])
    expect(again.code, again.stderr).toBe(0)
    expect(again.stdout).toMatch(/has no recorded failure; nothing to clear/)
  }, 300_000)
})
