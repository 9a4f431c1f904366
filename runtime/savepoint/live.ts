/**
 * A savepoint of a running pipeline. The cut is the same as a stopped pipeline's
 * (runner/create-savepoint.ts): nothing in flight between stages. It is taken while the
 * pipeline runs, in steps its client sends every worker over the control bus:
 *
 * 1. hold: every actor stops taking input in (sources are not polled, outside topics not
 *    read) and goes on processing what is already in the pipeline's own topics;
 * 2. status, until every actor says it is drained (nothing uncommitted, nothing unread);
 * 3. freeze: every actor stops, commits what it did and waits for its local store; then
 *    status again: frozen actors change nothing, so all drained now is one consistent cut
 *    (one still moving means an upstream committed late: unfreeze and go back to 2);
 * 4. snapshot: each worker pins a RocksDB snapshot of every actor's store;
 * 5. release: actors run and take input again. Processing stopped from 1 to here;
 * 6. write: each worker writes its actors' state from the snapshots into
 *    `<savepoint dir>/<name>/`, then the client writes the manifest.
 *
 * Every step renews a lease on the hold: a client that dies leaves the pipeline held for
 * `leaseMs` at most. Workers write only under their own savepoint dir (`weir worker
 * --savepoint-dir`), to a name, never a path: for a cluster it is a filesystem every worker
 * and the client mount. Steps are idempotent, so the client repeats one until every actor of
 * the pipeline answered (actors may move meanwhile; a moved actor is held where it starts).
 *
 * @example
 * const manifest = await takeLiveSavepoint({ bus, pipeline, cluster: 'prod', dir: '/mnt/savepoints/sp-1', log })
 */
import { randomUUID } from 'node:crypto'
import { existsSync, readdirSync, renameSync, writeFileSync } from 'node:fs'
import { basename, join } from 'node:path'
import type { Logger } from 'pino'
import type { Pipeline } from '../api/pipeline.ts'
import type { Actor } from '../actor/actor.ts'
import type { Pipe } from '../pipe/pipe.ts'
import { subjects, type ControlBus, type Subscription } from '../control/bus.ts'
import { savepointCommand, savepointName, savepointReply, type SavepointCommand, type SavepointReply } from '../control/messages.ts'
import { describeError } from '../errors.ts'
import { StateStore, type StoreSnapshot } from '../state/state-store.ts'
import { MANIFEST_FILE, SAVEPOINT_FORMAT, SAVEPOINT_FORMAT_VERSION, SavepointError, type SavepointActor, type SavepointManifest, type SavepointStage } from './manifest.ts'
import { stageStates, writeActorState } from './write-actor.ts'

const DEFAULT_LEASE_MS = 30_000

/** A worker's side: answers the steps for the actors it runs. */
export class SavepointParticipant {
  private sub: Subscription | undefined
  /** The savepoint holding this worker's actors, and until when. */
  private holding: { name: string; until: number } | undefined
  private readonly snapshots = new Map<string, { name: string; read: StoreSnapshot; close(): Promise<void>; until?: number }>()
  private readonly written = new Map<string, Promise<SavepointReply['actors']>>()
  private timer: NodeJS.Timeout | undefined

  constructor(private readonly deps: {
    bus: ControlBus
    pipeline: Pipeline
    cluster: string
    worker: string
    pipe: Pipe
    /** Where this worker writes savepoints; undefined: it takes part in none. */
    dir: string | undefined
    actors(): Actor[]
    log: Logger
  }) {}

  start(): void {
    const { bus, cluster, pipeline } = this.deps
    this.sub = bus.subscribe(subjects.savepoint(cluster, pipeline.name), (raw) => {
      const msg = savepointCommand.safeParse(raw)
      if (!msg.success) return void this.deps.log.warn({ issue: msg.error.issues[0] }, 'malformed savepoint step dropped')
      void this.step(msg.data).then(
        (reply) => bus.publish(subjects.savepointReply(cluster, pipeline.name), reply),
        (err: unknown) => this.deps.log.warn({ savepoint: msg.data.name, op: msg.data.op, err: describeError(err) }, 'savepoint step failed'),
      )
    })
    this.timer = setInterval(() => {
      if (this.holding !== undefined && Date.now() > this.holding.until) {
        this.deps.log.warn({ savepoint: this.holding.name }, 'savepoint lease expired (its client went away?): releasing the held actors')
        void this.release()
      }
      // Snapshots pin old versions in RocksDB: ones nobody asked to write within the lease after the release are let go.
      for (const [id, snap] of this.snapshots) {
        if (snap.until !== undefined && Date.now() > snap.until && !this.written.has(snap.name)) {
          this.deps.log.warn({ savepoint: snap.name, actor: id }, 'savepoint snapshot never written (its client went away?): releasing it')
          this.snapshots.delete(id)
          void snap.close().catch(() => undefined)
        }
      }
    }, 1000)
    this.timer.unref()
  }

