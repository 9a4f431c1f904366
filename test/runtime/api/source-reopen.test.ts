/**
 * Source.reopen: a source whose share finished in an earlier run is not polled again unless
 * it asks to be (a batch source given a new job); when it does, its end is undone in the
 * next checkpoint, so a crash after that does not leave it finished.
 */
import { afterAll, describe, expect, it } from 'vitest'
import { Pipeline, Source, type SourceContext, type SourceStatus } from '../../../index.ts'
import { readCommittedState, readStageOutput, removeTempDirs, runToCompletion, tempDataDir } from '../../../testing/index.ts'

afterAll(removeTempDirs)

/** Emits `job:0..count-1` for its job; reopens when the job differs from the one it finished. */
class JobSource extends Source<string> {
  private readonly finishedJob = this.state.actorValue<string>('finishedJob')
  private readonly at = this.state.actorValue<{ job: string; next: number }>('at')
  constructor(private readonly job: string, private readonly count: number, reopens: boolean) {
    super()
    if (reopens) this.reopen = (): boolean => this.finishedJob.get() !== this.job
  }
  poll(ctx: SourceContext<string>): SourceStatus {
    const at = this.at.get()
    const i = at?.job === this.job ? at.next : 0
    if (i >= this.count) {
      this.finishedJob.set(this.job)
      return 'done'
    }
    ctx.emit(`${this.job}:${i}`, `${this.job}:${i}`)
    this.at.set({ job: this.job, next: i + 1 })
    return 'more'
  }
}

function pipeline(job: string, reopens: boolean): Pipeline {
  const p = new Pipeline('source-reopen')
  p.source('jobs', () => new JobSource(job, 5, reopens))
  return p
}

describe('Source.reopen', () => {
  it('a finished source is polled again only when reopen says so; the same job is not', async () => {
    const dataDir = tempDataDir('weir-source-reopen-')
    await runToCompletion(pipeline('a', true), { dataDir })
    await runToCompletion(pipeline('a', true), { dataDir })
    expect((await readStageOutput(pipeline('a', true), dataDir, 'jobs')).map((r) => r.key)).toEqual(['a:0', 'a:1', 'a:2', 'a:3', 'a:4'])
    await runToCompletion(pipeline('b', true), { dataDir })
    expect((await readStageOutput(pipeline('b', true), dataDir, 'jobs')).map((r) => r.key)).toEqual(['a:0', 'a:1', 'a:2', 'a:3', 'a:4', 'b:0', 'b:1', 'b:2', 'b:3', 'b:4'])
    expect((await readCommittedState(pipeline('b', true), dataDir, 'jobs')).finished[0]).toBe(true)
  })

  it('without reopen a finished source stays finished whatever it is given', async () => {
    const dataDir = tempDataDir('weir-source-reopen-')
    await runToCompletion(pipeline('a', false), { dataDir })
    await runToCompletion(pipeline('b', false), { dataDir })
    expect((await readStageOutput(pipeline('b', false), dataDir, 'jobs')).map((r) => r.key)).toEqual(['a:0', 'a:1', 'a:2', 'a:3', 'a:4'])
  })

  it('a reopened source killed before it finished again is not finished on restart', async () => {
    const dataDir = tempDataDir('weir-source-reopen-')
    await runToCompletion(pipeline('a', true), { dataDir })
    const r = await runToCompletion(pipeline('b', true), { dataDir, crashes: [{ point: 'source-poll', hit: 1, afterPolls: 3 }] })
    expect(r.crashed).toHaveLength(1)
    expect((await readStageOutput(pipeline('b', true), dataDir, 'jobs')).map((x) => x.key)).toEqual(['a:0', 'a:1', 'a:2', 'a:3', 'a:4', 'b:0', 'b:1', 'b:2', 'b:3', 'b:4'])
  })
})
