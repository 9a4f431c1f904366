/**
 * A stage name the pipeline does not have, given to the kit's readers, is a typed error
 * that lists the pipeline's stages and suggests the closest one, instead of `no stage x`.
 */
import { describe, expect, it } from 'vitest'
import { Pipeline, Processor, type Context, type StreamRecord } from '../../index.ts'
import { GeneratorSource, JsonlFileSink } from '../../processors/index.ts'
import { readCommittedState, readDeadLetters, readStageOutput, readState, UnknownStageError } from '../../testing/index.ts'

class Count extends Processor<string, number> {
  onRecord(r: StreamRecord<string>, ctx: Context<number>): void {
    ctx.emit(r.key, 1)
  }
}

function pageViews(): Pipeline {
  const p = new Pipeline('pv')
  p.source<string>('pages', () => new GeneratorSource<string>({ count: 1, generate: (i) => ({ key: `p${i}`, value: 'view' }) }))
    .process('page-counts', Count)
    .to('sink', () => new JsonlFileSink<number>({ path: '/nonexistent/never-opened.jsonl' }))
  return p
}

/** The error a call throws, synchronously or as a rejection. */
async function errorOf(call: () => Promise<unknown>): Promise<unknown> {
  try {
    await call()
  } catch (err) {
    return err
  }
  throw new Error('expected an error')
}

describe('an unknown stage name', () => {
  const dir = '/nonexistent/data-dir-never-opened'

  it('readStageOutput lists the stages and suggests the closest', async () => {
    const err = await errorOf(() => readStageOutput(pageViews(), dir, 'page-count'))
    expect(err).toBeInstanceOf(UnknownStageError)
    expect(err).toMatchObject({ code: 'WEIR_STAGE_UNKNOWN', context: { stage: 'page-count', pipeline: 'pv', suggestion: 'page-counts' } })
    expect((err as Error).message).toBe("no stage 'page-count' in pipeline 'pv'; its stages are: pages, page-counts, sink; did you mean 'page-counts'?")
  })

  it('readState, readCommittedState and readDeadLetters say the same', async () => {
    for (const read of [readState, readCommittedState, readDeadLetters]) {
      const err = await errorOf(() => read(pageViews(), dir, 'Pages'))
      expect(err).toBeInstanceOf(UnknownStageError)
      expect((err as Error).message).toBe("no stage 'Pages' in pipeline 'pv'; its stages are: pages, page-counts, sink; did you mean 'pages'?")
    }
  })

  it('a name far from every stage gets the list and no guess', async () => {
    const err = await errorOf(() => readStageOutput(pageViews(), dir, 'totals'))
    expect((err as Error).message).toBe("no stage 'totals' in pipeline 'pv'; its stages are: pages, page-counts, sink")
  })
})
