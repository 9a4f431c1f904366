/**
 * FileSetSource over a local directory, deterministic cases: what a job emits and
 * dead-letters, what a rerun of the same run id and a new run id do, a pinned object that
 * changed or vanished under the same run id, partitions, and options refused naming the
 * field. The recovery property (real SIGKILLs) is in file-set-property.test.ts.
 */
import { mkdirSync, rmSync, writeFileSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { afterAll, describe, expect, it } from 'vitest'
import { ConfigError, Pipeline, Processor, type Context, type StreamRecord } from '../../../index.ts'
import { EVENT_ID_HEADER, FileSetJobUnfinishedError, FileSetObjectChangedError, FileSetObjectVanishedError, FileSetSource, type FileSetJobState } from '../../../processors/index.ts'
import { readCommittedState, readDeadLetters, readStageOutput, removeTempDirs, runPipelineFile, runToCompletion, tempDataDir } from '../../../testing/index.ts'
import { itRefusesOptions } from '../../support/option-errors.ts'
import { fileSetPipeline, type FileSetParams } from './fixtures/file-set-pipeline.ts'

afterAll(removeTempDirs)

function writeObjects(root: string, objects: Record<string, string>): void {
  for (const [key, content] of Object.entries(objects)) {
    mkdirSync(dirname(join(root, key)), { recursive: true })
    writeFileSync(join(root, key), content)
  }
}

function setup(objects: Record<string, string>): { dir: string; dataDir: string } {
  const base = tempDataDir('weir-fileset-')
  const dir = join(base, 'objects')
  mkdirSync(dir)
  writeObjects(dir, objects)
  return { dir, dataDir: join(base, 'data') }
}

async function outputOf(params: FileSetParams, dataDir: string): Promise<Array<[string | null, unknown]>> {
  return (await readStageOutput(fileSetPipeline(params), dataDir, 'files')).map((r) => [r.key, r.value])
}

async function jobOf(params: FileSetParams, dataDir: string, partition = 0): Promise<FileSetJobState | undefined> {
  return (await readCommittedState(fileSetPipeline(params), dataDir, 'files')).actor[partition]?.['fileset.job'] as FileSetJobState | undefined
}

const FIXTURE = join(import.meta.dirname, 'fixtures', 'file-set-pipeline.ts')

/** Runs the job in a child process SIGKILLed at its source's poll `polls` + 1, after a checkpoint commit or more. */
async function killedAt(params: FileSetParams, dataDir: string, polls: number): Promise<void> {
  // Polls 100 ms apart with 10 ms epochs: the first checkpoints commit (in the background) before the kill.
  const r = await runPipelineFile(FIXTURE, { dataDir, params: Object.fromEntries(Object.entries({ ...params, pollDelayMs: 100 }).map(([k, v]) => [k, String(v)])), crashAt: { point: 'source-poll', hit: 1, afterPolls: polls }, epochIntervalMs: 10, env: { WEIR_MAX_BATCH: '1' } })
  expect(r.signal, r.stderr).toBe('SIGKILL')
  const job = await jobOf(params, dataDir)
  expect(job?.status, 'a checkpoint of the job committed before the kill').toMatch(/listed|running/)
}

/** The etag a directory object gets: the SHA-256 of its content. */
async function sha256(text: string): Promise<string> {
  const { createHash } = await import('node:crypto')
  return createHash('sha256').update(text).digest('hex')
}

describe('FileSetSource over a directory', () => {
  it('emits every JSON line once with its event id as key; a bad line goes to the dead letters with object, line and error; empty objects and blank lines are fine', async () => {
    const a = '{"n":1}\n{"n":2}\n\n{"n":3}'
    const b = '{"n":4}\n{"n": oops\n{"n":5}\n'
    const { dir, dataDir } = setup({ 'day1/a.jsonl': a, 'day1/b.jsonl': b, 'day1/empty.jsonl': '', 'day2/c.jsonl': '{"n":9}\n' })
    const params: FileSetParams = { dir, run: 'day1', prefix: '{run}/', linesPerPoll: 2 }
    await runToCompletion(fileSetPipeline(params), { dataDir })
    const [ea, eb] = [await sha256(a), await sha256(b)]
    expect(await outputOf(params, dataDir)).toEqual([
      [`day1:day1%2Fa.jsonl:${ea}:1`, { n: 1 }],
      [`day1:day1%2Fa.jsonl:${ea}:2`, { n: 2 }],
      [`day1:day1%2Fa.jsonl:${ea}:4`, { n: 3 }],
      [`day1:day1%2Fb.jsonl:${eb}:1`, { n: 4 }],
      [`day1:day1%2Fb.jsonl:${eb}:3`, { n: 5 }],
    ])
    const dead = await readDeadLetters(fileSetPipeline(params), dataDir, 'files')
    expect(dead).toHaveLength(1)
    expect(dead[0]!.value.key?.toString()).toBe(`day1:day1%2Fb.jsonl:${eb}:2`)
    expect(dead[0]!.value.value?.toString()).toBe('{"n": oops')
    expect(dead[0]!.value.detail).toEqual({ run: 'day1', object: 'day1/b.jsonl', etag: eb, line: 2 })
    expect(dead[0]!.value.error.cause?.name ?? dead[0]!.value.error.message).toMatch(/SyntaxError|JSON/)
    const job = await jobOf(params, dataDir)
    expect(job).toMatchObject({ run: 'day1', status: 'finished', done: 3, total: 3, emitted: 5, deadLetters: 1 })
  })

  it('reads CSV with a header row into objects (quoted fields with line breaks kept); a row with another field count is dead-lettered', async () => {
    const csv = 'id,name,note\r\n1,ann,"two\nlines"\r\n2,bob\r\n3,cy,"a, b"\r\n'
    const { dir, dataDir } = setup({ 'x.csv': csv })
    const params: FileSetParams = { dir, run: 'r1', format: 'csv' }
    await runToCompletion(fileSetPipeline(params), { dataDir })
    const e = await sha256(csv)
    expect(await outputOf(params, dataDir)).toEqual([
      [`r1:x.csv:${e}:2`, { id: '1', name: 'ann', note: 'two\nlines' }],
      [`r1:x.csv:${e}:5`, { id: '3', name: 'cy', note: 'a, b' }],
    ])
    const dead = await readDeadLetters(fileSetPipeline(params), dataDir, 'files')
    expect(dead.map((d) => [d.value.value?.toString(), (d.value.detail as { line: number }).line, d.value.error.message])).toEqual([['2,bob', 4, expect.stringContaining('the row has 2 fields, the header has 3')]])
  })

  it('dead-letters a line longer than maxLineBytes with its first bytes, and reads on after it; eventId header keeps the id in weir-event-id', async () => {
    const text = `{"n":1}\n{"n":"${'y'.repeat(5000)}"}\n{"n":3}\n`
    const { dir, dataDir } = setup({ 'a.jsonl': text })
    // The source's topic is read back after the run, so its consumed records are kept.
    const p = new Pipeline('fileset-long', { purgeConsumedRecords: false })
    p.source('files', () => new FileSetSource({ directory: dir, run: 'r', format: 'jsonl', maxLineBytes: 64, eventId: 'header', key: (v) => String((v as { n: number }).n) }))
      .process('ids', () => new (class extends Processor<unknown, string> {
        onRecord(r: StreamRecord<unknown>, ctx: Context<string>): void {
          ctx.emit(r.key, r.headers[EVENT_ID_HEADER]!.toString())
        }
      })(), { chain: false }) // the source's own output topic is what is checked
    await runToCompletion(p, { dataDir })
    const out = await readStageOutput(p, dataDir, 'files')
    expect(out.map((r) => [r.key, r.value])).toEqual([['1', { n: 1 }], ['3', { n: 3 }]])
    const e = await sha256(text)
    expect((await readStageOutput(p, dataDir, 'ids')).map((r) => [r.key, r.value])).toEqual([['1', `r:a.jsonl:${e}:1`], ['3', `r:a.jsonl:${e}:3`]])
    const dead = await readDeadLetters(p, dataDir, 'files')
    expect(dead.map((d) => [d.value.value?.toString(), (d.value.detail as { line: number }).line])).toEqual([[`{"n":"${'y'.repeat(58)}`, 2]])
    expect(dead[0]!.value.error.message).toContain('longer than maxLineBytes (64)')
  })

  it('a rerun of a finished run id emits nothing and ends at once; a new run id is a new job over the new listing, the old one kept as history', async () => {
    const { dir, dataDir } = setup({ 'a.jsonl': '{"n":1}\n{"n":2}\n' })
    const first: FileSetParams = { dir, run: 'r1' }
    await runToCompletion(fileSetPipeline(first), { dataDir })
    const once = await outputOf(first, dataDir)
    expect(once).toHaveLength(2)
    writeObjects(dir, { 'b.jsonl': '{"n":3}\n' })
    const again = await runToCompletion(fileSetPipeline(first), { dataDir })
    expect(again.finalRunHits['source-poll'], 'the finished job is not polled').toBe(0)
    expect(await outputOf(first, dataDir)).toEqual(once)
    const second: FileSetParams = { dir, run: 'r2' }
    await runToCompletion(fileSetPipeline(second), { dataDir })
    const all = await outputOf(second, dataDir)
    expect(all.slice(0, 2)).toEqual(once)
    expect(all.slice(2).map(([k, v]) => [k!.split(':').slice(0, 2).join(':'), v])).toEqual([['r2:a.jsonl', { n: 1 }], ['r2:a.jsonl', { n: 2 }], ['r2:b.jsonl', { n: 3 }]])
    const state = (await readCommittedState(fileSetPipeline(second), dataDir, 'files')).actor[0]!
    expect(Object.keys(state['fileset.runs'] as object).sort()).toEqual(['r1', 'r2'])
    expect(state['fileset.job']).toMatchObject({ run: 'r2', status: 'finished', total: 2, emitted: 3 })
    // An older run id that finished is not read again either.
    await runToCompletion(fileSetPipeline(first), { dataDir })
    expect(await outputOf(first, dataDir)).toEqual(all)
  })

  it('refuses an object changed under the same run id, naming it and both ETags; the job shows failed; restored, the rerun goes on', async () => {
    const a = Array.from({ length: 42 }, (_, i) => JSON.stringify({ n: i })).join('\n')
    const b = '{"n":100}\n'
    const { dir, dataDir } = setup({ 'a.jsonl': a, 'b.jsonl': b })
    const params: FileSetParams = { dir, run: 'r1', linesPerPoll: 5 }
    // Killed while reading a.jsonl (its 3rd poll), then b.jsonl changes before the rerun. The
    // poll that reads a.jsonl's last 2 lines opens b.jsonl and is refused: those 2 lines are
    // emitted, so the position after them commits with the refusal (restored, b is read, a's lines are not again).
    await killedAt(params, dataDir, 3)
    writeObjects(dir, { 'b.jsonl': '{"n":101}\n' })
    const err = await runToCompletion(fileSetPipeline(params), { dataDir }).then(() => undefined, (e: unknown) => e)
    expect(err).toBeInstanceOf(FileSetObjectChangedError)
    const changed = err as FileSetObjectChangedError
    expect(changed.message).toContain('object b.jsonl')
    expect(changed.context).toMatchObject({ object: 'b.jsonl', pinned: await sha256(b), current: await sha256('{"n":101}\n'), run: 'r1' })
    expect(await jobOf(params, dataDir)).toMatchObject({ status: 'failed', failure: { code: 'WEIR_FILESET_OBJECT_CHANGED', object: 'b.jsonl' } })
    // Nothing of the changed object was emitted; a.jsonl was, once.
    expect((await outputOf(params, dataDir)).map(([, v]) => v)).toEqual(Array.from({ length: 42 }, (_, i) => ({ n: i })))
    writeObjects(dir, { 'b.jsonl': b })
    await runToCompletion(fileSetPipeline(params), { dataDir })
    expect((await outputOf(params, dataDir)).map(([, v]) => v)).toEqual([...Array.from({ length: 42 }, (_, i) => ({ n: i })), { n: 100 }])
    expect(await jobOf(params, dataDir)).toMatchObject({ status: 'finished', emitted: 43 })
  })

  it('refuses an object that vanished under the same run id, naming it and its pinned ETag', async () => {
    const a = Array.from({ length: 30 }, (_, i) => JSON.stringify({ n: i })).join('\n')
    const { dir, dataDir } = setup({ 'a.jsonl': a, 'b.jsonl': '{"n":1}\n' })
    const params: FileSetParams = { dir, run: 'r1', linesPerPoll: 5 }
    await killedAt(params, dataDir, 2)
    rmSync(join(dir, 'a.jsonl'))
    const err = await runToCompletion(fileSetPipeline(params), { dataDir }).then(() => undefined, (e: unknown) => e)
    expect(err).toBeInstanceOf(FileSetObjectVanishedError)
    expect((err as FileSetObjectVanishedError).context).toMatchObject({ object: 'a.jsonl', pinned: await sha256(a), current: null })
    expect((err as Error).message).toContain('object a.jsonl')
    expect(await jobOf(params, dataDir)).toMatchObject({ status: 'failed', failure: { code: 'WEIR_FILESET_OBJECT_VANISHED', object: 'a.jsonl' } })
  })

  it("a new run id while a job is unfinished is refused, or abandons it with onUnfinished: 'abandon'", async () => {
    const a = Array.from({ length: 30 }, (_, i) => JSON.stringify({ n: i })).join('\n')
    const { dir, dataDir } = setup({ 'a.jsonl': a })
    await killedAt({ dir, run: 'r1', linesPerPoll: 5 }, dataDir, 2)
    const err = await runToCompletion(fileSetPipeline({ dir, run: 'r2' }), { dataDir }).then(() => undefined, (e: unknown) => e)
    expect(err).toBeInstanceOf(FileSetJobUnfinishedError)
    expect((err as Error).message).toMatch(/run r2 cannot start: job r1 is (listed|running)/)
    await runToCompletion(fileSetPipeline({ dir, run: 'r2', onUnfinished: 'abandon' }), { dataDir })
    const state = (await readCommittedState(fileSetPipeline({ dir }), dataDir, 'files')).actor[0]!
    expect((state['fileset.runs'] as Record<string, { status: string }>).r1!.status).toBe('abandoned')
    expect(state['fileset.job']).toMatchObject({ run: 'r2', status: 'finished', emitted: 30 })
  })

  it('partitions split the objects by key hash: each object is read by one actor, none twice', async () => {
    const objects: Record<string, string> = {}
    for (let i = 0; i < 12; i++) objects[`o${i}.jsonl`] = Array.from({ length: i }, (_, j) => JSON.stringify({ o: i, j })).join('\n')
    const { dir, dataDir } = setup(objects)
    const params: FileSetParams = { dir, run: 'r1', partitions: 3 }
    await runToCompletion(fileSetPipeline(params), { dataDir })
    const out = await readStageOutput<{ o: number; j: number }>(fileSetPipeline(params), dataDir, 'files')
    expect(out.map((r) => `${r.value.o}/${r.value.j}`).sort()).toEqual(Object.keys(objects).flatMap((_, i) => Array.from({ length: i }, (_, j) => `${i}/${j}`)).sort())
    const partitionsOf = new Map<number, Set<number>>()
    for (const r of out) (partitionsOf.get(r.value.o) ?? partitionsOf.set(r.value.o, new Set()).get(r.value.o)!).add(r.partition)
    for (const [o, ps] of partitionsOf) expect(ps.size, `object ${o}`).toBe(1)
    const state = await readCommittedState(fileSetPipeline(params), dataDir, 'files')
    const totals = [0, 1, 2].map((p) => (state.actor[p]?.['fileset.job'] as FileSetJobState | undefined)?.total ?? 0)
    expect(totals.reduce((a, b) => a + b, 0)).toBe(12)
    expect(totals.filter((t) => t > 0).length, 'more than one actor read objects').toBeGreaterThan(1)
  })
})

describe('FileSetSource options', () => {
  const ok = { directory: '/tmp', run: 'r', format: 'jsonl' as const }
  const make = (o: Record<string, unknown>) => () => new FileSetSource(o as never)
  itRefusesOptions([
    ['neither directory nor s3', make({ run: 'r', format: 'jsonl' }), 'directory'],
    ['both directory and s3', make({ ...ok, s3: { bucket: 'abc' } }), 'directory'],
    ['an unknown option', make({ ...ok, lines: 3 }), 'lines'],
    ['an unknown format', make({ ...ok, format: 'xml' }), 'format'],
    ['no run id and no prefix', make({ directory: '/tmp', format: 'jsonl' }), 'run'],
    ['{run} in the prefix without a run id', make({ directory: '/tmp', format: 'jsonl', prefix: 'x/{run}/' }), 'run'],
    ['an empty run id', make({ ...ok, run: '' }), 'run'],
    ['a run id with a line break', make({ ...ok, run: 'a\nb' }), 'run'],
    ['a delimiter for JSON lines', make({ ...ok, csvDelimiter: ';' }), 'csvDelimiter'],
    ['a two-character delimiter', make({ ...ok, format: 'csv', csvDelimiter: ';;' }), 'csvDelimiter'],
    ['an unknown eventId', make({ ...ok, eventId: 'value' }), 'eventId'],
    ['key without eventId header', make({ ...ok, key: () => 'k' }), 'key'],
    ['a timestamp that is not a function', make({ ...ok, timestamp: 5 }), 'timestamp'],
    ['linesPerPoll 0', make({ ...ok, linesPerPoll: 0 }), 'linesPerPoll'],
    ['maxLineBytes 1.5', make({ ...ok, maxLineBytes: 1.5 }), 'maxLineBytes'],
    ['an unknown onUnfinished', make({ ...ok, onUnfinished: 'skip' }), 'onUnfinished'],
    ['a bad bucket name', make({ run: 'r', format: 'jsonl', s3: { bucket: 'Bad_Bucket' } }), 's3.bucket'],
    ['an unknown s3 option', make({ run: 'r', format: 'jsonl', s3: { bucket: 'abc', secretKey: 'x' } }), 's3.secretKey'],
    ['an endpoint that is not a URL', make({ run: 'r', format: 'jsonl', s3: { bucket: 'abc', endpoint: 'minio:9000' } }), 's3.endpoint'],
    ['credentials in the endpoint', make({ run: 'r', format: 'jsonl', s3: { bucket: 'abc', endpoint: 'http://k:s@127.0.0.1:9000' } }), 's3.endpoint'],
    ['an inline access key', make({ run: 'r', format: 'jsonl', s3: { bucket: 'abc', credentials: { accessKeyId: 'AKIA', secretAccessKey: { env: 'S' } } } }), 's3.credentials.accessKeyId'],
    ['an inline secret key', make({ run: 'r', format: 'jsonl', s3: { bucket: 'abc', credentials: { accessKeyId: { env: 'K' }, secretAccessKey: 'shh' } } }), 's3.credentials.secretAccessKey'],
    ['an inline session token', make({ run: 'r', format: 'jsonl', s3: { bucket: 'abc', credentials: { accessKeyId: { env: 'K' }, secretAccessKey: { env: 'S' }, sessionToken: 'tok' } } }), 's3.credentials.sessionToken'],
    ['a secret source with both env and file', make({ run: 'r', format: 'jsonl', s3: { bucket: 'abc', credentials: { accessKeyId: { env: 'K', file: 'f' }, secretAccessKey: { env: 'S' } } } }), 's3.credentials.accessKeyId'],
    ['forcePathStyle as a string', make({ run: 'r', format: 'jsonl', s3: { bucket: 'abc', forcePathStyle: 'yes' } }), 's3.forcePathStyle'],
  ])

  it('refuses at start a directory that does not exist, and an unset credential variable, naming the field', async () => {
    const dataDir = tempDataDir('weir-fileset-')
    const err = await runToCompletion(fileSetPipeline({ dir: join(dataDir, 'nope'), run: 'r' }), { dataDir: join(dataDir, 'data') }).then(() => undefined, (e: unknown) => e)
    expect(err).toBeInstanceOf(ConfigError)
    expect((err as ConfigError).context.field).toBe('directory')
    delete process.env.WEIR_S3_ACCESS_KEY
    const err2 = await runToCompletion(fileSetPipeline({ bucket: 'abc', run: 'r' }), { dataDir: join(dataDir, 'data2') }).then(() => undefined, (e: unknown) => e)
    expect(err2).toBeInstanceOf(ConfigError)
    expect((err2 as ConfigError).context.field).toBe('s3.credentials.accessKeyId')
  })
})
