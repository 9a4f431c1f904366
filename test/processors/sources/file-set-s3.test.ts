/**
 * FileSetSource over the S3-compatible server of scripts/services.sh (WEIR_S3_URL, root
 * credentials in WEIR_S3_ACCESS_KEY / WEIR_S3_SECRET_KEY, read by the source from the
 * environment): the recovery property with real SIGKILLs (fixtures/file-set-property.ts;
 * WEIR_FILESET_S3_PROPERTY_RUNS cases, default 5), and the store's own refusal of a changed
 * object (If-Match on the ranged GET) and of a vanished one.
 */
import { DeleteObjectCommand, PutObjectCommand, type S3Client } from '@aws-sdk/client-s3'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { FileSetObjectChangedError, FileSetObjectVanishedError, type FileSetJobState } from '../../../processors/index.ts'
import { readCommittedState, readStageOutput, removeTempDirs, runPipelineFile, runToCompletion, tempDataDir } from '../../../testing/index.ts'
import { createUniqueBucket, s3Client, s3Credentials } from '../../support/s3.ts'
import { requireService } from '../../support/services.ts'
import { fileSetPipeline, type FileSetParams } from './fixtures/file-set-pipeline.ts'
import { fileSetRecoveryProperty } from './fixtures/file-set-property.ts'

const RUNS = Number(process.env.WEIR_FILESET_S3_PROPERTY_RUNS ?? 5)
const SEED = process.env.WEIR_PROPERTY_SEED === undefined ? undefined : Number(process.env.WEIR_PROPERTY_SEED)
const FIXTURE = new URL('./fixtures/file-set-pipeline.ts', import.meta.url).pathname
const s3 = await requireService('s3')
// What the source reads from the environment (the fixture names these variables).
const credentials = { WEIR_S3_URL: s3.url, WEIR_S3_ACCESS_KEY: s3Credentials().accessKeyId, WEIR_S3_SECRET_KEY: s3Credentials().secretAccessKey }

afterAll(removeTempDirs)

describe.skipIf(!s3.available)('FileSetSource over an S3-compatible bucket', () => {
  let client: S3Client
  beforeAll(() => {
    Object.assign(process.env, credentials)
    client = s3Client(s3.url)
  })
  afterAll(() => client?.destroy())

  async function bucketWith(objects: Record<string, string>): Promise<string> {
    const bucket = await createUniqueBucket(client, 'weir-fileset')
    for (const [key, body] of Object.entries(objects)) await client.send(new PutObjectCommand({ Bucket: bucket, Key: key, Body: body }))
    return bucket
  }

  it(`emits every line once across real SIGKILLs, resuming mid-object with ranged GETs; a rerun of the run id emits nothing (${RUNS} cases)`, async () => {
    const stats = await fileSetRecoveryProperty({ label: 's3', runs: RUNS, seed: SEED, env: credentials, target: { put: async (objects) => ({ bucket: await bucketWith(objects) }) } })
    expect(stats.cases).toBe(RUNS)
    expect(stats.fired).toBe(stats.planned)
  }, Math.max(300_000, RUNS * 40_000))

  async function killedAt(params: FileSetParams, dataDir: string, polls: number): Promise<void> {
    const r = await runPipelineFile(FIXTURE, { dataDir, params: Object.fromEntries(Object.entries({ ...params, pollDelayMs: 100 }).map(([k, v]) => [k, String(v)])), crashAt: { point: 'source-poll', hit: 1, afterPolls: polls }, epochIntervalMs: 10, env: { ...credentials, WEIR_MAX_BATCH: '1' } })
    expect(r.signal, r.stderr).toBe('SIGKILL')
    const job = (await readCommittedState(fileSetPipeline(params), dataDir, 'files')).actor[0]?.['fileset.job'] as FileSetJobState | undefined
    expect(job?.status, 'a checkpoint of the job committed before the kill').toMatch(/listed|running/)
  }

  it('refuses an object overwritten under the same run id (the store refuses the If-Match GET), naming it and both ETags', async () => {
    const a = Array.from({ length: 42 }, (_, i) => JSON.stringify({ n: i })).join('\n')
    const bucket = await bucketWith({ 'r1/a.jsonl': a, 'r1/b.jsonl': '{"n":100}\n' })
    const params: FileSetParams = { bucket, run: 'r1', prefix: '{run}/', linesPerPoll: 5 }
    const dataDir = tempDataDir('weir-fileset-s3-')
    await killedAt(params, dataDir, 3)
    const pinned = ((await readCommittedState(fileSetPipeline(params), dataDir, 'files')).actor[0]?.['fileset.objects'] as Array<{ key: string; etag: string }>).find((o) => o.key === 'r1/b.jsonl')!.etag
    const put = await client.send(new PutObjectCommand({ Bucket: bucket, Key: 'r1/b.jsonl', Body: '{"n":101}\n' }))
    const err = await runToCompletion(fileSetPipeline(params), { dataDir }).then(() => undefined, (e: unknown) => e)
    expect(err).toBeInstanceOf(FileSetObjectChangedError)
    expect((err as FileSetObjectChangedError).context).toMatchObject({ object: 'r1/b.jsonl', pinned, current: put.ETag!.replace(/"/g, '') })
    expect(((await readCommittedState(fileSetPipeline(params), dataDir, 'files')).actor[0]!['fileset.job'] as FileSetJobState).status).toBe('failed')
    expect((await readStageOutput(fileSetPipeline(params), dataDir, 'files')).map((r) => r.value)).toEqual(Array.from({ length: 42 }, (_, i) => ({ n: i })))
  }, 60_000)

  it('refuses an object deleted under the same run id, naming it', async () => {
    const a = Array.from({ length: 30 }, (_, i) => JSON.stringify({ n: i })).join('\n')
    const bucket = await bucketWith({ 'a.jsonl': a, 'b.jsonl': '{"n":1}\n' })
    const params: FileSetParams = { bucket, run: 'r1', linesPerPoll: 5 }
    const dataDir = tempDataDir('weir-fileset-s3-')
    await killedAt(params, dataDir, 2)
    await client.send(new DeleteObjectCommand({ Bucket: bucket, Key: 'b.jsonl' }))
    const err = await runToCompletion(fileSetPipeline(params), { dataDir }).then(() => undefined, (e: unknown) => e)
    expect(err).toBeInstanceOf(FileSetObjectVanishedError)
    expect((err as Error).message).toContain('object b.jsonl')
  }, 60_000)
})
