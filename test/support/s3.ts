/**
 * The S3-compatible server of the integration tests (versitygw, started by
 * `scripts/services.sh up s3`): a client for it and a fresh bucket per test.
 *
 * Where it is: `WEIR_S3_URL` (default `http://127.0.0.1:9000`); its root credentials:
 * `WEIR_S3_ACCESS_KEY` (default `weir`) and `WEIR_S3_SECRET_KEY` (default `weirweirweir`);
 * region `us-east-1`, path-style addressing (`http://127.0.0.1:9000/<bucket>/<key>`: no
 * bucket host names to resolve).
 *
 * @example
 * const s3 = await requireService('s3')
 * describe.skipIf(!s3.available)('on S3', () => {
 *   it('reads a bucket', async () => {
 *     const client = s3Client(s3.url)
 *     const bucket = await createUniqueBucket(client, 'file-set')
 *     await client.send(new PutObjectCommand({ Bucket: bucket, Key: 'in/a.csv', Body: 'x,1\n' }))
 *   })
 * })
 */
import { randomUUID } from 'node:crypto'
import { CreateBucketCommand, S3Client } from '@aws-sdk/client-s3'

export const S3_REGION = 'us-east-1'

/** The root credentials services.sh gives the server (the same variables, the same defaults). */
export function s3Credentials(): { accessKeyId: string; secretAccessKey: string } {
  return {
    accessKeyId: process.env.WEIR_S3_ACCESS_KEY ?? 'weir',
    secretAccessKey: process.env.WEIR_S3_SECRET_KEY ?? 'weirweirweir',
  }
}

/**
 * An S3Client for the server at `url` (a `requireService('s3')` handle's url): path-style,
 * region us-east-1, the root credentials; `destroy()` it when done.
 */
export function s3Client(url: string): S3Client {
  return new S3Client({ endpoint: url, region: S3_REGION, forcePathStyle: true, credentials: s3Credentials() })
}

/**
 * Creates a bucket no other test (or earlier run on the same data) uses and returns its name:
 * `<prefix>-<random>`, lower case, at most 63 characters as S3 allows.
 */
export async function createUniqueBucket(client: S3Client, prefix = 'weir-test'): Promise<string> {
  const suffix = randomUUID().replaceAll('-', '').slice(0, 12)
  const head = prefix.toLowerCase().replace(/[^a-z0-9-]/g, '-').slice(0, 63 - suffix.length - 1)
  const bucket = `${head}-${suffix}`
  await client.send(new CreateBucketCommand({ Bucket: bucket }))
  return bucket
}
