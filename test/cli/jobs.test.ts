/**
 * `weir jobs` after real `weir run`s of a FileSetSource pipeline on one data dir: a finished
 * run, a run killed right after it listed its objects (listed), one killed while reading
 * (running), and the same run refusing an object that changed under its run id (failed),
 * as text and as --json.
 */
import { mkdirSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import type { JobsReport } from '../../cli/jobs.ts'
import { requireService } from '../support/services.ts'
import { tempDirs, weir } from '../support/weir-cli.ts'

const FIXTURE = join(import.meta.dirname, '..', 'processors', 'sources', 'fixtures', 'file-set-pipeline.ts')
const tempDir = tempDirs('weir-jobs-')
const kafka = await requireService('kafka')

function lines(n: number, tag: string): string {
  return Array.from({ length: n }, (_, i) => JSON.stringify({ tag, i })).join('\n') + '\n'
}

describe('weir jobs', () => {
  it('lists the runs with their state (finished, listed, running, failed) from the committed state, as text and --json', async () => {
    const base = tempDir()
    const objects = join(base, 'objects')
    const dataDir = join(base, 'data')
    for (const [key, content] of Object.entries({ 'r1/a.jsonl': lines(5, 'r1'), 'r2/a.jsonl': lines(400, 'r2a'), 'r2/b.jsonl': lines(3, 'r2b') })) {
      mkdirSync(join(objects, key, '..'), { recursive: true })
      writeFileSync(join(objects, key), content)
    }
    const params = (run: string, extra: string[] = []): string[] => ['--param', `dir=${objects}`, '--param', `run=${run}`, '--param', 'prefix={run}/', '--param', 'linesPerPoll=5', ...extra]
    const run = (r: string, env: Record<string, string> = {}, extra: string[] = []) => weir(['run', FIXTURE, '--data-dir', dataDir, '--epoch-ms', '10', '-q', ...params(r, extra)], { env })
    const jobs = async (json: boolean) => {
      const out = await weir(['jobs', FIXTURE, '--data-dir', dataDir, ...params('any'), ...(json ? ['--json'] : [])])
      expect(out.code, out.stderr).toBe(0)
      return out.stdout
    }
    const states = async () => (JSON.parse(await jobs(true)) as JobsReport).stages[0]!.runs.map((r) => [r.run, r.state, `${r.objects.done}/${r.objects.total}`, r.records])

    expect((await run('r1')).code).toBe(0)
    expect(await states()).toEqual([['r1', 'finished', '1/1', 5]])

    // The first poll lists and commits at once (the second waits 100 ms first, so that commit
    // lands); killed at the second (the first read), before it commits.
    const listed = await run('r2', { WEIR_CRASH_AT: 'source-poll:2' }, ['--param', 'pollDelayMs=100'])
    expect(listed.signal).toBe('SIGKILL')
    expect(await states()).toEqual([['r1', 'finished', '1/1', 5], ['r2', 'listed', '0/2', 0]])

    // Paced polls of 5 lines: killed at the 21st poll of this run, after checkpoints of 10 ms.
    const running = await run('r2', { WEIR_CRASH_AT: 'source-poll:1@20' }, ['--param', 'pollDelayMs=20'])
    expect(running.signal).toBe('SIGKILL')
    const mid = (JSON.parse(await jobs(true)) as JobsReport).stages[0]!.runs[1]!
    expect(mid.state).toBe('running')
    expect(mid.records).toBeGreaterThan(0)
    expect(mid.records).toBeLessThan(400)

    writeFileSync(join(objects, 'r2/b.jsonl'), lines(3, 'changed'))
    const failed = await run('r2')
    expect(failed.code).toBe(1)
    expect(failed.stderr).toContain('object r2/b.jsonl')
    const report = JSON.parse(await jobs(true)) as JobsReport
    expect(report.v).toBe(1)
    expect(report.pipeline).toBe('fileset')
    const r2 = report.stages[0]!.runs[1]!
    expect([r2.run, r2.state, r2.objects, r2.records]).toEqual(['r2', 'failed', { done: 1, total: 2 }, 400])
    expect(r2.partitions[0]!.failure).toMatchObject({ code: 'WEIR_FILESET_OBJECT_CHANGED', object: 'r2/b.jsonl' })
    const text = await jobs(false)
    expect(text).toContain('stage files (FileSetSource, 1 partition)')
    expect(text).toMatch(/RUN\s+STATE\s+OBJECTS\s+RECORDS\s+DEAD\s+LISTED\s+FINISHED/)
    expect(text).toMatch(/r1\s+finished\s+1\/1\s+5\s+0\s+\d{4}-\d\d-\d\dT\S+Z\s+\d{4}-/)
    expect(text).toMatch(/r2\s+failed\s+1\/2\s+400\s+0\s+\d{4}-\S+\s+-/)
    expect(text).toContain('partition 0: file set job r2: object r2/b.jsonl')
    console.log(text)
  }, 120_000)

  it('refuses a data dir that does not exist and a pipeline without a FileSetSource, naming them', async () => {
    const base = tempDir()
    const missing = await weir(['jobs', FIXTURE, '--data-dir', join(base, 'nope'), '--param', `dir=${base}`, '--param', 'run=x'])
    expect(missing.code).toBe(2)
    expect(missing.stderr).toContain('--data-dir')
    const other = await weir(['jobs', 'examples/wordcount.ts', '--data-dir', base])
    expect(other.code).toBe(2)
    expect(other.stderr).toContain('has no FileSetSource stage')
  }, 60_000)

  it.skipIf(!kafka.available)('reads the committed state from Kafka with --pipe kafka://…', async () => {
    const base = tempDir()
    const objects = join(base, 'objects')
    mkdirSync(join(objects, 'k1'), { recursive: true })
    writeFileSync(join(objects, 'k1', 'a.jsonl'), lines(7, 'k1'))
    const name = `jobs-${process.pid}-${Date.now()}`
    const pipe = `kafka://${kafka.url.replace(/^kafka:\/\//, '')}`
    const params = ['--param', `name=${name}`, '--param', `dir=${objects}`, '--param', 'run=k1', '--param', 'prefix={run}/']
    const ran = await weir(['run', FIXTURE, '--pipe', pipe, '--data-dir', join(base, 'data'), '-q', ...params])
    expect(ran.code, ran.stderr).toBe(0)
    const out = await weir(['jobs', FIXTURE, '--pipe', pipe, '--data-dir', join(base, 'data'), '--json', ...params])
    expect(out.code, out.stderr).toBe(0)
    const report = JSON.parse(out.stdout) as JobsReport
    expect(report.source).toBe(pipe)
    expect(report.stages[0]!.runs.map((r) => [r.run, r.state, r.objects.done, r.records])).toEqual([['k1', 'finished', 1, 7]])
  }, 120_000)
})
