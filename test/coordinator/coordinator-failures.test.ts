/**
 * The coordinator and actors that fail for good: one that failed on a worker moves at once
 * (nothing to release: its instance is closed) to a worker it has not failed on; after a
 * second worker, or with no other worker to try, it is quarantined: unassigned, published
 * with the assignment, kept in the metadata (a successor keeps it), out of epoch completion;
 * an operator's clear places it again and is answered.
 *
 * The coordinator runs against protocol peers on the in-process bus.
 */
import { afterEach, describe, expect, it } from 'vitest'
import { Coordinator, type CoordinatorOptions } from '../../coordinator/coordinator.ts'
import type { PipelineMetadata } from '../../coordinator/cluster-metadata.ts'
import { subjects } from '../../runtime/control/bus.ts'
import { LocalBus } from '../../runtime/control/local/local-bus.ts'
import { actorClearAnswer, assignmentMessage, type ActorClearAnswer, type ActorFailed, type AssignmentMessage, type PipelineShape } from '../../runtime/control/messages.ts'
import { createLogger } from '../../runtime/log.ts'
import { sleep, until } from '../support/weir-cli.ts'

const CLUSTER = 'fail'
const PIPELINE = 'wc'
const SHAPE: PipelineShape = { stages: [{ name: 'count', parallelism: 6 }], standbys: 0 }
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
  answers: ActorClearAnswer[]
  newest(): AssignmentMessage
}

function setUp(options: Partial<CoordinatorOptions> = {}): Setup {
  const bus = new LocalBus(log)
  const assignments: AssignmentMessage[] = []
  const answers: ActorClearAnswer[] = []
  bus.subscribe(subjects.assignment(CLUSTER, PIPELINE), (raw) => void assignments.push(assignmentMessage.parse(raw)))
  bus.subscribe(subjects.actorClearAnswer(CLUSTER, PIPELINE), (raw) => void answers.push(actorClearAnswer.parse(raw)))
  const coordinator = new Coordinator(bus, { name: PIPELINE, fingerprint: FINGERPRINT, shape: SHAPE }, { cluster: CLUSTER, epochIntervalMs: 60_000, log, releaseTimeoutMs: 60_000, ...options })
  coordinator.start()
  cleanups.push(() => coordinator.stop(), () => void bus.close())
  return { bus, coordinator, assignments, answers, newest: () => assignments.at(-1)! }
}

async function join(s: Setup, workers: string[]): Promise<void> {
  for (const w of workers) {
    s.bus.publish(subjects.workerHello(CLUSTER, PIPELINE), { v: 1, worker: w, pipeline: PIPELINE, fingerprint: FINGERPRINT, shape: SHAPE })
    // Each join releases a share from the others: they let it go at once.
    await until(() => s.assignments.some((g) => Object.values(g.actors).includes(w) || Object.values(g.releasing ?? {}).some((r) => r.to === w)), 2000, `${w} placed`)
    for (const [actor, r] of Object.entries(s.newest().releasing ?? {})) s.bus.publish(subjects.actorReleased(CLUSTER, PIPELINE), { v: 1, actor, worker: r.from, generation: s.newest().generation })
    await until(() => s.newest().releasing === undefined, 2000, 'releases done')
  }
}

function fail(s: Setup, actor: string, worker: string): void {
  const report: ActorFailed = { v: 1, actor, worker, generation: s.newest().generation, error: { code: 'WEIR_ACTOR_FAILED', message: `actor ${actor} stopped: boom on ${worker}` }, at: Date.now() }
  s.bus.publish(subjects.actorFailed(CLUSTER, PIPELINE), report)
}

function clear(s: Setup, actor: string, requestId: string): Promise<ActorClearAnswer> {
  s.bus.publish(subjects.actorClear(CLUSTER, PIPELINE), { v: 1, actor, requestId })
  return until(() => s.answers.find((a) => a.requestId === requestId), 2000, `the answer to ${requestId}`)
}

