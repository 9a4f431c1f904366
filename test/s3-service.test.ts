/**
 * The S3-compatible server `scripts/services.sh up s3` starts (versitygw) does, with the
 * client weir uses (@aws-sdk/client-s3) and the helpers of test/support/s3.ts, what
 * FileSetSource needs of a bucket: listing by prefix across pages, ranged reads, HEAD, ETags
 * that follow the content, writes; it refuses a wrong secret; and a private instance keeps its
 * objects across `stop` and `up` (the pattern of tests that stop a server under a pipeline).
 */
import { execFile } from 'node:child_process'
import { createHash } from 'node:crypto'
import { join } from 'node:path'
import { promisify } from 'node:util'
import {
  GetObjectCommand,
  HeadObjectCommand,
  ListBucketsCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  S3Client,
  type ListObjectsV2CommandOutput,
} from '@aws-sdk/client-s3'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { removeDir, tempDataDir } from '../testing/index.ts'
import { createUniqueBucket, S3_REGION, s3Client } from './support/s3.ts'
import { reachable, requireService } from './support/services.ts'
import { freePort } from './support/weir-cli.ts'

const run = promisify(execFile)
const s3 = await requireService('s3')

const md5 = (text: string): string => createHash('md5').update(text).digest('hex')

describe.skipIf(!s3.available)('the s3 service', () => {
  let client: S3Client
  beforeAll(() => {
    client = s3Client(s3.url)
  })
  afterAll(() => client.destroy())

  it('lists a prefix across pages of MaxKeys objects, in key order, and nothing outside it', async () => {
    const bucket = await createUniqueBucket(client, 'list')
    const inside = Array.from({ length: 7 }, (_, i) => `in/part-${String(i).padStart(2, '0')}.csv`)
    const outside = ['other/part-00.csv', 'index.csv']
    // Written out of order: the listing's order is the server's, not the writes'.
    for (const key of [...inside].reverse().concat(outside)) {
      await client.send(new PutObjectCommand({ Bucket: bucket, Key: key, Body: `${key}\n` }))
    }
    const pages: ListObjectsV2CommandOutput[] = []
    let token: string | undefined
    do {
      const page = await client.send(new ListObjectsV2Command({ Bucket: bucket, Prefix: 'in/', MaxKeys: 3, ContinuationToken: token }))
      pages.push(page)
      token = page.NextContinuationToken
      expect(pages.length).toBeLessThan(10)
    } while (token !== undefined)
    expect(pages.map((p) => (p.Contents ?? []).length)).toEqual([3, 3, 1])
    expect(pages.map((p) => p.IsTruncated)).toEqual([true, true, false])
    const listed = pages.flatMap((p) => p.Contents ?? [])
    expect(listed.map((o) => o.Key)).toEqual(inside)
    for (const object of listed) {
      expect(object.Size).toBe(`${object.Key!}\n`.length)
      expect(object.ETag).toBe(`"${md5(`${object.Key!}\n`)}"`)
      expect(object.LastModified).toBeInstanceOf(Date)
    }
  })

  it('reads a byte range of an object', async () => {
    const bucket = await createUniqueBucket(client, 'range')
    const body = 'id,word\n1,ant\n2,bee\n3,cat\n'
    await client.send(new PutObjectCommand({ Bucket: bucket, Key: 'words.csv', Body: body }))
    const ranged = await client.send(new GetObjectCommand({ Bucket: bucket, Key: 'words.csv', Range: 'bytes=8-19' }))
    expect(await ranged.Body!.transformToString()).toBe(body.slice(8, 20))
    expect(ranged.ContentRange).toBe(`bytes 8-19/${body.length}`)
    expect(ranged.ContentLength).toBe(12)
    // An open-ended range reads to the end, as a resumed read does.
    const rest = await client.send(new GetObjectCommand({ Bucket: bucket, Key: 'words.csv', Range: 'bytes=20-' }))
    expect(await rest.Body!.transformToString()).toBe(body.slice(20))
  })

  it('heads an object, and its ETag changes when it is rewritten with other content', async () => {
    const bucket = await createUniqueBucket(client, 'etag')
    const first = await client.send(new PutObjectCommand({ Bucket: bucket, Key: 'a.txt', Body: 'first version\n' }))
    const head1 = await client.send(new HeadObjectCommand({ Bucket: bucket, Key: 'a.txt' }))
    expect(head1.ETag).toBe(first.ETag)
    expect(head1.ETag).toBe(`"${md5('first version\n')}"`)
    expect(head1.ContentLength).toBe('first version\n'.length)
    expect(head1.LastModified).toBeInstanceOf(Date)

    const second = await client.send(new PutObjectCommand({ Bucket: bucket, Key: 'a.txt', Body: 'second version\n' }))
    const head2 = await client.send(new HeadObjectCommand({ Bucket: bucket, Key: 'a.txt' }))
    expect(head2.ETag).toBe(second.ETag)
    expect(head2.ETag).not.toBe(head1.ETag)
    expect(head2.ContentLength).toBe('second version\n'.length)
    const read = await client.send(new GetObjectCommand({ Bucket: bucket, Key: 'a.txt' }))
    expect(await read.Body!.transformToString()).toBe('second version\n')
    expect(read.ETag).toBe(head2.ETag)

    // HEAD of a key that is not there: a 404 the source can tell from an outage.
    const missing = await client.send(new HeadObjectCommand({ Bucket: bucket, Key: 'nope.txt' })).catch((e: unknown) => e)
    expect(missing).toMatchObject({ name: 'NotFound', $metadata: { httpStatusCode: 404 } })
  })

  it('refuses a request signed with a wrong secret', async () => {
    const stranger = new S3Client({ endpoint: s3.url, region: S3_REGION, forcePathStyle: true, credentials: { accessKeyId: 'weir', secretAccessKey: 'not-the-secret' } })
    try {
      const refused = await stranger.send(new ListBucketsCommand({})).catch((e: unknown) => e)
      expect(refused).toMatchObject({ name: 'SignatureDoesNotMatch', $metadata: { httpStatusCode: 403 } })
    } finally {
      stranger.destroy()
    }
  })
})

