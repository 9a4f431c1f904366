/**
 * exactly-once: each record's line is in the file once, from the moment the checkpoint that
 * holds it committed. Two phases: at the barrier a checkpoint's lines are staged in a hidden
 * file beside the target; after the pipe commit they are copied to the file offset that the
 * committed state recorded (again at start, if a crash came first). The file is written only
 * at offsets committed state gives, never appended to or truncated, so a restarted actor or a
 * zombie (a paused worker whose actor moved on) can at most rewrite the same bytes of a
 * checkpoint that committed, and nothing of one that did not.
 */
import { closeSync, constants, fdatasyncSync, fstatSync, mkdirSync, openSync, readdirSync, unlinkSync, writeSync } from 'node:fs'
import { open as openFile, type FileHandle } from 'node:fs/promises'
import { randomUUID } from 'node:crypto'
import { basename, dirname, join, resolve } from 'node:path'
import { ConfigError, Processor, StateCorruptedError, type CheckpointContext, type CommitContext, type LifecycleContext, type StreamRecord } from '../../index.ts'

export interface JsonlFileSinkOptions<T> {
  /**
   * File path; `{partition}` is replaced by the actor's partition (one file per actor). A
   * relative path resolves against the run's working directory (`LifecycleContext.workDir`:
   * the process's own, or the data dir of a weir/testing run). In a cluster, every worker must
   * see the same file there (one machine, or a shared filesystem).
   */
  path: string
  /** What to write per record, as one JSON line. Default: `{ key, value, timestamp }` (the record's key, value and event time in ms). */
  format?: (record: StreamRecord<T>) => unknown
  /** fdatasync staged lines at the barrier and the file after each publish, so a machine crash loses nothing either. Default false. */
  durable?: boolean
}

/** What a checkpoint staged: its lines, in a staging file, go to `[at, at + bytes)` of the target. */
export interface StagedLines {
  /** The staging file's name, in the target's directory. */
  file: string
  at: number
  bytes: number
}

/** Lines buffered in memory before they go to the staging file. */
const SPILL_BYTES = 1 << 20
/** Bytes copied from a staging file to the target per read. */
const COPY_BYTES = 1 << 20

/**
 * Writes records as JSON lines, exactly once (see the file's first line). A line appears in
 * the file once its checkpoint committed in the pipe (a sink that writes at the barrier shows
 * it earlier, uncommitted, and has to take it back after a crash). Staging files are named
 * `.<file name>.<offset>.<instance>.staging`, hidden so that readers which skip dotfiles skip
 * them; each is removed once published, and one left by a crash or by a fenced zombie is
 * removed by a later publish.
 *
 * @example
 * stream.to('signals', () => new JsonlFileSink({ path: 'out/signals-{partition}.jsonl' }))
 */
export class JsonlFileSink<T = unknown> extends Processor<T, never, StagedLines> {
  /** The file's length once every committed checkpoint is published: where the next checkpoint's lines go. */
  private readonly committedBytes = this.state.actorValue<number>('committed-bytes')
  private target = ''
  private dir = ''
  private fd = -1
  /** Tells this instance's staging files from a zombie's or a crashed one's. */
  private instance = ''
  private pending: string[] = []
  private pendingBytes = 0
  /** The staging file of the open epoch, once lines spilled to it. */
  private staging: { name: string; fd: number; bytes: number } | undefined
  private length = 0
  private stagingPattern: RegExp | undefined
  readonly path: string

  constructor(private readonly options: JsonlFileSinkOptions<T>) {
    super()
    this.path = options.path
  }

  override open(ctx: LifecycleContext): void {
    if (ctx.partitions > 1 && !this.options.path.includes('{partition}')) {
      throw new ConfigError('path', `'${this.options.path}' needs {partition}: stage ${ctx.stage} has ${ctx.partitions} actors, and each writes a file of its own`, { stage: ctx.stage })
    }
    this.target = resolve(ctx.workDir, this.options.path.replace('{partition}', String(ctx.partition)))
    this.dir = dirname(this.target)
    mkdirSync(this.dir, { recursive: true })
    // No O_APPEND: on Linux it makes positional writes append, wherever they were meant to go.
    this.fd = openSync(this.target, constants.O_WRONLY | constants.O_CREAT, 0o644)
    this.length = this.committedBytes.get() ?? 0
    this.instance = randomUUID().slice(0, 8)
    this.stagingPattern = new RegExp(`^\\.${escapeRegExp(basename(this.target))}\\.(\\d+)\\.[0-9a-f]+\\.staging$`)
  }

  onRecord(record: StreamRecord<T>): void {
    const body = this.options.format ? this.options.format(record) : { key: record.key, value: record.value, timestamp: record.timestamp }
    const line = JSON.stringify(body) + '\n'
    this.pending.push(line)
    this.pendingBytes += Buffer.byteLength(line)
    if (this.pendingBytes > SPILL_BYTES) this.spill()
  }

