/**
 * A graceful hand-off is graceful: SIGTERM on one of two workers running a paced word count
 * on Kafka, and the leaving worker's actors move without any aborted work.
 *
 * Real `weir coordinator` and `weir worker` processes on Kafka and NATS (test/support/cluster.ts);
 * a test-side NATS client records every assignment, leave and release of the pipeline. Shown:
 * - no actor of either worker is fenced (no `fenced` line in any worker's log): the new
 *   owner opened each actor's producer only after the old owner had closed it;
 * - every actor the leaving worker ran reports its release after a committed final
 *   checkpoint (`actor-released` with the checkpoint's epoch and input positions), and is
 *   assigned to the other worker only after that report;
 * - the new owner restores each moved actor at exactly the released input positions: it
 *   replays nothing past the final checkpoint (on today's protocol the final EndTxn is
 *   fenced and aborted, and the new owner starts from the checkpoint before);
 * - the output equals the crash-free reference: every word counted 1..N once.
 */
import { randomUUID } from 'node:crypto'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { describe, expect, it, onTestFinished } from 'vitest'
import { actorReleased, assignmentMessage, workerLeave, type ActorReleased, type AssignmentMessage } from '../../runtime/control/messages.ts'
import { NatsBus } from '../../runtime/control/nats/nats-bus.ts'
import { actorProgress } from '../../runtime/control/progress.ts'
import { TestCluster } from '../support/cluster.ts'
import { requireService } from '../support/services.ts'
import { expectExactWordCounts, tempDirs, until, wordcountReference } from '../support/weir-cli.ts'

const kafka = await requireService('kafka')
const nats = await requireService('nats')
const tempDir = tempDirs('weir-handoff-')
/** Lines per source partition at RATE lines/s: about 15 s of input. */
const LINES = 600
const RATE = 40

interface LogLine {
  time: number
  level: number
  msg: string
  actor?: string
  positions?: Array<{ topic: string; partition: number; offset: number }>
}

function logLines(file: string): LogLine[] {
  return readFileSync(file, 'utf8').split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as LogLine)
}