  /** An actor started here while a savepoint holds the pipeline is held too. */
  actorStarted(actor: Actor): void {
    if (this.holding !== undefined) actor.hold(true)
  }

  /** A write under way finishes (and is answered) first: a pipeline may end right after its cut. */
  async stop(): Promise<void> {
    if (this.timer !== undefined) clearInterval(this.timer)
    await Promise.allSettled([...this.written.values()])
    await new Promise((r) => setImmediate(r))
    this.sub?.unsubscribe()
    await this.release()
  }

  private async release(): Promise<void> {
    this.holding = undefined
    for (const a of this.deps.actors()) a.hold(false)
    for (const s of this.snapshots.values()) await s.close().catch(() => undefined)
    this.snapshots.clear()
  }

  private async step(cmd: SavepointCommand): Promise<SavepointReply> {
    const reply: SavepointReply = { v: 1, name: cmd.name, seq: cmd.seq, worker: this.deps.worker, pipe: { kind: this.deps.pipe.kind, identity: this.deps.pipe.identity }, actors: [] }
    if (this.deps.dir === undefined) return { ...reply, refused: `worker ${this.deps.worker} takes part in no savepoint: start it with --savepoint-dir (a directory the savepoint's client reads too)` }
    if (this.holding !== undefined && this.holding.name !== cmd.name && cmd.op !== 'write') return { ...reply, refused: `worker ${this.deps.worker} is held for savepoint ${this.holding.name}` }
    const actors = this.deps.actors()
    if (cmd.op !== 'release' && cmd.op !== 'write') this.holding = { name: cmd.name, until: Date.now() + cmd.leaseMs }
    switch (cmd.op) {
      case 'hold':
        for (const a of actors) a.hold(true)
        reply.actors = actors.map((a) => ({ actor: a.id }))
        break
      case 'status':
        reply.actors = await Promise.all(actors.map(async (a) => ({ actor: a.id, drained: await a.drained() })))
        break
      case 'freeze':
        reply.actors = await Promise.all(actors.map(async (a) => ({ actor: a.id, drained: await a.freeze() })))
        break
      case 'unfreeze':
        for (const a of actors) a.unfreeze()
        reply.actors = actors.map((a) => ({ actor: a.id }))
        break
      case 'snapshot':
        for (const a of actors) {
          if (this.snapshots.get(a.id)?.name === cmd.name) continue
          this.snapshots.set(a.id, { name: cmd.name, ...(await this.pin(a)) })
        }
        // Where the actors' outputs end at the cut: what a run restored from it continues after.
        reply.actors = await Promise.all(actors.map(async (a) => ({ actor: a.id, outputEnds: await this.outputEnds(a) })))
        break
      case 'release':
        this.holding = undefined
        for (const a of actors) a.hold(false)
        for (const snap of this.snapshots.values()) if (snap.name === cmd.name) snap.until ??= Date.now() + cmd.leaseMs
        reply.actors = actors.map((a) => ({ actor: a.id }))
        break
      case 'write': {
        let writing = this.written.get(cmd.name)
        if (writing === undefined) {
          writing = this.write(cmd.name)
          this.written.set(cmd.name, writing)
          // A name is written once; the cache only has to outlive the client's repeats.
          setTimeout(() => this.written.delete(cmd.name), 10 * 60_000).unref()
          reply.actors = await writing
        } else {
          // A repeat while the state is written says only that this worker is at it (the client waits on answers).
          reply.actors = await Promise.race([writing, new Promise<SavepointReply['actors']>((r) => setTimeout(() => r([]), 200))])
        }
        break
      }
    }
    return reply
  }

  private async outputEnds(actor: Actor): Promise<Record<string, number>> {
    const spec = actor.stage
    const topic = this.deps.pipeline.outputTopic(spec)
    const ends: Record<string, number> = {}
    for (let p = 0; p < spec.outputPartitions; p++) ends[String(p)] = await this.deps.pipe.endOffset(topic, p)
    return ends
  }

  /** A snapshot of a frozen actor's store; a finished actor closed its store, which is opened again to read it. */
  private async pin(actor: Actor): Promise<{ read: StoreSnapshot; close(): Promise<void> }> {
    if (actor.lifecycle !== 'finished' && actor.lifecycle !== 'closed') {
      // The actor may finish (and close its store) while the state is written: the store waits for this snapshot.
      const read = actor.stateStore.snapshot({ keepsStoreOpen: true })
      return { read, close: () => read.close() }
    }
    const store = await StateStore.open(actor.statePath)
    const read = store.snapshot()
    return { read, close: async () => { await read.close(); await store.close() } }
  }