describe.skipIf(!s3.available)('a private s3 instance', () => {
  const script = join(import.meta.dirname, '..', 'scripts', 'services.sh')
  const servicesDir = tempDataDir('weir-s3-private-services-')
  let env: NodeJS.ProcessEnv
  let url: string
  const services = (...args: string[]): Promise<{ stdout: string; stderr: string }> => run('bash', [script, ...args], { env, timeout: 180_000 })

  beforeAll(async () => {
    url = `http://127.0.0.1:${await freePort()}`
    env = { ...process.env, WEIR_SERVICES_DIR: servicesDir, WEIR_S3_URL: url }
    await services('up', 's3')
  }, 200_000)
  afterAll(async () => {
    await services('down').catch(() => undefined)
    removeDir(servicesDir)
  }, 60_000)

  it('keeps its buckets and objects across stop and up', async () => {
    let client = s3Client(url)
    const bucket = await createUniqueBucket(client, 'restart')
    const put = await client.send(new PutObjectCommand({ Bucket: bucket, Key: 'kept/object.txt', Body: 'still here\n' }))
    client.destroy()

    const stopped = await services('stop', 's3')
    expect(stopped.stdout).toMatch(/^s3 +\S+ \(key weir\) +stopped \(pid \d+\)$/m)
    expect(await reachable(url, 1000)).toBe(false)
    await services('up', 's3')

    client = s3Client(url)
    try {
      const listed = await client.send(new ListObjectsV2Command({ Bucket: bucket }))
      expect(listed.Contents?.map((o) => o.Key)).toEqual(['kept/object.txt'])
      const read = await client.send(new GetObjectCommand({ Bucket: bucket, Key: 'kept/object.txt' }))
      expect(await read.Body!.transformToString()).toBe('still here\n')
      expect(read.ETag).toBe(put.ETag)
    } finally {
      client.destroy()
    }
  })
})
