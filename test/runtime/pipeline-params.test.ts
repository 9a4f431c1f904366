/**
 * A param the pipeline function never reads is refused, naming the params it does read and
 * the closest one; every way of reading a param counts, including in a stage's factory.
 */
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { ConfigError } from '../../runtime/errors.ts'
import { loadPipeline } from '../../runtime/pipeline-file.ts'
import { UnknownParamError } from '../../runtime/pipeline-params.ts'
import { ROOT, tempDirs } from '../support/weir-cli.ts'
import { runPipelineFile } from '../../testing/index.ts'

const FIXTURE = join(ROOT, 'test/runtime/fixtures/params-pipeline.ts')

async function refusal(params: Record<string, string>): Promise<ConfigError> {
  const err = await loadPipeline(FIXTURE, params).then(() => undefined, (e: unknown) => e)
  expect(err).toBeInstanceOf(UnknownParamError)
  return err as ConfigError
}

describe('unknown params', () => {
  it('a misspelled param is refused with the params the pipeline reads and the closest one', async () => {
    const err = await refusal({ cuont: '10' })
    expect(err.message).toBe("--param cuont=10: test/runtime/fixtures/params-pipeline.ts does not read a param 'cuont' (with these params it reads bounded, count, label, rate, spread, verbose); did you mean count?")
    expect(err.context).toMatchObject({ field: '--param', param: 'cuont', suggestion: 'count' })
  })

  it('a param nothing is close to says to remove it or read it while building the pipeline', async () => {
    const err = await refusal({ count: '2', zzz: '1' })
    expect(err.message).toContain("--param zzz=1: test/runtime/fixtures/params-pipeline.ts does not read a param 'zzz'")
    expect(err.message).toContain('so it would be ignored: remove it, or read params.zzz in the pipeline function while it builds the pipeline')
  })

  it('a param read only on another branch is refused for this run', async () => {
    const err = await refusal({ limit: '5' })
    expect(err.message).toContain("does not read a param 'limit' (with these params it reads bounded, count,")
    await expect(loadPipeline(FIXTURE, { bounded: 'true', limit: '5' })).resolves.toBeDefined()
  })

  it('accepts params read as properties, destructured, with in, and in a stage factory', async () => {
    const p = await loadPipeline(FIXTURE, { count: '2', rate: '1', verbose: '', label: 'x' })
    expect(p.name).toBe('params-pipeline')
  })

  it('enumerating the params counts as reading every one', async () => {
    await expect(loadPipeline(FIXTURE, { spread: 'true', anything: '1' })).resolves.toBeDefined()
  })
})

describe("weir/testing's params", () => {
  const tempDir = tempDirs('weir-params-')
  it('a child run given a param its pipeline does not read fails at start, saying which', async () => {
    const r = await runPipelineFile(FIXTURE, { dataDir: join(tempDir(), 'data'), params: { conut: '2' } })
    expect(r.finished).toBe(false)
    expect(r.code).toBe(2)
    expect(r.stderr).toContain("--param conut=2:")
    expect(r.stderr).toContain("does not read a param 'conut'")
    expect(r.stderr).toContain('did you mean count?')
  })
})