  private async write(name: string): Promise<SavepointReply['actors']> {
    const out: SavepointReply['actors'] = []
    for (const [id, snap] of [...this.snapshots]) {
      if (snap.name !== name) continue
      const [stage, p] = id.split('/')
      const spec = this.deps.pipeline.stage(stage!)!
      try {
        const { actor, topicPositions } = await writeActorState({ pipeline: this.deps.pipeline, spec, partition: Number(p), entries: snap.read.entries(), target: join(this.deps.dir!, name) })
        out.push({ actor: id, state: actor, topicPositions })
      } catch (err) {
        out.push({ actor: id, error: describeError(err).message })
      } finally {
        await snap.close().catch(() => undefined)
        this.snapshots.delete(id)
      }
    }
    return out
  }
}

export interface LiveSavepointOptions {
  bus: ControlBus
  pipeline: Pipeline
  cluster: string
  /** The savepoint's directory: its name (the last path part) is where every worker writes under its savepoint dir, which must be this directory's parent on a shared filesystem. */
  dir: string
  log: Logger
  /** How long the whole savepoint may take, ms. Default 300000. */
  timeoutMs?: number
  /** How long the workers stay held after the client's last step, ms. Default 30000. */
  leaseMs?: number
}

export interface LiveSavepointResult {
  manifest: SavepointManifest
  /** How long the pipeline took no input in: from hold to release, ms. */
  heldMs: number
  /** Freeze rounds it took (more than one: an upstream committed while the others froze). */
  rounds: number
}

