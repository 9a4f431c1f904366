/**
 * Planned moves release before they assign: the coordinator publishes an actor that moves
 * away from a live or leaving worker as releasing, and gives it to its new owner only
 * after the old one reported it released (or its heartbeat no longer lists it), or after
 * the release timeout; an actor of a worker declared dead moves at once. A successor
 * coordinator restored from the stored metadata keeps waiting for what was being released,
 * at most its own timeout.
 *
 * The coordinator runs against protocol peers on the in-process bus (the messages
 * `weir worker` sends), so each step happens at an exact moment.
 */
import { afterEach, describe, expect, it } from 'vitest'
import { Coordinator, type CoordinatorOptions } from '../../coordinator/coordinator.ts'
import type { PipelineMetadata } from '../../coordinator/cluster-metadata.ts'
import { subjects } from '../../runtime/control/bus.ts'
import { LocalBus } from '../../runtime/control/local/local-bus.ts'
import { assignmentMessage, type ActorReleased, type AssignmentMessage, type PipelineShape, type WorkerHeartbeat } from '../../runtime/control/messages.ts'
import { createLogger } from '../../runtime/log.ts'
import { sleep, until } from '../support/weir-cli.ts'

const CLUSTER = 'rel'
const PIPELINE = 'wc'
const SHAPE: PipelineShape = { stages: [{ name: 'count', parallelism: 4 }], standbys: 0 }
const FINGERPRINT = 'fp-1'
const log = createLogger(process.env.WEIR_LOG_LEVEL ?? 'silent')
const cleanups: Array<() => void> = []

afterEach(() => {
  for (const c of cleanups.splice(0)) c()
})

interface Setup {
  bus: LocalBus
  coordinator: Coordinator
  assignments: AssignmentMessage[]
  newest(): AssignmentMessage
}

function setUp(options: Partial<CoordinatorOptions> = {}): Setup {
  const bus = new LocalBus(log)
  const assignments: AssignmentMessage[] = []
  bus.subscribe(subjects.assignment(CLUSTER, PIPELINE), (raw) => void assignments.push(assignmentMessage.parse(raw)))
  const coordinator = new Coordinator(bus, { name: PIPELINE, fingerprint: FINGERPRINT, shape: SHAPE }, { cluster: CLUSTER, epochIntervalMs: 60_000, log, ...options })
  coordinator.start()
  cleanups.push(() => coordinator.stop(), () => void bus.close())
  return { bus, coordinator, assignments, newest: () => assignments.at(-1)! }
}

function hello(bus: LocalBus, worker: string): void {
  bus.publish(subjects.workerHello(CLUSTER, PIPELINE), { v: 1, worker, pipeline: PIPELINE, fingerprint: FINGERPRINT, shape: SHAPE })
}

function heartbeat(bus: LocalBus, worker: string, generation: number, actors: string[]): void {
  const hb: WorkerHeartbeat = { v: 1, worker, fingerprint: FINGERPRINT, generation, shape: SHAPE, actors, finished: [], lastEpoch: 0 }
  bus.publish(subjects.workerHeartbeat(CLUSTER, PIPELINE), hb)
}

function release(bus: LocalBus, worker: string, actor: string, generation: number): void {
  const msg: ActorReleased = { v: 1, actor, worker, generation, finalCheckpoint: { epoch: 7, positions: [{ topic: 't', partition: 0, offset: 42 }] } }
  bus.publish(subjects.actorReleased(CLUSTER, PIPELINE), msg)
}

function actorsOf(a: AssignmentMessage, worker: string): string[] {
  return Object.entries(a.actors).filter(([, w]) => w === worker).map(([x]) => x).sort()
}

/** Both peers joined and hold two actors each; returns w2's. `beforeW2` runs before w2 says hello. */
async function twoWorkers(s: Setup, beforeW2: () => void = () => undefined): Promise<string[]> {
  hello(s.bus, 'w1')
  await until(() => s.assignments.length > 0 && actorsOf(s.newest(), 'w1').length === 4, 2000, 'w1 gets every actor')
  beforeW2()
  hello(s.bus, 'w2')
  // w2 takes its share from w1, which is live: released first. w1 lets them go (its heartbeat may already have).
  const releasing = await until(() => s.assignments.find((g) => Object.keys(g.releasing ?? {}).length === 2), 2000, 'two actors released from w1 to w2')
  for (const a of Object.keys(releasing.releasing!)) release(s.bus, 'w1', a, releasing.generation)
  await until(() => actorsOf(s.newest(), 'w2').length === 2, 2000, 'w2 holds two actors')
  return actorsOf(s.newest(), 'w2')
}