describe.skipIf(!kafka.available || !nats.available)('graceful hand-off', () => {
  it('SIGTERM on one of two workers: no actor is fenced, each final checkpoint commits, the new owner starts exactly there, and the output is exact', async () => {
    const dir = tempDir()
    const expected = await wordcountReference(dir, LINES)
    const name = `handoff-${randomUUID().slice(0, 8)}`
    const out = join(dir, 'out')
    const cluster = new TestCluster({ cluster: `h${randomUUID().slice(0, 8)}`, kafka: `kafka://${kafka.url}`, nats: nats.url, logDir: join(dir, 'logs'), logLevel: 'info' })
    onTestFinished(() => cluster.killAll())

    const observer = await NatsBus.connect({ servers: [nats.url], name: 'weir-handoff-test' })
    onTestFinished(() => observer.close())
    const events: Array<{ at: number; assignment?: AssignmentMessage; released?: ActorReleased; leave?: string }> = []
    observer.subscribe(`weir.${cluster.options.cluster}.${name}.>`, (raw, subject) => {
      const kind = subject.split('.').at(-1)
      const at = Date.now()
      if (kind === 'assignment') {
        const m = assignmentMessage.safeParse(raw)
        if (m.success) events.push({ at, assignment: m.data })
      } else if (kind === 'actor-released') {
        const m = actorReleased.safeParse(raw)
        if (m.success) events.push({ at, released: m.data })
      } else if (kind === 'worker-leave') {
        const m = workerLeave.safeParse(raw)
        if (m.success) events.push({ at, leave: m.data.worker })
      }
    })
    const assignments = (): AssignmentMessage[] => events.flatMap((e) => (e.assignment === undefined ? [] : [e.assignment]))
    /** Actors each worker reported running (their processor opened). */
    const running = new Set<string>()
    observer.subscribe(`weir.${cluster.options.cluster}.${name}.progress`, (raw) => {
      const m = actorProgress.safeParse(raw)
      if (m.success && (m.data.lifecycle === 'running' || m.data.lifecycle === 'committing')) running.add(`${m.data.worker} ${m.data.actor}`)
    })

    cluster.startCoordinator('c1', ['--epoch-ms', '300', '--worker-timeout-ms', '10000', '--settle-ms', '300'])
    expect(await cluster.waitForLeader(20_000), cluster.logTails()).toBeDefined()
    const params = ['--param', `name=${name}`, '--param', `lines=${LINES}`, '--param', `rate=${RATE}`, '--param', `out=${out}/c-{partition}.jsonl`]
    const worker = (id: string): ReturnType<TestCluster['startWorker']> => cluster.startWorker(id, 'examples/wordcount.ts', ['--epoch-ms', '300', '--heartbeat-ms', '250', '--state-dir', join(dir, id), ...params])
    const a = worker('a')
    const b = worker('b')
    // Both run actors, and have for a while: b restored every actor it holds (on a loaded
    // machine that takes seconds), then every actor committed a few checkpoints.
    const both = await until(() => assignments().find((g) => new Set(Object.values(g.actors)).size === 2 && g.releasing === undefined), 60_000, 'an assignment giving actors to both workers')
    const held = Object.entries(both.actors).filter(([, w]) => w === 'b').map(([actor]) => actor).sort()
    expect(held.length, `b's actors in generation ${both.generation}`).toBeGreaterThan(0)
    await until(() => held.every((x) => running.has(`b ${x}`)), 60_000, 'b runs every actor it holds')
    await new Promise((r) => setTimeout(r, 2000))
    expect(assignments().at(-1)!.generation, 'no move after b started its actors').toBe(both.generation)
    const leftAt = Date.now()
    b.signal('SIGTERM')
    const [ra, rb] = await Promise.all([a.done, b.done])
    const story = cluster.logTails(40)
    expect(rb.code, story).toBe(0)
    expect(rb.stdout).toMatch(/weir worker b: stopped/)
    expect(ra.code, story).toBe(0)
    expect(ra.stdout).toMatch(/weir worker a: finished/)
    // The SIGTERM came while the input still ran: the hand-off happened mid-run.
    const finishedAt = Date.now()
    expect(events.find((e) => e.leave === 'b')?.at ?? Infinity, story).toBeLessThan(finishedAt)

    // 1. Nobody was fenced: the leaving worker's final transactions all committed.
    const fenced = [a, b].flatMap((p) => readFileSync(p.logFile, 'utf8').split('\n').filter((l) => /fenced/i.test(l)).map((l) => `${p.name}: ${l.slice(0, 300)}`))
    expect(fenced, 'fenced log lines').toEqual([])

    // 2. Each of b's actors was released by b after a committed final checkpoint, and given to a only after that.
    const releases = new Map<string, { at: number; released: ActorReleased }>()
    for (const e of events) if (e.released?.worker === 'b' && !releases.has(e.released.actor)) releases.set(e.released.actor, { at: e.at, released: e.released })
    expect([...releases.keys()].filter((x) => held.includes(x)).sort(), 'actors b released').toEqual(held)
    for (const actor of held) {
      const r = releases.get(actor)!.released
      const trail = (): string => readFileSync(b.logFile, 'utf8').split('\n').filter((l) => l.includes(`"${actor}"`)).slice(-8).map((l) => l.slice(0, 600)).join('\n')
      expect(r.finalCheckpoint, `${actor}: released without a committed final checkpoint; b's log of it:\n${trail()}`).toBeDefined()
      const firstToA = events.find((e) => e.at >= leftAt && e.assignment?.actors[actor] === 'a')
      expect(firstToA, `${actor} was never assigned to a`).toBeDefined()
      expect(firstToA!.at, `${actor} assigned to a before b released it`).toBeGreaterThanOrEqual(releases.get(actor)!.at)
    }

    // 3. a restored each moved actor at exactly the positions b's final checkpoint committed.
    const restored = new Map<string, LogLine>()
    for (const l of logLines(a.logFile)) {
      if (l.time >= leftAt && l.msg === 'actor restored: starting from its last checkpoint' && l.actor !== undefined && !restored.has(l.actor)) restored.set(l.actor, l)
    }
    let compared = 0
    for (const actor of held) {
      const finalPositions = releases.get(actor)!.released.finalCheckpoint?.positions ?? []
      const startedAt = restored.get(actor)
      expect(startedAt, `a's restore of ${actor}`).toBeDefined()
      expect(startedAt!.positions, `${actor}: a restored other positions than b released`).toEqual(finalPositions)
      if (finalPositions.length > 0) compared++
    }
    // Sources read no pipe input; every other actor's positions were compared.
    expect(compared, 'moved actors with input positions').toBeGreaterThan(0)

    // 4. Exactly once.
    expectExactWordCounts(out, expected)
    const leaveAt = events.find((e) => e.leave === 'b')!.at
    const releaseMs = held.map((x) => releases.get(x)!.at - leaveAt)
    const assignMs = held.map((x) => events.find((e) => e.at >= leftAt && e.assignment?.actors[x] === 'a')!.at - releases.get(x)!.at)
    console.log(`graceful hand-off: ${held.length} actors moved b → a; leave → release ${Math.min(...releaseMs)}–${Math.max(...releaseMs)} ms, release → assignment ${Math.min(...assignMs)}–${Math.max(...assignMs)} ms; ${compared} restored at the released positions`)
  }, 240_000)
})