/** Takes a savepoint of the running pipeline (see the file comment) and writes its manifest. */
export async function takeLiveSavepoint(o: LiveSavepointOptions): Promise<LiveSavepointResult> {
  const name = basename(o.dir)
  const valid = savepointName.safeParse(name)
  if (!valid.success) throw new SavepointError('WEIR_SAVEPOINT_INVALID', `savepoint name '${name}': ${valid.error.issues[0]!.message}`, { field: 'target' })
  if (existsSync(o.dir) && readdirSync(o.dir).length > 0) throw new SavepointError('WEIR_SAVEPOINT_TARGET_EXISTS', `savepoint target ${o.dir} exists and is not empty: a savepoint goes into a new directory`, { field: 'target', path: o.dir })
  const started = Date.now()
  const deadline = started + (o.timeoutMs ?? 300_000)
  const leaseMs = o.leaseMs ?? DEFAULT_LEASE_MS
  const all = o.pipeline.actorStages.flatMap((s) => Array.from({ length: s.parallelism }, (_, p) => `${s.name}/${p}`))
  let seq = Math.floor(Math.random() * 1e9)
  const pending = new Map<number, (r: SavepointReply) => void>()
  const sub = o.bus.subscribe(subjects.savepointReply(o.cluster, o.pipeline.name), (raw) => {
    const r = savepointReply.safeParse(raw)
    if (r.success && r.data.name === name) pending.get(r.data.seq)?.(r.data)
  })
  /** Sends a step until every actor of the pipeline answered it; returns the answers by actor. */
  const gather = async (op: SavepointCommand['op'], withinMs = 30_000): Promise<{ actors: Map<string, SavepointReply['actors'][number]>; pipe: SavepointReply['pipe'] | undefined }> => {
    const mine = ++seq
    const stepStart = Date.now()
    const actors = new Map<string, SavepointReply['actors'][number]>()
    let pipe: SavepointReply['pipe'] | undefined
    let refused: string | undefined
    let done!: () => void
    const complete = new Promise<void>((r) => (done = r))
    let heard = Date.now()
    pending.set(mine, (r) => {
      heard = Date.now()
      if (r.refused !== undefined) refused = r.refused
      pipe ??= r.pipe
      for (const a of r.actors) actors.set(a.actor, a)
      if (refused !== undefined || all.every((id) => actors.has(id))) done()
    })
    const until = Math.min(deadline, Date.now() + withinMs)
    try {
      while (refused === undefined && !all.every((id) => actors.has(id))) {
        // A long step (writing much state) is waited for while workers answer; silence for 30 s is a failure.
        if (Date.now() > until || Date.now() - heard > 30_000) throw new SavepointError('WEIR_SAVEPOINT_TIMEOUT', `savepoint ${name}: step '${op}' had no answer for ${all.filter((id) => !actors.has(id)).slice(0, 10).join(', ')} (is every worker up, with the same pipeline?)`, { savepoint: name, op })
        o.bus.publish(subjects.savepoint(o.cluster, o.pipeline.name), { v: 1, name, seq: mine, op, leaseMs } satisfies SavepointCommand)
        await Promise.race([complete, new Promise((r) => setTimeout(r, 1000))])
      }
    } finally {
      pending.delete(mine)
    }
    if (refused !== undefined) throw new SavepointError('WEIR_SAVEPOINT_REFUSED', `savepoint ${name}: ${refused}`, { savepoint: name, op })
    o.log.debug({ savepoint: name, op, ms: Date.now() - stepStart, drained: [...actors.values()].filter((a) => a.drained === false).map((a) => a.actor) }, 'savepoint step answered')
    return { actors, pipe }
  }
  const allDrained = (answers: Map<string, SavepointReply['actors'][number]>): boolean => all.every((id) => answers.get(id)?.drained === true)

  let released = false
  let heldMs = 0
  let rounds = 0
  try {
    await gather('hold')
    for (;;) {
      while (!allDrained((await gather('status')).actors)) {
        if (Date.now() > deadline) throw new SavepointError('WEIR_SAVEPOINT_NOT_QUIESCED', `savepoint ${name}: the pipeline did not drain within ${Math.round((o.timeoutMs ?? 300_000) / 1000)} s`, { savepoint: name })
        await new Promise((r) => setTimeout(r, 10))
      }
      rounds++
      await gather('freeze')
      if (allDrained((await gather('status')).actors)) break
      if (rounds >= 5) throw new SavepointError('WEIR_SAVEPOINT_NOT_QUIESCED', `savepoint ${name}: records were still in flight after ${rounds} freezes (a processing-time timer that emits on every firing keeps a pipeline from going quiet)`, { savepoint: name })
      await gather('unfreeze')
    }
    const pinned = await gather('snapshot')
    await gather('release')
    released = true
    heldMs = Date.now() - started
    o.log.info({ savepoint: name, heldMs, rounds }, 'savepoint: cut taken, the pipeline runs again; writing the state')
    const written = await gather('write', Math.max(30_000, deadline - Date.now()))
    const stages: Record<string, SavepointStage> = {}
    const topicPositions: Record<string, Record<string, number>> = {}
    for (const spec of o.pipeline.actorStages) {
      const actors: SavepointActor[] = []
      for (let p = 0; p < spec.parallelism; p++) {
        const a = written.actors.get(`${spec.name}/${p}`)!
        if (a.state === undefined) throw new SavepointError('WEIR_SAVEPOINT_WRITE_FAILED', `savepoint ${name}: ${spec.name}/${p} was not written: ${a.error ?? 'no state in its answer'}`, { savepoint: name, actor: `${spec.name}/${p}` })
        actors.push(a.state)
        for (const [t, offset] of Object.entries(a.topicPositions ?? {})) (topicPositions[t] ??= {})[String(p)] = offset
      }
      stages[spec.name] = { kind: spec.kind as 'source' | 'processor', parallelism: spec.parallelism, keyPartitioned: o.pipeline.isKeyPartitioned(spec), states: stageStates(spec), actors }
    }
    const manifest: SavepointManifest = {
      format: SAVEPOINT_FORMAT,
      formatVersion: SAVEPOINT_FORMAT_VERSION,
      id: `${name}-${randomUUID().slice(0, 8)}`,
      createdAt: new Date().toISOString(),
      pipeline: o.pipeline.name,
      fingerprint: o.pipeline.fingerprint(),
      topology: o.pipeline.describe(),
      pipe: written.pipe ?? { kind: 'unknown', identity: 'unknown' },
      stages,
      topicPositions,
      drain: { rounds, records: 0, ms: Date.now() - started },
      cut: { heldMs, outputEnds: Object.fromEntries(o.pipeline.actorStages.map((spec) => [o.pipeline.outputTopic(spec), pinned.actors.get(`${spec.name}/0`)?.outputEnds ?? {}])) },
    }
    if (!existsSync(o.dir)) throw new SavepointError('WEIR_SAVEPOINT_WRITE_FAILED', `savepoint ${name}: the workers wrote its files, but ${o.dir} does not exist here: the client's target must be the workers' savepoint dir (a shared filesystem) plus the name`, { savepoint: name, path: o.dir })
    const tmp = join(o.dir, `${MANIFEST_FILE}.tmp`)
    writeFileSync(tmp, JSON.stringify(manifest, null, 2))
    renameSync(tmp, join(o.dir, MANIFEST_FILE))
    return { manifest, heldMs, rounds }
  } finally {
    if (!released) await gather('release', 5000).catch(() => undefined)
    sub.unsubscribe()
  }
}
