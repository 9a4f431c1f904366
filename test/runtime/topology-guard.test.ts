/**
 * The topology guard (runtime/topology-guard.ts): a pipeline file whose topology differs
 * from the one a data dir was written with (a renamed state, a removed stage, a new stage,
 * changed partitions) is refused at start, with every difference named and the savepoint
 * commands as the way to change it; new processor code under the same topology (a rolling
 * upgrade) is not. A coordinator's refusal names the stages that differ from the cluster's.
 */
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, describe, expect, it } from 'vitest'
import { Pipeline, Processor, type Context, type StreamRecord } from '../../index.ts'
import { GeneratorSource } from '../../processors/index.ts'
import { pipelineShapeOf } from '../../runtime/control/messages.ts'
import { TopologyMismatchError } from '../../runtime/errors.ts'
import { checkTopology, diffTopology, recordTopology, refusalReason, topologyOf, TOPOLOGY_CHANGE_ADVICE } from '../../runtime/topology-guard.ts'

class Pass extends Processor<number, number> {
  onRecord(r: StreamRecord<number>, ctx: Context<number>): void {
    ctx.emit(r.key, r.value)
  }
}

/** Sums per key in state `stateName`; `scale` changes what it emits, not the topology. */
function summer(stateName: string, scale = 1): () => Processor<number, number> {
  return () => new (class extends Processor<number, number> {
    private readonly sum = this.state.value<number>(stateName)
    onRecord(r: StreamRecord<number>, ctx: Context<number>): void {
      const n = (this.sum.get() ?? 0) + r.value
      this.sum.set(n)
      ctx.emit(r.key, n * scale)
    }
  })()
}

interface Shape {
  stateName?: string
  scale?: number
  withAgain?: boolean
  withExtra?: boolean
  partitions?: number
}

function numbers(shape: Shape = {}): Pipeline {
  const p = new Pipeline('guarded')
  const summed = p.source<number>('numbers', () => new GeneratorSource<number>({ count: 10, generate: (i) => ({ key: `k${i}`, value: i }) }))
    .keyBy(shape.partitions ?? 2)
    .process('sum', summer(shape.stateName ?? 'sum', shape.scale))
  // Not chained: the coordinator's shape (which refusals compare) lists the heads of chains only, and these tests name every stage.
  const passed = summed.process('pass', Pass, { chain: false })
  if (shape.withAgain ?? true) passed.process('again', Pass)
  if (shape.withExtra ?? false) passed.process('extra', Pass)
  return p
}

const dirs: string[] = []
afterAll(() => dirs.forEach((d) => rmSync(d, { recursive: true, force: true })))

function recorded(): string {
  const dir = mkdtempSync(join(tmpdir(), 'weir-topology-'))
  dirs.push(dir)
  recordTopology(dir, numbers())
  return dir
}

function refusal(dir: string, pipeline: Pipeline): TopologyMismatchError {
  try {
    checkTopology(dir, pipeline)
  } catch (e) {
    expect(e).toBeInstanceOf(TopologyMismatchError)
    return e as TopologyMismatchError
  }
  throw new Error('checkTopology accepted a changed topology')
}

describe('checkTopology', () => {
  it('accepts new processor code under the same stages, state names and partitions (a rolling upgrade)', () => {
    const dir = recorded()
    expect(numbers({ scale: 2 }).fingerprint()).toBe(numbers().fingerprint())
    expect(() => checkTopology(dir, numbers({ scale: 2 }))).not.toThrow()
  })

  it('refuses a renamed state, naming the stage, the old and the new name', () => {
    const err = refusal(recorded(), numbers({ stateName: 'total' }))
    expect(err).toMatchObject({ code: 'WEIR_TOPOLOGY_CHANGED', context: { stage: 'sum', field: 'stages.sum.state' } })
    expect(err.message).toContain("stage 'sum' no longer declares state 'sum' and declares 'total' instead")
  })

  it('refuses a removed stage, naming it', () => {
    const err = refusal(recorded(), numbers({ withAgain: false }))
    expect(err).toMatchObject({ context: { stage: 'again', field: 'stages.again' } })
    expect(err.message).toContain("stage 'again' was removed")
  })

  it('refuses a new stage, naming it', () => {
    const err = refusal(recorded(), numbers({ withExtra: true }))
    expect(err).toMatchObject({ context: { stage: 'extra', field: 'stages.extra' } })
    expect(err.message).toContain("stage 'extra' is new")
  })

  it('refuses changed partitions, naming each stage and field that changed', () => {
    const err = refusal(recorded(), numbers({ partitions: 3 }))
    expect(err.message).toContain("stage 'numbers' changed outputPartitions from 2 to 3")
    expect(err.message).toContain("stage 'sum' changed parallelism from 2 to 3")
  })

  it('names every difference at once, and says a savepoint is the way to change the topology', () => {
    const err = refusal(recorded(), numbers({ stateName: 'total', withAgain: false, withExtra: true, partitions: 3 }))
    const differences = err.context.differences as string[]
    expect(differences).toEqual([
      "stage 'numbers' changed outputPartitions from 2 to 3",
      "stage 'sum' changed parallelism from 2 to 3",
      "stage 'sum' changed outputPartitions from 2 to 3",
      "stage 'sum' no longer declares state 'sum' and declares 'total' instead (a renamed state starts empty: state is matched by name)",
      "stage 'pass' changed parallelism from 2 to 3",
      "stage 'pass' changed outputPartitions from 2 to 3",
      "stage 'again' was removed",
      "stage 'extra' is new",
    ])
    for (const d of differences) expect(err.message).toContain(d)
    expect(err.message).toContain(TOPOLOGY_CHANGE_ADVICE)
    expect(err.message).toMatch(/weir savepoint create/)
    expect(err.message).toMatch(/--from-savepoint/)
  })

  it('reads a topology.json written before state names were recorded, comparing stages only', () => {
    const old = numbers().describe()
    expect(diffTopology(old, topologyOf(numbers({ stateName: 'total' })))).toEqual([])
    expect(diffTopology(old, topologyOf(numbers({ withAgain: false }))).map((d) => d.text)).toEqual(["stage 'again' was removed"])
  })
})

describe('refusalReason', () => {
  it("names the stages that differ from the cluster's shape the coordinator sent", () => {
    const cluster = numbers()
    const reason = refusalReason({ v: 1, worker: 'w1', reason: 'refused', fingerprint: 'a', expectedFingerprint: 'b', shape: pipelineShapeOf(cluster) }, numbers({ withAgain: false, withExtra: true, partitions: 3 }))
    expect(reason).toBe("refused. This pipeline file differs from the cluster's: stage 'sum' has 3 partitions, the cluster's 2; stage 'pass' has 3 partitions, the cluster's 2; stage 'again' was removed; stage 'extra' is new")
    // A renamed state leaves the shape as it was; a coordinator without a shape (an older one) gives its reason alone.
    expect(refusalReason({ v: 1, worker: 'w1', reason: 'refused', fingerprint: 'a', expectedFingerprint: 'b' }, numbers())).toBe('refused')
  })
})
