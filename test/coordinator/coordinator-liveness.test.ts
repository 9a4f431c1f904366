/**
 * How the coordinator tells a dead worker: a worker that answers probes and stops answering
 * (its process and bus connection gone) is declared dead after two unanswered probes, long
 * before the heartbeat timeout; one that never said it answers probes waits out the timeout;
 * when every worker stops answering at once, nobody is declared dead (the coordinator's own
 * link is suspect); a slow answer counts for nothing.
 *
 * Protocol peers on the in-process bus (the messages `weir worker` sends), so each step
 * happens at a known moment. test/coordinator/cluster-failover.test.ts kills real
 * `weir worker` processes on NATS.
 */
import { afterEach, describe, expect, it } from 'vitest'
import { Coordinator, DEFAULT_WORKER_PROBE_MS, UNANSWERED_PROBES_BEFORE_DEAD, type CoordinatorOptions } from '../../coordinator/coordinator.ts'
import { subjects, workerProbeToken, type Subscription } from '../../runtime/control/bus.ts'
import type { ControlBus } from '../../runtime/control/bus.ts'
import { LocalBus } from '../../runtime/control/local/local-bus.ts'
import { NatsBus } from '../../runtime/control/nats/nats-bus.ts'
import { assignmentMessage, type AssignmentMessage, type PipelineShape, type WorkerHeartbeat } from '../../runtime/control/messages.ts'
import { createLogger } from '../../runtime/log.ts'
import { requireNatsServerBinary, startNatsServer } from '../support/nats-server.ts'
import { sleep, until } from '../support/weir-cli.ts'
import { runsAlone } from '../support/file-lock.ts'

// Bounds real processes' timing: no other test file runs beside it (test/support/file-lock.ts).
runsAlone()

const CLUSTER = 'live'
const PIPELINE = 'wc'
const SHAPE: PipelineShape = { stages: [{ name: 'count', parallelism: 4 }], standbys: 0 }
const FINGERPRINT = 'fp-1'
const log = createLogger(process.env.WEIR_LOG_LEVEL ?? 'silent')
const cleanups: Array<() => void> = []

afterEach(() => {
  for (const c of cleanups.splice(0)) c()
})

function setUp(options: Partial<CoordinatorOptions>): { bus: LocalBus; assignments: AssignmentMessage[] } {
  const bus = new LocalBus(log)
  const assignments: AssignmentMessage[] = []
  bus.subscribe(subjects.assignment(CLUSTER, PIPELINE), (raw) => void assignments.push(assignmentMessage.parse(raw)))
  const coordinator = new Coordinator(bus, { name: PIPELINE, fingerprint: FINGERPRINT, shape: SHAPE }, { cluster: CLUSTER, epochIntervalMs: 60_000, log, ...options })
  coordinator.start()
  cleanups.push(() => coordinator.stop(), () => void bus.close())
  return { bus, assignments }
}

/** A worker as `weir worker` speaks: hello, heartbeats, and (if it says so) answers to probes. */
class Peer {
  private timer: NodeJS.Timeout | undefined
  private responder: Subscription | undefined
  private subscription: Subscription | undefined
  /** Starts its heartbeats (set by start()). */
  private heartbeats: () => void = () => undefined
  probes = 0

  constructor(private readonly bus: ControlBus, readonly id: string, private readonly answersProbes: boolean, private readonly answerDelayMs = 0) {}

  start(): this {
    if (this.answersProbes) this.answer()
    const flag = this.answersProbes ? { answersProbes: true as const } : {}
    // It runs what the newest assignment gives it and lets go at once of what moves away.
    let generation = 0
    let actors: string[] = []
    this.subscription = this.bus.subscribe(subjects.assignment(CLUSTER, PIPELINE), (raw) => {
      const a = assignmentMessage.parse(raw)
      generation = a.generation
      actors = Object.entries(a.actors).filter(([x, w]) => w === this.id && a.releasing?.[x] === undefined).map(([x]) => x)
      for (const [actor, r] of Object.entries(a.releasing ?? {})) {
        if (r.from === this.id) this.bus.publish(subjects.actorReleased(CLUSTER, PIPELINE), { v: 1, actor, worker: this.id, generation })
      }
    })
    this.bus.publish(subjects.workerHello(CLUSTER, PIPELINE), { v: 1, worker: this.id, pipeline: PIPELINE, fingerprint: FINGERPRINT, shape: SHAPE, ...flag })
    this.heartbeats = () => {
      this.timer = setInterval(() => {
        const hb: WorkerHeartbeat = { v: 1, worker: this.id, fingerprint: FINGERPRINT, generation, shape: SHAPE, actors, finished: [], lastEpoch: 0, ...flag }
        this.bus.publish(subjects.workerHeartbeat(CLUSTER, PIPELINE), hb)
      }, 200)
    }
    this.heartbeats()
    cleanups.push(() => this.kill())
    return this
  }

