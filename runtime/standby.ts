/**
 * A standby replica: a warm copy of another worker's actor state, kept by tailing the
 * actor's changelog (read_committed) into a local RocksDB at the path the actor itself
 * would use. When the actor moves here, its restore finds the store at most a moment
 * behind and replays only that tail, so failover does not depend on state size (Kafka
 * Streams' standby tasks). A replica never writes to the pipe.
 *
 * @example
 * const replica = new StandbyReplica({ pipe, pipeline, spec, partition: 3, dataDir, log })
 * await replica.start()
 * // … the actor is assigned here:
 * await replica.stop()
 */
import { join } from 'node:path'
import type { Logger } from 'pino'
import { describeError } from './errors.ts'
import { Faults } from './faults.ts'
import type { PartitionReader, Pipe } from './pipe/pipe.ts'
import { type Pipeline, type StageSpec } from './api/pipeline.ts'
import { naming } from './naming.ts'
import { replayChangelog } from './state/changelog.ts'
import { StateStore, type StoreWrite } from './state/state-store.ts'

export interface StandbyDeps {
  pipe: Pipe
  pipeline: Pipeline
  spec: StageSpec
  partition: number
  dataDir: string
  log: Logger
}

/** Changelog records applied per local write. */
const BATCH = 10_000

export class StandbyReplica {
  readonly id: string
  private store: StateStore | undefined
  private reader: PartitionReader | undefined
  private stopping = false
  private loop: Promise<void> = Promise.resolve()
  private readonly log: Logger
  private readonly topic: string
  private readonly path: string
  /** Changelog offset the local copy reflects. */
  position = 0

  constructor(private readonly deps: StandbyDeps) {
    this.id = naming.actor(deps.spec.name, deps.partition)
    this.log = deps.log.child({ standby: this.id })
    this.topic = naming.changelog(deps.pipeline.name, deps.spec.name)
    // The same path as the actor's own store: promotion opens what the replica kept warm.
    this.path = join(deps.dataDir, 'state', deps.spec.name, String(deps.partition))
  }

  private starting: Promise<void> | undefined

  /** Catches up with the changelog, then keeps tailing it in the background. */
  start(): Promise<void> {
    this.starting ??= this.open()
    return this.starting
  }

  private async open(): Promise<void> {
    this.store = await StateStore.open(this.path)
    const replayed = await replayChangelog({
      pipe: this.deps.pipe,
      topic: this.topic,
      partition: this.deps.partition,
      store: this.store,
      storePath: this.path,
      log: this.log,
      faults: Faults.none(),
      reopen: async () => {
        await this.store!.close()
        StateStore.destroy(this.path)
        this.store = await StateStore.open(this.path)
        return this.store
      },
    })
    this.position = replayed.position
    if (this.stopping) return
    this.reader = await this.deps.pipe.reader(this.topic, this.deps.partition, this.position)
    this.loop = this.tail().catch((err: unknown) => {
      // A standby that falls over costs a slower failover, never correctness: the actor restores from the changelog.
      this.log.warn({ err: describeError(err) }, 'standby replica stopped tailing its changelog')
    })
    this.log.debug({ position: this.position, replayed: replayed.records }, 'standby replica warm')
  }

  private async tail(): Promise<void> {
    while (!this.stopping) {
      const batch = await this.reader!.poll(BATCH, 250)
      if (batch.length === 0 || this.stopping) continue
      const writes: StoreWrite[] = batch.map((r) => ({ key: r.key!, value: r.value }))
      this.position = this.reader!.position
      await this.store!.apply(writes, this.position)
    }
  }

  /** Changelog records not applied yet. */
  async lag(): Promise<number> {
    return Math.max(0, (await this.deps.pipe.endOffset(this.topic, this.deps.partition)) - this.position)
  }

  /** Stops tailing and closes the store, so the actor can open it. */
  async stop(): Promise<void> {
    this.stopping = true
    // Never close the store under a catch-up still running.
    await this.starting?.catch(() => undefined)
    this.reader?.close()
    await this.loop
    await this.store?.close().catch(() => undefined)
    this.store = undefined
  }
}
