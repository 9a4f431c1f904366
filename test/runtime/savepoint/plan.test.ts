/**
 * What a savepoint restore does when the pipeline changed: a renamed state, a removed
 * stage and a new stage are each listed by the plan (weir savepoint diff) and the restore is
 * refused without allowDroppedState, naming them; a state whose version rose is migrated on
 * restore; what cannot be restored is refused naming why.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import pino from 'pino'
import { Pipeline, Processor, type Context, type StreamRecord } from '../../../index.ts'
import { GeneratorSource } from '../../../processors/index.ts'
import { createSavepoint, readCommittedState, removeTempDirs, runToCompletion, tempDataDir } from '../../../testing/index.ts'
import { formatPlan, planRestore } from '../../../runtime/savepoint/plan.ts'
import { readManifest, SavepointError } from '../../../runtime/savepoint/manifest.ts'

const log = pino({ level: 'silent' })
const WORDS = ['ant', 'bee', 'cat', 'dog', 'eel', 'fox', 'gnu']

interface Variant {
  /** The name of count's state ('n' in version 1). */
  countState?: string
  /** count's state version 2 stores { n } and migrates a plain number. */
  v2?: 'migrate' | 'no-migrate'
  /** count's state at version 0.5: lower than the savepoint's. */
  downgrade?: boolean
  withoutAudit?: boolean
  withExtra?: boolean
  countActors?: number
  countActorState?: boolean
}

function pipeline(v: Variant = {}): Pipeline {
  const p = new Pipeline('plan')
  const words = p.source<string>('words', () => new GeneratorSource<string>({ count: 70, generate: (i, part) => ({ key: WORDS[(i + part) % WORDS.length]!, value: WORDS[(i + part) % WORDS.length]! }) }), { partitions: 2 })
  const keyed = words.keyBy(v.countActors ?? 2)
  keyed.process<number>('count', () => new (class extends Processor<string, number> {
    readonly n = v.v2 === undefined
      ? this.state.value<number>(v.countState ?? 'n', v.downgrade === true ? { version: 1 } : undefined)
      : this.state.value<{ n: number }>('n', { version: 2, migrate: v.v2 === 'migrate' ? (old, from) => (from === 1 ? { n: old as number } : (old as { n: number })) : undefined })
    readonly total = v.countActorState === true ? this.state.actorValue<number>('total') : undefined
    onRecord(r: StreamRecord<string>, ctx: Context<number>): void {
      const cur = this.n.get()
      const next = (typeof cur === 'object' && cur !== null ? cur.n : (cur ?? 0)) + 1
      if (v.v2 === undefined) (this.n as { set(x: number): void }).set(next)
      else (this.n as { set(x: { n: number }): void }).set({ n: next })
      ctx.emit(r.key, next)
    }
  })())
  if (v.withoutAudit !== true) {
    keyed.process<string>('audit', () => new (class extends Processor<string, string> {
      readonly seen = this.state.value<boolean>('seen')
      onRecord(r: StreamRecord<string>, ctx: Context<string>): void {
        if (this.seen.get() !== true) ctx.emit(r.key, r.value)
        this.seen.set(true)
      }
    })())
  }
  if (v.withExtra === true) {
    keyed.process<string>('extra', () => new (class extends Processor<string, string> {
      readonly last = this.state.value<string>('last')
      onRecord(r: StreamRecord<string>): void {
        this.last.set(r.value)
      }
    })())
  }
  return p
}

let sp: string
beforeAll(async () => {
  const dir = tempDataDir()
  await runToCompletion(pipeline(), { dataDir: dir, epochIntervalMs: 20, log })
  sp = `${tempDataDir()}/sp`
  await createSavepoint(pipeline(), { dataDir: dir, target: sp, log })
}, 60_000)
afterAll(() => removeTempDirs())