  private answer(): void {
    this.responder = this.bus.respond(subjects.workerProbe(CLUSTER, PIPELINE, this.id), async () => {
      this.probes++
      if (this.answerDelayMs > 0) await sleep(this.answerDelayMs)
      return { v: 1, worker: this.id }
    })
  }

  /** Away, as while its bus connection is: no heartbeats, its probe subscription gone. */
  away(): void {
    clearInterval(this.timer)
    this.responder?.unsubscribe()
  }

  /** Back again. */
  back(): void {
    this.answer()
    this.heartbeats()
  }

  /** As SIGKILL: no more heartbeats, and its subscriptions are gone. */
  kill(): void {
    clearInterval(this.timer)
    this.responder?.unsubscribe()
    this.subscription?.unsubscribe()
  }

  /** Alive but silent (a stuck event loop that still holds its connection): heartbeats stop, probes still reach it. */
  mute(): void {
    clearInterval(this.timer)
  }
}

const workersOf = (a: AssignmentMessage | undefined): Set<string> => new Set(Object.values(a?.actors ?? {}))

async function placedOn(s: { assignments: AssignmentMessage[] }, workers: string[]): Promise<void> {
  await until(() => { const w = workersOf(s.assignments.at(-1)); return w.size === workers.length && workers.every((x) => w.has(x)) }, 5000, `actors placed on ${workers.join(', ')}`)
}

describe('coordinator: worker liveness probes', () => {
  it('a killed worker that answered probes is declared dead after two unanswered probes, long before the timeout', async () => {
    const s = setUp({ workerTimeoutMs: 30_000 })
    new Peer(s.bus, 'w1', true).start()
    const w2 = new Peer(s.bus, 'w2', true).start()
    await placedOn(s, ['w1', 'w2'])
    await until(() => w2.probes > 1, 3000, 'w2 is probed while it lives')
    const killedAt = Date.now()
    w2.kill()
    await placedOn(s, ['w1'])
    const detectionMs = Date.now() - killedAt
    // Between UNANSWERED_PROBES_BEFORE_DEAD - 1 and UNANSWERED_PROBES_BEFORE_DEAD probe intervals, plus scheduling.
    expect(detectionMs).toBeGreaterThanOrEqual((UNANSWERED_PROBES_BEFORE_DEAD - 1) * DEFAULT_WORKER_PROBE_MS - 50)
    expect(detectionMs).toBeLessThan(UNANSWERED_PROBES_BEFORE_DEAD * DEFAULT_WORKER_PROBE_MS + 1000)
  })

  /**
   * w1 lives on; `worker` goes silent (`how`) and must still be a member at `checkAtMs`, then
   * be declared dead no sooner than the timeout (less one heartbeat interval: it was silent
   * since its last heartbeat, up to 200 ms before).
   */
  async function deadOnlyAfterTimeout(timeoutMs: number, worker: string, answersProbes: boolean, how: 'kill' | 'mute', checkAtMs: number): Promise<void> {
    const s = setUp({ workerTimeoutMs: timeoutMs })
    new Peer(s.bus, 'w1', true).start()
    const peer = new Peer(s.bus, worker, answersProbes).start()
    await placedOn(s, ['w1', worker])
    const silentAt = Date.now()
    peer[how]()
    await sleep(checkAtMs)
    expect(workersOf(s.assignments.at(-1)).has(worker), 'still a member within its timeout').toBe(true)
    await placedOn(s, ['w1'])
    expect(Date.now() - silentAt).toBeGreaterThanOrEqual(timeoutMs - 250)
  }

  it('a worker that never said it answers probes is not probed: it waits out the heartbeat timeout', async () => {
    await deadOnlyAfterTimeout(1500, 'old', false, 'kill', 1000)
  })

  it('a worker alive but silent (it still answers probes) is declared dead by the timeout alone', async () => {
    await deadOnlyAfterTimeout(1200, 'stuck', true, 'mute', 800)
  })

  it('answers slower than the probe interval count for nothing', async () => {
    const s = setUp({ workerTimeoutMs: 30_000 })
    new Peer(s.bus, 'w1', true).start()
    const slow = new Peer(s.bus, 'slow', true, 3 * DEFAULT_WORKER_PROBE_MS).start()
    await placedOn(s, ['w1', 'slow'])
    await sleep(8 * DEFAULT_WORKER_PROBE_MS)
    expect(slow.probes).toBeGreaterThan(1)
    expect(workersOf(s.assignments.at(-1))).toEqual(new Set(['w1', 'slow']))
  })

  it('when every worker stops answering at once, nobody is declared dead (the coordinator\'s own link is suspect)', async () => {
    const s = setUp({ workerTimeoutMs: 30_000 })
    const peers = [new Peer(s.bus, 'w1', true).start(), new Peer(s.bus, 'w2', true).start()]
    await placedOn(s, ['w1', 'w2'])
    const generation = s.assignments.at(-1)!.generation
    for (const p of peers) p.kill()
    await sleep(10 * DEFAULT_WORKER_PROBE_MS)
    expect(s.assignments.at(-1)!.generation).toBe(generation)
  })

  it('workerProbeMs 0 turns probing off', async () => {
    const s = setUp({ workerTimeoutMs: 30_000, workerProbeMs: 0 })
    const w1 = new Peer(s.bus, 'w1', true).start()
    const w2 = new Peer(s.bus, 'w2', true).start()
    await placedOn(s, ['w1', 'w2'])
    w2.kill()
    await sleep(6 * DEFAULT_WORKER_PROBE_MS)
    expect(w1.probes + w2.probes).toBe(0)
    expect(workersOf(s.assignments.at(-1))).toEqual(new Set(['w1', 'w2']))
  })

  it('a worker id that is not a subject token gets a token of its own', () => {
    expect(workerProbeToken('host-1_a')).toBe('host-1_a')
    expect(workerProbeToken('host.example.com-42')).toBe(`_${Buffer.from('host.example.com-42').toString('hex')}`)
    expect(workerProbeToken('_x')).not.toBe('_x')
    expect(subjects.workerProbe(CLUSTER, PIPELINE, 'a b')).not.toContain(' ')
  })
})

