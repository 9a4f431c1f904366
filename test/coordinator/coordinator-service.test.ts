/**
 * The leader's metadata in NATS KV: a coordinator service stores each pipeline's members,
 * generation, placement and epochs; a successor started from what is stored continues
 * them (same placement, newer generation, later epochs) without waiting out its settle
 * time, and expires stored members that stay silent. A deposed leader's write is refused
 * and stops it.
 *
 * Real NATS from scripts/services.sh. The workers here are protocol peers on the real bus
 * (hello, heartbeats, epoch acks as `weir worker` sends them), so the test can stop one
 * worker's heartbeats at an exact moment.
 */
import { randomUUID } from 'node:crypto'
import { Kvm } from '@nats-io/kv'
import { connect } from '@nats-io/transport-node'
import { afterAll, afterEach, describe, expect, it } from 'vitest'
import { ClusterMetadata, type PipelineMetadata } from '../../coordinator/cluster-metadata.ts'
import { startCoordinatorService, type CoordinatorService } from '../../coordinator/coordinator-service.ts'
import { bucketName, LeaderFencedError } from '../../coordinator/leader-lease.ts'
import { assignmentMessage, epochMessage, type AssignmentMessage, type PipelineShape, type WorkerHeartbeat } from '../../runtime/control/messages.ts'
import { subjects } from '../../runtime/control/bus.ts'
import { NatsBus } from '../../runtime/control/nats/nats-bus.ts'
import { createLogger } from '../../runtime/log.ts'
import { requireService } from '../support/services.ts'
import { sleep, until } from '../support/weir-cli.ts'

const nats = await requireService('nats')
const log = createLogger(process.env.WEIR_LOG_LEVEL ?? 'silent')
const PIPELINE = 'wc'
const SHAPE: PipelineShape = { stages: [{ name: 'count', parallelism: 4 }], standbys: 0 }
const FINGERPRINT = 'fp-1'
const clusters: string[] = []
const cleanups: Array<() => unknown> = []

/** A worker as the coordinator sees it: hello, then a heartbeat every 100 ms with what the newest assignment gives it, and an ack of every epoch. */
class Peer {
  actors: string[] = []
  generation = 0
  lastEpoch = 0
  private timer: NodeJS.Timeout | undefined
  private readonly subs: Array<{ unsubscribe(): void }> = []

  constructor(private readonly bus: NatsBus, private readonly cluster: string, readonly id: string) {}

  start(): this {
    this.subs.push(
      this.bus.subscribe(subjects.assignment(this.cluster, PIPELINE), (raw) => {
        const m = assignmentMessage.parse(raw)
        if (m.generation < this.generation) return
        this.generation = m.generation
        this.actors = Object.entries(m.actors).filter(([, w]) => w === this.id).map(([a]) => a).sort()
      }),
      this.bus.subscribe(subjects.epoch(this.cluster, PIPELINE), (raw) => {
        const m = epochMessage.parse(raw)
        this.lastEpoch = Math.max(this.lastEpoch, m.epoch)
        for (const actor of this.actors) this.bus.publish(subjects.epochAck(this.cluster, PIPELINE), { v: 1, actor, epoch: m.epoch })
      }),
    )
    this.bus.publish(subjects.workerHello(this.cluster, PIPELINE), { v: 1, worker: this.id, pipeline: PIPELINE, fingerprint: FINGERPRINT, shape: SHAPE })
    this.timer = setInterval(() => this.heartbeat(), 100)
    return this
  }

  heartbeat(): void {
    const hb: WorkerHeartbeat = { v: 1, worker: this.id, fingerprint: FINGERPRINT, generation: this.generation, shape: SHAPE, actors: this.actors, finished: [], lastEpoch: this.lastEpoch }
    this.bus.publish(subjects.workerHeartbeat(this.cluster, PIPELINE), hb)
  }

  /** Goes silent, as a SIGKILLed worker does. */
  stop(): void {
    clearInterval(this.timer)
    for (const s of this.subs) s.unsubscribe()
  }
}

