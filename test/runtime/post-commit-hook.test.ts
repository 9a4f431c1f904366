/**
 * The post-commit hook (runtime/actor/publish.ts): `onCheckpointCommitted` gets each
 * committed checkpoint once, in order, with what `onCheckpoint` staged for it, before the
 * next checkpoint is taken; at start it gets the newest committed checkpoint again; a throw
 * is retried, one that keeps failing fails the actor, whose restart publishes again; a
 * non-retriable error fails the run at once.
 */
import { join } from 'node:path'
import { afterAll, describe, expect, it } from 'vitest'
import { Pipeline, Processor, StateCorruptedError, type CheckpointContext, type CommitContext, type StreamRecord } from '../../index.ts'
import { GeneratorSource } from '../../processors/index.ts'
import { startEmbedded } from '../../runner/embedded-runner.ts'
import { removeDir, runToCompletion, tempDataDir } from '../../testing/index.ts'

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

function pipeline(count: number, make: () => Tracker): Pipeline {
  const p = new Pipeline('hook')
  p.source<number>('n', () => new GeneratorSource<number>({ count, generate: (i) => ({ key: `k${i}`, value: i }) })).to('track', make)
  return p
}

const dirs: string[] = []
function dir(): string {
  const d = tempDataDir('weir-hook-')
  dirs.push(d)
  return join(d, 'data')
}

const publishes = (calls: Call[]): Array<Extract<Call, { kind: 'publish' }>> => calls.filter((c): c is Extract<Call, { kind: 'publish' }> => c.kind === 'publish')

describe('post-commit hook', () => {
  it('gets each committed checkpoint once, in order, with what onCheckpoint staged, before the next checkpoint is taken', async () => {
    const calls: Call[] = []
    await runToCompletion(pipeline(600, () => new Tracker(calls)), { dataDir: dir(), epochIntervalMs: 10, actorConfig: { maxBatch: 50 } })
    expect(calls.length).toBeGreaterThan(6)
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
    const { crashed } = await runToCompletion(pipeline(600, () => new Tracker(calls)), { dataDir: dir(), epochIntervalMs: 10, actorConfig: { maxBatch: 50 }, crashes: [{ point: 'before-publish', hit: 3 }] })
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
})

afterAll(() => {
  for (const d of dirs) removeDir(d)
})
