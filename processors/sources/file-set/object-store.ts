/**
 * Where a file set's objects live: a local directory or an S3-compatible bucket, behind one
 * small interface (list once, check one object, read one from a byte offset). The source
 * pins what `list` returned; `open` refuses an object whose ETag is no longer the pinned one.
 */
import { createHash } from 'node:crypto'
import { createReadStream } from 'node:fs'
import { open as openFile, readdir, stat } from 'node:fs/promises'
import { join, relative, sep } from 'node:path'
import { Readable } from 'node:stream'
import { GetObjectCommand, HeadObjectCommand, ListObjectsV2Command, S3Client } from '@aws-sdk/client-s3'

/** One object as listed: its key (a path relative to the directory, `/`-separated, for a directory), ETag and size in bytes. */
export interface ListedObject {
  key: string
  etag: string
  size: number
}

/** What `open` found: the object's bytes from the offset on, or why it cannot be read as pinned. */
export type Opened =
  | { kind: 'stream'; body: Readable }
  | { kind: 'changed'; current: string }
  | { kind: 'vanished' }

export interface ObjectStore {
  /** Human-readable, for errors and logs (`directory /data/exports`, `s3://bucket`). */
  readonly describe: string
  /** Every object whose key starts with `prefix`, sorted by key. */
  list(prefix: string): Promise<ListedObject[]>
  /** The object's bytes from `offset` on, if its ETag is still `etag`. */
  open(object: ListedObject, offset: number): Promise<Opened>
  close(): void
}

/**
 * A local directory. Its ETag is the SHA-256 of the file's content, not its mtime: a
 * modification time survives copies that keep it (cp -p, rsync -t, tar), has a coarse
 * granularity on some file systems, and a rewrite in the same tick keeps it, so a changed
 * file could pass as the pinned one; the hash cannot. The cost is reading each file once
 * more at the job's listing and once when it is opened (or resumed).
 */
export class DirectoryStore implements ObjectStore {
  readonly describe: string
  constructor(private readonly root: string) {
    this.describe = `directory ${root}`
  }

  async list(prefix: string): Promise<ListedObject[]> {
    const out: ListedObject[] = []
    for (const path of await filesUnder(this.root)) {
      const key = relative(this.root, path).split(sep).join('/')
      if (!key.startsWith(prefix)) continue
      const s = await stat(path)
      out.push({ key, etag: await sha256Of(path), size: s.size })
    }
    return out.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0))
  }

  async open(object: ListedObject, offset: number): Promise<Opened> {
    const path = join(this.root, ...object.key.split('/'))
    // Opened once: the hash and the read see the same file even if it is replaced meanwhile.
    let handle
    try {
      handle = await openFile(path, 'r')
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return { kind: 'vanished' }
      throw err
    }
    try {
      const current = await sha256Of(handle.createReadStream({ autoClose: false, start: 0 }))
      if (current !== object.etag) {
        await handle.close()
        return { kind: 'changed', current }
      }
    } catch (err) {
      await handle.close()
      throw err
    }
    return { kind: 'stream', body: handle.createReadStream({ start: offset, autoClose: true }) }
  }

  close(): void {}
}

async function filesUnder(dir: string): Promise<string[]> {
  const out: string[] = []
  for (const entry of await readdir(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name)
    if (entry.isDirectory()) out.push(...(await filesUnder(path)))
    else if (entry.isFile()) out.push(path)
  }
  return out
}

async function sha256Of(from: string | Readable): Promise<string> {
  const hash = createHash('sha256')
  const stream = typeof from === 'string' ? createReadStream(from) : from
  for await (const chunk of stream) hash.update(chunk as Buffer)
  return hash.digest('hex')
}

/** Where a bucket is and how to reach it; credentials already read (never from the pipeline's text). */
export interface S3Target {
  bucket: string
  endpoint?: string
  region: string
  forcePathStyle: boolean
  credentials?: { accessKeyId: string; secretAccessKey: string; sessionToken?: string }
}

/**
 * An S3-compatible bucket. ETags come from the listing; reads are ranged GETs with
 * `If-Match: <pinned ETag>`, so a changed object is refused by the store itself (412), in
 * the same request that would have read it.
 */
export class S3Store implements ObjectStore {
  readonly describe: string
  private readonly client: S3Client
  constructor(private readonly target: S3Target) {
    this.describe = `s3://${target.bucket}${target.endpoint === undefined ? '' : ` at ${target.endpoint}`}`
    this.client = new S3Client({ region: target.region, endpoint: target.endpoint, forcePathStyle: target.forcePathStyle, credentials: target.credentials })
  }

  async list(prefix: string): Promise<ListedObject[]> {
    const out: ListedObject[] = []
    let token: string | undefined
    do {
      const page = await this.client.send(new ListObjectsV2Command({ Bucket: this.target.bucket, Prefix: prefix, ContinuationToken: token }))
      for (const o of page.Contents ?? []) {
        if (o.Key === undefined || o.Key.endsWith('/')) continue
        out.push({ key: o.Key, etag: unquote(o.ETag ?? ''), size: o.Size ?? 0 })
      }
      token = page.IsTruncated === true ? page.NextContinuationToken : undefined
    } while (token !== undefined)
    return out.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0))
  }

  async open(object: ListedObject, offset: number): Promise<Opened> {
    const ifMatch = `"${object.etag}"`
    try {
      // A range starting at the end of an object is unsatisfiable (416): check it instead.
      if (offset >= object.size) {
        await this.client.send(new HeadObjectCommand({ Bucket: this.target.bucket, Key: object.key, IfMatch: ifMatch }))
        return { kind: 'stream', body: emptyStream() }
      }
      const r = await this.client.send(new GetObjectCommand({ Bucket: this.target.bucket, Key: object.key, IfMatch: ifMatch, Range: `bytes=${offset}-` }))
      return { kind: 'stream', body: r.Body as Readable }
    } catch (err) {
      const status = (err as { $metadata?: { httpStatusCode?: number } }).$metadata?.httpStatusCode
      if (status === 404) return { kind: 'vanished' }
      if (status !== 412) throw err
    }
    try {
      const head = await this.client.send(new HeadObjectCommand({ Bucket: this.target.bucket, Key: object.key }))
      return { kind: 'changed', current: unquote(head.ETag ?? '') }
    } catch (err) {
      if ((err as { $metadata?: { httpStatusCode?: number } }).$metadata?.httpStatusCode === 404) return { kind: 'vanished' }
      throw err
    }
  }

  close(): void {
    this.client.destroy()
  }
}

function unquote(etag: string): string {
  return etag.replace(/^W\//, '').replace(/^"|"$/g, '')
}

function emptyStream(): Readable {
  return Readable.from([])
}