describe.skipIf(!nats.available)('coordinator service with its metadata in NATS KV', () => {
  afterEach(async () => {
    for (const c of cleanups.splice(0).reverse()) await c()
  })
  afterAll(async () => {
    const nc = await connect({ servers: nats.url })
    for (const c of clusters) await new Kvm(nc).open(bucketName(c)).then((kv) => kv.destroy()).catch(() => undefined)
    await nc.close()
  })

  async function setUp(): Promise<{ cluster: string; bus: NatsBus; store: ClusterMetadata; assignments: AssignmentMessage[]; epochs: number[] }> {
    const cluster = `svc-${randomUUID().slice(0, 8)}`
    clusters.push(cluster)
    const bus = await NatsBus.connect({ servers: [nats.url], name: `test-${cluster}`, log })
    const store = await ClusterMetadata.open({ servers: [nats.url], cluster, log })
    cleanups.push(() => bus.close(), () => store.close())
    const assignments: AssignmentMessage[] = []
    const epochs: number[] = []
    bus.subscribe(subjects.assignment(cluster, PIPELINE), (raw) => void assignments.push(assignmentMessage.parse(raw)))
    bus.subscribe(subjects.epoch(cluster, PIPELINE), (raw) => void epochs.push(epochMessage.parse(raw).epoch))
    return { cluster, bus, store, assignments, epochs }
  }

  function leader(bus: NatsBus, cluster: string, store: ClusterMetadata, term: number, restored: Record<string, PipelineMetadata>, settleMs: number, onFenced: (err: LeaderFencedError) => void = () => undefined): CoordinatorService {
    const service = startCoordinatorService(bus, {
      cluster, log, epochIntervalMs: 100, workerTimeoutMs: 1500, settleMs, generationBase: term * 1_000_000,
      metadata: { store, term, restored, onFenced },
    })
    cleanups.push(() => service.stop())
    return service
  }

  it('a successor continues the stored placement, generation and epochs, and expires a stored member that stays silent', async () => {
    const { cluster, bus, store, assignments, epochs } = await setUp()
    await store.claim(1)
    const first = leader(bus, cluster, store, 1, {}, 300)
    const w1 = new Peer(bus, cluster, 'w1').start()
    const w2 = new Peer(bus, cluster, 'w2').start()
    cleanups.push(() => w1.stop(), () => w2.stop())

    // The first leader places 2 + 2 and stores it, with the epochs every actor committed.
    const stored = await until(async () => {
      const m = (await store.read()).pipelines[PIPELINE]
      return m !== undefined && m.members.length === 2 && Object.keys(m.assignment).length === 4 && m.completedEpoch >= 5 ? m : undefined
    }, 10_000, 'the first leader stores members, placement and completed epochs')
    expect(stored).toMatchObject({ fingerprint: FINGERPRINT, shape: SHAPE, members: expect.arrayContaining(['w1', 'w2']) })
    expect(stored.generation).toBeGreaterThan(1_000_000)
    expect(new Set(Object.values(stored.assignment))).toEqual(new Set(['w1', 'w2']))
    expect(first.coordinators.get(PIPELINE)!.placement.actors).toEqual(stored.assignment)

    // The leader dies (it writes nothing more); a successor claims the metadata with a newer term.
    first.stop()
    const claimed = await store.claim(2)
    const before = claimed.pipelines[PIPELINE]!
    const assignmentsBefore = assignments.length
    const epochsBefore = epochs.length
    const startedAt = Date.now()
    const second = leader(bus, cluster, store, 2, claimed.pipelines, 20_000)
    // It coordinates the pipeline before any worker speaks, and places as soon as both stored members were heard: not after its 20 s settle.
    expect(second.coordinators.has(PIPELINE)).toBe(true)
    const next = await until(() => assignments.slice(assignmentsBefore).find((a) => a.generation > 2_000_000), 5000, 'the successor publishes an assignment')
    expect(Date.now() - startedAt).toBeLessThan(3000)
    expect(next.actors).toEqual(before.assignment)
    // Epochs go on after the stored ones.
    await until(() => epochs.length > epochsBefore + 2, 5000, 'the successor starts epochs')
    expect(Math.min(...epochs.slice(epochsBefore))).toBeGreaterThan(before.epoch)
    const continued = await until(async () => {
      const m = (await store.read()).pipelines[PIPELINE]!
      return m.generation === next.generation && m.completedEpoch > before.completedEpoch ? m : undefined
    }, 5000, 'the successor stores its generation and epochs')
    expect(continued.assignment).toEqual(before.assignment)

    // w2 goes silent: after the worker timeout its actors move to w1, and the metadata says so.
    w2.stop()
    const moved = await until(async () => {
      const m = (await store.read()).pipelines[PIPELINE]!
      return m.members.length === 1 ? m : undefined
    }, 8000, 'the silent member is expired and stored')
    expect(moved.members).toEqual(['w1'])
    expect(Object.values(moved.assignment)).toEqual(['w1', 'w1', 'w1', 'w1'])
    expect(moved.generation).toBeGreaterThan(next.generation)
  }, 40_000)

  it('a successor expires a stored member that is never heard, and places without waiting for it', async () => {
    const { cluster, bus, store, assignments } = await setUp()
    const gone: PipelineMetadata = {
      fingerprint: FINGERPRINT, shape: SHAPE, members: ['w1', 'dead'], generation: 1_000_007,
      assignment: { 'count/0': 'w1', 'count/1': 'dead', 'count/2': 'w1', 'count/3': 'dead' }, standbys: {}, epoch: 40, completedEpoch: 39, finished: [], releasing: {}, failures: {},
    }
    await store.putPipelines(1, { [PIPELINE]: gone })
    const claimed = await store.claim(2)
    leader(bus, cluster, store, 2, claimed.pipelines, 20_000)
    const w1 = new Peer(bus, cluster, 'w1').start()
    cleanups.push(() => w1.stop())
    const placed = await until(() => assignments.find((a) => Object.values(a.actors).every((w) => w === 'w1')), 10_000, 'the dead member is expired and its actors move')
    expect(placed.generation).toBeGreaterThan(2_000_000)
  }, 30_000)

  it("a deposed leader's write is refused and it stops coordinating", async () => {
    const { cluster, bus, store } = await setUp()
    await store.claim(1)
    let fenced: LeaderFencedError | undefined
    const old = leader(bus, cluster, store, 1, {}, 100, (err) => {
      fenced = err
      old.stop()
    })
    const w1 = new Peer(bus, cluster, 'w1').start()
    cleanups.push(() => w1.stop())
    await until(async () => (await store.read()).pipelines[PIPELINE]?.members.length === 1, 10_000, 'the leader stores its member')
    // A newer leader claims the metadata; the old one's next epoch write is refused.
    await store.claim(2)
    await until(() => fenced, 5000, 'the old leader is told it was fenced')
    expect(fenced).toMatchObject({ code: 'WEIR_LEADER_FENCED', context: { term: 1, currentTerm: 2 } })
    const after = (await store.read()).term
    await sleep(500)
    expect((await store.read()).term).toBe(after)
  }, 30_000)
})
