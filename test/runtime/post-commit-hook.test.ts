/**
 * The post-commit hook (runtime/actor/publish.ts): `onCheckpointCommitted` gets each
 * committed checkpoint once, in order, with what `onCheckpoint` staged for it, before the
 * next checkpoint is taken; at start it gets the newest committed checkpoint again; a throw
 * is retried, one that keeps failing fails the actor, whose restart publishes again; a
 * non-retriable error fails the run at once. And a sink written with the two hooks (the
 * example of docs/sinks.md, copied here as it is there) is exactly-once under crashes.
 */
import { randomUUID } from 'node:crypto'
import { existsSync, mkdirSync, readFileSync, readdirSync, renameSync, unlinkSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { afterAll, describe, expect, it } from 'vitest'
import { Pipeline, Processor, StateCorruptedError, type CheckpointContext, type CommitContext, type Context, type StreamRecord, type Timer } from '../../index.ts'
import { GeneratorSource } from '../../processors/index.ts'
import { startEmbedded } from '../../runner/embedded-runner.ts'
import { listFiles, readDeadLetters, removeDir, runToCompletion, tempDataDir } from '../../testing/index.ts'

interface Staged {
  upTo: number
}
type Call =
  | { kind: 'stage'; checkpoint: number; epoch: number; staged: Staged }
  | { kind: 'publish'; checkpoint: number; epoch: number; staged: Staged | undefined; recovering: boolean; failed?: boolean }

/** Stages how many records it has seen; its publish can be made to throw. */
class Tracker extends Processor<number, never, Staged> {
  private readonly seen = this.state.actorValue<number>('seen')
  constructor(private readonly calls: Call[], private readonly failPublish: (c: CommitContext<Staged>) => Error | undefined = () => undefined) {
    super()
  }
  onRecord(_r: StreamRecord<number>): void {
    this.seen.set((this.seen.get() ?? 0) + 1)
  }
  override onCheckpoint(ctx: CheckpointContext): Staged {
    const staged = { upTo: this.seen.get() ?? 0 }
    this.calls.push({ kind: 'stage', checkpoint: ctx.checkpoint, epoch: ctx.epoch, staged })
    return staged
  }
  override onCheckpointCommitted(c: CommitContext<Staged>): void {
    const err = this.failPublish(c)
    this.calls.push({ kind: 'publish', checkpoint: c.checkpoint, epoch: c.epoch, staged: c.staged, recovering: c.recovering, ...(err ? { failed: true } : {}) })
    if (err !== undefined) throw err
  }
}

function pipeline(count: number, make: () => Tracker, ratePerSecond?: number): Pipeline {
  const p = new Pipeline('hook')
  p.source<number>('n', () => new GeneratorSource<number>({ count, ratePerSecond, generate: (i) => ({ key: `k${i}`, value: i }) })).to('track', make)
  return p
}

const dirs: string[] = []
function dir(): string {
  const d = tempDataDir('weir-hook-')
  dirs.push(d)
  return join(d, 'data')
}

// docs/sinks.md's example, as it is there.
interface StagedFile { tmp: string; final: string }

/** exactly-once: one file per committed checkpoint, renamed into place after the pipe commit. */
class FilePerCheckpointSink extends Processor<unknown, never, StagedFile> {
  private lines: string[] = []
  private readonly instance = randomUUID().slice(0, 8)
  constructor(private readonly dir: string) { super() }

  onRecord(r: StreamRecord<unknown>): void {
    this.lines.push(JSON.stringify(r.value) + '\n')
  }

  /** Stage: the checkpoint's lines under a hidden name of this instance's. */
  override onCheckpoint(ctx: CheckpointContext): StagedFile | undefined {
    if (this.lines.length === 0) return undefined
    mkdirSync(this.dir, { recursive: true })
    const tmp = join(this.dir, `.${ctx.partition}-${ctx.checkpoint}-${this.instance}.tmp`)
    writeFileSync(tmp, this.lines.join(''))
    this.lines = []
    return { tmp, final: join(this.dir, `part-${ctx.partition}-${String(ctx.checkpoint).padStart(9, '0')}.jsonl`) }
  }

  /** Publish: the rename. Once done the staged file is gone and the final one is there. */
  override onCheckpointCommitted(commit: CommitContext<StagedFile>): void {
    const s = commit.staged
    if (s === undefined) return
    try {
      renameSync(s.tmp, s.final)
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err
      if (!existsSync(s.final)) throw new StateCorruptedError(`${s.final}: neither it nor its staged file ${s.tmp} exists`)
    }
    // Staged files of checkpoints up to this one that are still here never committed.
    for (const f of readdirSync(this.dir)) {
      const m = /^\.(\d+)-(\d+)-[0-9a-f]+\.tmp$/.exec(f)
      if (m !== null && Number(m[1]) === commit.partition && Number(m[2]) <= commit.checkpoint) unlinkSync(join(this.dir, f))
    }
  }
}

/**
 * Stages the values of its checkpoint's records; its publish gives up on every tenth value
 * (ctx.deadLetter from onCheckpointCommitted, as an HTTP sink does with a request refused).
 * Every hundredth record also sets an event-time timer that fires only at the end of the
 * input, just before the actor's final checkpoint, which so always stages their values
 * (1000 + the record's): dead letters of the final checkpoint's publish, whatever the timing.
 */
class DeadLettersOnPublish extends Processor<number, never, { values: number[] }> {
  private values: number[] = []
  onRecord(r: StreamRecord<number>, ctx: Context<never>): void {
    this.values.push(r.value)
    if (r.value % 100 === 0) ctx.timers.registerEventTime(9e12)
  }
  override onTimer(t: Timer): void {
    this.values.push(1000 + Number(t.key!.slice(1)))
  }
  override onCheckpoint(): { values: number[] } | undefined {
    if (this.values.length === 0) return undefined
    return { values: this.values.splice(0) }
  }
  override onCheckpointCommitted(c: CommitContext<{ values: number[] }>): void {
    for (const v of c.staged?.values ?? []) {
      if (v % 10 === 0) c.deadLetter({ key: `v${v}`, value: String(v), timestamp: v }, new Error(`refused ${v}`), { value: v })
    }
  }
}

const publishes = (calls: Call[]): Array<Extract<Call, { kind: 'publish' }>> => calls.filter((c): c is Extract<Call, { kind: 'publish' }> => c.kind === 'publish')

describe('post-commit hook', () => {
  it('gets each committed checkpoint once, in order, with what onCheckpoint staged, before the next checkpoint is taken', async () => {
    const calls: Call[] = []
    // Paced (600 records in about 0.6 s) so that it takes many checkpoints.
    await runToCompletion(pipeline(600, () => new Tracker(calls), 1000), { dataDir: dir(), epochIntervalMs: 10, actorConfig: { maxBatch: 50 } })
    expect(calls.length).toBeGreaterThan(10)
    calls.forEach((c, i) => {
      const stage = calls[i - (i % 2)]!
      expect(c.kind, `call ${i}`).toBe(i % 2 === 0 ? 'stage' : 'publish')
      expect(c.checkpoint, `call ${i}`).toBe(Math.floor(i / 2) + 1)
      if (c.kind === 'publish') expect(c).toEqual({ kind: 'publish', checkpoint: stage.checkpoint, epoch: stage.epoch, staged: stage.staged, recovering: false })
    })
    expect(calls.at(-1)!.staged).toEqual({ upTo: 600 })
  })

  it('at start gets the newest committed checkpoint again when a crash came before its publish, and numbers go on from it', async () => {
    const calls: Call[] = []
    // Paced (about 200 ms of input): a loaded machine still takes several checkpoints, so the third publish comes.
    const { crashed } = await runToCompletion(pipeline(600, () => new Tracker(calls), 3000), { dataDir: dir(), epochIntervalMs: 10, actorConfig: { maxBatch: 50 }, crashes: [{ point: 'before-publish', hit: 3 }] })
    expect(crashed).toHaveLength(1)
    const recovered = calls.findIndex((c) => c.kind === 'publish' && c.recovering)
    expect(recovered, JSON.stringify(calls)).toBeGreaterThan(0)
    const crashedAt = calls[recovered - 1]!
    // The checkpoint staged last before the crash committed but was not published: it is the one handed back.
    expect(crashedAt).toMatchObject({ kind: 'stage', checkpoint: 3 })
    expect(calls[recovered]).toEqual({ kind: 'publish', checkpoint: 3, epoch: crashedAt.epoch, staged: crashedAt.staged, recovering: true })
    expect(calls[recovered + 1]).toMatchObject({ kind: 'stage', checkpoint: 4 })
    expect(publishes(calls).filter((c) => !c.recovering).map((c) => c.checkpoint)).toEqual(Array.from({ length: publishes(calls).length - 1 }, (_, i) => (i < 2 ? i + 1 : i + 2)))
  })

  it('retries a failing publish; when it keeps failing the actor fails, and its restart publishes the checkpoint before taking the next', async () => {
    const calls: Call[] = []
    let failures = 0
    // Checkpoint 2's publish fails 7 times: all 5 attempts of the first instance, 2 of the restarted one's.
    const fail = (c: CommitContext<Staged>): Error | undefined => (c.checkpoint === 2 && failures++ < 7 ? new Error('disk unavailable') : undefined)
    const run = await startEmbedded(pipeline(300, () => new Tracker(calls, fail)), { dataDir: dir(), epochIntervalMs: 10, actorConfig: { maxBatch: 50 } })
    await expect(run.done).resolves.toMatchObject({ outcome: 'finished' })
    const second = publishes(calls).filter((c) => c.checkpoint === 2)
    expect(second.map((c) => [c.recovering, c.failed === true])).toEqual([[false, true], [false, true], [false, true], [false, true], [false, true], [true, true], [true, true], [true, false]])
    // Nothing was staged for checkpoint 3 before checkpoint 2 was published.
    const published = calls.findIndex((c) => c.kind === 'publish' && c.checkpoint === 2 && c.failed !== true)
    expect(calls.findIndex((c) => c.kind === 'stage' && c.checkpoint === 3)).toBeGreaterThan(published)
    expect(calls.at(-1)!.staged).toEqual({ upTo: 300 })
  })

  it('fails the run at once on a non-retriable error, with that error', async () => {
    const calls: Call[] = []
    const fail = (c: CommitContext<Staged>): Error | undefined => (c.checkpoint === 2 ? new StateCorruptedError('the target was replaced') : undefined)
    const run = await startEmbedded(pipeline(300, () => new Tracker(calls, fail)), { dataDir: dir(), epochIntervalMs: 10, actorConfig: { maxBatch: 50 } })
    await expect(run.done).rejects.toMatchObject({ code: 'WEIR_STATE_CORRUPTED' })
    expect(publishes(calls).filter((c) => c.checkpoint === 2)).toHaveLength(1)
  })

  it('refuses state in the hook (it runs beside the next epoch) and a staged value msgpack would not give back', async () => {
    class ReadsState extends Tracker {
      private readonly n = this.state.actorValue<number>('n')
      override onCheckpointCommitted(): void {
        this.n.get()
      }
    }
    const reads = await startEmbedded(pipeline(300, () => new ReadsState([])), { dataDir: dir(), epochIntervalMs: 10, actorConfig: { maxBatch: 50 } })
    await expect(reads.done).rejects.toMatchObject({ code: 'WEIR_OUT_OF_SCOPE' })
    class StagesAFunction extends Tracker {
      override onCheckpoint(ctx: CheckpointContext): Staged {
        return { ...super.onCheckpoint(ctx), format: () => undefined } as Staged
      }
    }
    const stages = await startEmbedded(pipeline(300, () => new StagesAFunction([])), { dataDir: dir(), epochIntervalMs: 10, actorConfig: { maxBatch: 50 } })
    await expect(stages.done).rejects.toMatchObject({ code: 'WEIR_VALUE_UNSUPPORTED' })
  })

  it('commits dead letters sent from onCheckpointCommitted once each, those of the final checkpoint and of a publish at start included', async () => {
    const make = (ratePerSecond?: number): Pipeline => {
      const p = new Pipeline('hook-dead')
      p.source<number>('n', () => new GeneratorSource<number>({ count: 500, ratePerSecond, generate: (i) => ({ key: `k${i}`, value: i }) })).to('track', () => new DeadLettersOnPublish())
      return p
    }
    const expected = [...Array.from({ length: 50 }, (_, i) => i * 10), ...Array.from({ length: 5 }, (_, i) => 1000 + i * 100)]
    for (const [epochIntervalMs, rate] of [[10, 2000], [60_000, undefined]] as const) {
      const clean = dir()
      await runToCompletion(make(rate), { dataDir: clean, epochIntervalMs, actorConfig: { maxBatch: 50 } })
      const dead = await readDeadLetters(make(), clean, 'track')
      expect(dead.map((x) => Number(x.value.value!.toString())).sort((a, b) => a - b), `epochs of ${epochIntervalMs} ms`).toEqual(expected)
      expect(dead[0]!.value).toMatchObject({ stage: 'track', key: Buffer.from('v0'), error: { message: expect.stringContaining('refused 0') }, detail: { value: 0 } })
    }
    // Crashes between a publish and the next commit: the restart publishes the newest committed checkpoint again.
    const crashes = [{ point: 'after-publish', hit: 2 }, { point: 'before-publish', hit: 3 }, { point: 'mid-batch', hit: 2 }] as const
    const d = dir()
    const { crashed } = await runToCompletion(make(2000), { dataDir: d, crashes: [...crashes], epochIntervalMs: 10, actorConfig: { maxBatch: 50 } })
    expect(crashed.length).toBeGreaterThan(0)
    const after = await readDeadLetters(make(2000), d, 'track')
    expect(after.map((x) => Number(x.value.value!.toString())).sort((a, b) => a - b)).toEqual(expected)
  })

  it('makes a sink written with the two hooks (docs/sinks.md\'s example) exactly-once under crashes at every point', async () => {
    const d = dir()
    const out = join(d, '..', 'parts')
    const p = new Pipeline('hook')
    p.source<number>('n', () => new GeneratorSource<number>({ count: 1500, generate: (i) => ({ key: `k${i}`, value: i }) }))
      .to('files', () => new FilePerCheckpointSink(out))
    const crashes = [{ point: 'before-publish', hit: 2 }, { point: 'after-publish', hit: 3 }, { point: 'before-publish', hit: 1 }, { point: 'before-commit', hit: 3 }, { point: 'mid-batch', hit: 4 }, { point: 'after-pipe-commit', hit: 2 }] as const
    const { crashed } = await runToCompletion(p, { dataDir: d, crashes: [...crashes], epochIntervalMs: 10, actorConfig: { maxBatch: 100 } })
    // The later ones come when little is left to do, and may find the run finished.
    expect(crashed.slice(0, 3), 'the publish crash points were reached').toEqual(crashes.slice(0, 3))
    const values = listFiles(out).flatMap((f) => readFileSync(f, 'utf8').split('\n').filter((l) => l !== '').map(Number))
    expect(values).toEqual(Array.from({ length: 1500 }, (_, i) => i))
    expect(readdirSync(out).filter((f) => f.endsWith('.tmp')), 'staged files left').toEqual([])
  })
})

afterAll(() => {
  for (const d of dirs) removeDir(d)
})
