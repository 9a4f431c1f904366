/**
 * StoreSink's own bookkeeping, on a store kept in this process's memory (it outlives the
 * in-process crashes of runToCompletion as a database outlives a killed worker; its write
 * follows the StoreSink contract and refuses the value 3 as a database refuses a bad row).
 * A dead letter the store's progress keeps for a record the pipe has not committed yet must
 * stay there until the pipe commits the dead letter itself, also when the restarted actor's
 * first checkpoint commits before the record comes again.
 */
import { join } from 'node:path'
import { afterAll, describe, expect, it } from 'vitest'
import { Pipeline, SinkFencedError, StateCorruptedError, StoreSink, encodePositions, type SinkActor, type SinkBatch, type SinkClaim, type SinkProgress, type StreamRecord, type Context, type WriteResult } from '../../../index.ts'
import { GeneratorSource } from '../../../processors/index.ts'
import { readDeadLetters, removeDir, runToCompletion, tempDataDir } from '../../../testing/index.ts'

interface MemoryStore {
  generation: number
  progress: SinkProgress | undefined
  rows: number[]
}

const stores = new Map<string, MemoryStore>()

class MemorySink extends StoreSink<number, number> {
  private store!: MemoryStore
  constructor(private readonly name: string) {
    super({ batchRows: 2 })
  }
  protected describeStore(): string {
    return `memory store ${this.name}`
  }
  protected async connect(): Promise<void> {
    if (!stores.has(this.name)) stores.set(this.name, { generation: 0, progress: undefined, rows: [] })
    this.store = stores.get(this.name)!
  }
  protected toRow(record: StreamRecord<number>): number {
    return record.value
  }
  /** A restarted instance: it lingers on its first record, so the epoch the coordinator announces at start (the source has finished) is checkpointed before record 3 comes again. */
  private restarted = false
  override async onRecord(record: StreamRecord<number>, ctx: Context<never>): Promise<void> {
    if (this.restarted && record.value === 0) await new Promise((r) => setTimeout(r, 300))
    return super.onRecord(record, ctx)
  }
  protected async claim(_actor: SinkActor): Promise<SinkClaim> {
    this.restarted = this.store.progress !== undefined
    this.store.generation++
    return { generation: this.store.generation, progress: this.store.progress === undefined ? undefined : structuredClone(this.store.progress) }
  }
  protected async write(batch: SinkBatch<number>): Promise<WriteResult> {
    const s = this.store
    if (s.generation !== batch.generation) throw new SinkFencedError('fenced', {})
    const at = encodePositions(s.progress?.positions ?? {})
    if (at !== encodePositions(batch.from)) {
      if (at === encodePositions(batch.to)) return { outcome: 'already-written', progress: structuredClone(s.progress!) }
      throw new StateCorruptedError(`store at ${at}, write from ${encodePositions(batch.from)}`, {})
    }
    const rejected = batch.rows.flatMap((r, index) => (r.row === 3 ? [{ index, error: new Error('the store refuses 3'), detail: { value: 3 } }] : []))
    for (const r of batch.rows) if (r.row !== 3) s.rows.push(r.row)
    s.progress = structuredClone(batch.progress(rejected))
    return { outcome: 'written', rejected }
  }
  protected async disconnect(): Promise<void> {}
}

const dirs: string[] = []
afterAll(() => dirs.forEach(removeDir))

describe('StoreSink', () => {
  it('keeps a dead letter in the store until the pipe committed it, also when the restarted actor checkpoints before its record comes again', async () => {
    // Run 1 writes record 3's dead letter into the store's progress and dies before the pipe
    // commits it (long epochs: no barrier but the ones the coordinator announces when a stage
    // finishes). Run 2 checkpoints early (its sink lingers on its first record), passes over
    // records 0-11 (record 3's dead letter sent again), writes more rows, and dies at a later
    // barrier before the pipe commits. Run 3 must still find the dead letter in the store.
    // Which barrier that is depends on timing: several are tried.
    const lost: string[] = []
    for (const hit of [2, 3, 2, 3, 2, 3]) {
      const name = `memory-${hit}-${Date.now()}`
      const pipeline = (): Pipeline => {
        const p = new Pipeline('store-sink')
        p.source<number>('n', () => new GeneratorSource<number>({ count: 40, generate: (i) => ({ key: `k${i}`, value: i }) }))
          .to('sink', () => new MemorySink(name))
        return p
      }
      const dataDir = join(tempDataDir('weir-store-sink-'), 'data')
      dirs.push(dataDir)
      const { crashed } = await runToCompletion(pipeline(), {
        dataDir,
        epochIntervalMs: 60_000,
        actorConfig: { maxBatch: 1 },
        crashes: [{ point: 'mid-batch', hit: 1, afterRecords: { stage: 'sink', records: 12 } }, { point: 'before-commit', hit }],
      })
      expect(crashed.length, 'run 1 crashed').toBeGreaterThan(0)
      expect(stores.get(name)!.rows).toEqual(Array.from({ length: 40 }, (_, i) => i).filter((i) => i !== 3))
      const dead = await readDeadLetters(pipeline(), dataDir, 'sink')
      if (dead.length !== 1) lost.push(`crash at before-commit hit ${hit} in run 2: ${dead.length} dead letters`)
    }
    expect(lost).toEqual([])
  }, 60_000)
})
