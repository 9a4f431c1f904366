/**
 * The data dir's topology guard (runtime/topology-guard.ts): a pipeline that lost a stage
 * is refused with an error that says what can be done today. Savepoints are not built, so
 * the message must not send the user to take one.
 */
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, describe, expect, it } from 'vitest'
import { Pipeline, Processor, type Context, type StreamRecord } from '../../index.ts'
import { GeneratorSource } from '../../processors/index.ts'
import { TopologyMismatchError } from '../../runtime/errors.ts'
import { checkTopology, recordTopology } from '../../runtime/topology-guard.ts'

class Pass extends Processor<number, number> {
  onRecord(r: StreamRecord<number>, ctx: Context<number>): void {
    ctx.emit(r.key, r.value)
  }
}

function numbers(withDouble: boolean): Pipeline {
  const p = new Pipeline('guarded')
  const s = p.source<number>('numbers', () => new GeneratorSource<number>({ count: 10, generate: (i) => ({ key: `k${i}`, value: i }) }))
  const passed = s.process('pass', Pass)
  if (withDouble) passed.process('again', Pass)
  return p
}

const dirs: string[] = []
afterAll(() => dirs.forEach((d) => rmSync(d, { recursive: true, force: true })))

describe('checkTopology', () => {
  it('refuses a removed stage, naming it, and says what to do without a savepoint', () => {
    const dir = mkdtempSync(join(tmpdir(), 'weir-topology-'))
    dirs.push(dir)
    recordTopology(dir, numbers(true))
    expect(() => checkTopology(dir, numbers(true))).not.toThrow()
    let err: unknown
    try {
      checkTopology(dir, numbers(false))
    } catch (e) {
      err = e
    }
    expect(err).toBeInstanceOf(TopologyMismatchError)
    expect(err).toMatchObject({ code: 'WEIR_TOPOLOGY_CHANGED', context: { stage: 'again', field: 'stages.again' } })
    const message = (err as Error).message
    expect(message).toMatch(/^stage 'again' was removed/)
    expect(message).toMatch(/a new pipeline name/)
    expect(message).toMatch(/embedded pipe, a new --data-dir/)
    expect(message).not.toMatch(/take a savepoint/)
  })
})