describe('coordinator: actors that fail for good', () => {
  it('an actor that failed on one worker moves at once to another, then is quarantined after failing there too', async () => {
    const s = setUp()
    await join(s, ['w1', 'w2', 'w3'])
    const first = s.newest().actors['count/1']!
    const before = s.newest().generation
    fail(s, 'count/1', first)
    const moved = await until(() => {
      const g = s.newest()
      return g.generation > before && g.actors['count/1'] !== undefined ? g : undefined
    }, 2000, 'count/1 moved')
    const second = moved.actors['count/1']!
    expect(second).not.toBe(first)
    // Nothing to wait for: its instance is closed.
    expect(moved.releasing?.['count/1']).toBeUndefined()
    expect(moved.quarantined).toBeUndefined()

    fail(s, 'count/1', second)
    const q = await until(() => (s.newest().quarantined?.['count/1'] !== undefined ? s.newest() : undefined), 2000, 'count/1 quarantined')
    expect(q.actors['count/1']).toBeUndefined()
    expect(q.quarantined!['count/1']).toMatchObject({ workers: [first, second], error: { code: 'WEIR_ACTOR_FAILED', message: `actor count/1 stopped: boom on ${second}` } })
    // Every other actor still has a worker.
    expect(Object.keys(q.actors).sort()).toEqual(['count/0', 'count/2', 'count/3', 'count/4', 'count/5'])
    expect(s.coordinator.metadata().failures['count/1']).toMatchObject({ workers: [first, second], quarantined: true })
    expect(s.coordinator.placement.quarantined).toEqual(['count/1'])

    // A later report (a third worker) changes nothing; a membership change does not place it either.
    const third = ['w1', 'w2', 'w3'].find((w) => w !== first && w !== second)!
    fail(s, 'count/1', third)
    s.bus.publish(subjects.workerLeave(CLUSTER, PIPELINE), { v: 1, worker: third })
    await sleep(100)
    expect(s.assignments.filter((g) => g.generation > q.generation && g.actors['count/1'] !== undefined)).toEqual([])
    expect(s.newest().quarantined?.['count/1']?.workers).toEqual([first, second])
  })

  it('a failure reported by a worker the actor no longer runs on (a zombie on its way out) is not counted', async () => {
    const s = setUp()
    await join(s, ['w1', 'w2'])
    const owner = s.newest().actors['count/3']!
    const other = owner === 'w1' ? 'w2' : 'w1'
    const before = s.newest().generation
    fail(s, 'count/3', other)
    await sleep(100)
    expect(s.newest().generation).toBe(before)
    expect(s.coordinator.metadata().failures).toEqual({})
  })

  it('with a single worker, one failure quarantines: there is nowhere else to try', async () => {
    const s = setUp()
    await join(s, ['w1'])
    fail(s, 'count/4', 'w1')
    const q = await until(() => (s.newest().quarantined?.['count/4'] !== undefined ? s.newest() : undefined), 2000, 'count/4 quarantined')
    expect(q.quarantined!['count/4']!.workers).toEqual(['w1'])
  })

  it('completion of an epoch does not wait for a quarantined actor', async () => {
    const s = setUp({ epochIntervalMs: 30 })
    await join(s, ['w1'])
    fail(s, 'count/0', 'w1')
    await until(() => s.newest().quarantined?.['count/0'] !== undefined, 2000, 'count/0 quarantined')
    const ackAll = (epoch: number): void => {
      for (const a of ['count/1', 'count/2', 'count/3', 'count/4', 'count/5']) s.bus.publish(subjects.epochAck(CLUSTER, PIPELINE), { v: 1, actor: a, epoch })
    }
    ackAll(3)
    await until(() => s.coordinator.completedEpoch >= 3, 2000, 'epoch 3 completed without count/0')
  })

  it('an operator\'s clear places a quarantined actor again and answers; nothing to clear and no such actor are answered too', async () => {
    const s = setUp()
    await join(s, ['w1', 'w2'])
    const a = s.newest().actors['count/2']!
    fail(s, 'count/2', a)
    await until(() => s.newest().actors['count/2'] !== undefined && s.newest().actors['count/2'] !== a, 2000, 'count/2 moved')
    fail(s, 'count/2', s.newest().actors['count/2']!)
    await until(() => s.newest().quarantined?.['count/2'] !== undefined, 2000, 'count/2 quarantined')

    const answer = await clear(s, 'count/2', 'r1')
    expect(answer).toMatchObject({ outcome: 'cleared', failure: { workers: expect.arrayContaining(['w1', 'w2']) } })
    const placed = s.assignments.find((g) => g.generation === answer.generation)!
    expect(placed.actors['count/2']).toBeDefined()
    expect(placed.quarantined).toBeUndefined()
    expect(s.coordinator.metadata().failures).toEqual({})
    expect(await clear(s, 'count/2', 'r2')).toMatchObject({ outcome: 'not-failed' })
    expect(await clear(s, 'count/9', 'r3')).toMatchObject({ outcome: 'unknown-actor' })
  })

  it('a successor restored with a quarantine keeps the actor unassigned until it is cleared', async () => {
    const restored: PipelineMetadata = {
      fingerprint: FINGERPRINT, shape: SHAPE, members: ['w1'], generation: 9,
      assignment: { 'count/0': 'w1', 'count/1': 'w1', 'count/2': 'w1', 'count/3': 'w1', 'count/4': 'w1' }, standbys: {}, epoch: 10, completedEpoch: 9, finished: [], releasing: {},
      failures: { 'count/5': { workers: ['w1', 'gone'], error: { code: 'WEIR_ACTOR_FAILED', message: 'boom' }, at: 1, quarantined: true } },
    }
    const s = setUp({ restored, settleMs: 60_000, generationBase: 2_000_000 })
    s.bus.publish(subjects.workerHello(CLUSTER, PIPELINE), { v: 1, worker: 'w1', pipeline: PIPELINE, fingerprint: FINGERPRINT, shape: SHAPE })
    const first = await until(() => s.assignments.at(-1), 2000, 'the successor places')
    expect(first.actors['count/5']).toBeUndefined()
    expect(first.quarantined?.['count/5']?.workers).toEqual(['w1', 'gone'])
    const answer = await clear(s, 'count/5', 'r1')
    expect(s.assignments.find((g) => g.generation === answer.generation)?.actors['count/5']).toBe('w1')
  })
})