describe.skipIf(!requireNatsServerBinary())('coordinator: worker liveness probes on NATS', () => {
  it('the NATS server restarts: the bus says when it reconnected, and no worker is declared dead while the workers reconnect after the coordinator', async () => {
    const first = await startNatsServer({ jetstream: false })
    const port = first.port
    const open = (name: string): Promise<NatsBus> => NatsBus.connect({ servers: [first.url], name })
    const coordinatorBus = await open('liveness-coordinator')
    const peerBuses = await Promise.all(['w1', 'w2'].map((w) => open(`liveness-${w}`)))
    cleanups.push(() => void coordinatorBus.close(), ...peerBuses.map((b) => () => void b.close()))
    const assignments: AssignmentMessage[] = []
    coordinatorBus.subscribe(subjects.assignment(CLUSTER, PIPELINE), (raw) => void assignments.push(assignmentMessage.parse(raw)))
    const coordinator = new Coordinator(coordinatorBus, { name: PIPELINE, fingerprint: FINGERPRINT, shape: SHAPE }, { cluster: CLUSTER, epochIntervalMs: 60_000, log, workerTimeoutMs: 4000 })
    coordinator.start()
    cleanups.push(() => coordinator.stop())
    const [w1, w2] = peerBuses.map((b, i) => new Peer(b, `w${i + 1}`, true).start())
    await placedOn({ assignments }, ['w1', 'w2'])
    const generation = assignments.at(-1)!.generation
    expect(coordinatorBus.reconnectedAt).toBe(0)

    // Down for a moment, then back on the same port. w2 comes back late: its probe subscription
    // and heartbeats return 1.5 s (six probe intervals) after the coordinator's connection did.
    w2!.away()
    await first.stop()
    await until(() => coordinatorBus.state === 'reconnecting', 5000, 'the coordinator\'s bus notices')
    const restartedAt = Date.now()
    await startNatsServer({ jetstream: false, port })
    await until(() => coordinatorBus.state === 'connected', 10_000, 'the coordinator\'s bus reconnects')
    expect(coordinatorBus.reconnectedAt).toBeGreaterThanOrEqual(restartedAt)
    await sleep(1500)
    w2!.back()
    await until(() => peerBuses.every((b) => b.state === 'connected'), 10_000, 'every bus reconnects')
    await sleep(4000 + 4 * DEFAULT_WORKER_PROBE_MS)
    // Both stayed members throughout: no assignment moved an actor, and probing went on after the grace.
    expect(assignments.at(-1)!.generation).toBe(generation)
    expect(workersOf(assignments.at(-1))).toEqual(new Set(['w1', 'w2']))
    const probed = w1!.probes
    await sleep(3 * DEFAULT_WORKER_PROBE_MS)
    expect(w1!.probes).toBeGreaterThan(probed)
  }, 60_000)
})