  /** Phase one: the epoch's lines go to its staging file; the checkpoint records where they belong. */
  override onCheckpoint(ctx: CheckpointContext): StagedLines | undefined {
    this.spill()
    const staging = this.staging
    if (staging === undefined) return undefined
    this.staging = undefined
    if (this.options.durable) {
      fdatasyncSync(staging.fd)
      syncDirectory(this.dir)
    }
    closeSync(staging.fd)
    const staged: StagedLines = { file: staging.name, at: this.length, bytes: staging.bytes }
    this.length += staging.bytes
    this.committedBytes.set(this.length)
    ctx.log.trace({ checkpoint: ctx.checkpoint, ...staged }, 'lines staged')
    return staged
  }

  /**
   * Phase two, once the checkpoint committed: copies its staged lines to their offset. Runs
   * again after a crash and on a zombie: copying the same bytes to the same place is harmless,
   * and a missing staging file means its lines were published (it is removed only after).
   */
  override async onCheckpointCommitted(commit: CommitContext<StagedLines>): Promise<void> {
    const staged = commit.staged
    const size = fstatSync(this.fd).size
    // Everything before this checkpoint's lines was published before it committed.
    const published = staged?.at ?? (commit.recovering ? this.length : 0)
    if (size < published) throw this.corrupted(`has ${size} bytes but the committed checkpoints wrote ${published}: it was truncated or replaced outside weir`, commit)
    if (staged === undefined) return
    const stagingPath = join(this.dir, staged.file)
    let source: FileHandle
    try {
      source = await openFile(stagingPath, 'r')
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err
      if (size < staged.at + staged.bytes) throw this.corrupted(`misses the lines of checkpoint ${commit.checkpoint} (bytes ${staged.at}..${staged.at + staged.bytes}) and their staging file ${staged.file} is gone`, commit)
      return
    }
    try {
      await this.copy(source, staged, commit)
    } finally {
      await source.close()
    }
    if (this.options.durable) fdatasyncSync(this.fd)
    removeIfThere(stagingPath)
    this.removeLeftovers(staged.at + staged.bytes)
  }

  private async copy(source: FileHandle, staged: StagedLines, commit: CommitContext<StagedLines>): Promise<void> {
    const buf = Buffer.allocUnsafe(Math.min(COPY_BYTES, staged.bytes))
    let done = 0
    while (done < staged.bytes) {
      const { bytesRead } = await source.read(buf, 0, Math.min(buf.length, staged.bytes - done), done)
      if (bytesRead === 0) throw this.corrupted(`cannot be completed: staging file ${staged.file} of checkpoint ${commit.checkpoint} has ${done} of its ${staged.bytes} bytes (lost in a machine crash without durable: true?)`, commit)
      let off = 0
      while (off < bytesRead) off += writeSync(this.fd, buf, off, bytesRead - off, staged.at + done + off)
      done += bytesRead
    }
  }

  /**
   * Removes staging files whose lines would go before `end`: committed history already holds
   * other (or the same, published) lines there, so no checkpoint can commit them any more. A
   * live instance's staging file starts at or after its newest commit, which is at least `end`.
   */
  private removeLeftovers(end: number): void {
    for (const f of readdirSync(this.dir)) {
      const m = this.stagingPattern!.exec(f)
      if (m !== null && Number(m[1]) < end) removeIfThere(join(this.dir, f))
    }
  }

  /** Moves buffered lines to the open epoch's staging file. */
  private spill(): void {
    if (this.pending.length === 0) return
    const buf = Buffer.from(this.pending.join(''))
    this.pending = []
    this.pendingBytes = 0
    if (this.staging === undefined) {
      const name = `.${basename(this.target)}.${this.length}.${this.instance}.staging`
      this.staging = { name, fd: openSync(join(this.dir, name), 'w', 0o644), bytes: 0 }
    }
    const s = this.staging
    let off = 0
    while (off < buf.length) off += writeSync(s.fd, buf, off, buf.length - off, s.bytes + off)
    s.bytes += buf.length
  }

  private corrupted(what: string, commit: CommitContext<StagedLines>): StateCorruptedError {
    return new StateCorruptedError(`${this.target} ${what}`, { stage: commit.stage, partition: commit.partition, path: this.target, checkpoint: commit.checkpoint })
  }

  override close(): void {
    // The open epoch's lines were never handed to a checkpoint: no commit can refer to them.
    if (this.staging !== undefined) {
      closeSync(this.staging.fd)
      removeIfThere(join(this.dir, this.staging.name))
      this.staging = undefined
    }
    if (this.fd >= 0) closeSync(this.fd)
    this.fd = -1
  }
}

function removeIfThere(path: string): void {
  try {
    unlinkSync(path)
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err
  }
}

/** Makes a new file's directory entry durable (fdatasync of the file alone does not). */
function syncDirectory(dir: string): void {
  const fd = openSync(dir, 'r')
  try {
    fdatasyncSync(fd)
  } finally {
    closeSync(fd)
  }
}

function escapeRegExp(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')
}