describe('savepoint plan (weir savepoint diff)', () => {
  it('the same pipeline: every state maps, nothing dropped, added or refused', () => {
    const plan = planRestore(readManifest(sp), pipeline())
    expect(plan.sameTopology).toBe(true)
    expect(plan.maps.map((m) => `${m.stage}.${m.state}:${m.keys}`).sort()).toEqual(['audit.seen:7', 'count.n:7', 'words.next:0'])
    expect([plan.dropped, plan.added, plan.refused]).toEqual([[], [], []])
  })

  it('a renamed state, a removed stage and a new stage: each listed; the restore is refused naming them, and goes through with allowDroppedState', async () => {
    const changed = pipeline({ countState: 'total-n', withoutAudit: true, withExtra: true })
    const plan = planRestore(readManifest(sp), changed)
    expect(plan.sameTopology).toBe(false)
    expect(plan.dropped.map((d) => `${d.stage}${d.state === undefined ? '' : `.${d.state}`}`).sort()).toEqual(['audit', 'count.n'])
    expect(plan.added.map((a) => `${a.stage}${a.state === undefined ? '' : `.${a.state}`}`).sort()).toEqual(['count.total-n', 'extra'])
    expect(plan.refused).toEqual([])
    const text = formatPlan(plan)
    expect(text).toContain("state 'n' of stage 'count' (7 keys) is not declared by the stage's processor any more")
    expect(text).toContain("stage 'audit' is not in the pipeline")
    expect(text).toContain("stage 'extra' is new")
    expect(text).toContain('result: restorable only with --allow-dropped-state')

    const refused = runToCompletion(changed, { dataDir: tempDataDir(), log, fromSavepoint: { dir: sp } })
    await expect(refused).rejects.toBeInstanceOf(SavepointError)
    await expect(refused).rejects.toMatchObject({ code: 'WEIR_SAVEPOINT_DROPS_STATE', message: expect.stringMatching(/state 'n' of stage 'count'.*stage 'audit' is not in the pipeline.*--allow-dropped-state/s) })

    const dir = tempDataDir()
    await runToCompletion(changed, { dataDir: dir, log, fromSavepoint: { dir: sp, allowDroppedState: true } })
    expect((await readCommittedState(changed, dir, 'count')).keyed).toEqual({})
    expect((await readCommittedState(changed, dir, 'words')).finished).toEqual({ 0: true, 1: true })
  })

  it('a state at version 2 with a migrate function: every value is migrated on restore', async () => {
    const v2 = pipeline({ v2: 'migrate' })
    const plan = planRestore(readManifest(sp), v2)
    expect(plan.maps.find((m) => m.state === 'n')).toMatchObject({ stage: 'count', migrated: true, fromVersion: 1, toVersion: 2, keys: 7 })
    const dir = tempDataDir()
    await runToCompletion(v2, { dataDir: dir, log, fromSavepoint: { dir: sp } })
    expect((await readCommittedState(v2, dir, 'count')).keyed.n).toEqual(Object.fromEntries(WORDS.map((w) => [w, { n: 20 }])))
  })

  it('refuses what cannot be restored, naming why: a version rise without migrate, a parallelism change of actor state, a source rescaled', async () => {
    const noMigrate = planRestore(readManifest(sp), pipeline({ v2: 'no-migrate' }))
    expect(noMigrate.refused.map((r) => r.reason)).toEqual([expect.stringContaining("state 'n' of stage 'count' went from version 1 to 2 without a migrate function")])
    await expect(runToCompletion(pipeline({ v2: 'no-migrate' }), { dataDir: tempDataDir(), log, fromSavepoint: { dir: sp } })).rejects.toMatchObject({ code: 'WEIR_SAVEPOINT_INCOMPATIBLE' })

    const rescaled = planRestore(readManifest(sp), pipeline({ countActors: 3 }))
    expect(rescaled.refused).toEqual([])
    expect(rescaled.rekeyed).toEqual([{ stage: 'count', from: 2, to: 3 }, { stage: 'audit', from: 2, to: 3 }])

    const sourceRescaled = new Pipeline('plan')
    sourceRescaled.source<string>('words', () => new GeneratorSource<string>({ count: 1, generate: () => ({ key: 'a', value: 'a' }) }), { partitions: 3 })
    expect(planRestore(readManifest(sp), sourceRescaled).refused.map((r) => r.reason)).toEqual([expect.stringContaining("stage 'words' goes from 2 to 3 actors: a source's state is per source partition")])
  })
})