describe('coordinator: planned moves release before they assign', () => {
  it('a leaving worker\'s actors go to the other worker only once it reports each released', async () => {
    const s = setUp({ releaseTimeoutMs: 60_000 })
    const held = await twoWorkers(s)
    s.bus.publish(subjects.workerLeave(CLUSTER, PIPELINE), { v: 1, worker: 'w2' })
    const releasing = await until(() => (Object.keys(s.newest().releasing ?? {}).length === 2 ? s.newest() : undefined), 2000, 'w2\'s actors released')
    expect(releasing.releasing).toEqual(Object.fromEntries(held.map((a) => [a, { from: 'w2', to: 'w1' }])))
    // Nobody runs them meanwhile.
    for (const a of held) expect(releasing.actors[a], a).toBeUndefined()
    await sleep(300)
    expect(s.assignments.filter((g) => held.some((a) => g.actors[a] === 'w1') && g.generation > releasing.generation)).toEqual([])

    // One report: that actor (only) goes to w1.
    release(s.bus, 'w2', held[0]!, releasing.generation)
    const first = await until(() => (s.newest().actors[held[0]!] === 'w1' ? s.newest() : undefined), 2000, `${held[0]} assigned to w1`)
    expect(first.generation).toBeGreaterThan(releasing.generation)
    expect(first.actors[held[1]!]).toBeUndefined()
    expect(first.releasing).toEqual({ [held[1]!]: { from: 'w2', to: 'w1' } })
    release(s.bus, 'w2', held[1]!, releasing.generation)
    await until(() => actorsOf(s.newest(), 'w1').length === 4 && s.newest().releasing === undefined, 2000, 'every actor on w1')
  })

  it('a report from another worker or an older generation does not count', async () => {
    const s = setUp({ releaseTimeoutMs: 60_000 })
    hello(s.bus, 'w1')
    await until(() => s.assignments.length > 0 && actorsOf(s.newest(), 'w1').length === 4, 2000, 'w1 gets every actor')
    hello(s.bus, 'w2')
    const releasing = await until(() => (Object.keys(s.newest().releasing ?? {}).length === 2 ? s.newest() : undefined), 2000, 'two actors released from w1 (live) to w2')
    const [first] = Object.keys(releasing.releasing!)
    release(s.bus, 'w2', first!, releasing.generation)
    release(s.bus, 'w1', first!, releasing.generation - 1)
    await sleep(200)
    expect(s.newest().generation).toBe(releasing.generation)
    expect(s.newest().actors[first!]).toBeUndefined()
    release(s.bus, 'w1', first!, releasing.generation)
    await until(() => s.newest().actors[first!] === 'w2', 2000, `${first} assigned once w1 reports it`)
  })

  it('a worker that left and stopped before applying the releasing generation still ends the wait with its report', async () => {
    const s = setUp({ releaseTimeoutMs: 60_000 })
    const held = await twoWorkers(s)
    s.bus.publish(subjects.workerLeave(CLUSTER, PIPELINE), { v: 1, worker: 'w2' })
    const releasing = await until(() => (Object.keys(s.newest().releasing ?? {}).length === 2 ? s.newest() : undefined), 2000, 'w2\'s actors released')
    for (const a of held) release(s.bus, 'w2', a, releasing.generation - 1)
    await until(() => held.every((a) => s.newest().actors[a] === 'w1'), 2000, 'w2\'s actors on w1')
  })

  it('a release not reported within the timeout is assigned anyway', async () => {
    const s = setUp({ releaseTimeoutMs: 400 })
    const held = await twoWorkers(s)
    s.bus.publish(subjects.workerLeave(CLUSTER, PIPELINE), { v: 1, worker: 'w2' })
    const leftAt = Date.now()
    await until(() => Object.keys(s.newest().releasing ?? {}).length === 2, 2000, 'w2\'s actors released')
    await until(() => held.every((a) => s.newest().actors[a] === 'w1'), 3000, 'w2\'s actors on w1 after the timeout')
    expect(Date.now() - leftAt).toBeGreaterThanOrEqual(350)
  })

  it('a worker declared dead is not waited for: its actors move at once', async () => {
    const s = setUp({ releaseTimeoutMs: 60_000, workerTimeoutMs: 300 })
    const beat = setInterval(() => heartbeat(s.bus, 'w1', s.newest()?.generation ?? 0, s.assignments.length === 0 ? [] : actorsOf(s.newest(), 'w1')), 50)
    cleanups.push(() => clearInterval(beat))
    let w2Beat: NodeJS.Timeout | undefined
    cleanups.push(() => clearInterval(w2Beat))
    const held = await twoWorkers(s, () => void (w2Beat = setInterval(() => heartbeat(s.bus, 'w2', s.newest().generation, actorsOf(s.newest(), 'w2')), 50)))
    clearInterval(w2Beat)
    const moved = await until(() => s.assignments.find((g) => held.every((a) => g.actors[a] === 'w1')), 3000, 'the dead worker\'s actors on w1')
    // No generation in between waited for a release from the dead worker.
    expect(s.assignments.filter((g) => Object.values(g.releasing ?? {}).some((r) => r.from === 'w2'))).toEqual([])
    expect(moved.releasing).toBeUndefined()
  })

  it('a heartbeat of the releasing generation that no longer lists the actor counts as its release', async () => {
    const s = setUp({ releaseTimeoutMs: 60_000 })
    hello(s.bus, 'w1')
    await until(() => s.assignments.length > 0 && actorsOf(s.newest(), 'w1').length === 4, 2000, 'w1 gets every actor')
    hello(s.bus, 'w2')
    const releasing = await until(() => (Object.keys(s.newest().releasing ?? {}).length === 2 ? s.newest() : undefined), 2000, 'two actors released from w1')
    const moving = Object.keys(releasing.releasing!)
    // A heartbeat from before w1 applied the generation still lists them: not a release.
    heartbeat(s.bus, 'w1', releasing.generation - 1, [])
    await sleep(100)
    expect(s.newest().generation).toBe(releasing.generation)
    heartbeat(s.bus, 'w1', releasing.generation, actorsOf(releasing, 'w1'))
    await until(() => moving.every((a) => s.newest().actors[a] === 'w2'), 2000, 'the released actors on w2')
  })

  it('a successor restored mid-release waits for the report, and assigns at once when it comes', async () => {
    const restored: PipelineMetadata = {
      fingerprint: FINGERPRINT, shape: SHAPE, members: ['w1'], generation: 5,
      assignment: { 'count/0': 'w1', 'count/1': 'w1', 'count/2': 'w1', 'count/3': 'w1' }, standbys: {}, epoch: 10, completedEpoch: 9, finished: [], failures: {},
      releasing: { 'count/2': { from: 'gone', generation: 5 }, 'count/3': { from: 'gone', generation: 5 } },
    }
    const s = setUp({ restored, releaseTimeoutMs: 500, settleMs: 60_000, generationBase: 2_000_000 })
    hello(s.bus, 'w1')
    heartbeat(s.bus, 'w1', 5, ['count/0', 'count/1'])
    const first = await until(() => s.assignments.at(-1), 2000, 'the successor places once w1 was heard')
    expect(first.generation).toBeGreaterThan(2_000_000)
    expect(first.releasing).toEqual({ 'count/2': { from: 'gone', to: 'w1' }, 'count/3': { from: 'gone', to: 'w1' } })
    release(s.bus, 'gone', 'count/2', 5)
    await until(() => s.newest().actors['count/2'] === 'w1' && s.newest().actors['count/3'] === undefined, 2000, 'count/2 assigned on its report')
    // The other is never reported: the successor's own timeout assigns it.
    await until(() => s.newest().actors['count/3'] === 'w1', 3000, 'count/3 assigned after the timeout')
  })
})
