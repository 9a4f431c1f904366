/**
 * A state handle used where no actor's state is bound says which of the three mistakes it
 * is (used while the processor is constructed, declared after the actor started, used on a
 * processor the runtime never started), names the stage when it is known, and says what to
 * do instead.
 */
import { rmSync } from 'node:fs'
import { afterAll, describe, expect, it } from 'vitest'
import { Pipeline, Processor, WeirError, policy, type Context, type StreamRecord } from '../../../index.ts'
import { GeneratorSource } from '../../../processors/index.ts'
import { runToCompletion, tempDataDir } from '../../../testing/index.ts'

const dirs: string[] = []
afterAll(() => dirs.forEach((d) => rmSync(d, { recursive: true, force: true })))
function dir(): string {
  const d = tempDataDir('weir-state-unbound-')
  dirs.push(d)
  return d
}

function words(p: Pipeline) {
  return p.source<string>('words', () => new GeneratorSource<string>({ count: 3, generate: (i) => ({ key: `w${i}`, value: `w${i}` }) }), { partitions: 1 })
}

async function failure(run: Promise<unknown>): Promise<WeirError> {
  const err = await run.then(() => undefined, (e: unknown) => e)
  expect(err).toBeInstanceOf(WeirError)
  return err as WeirError
}

describe('state errors name the stage and say what to do', () => {
  it('state read in the constructor of a processor built through a pipeline names the stage and says to move it to onRecord', async () => {
    class CountFromConstructor extends Processor<string, number> {
      count = this.state.value<number>('count')
      start = this.count.get() ?? 0
      onRecord(r: StreamRecord<string>, ctx: Context<number>): void {
        ctx.emit(r.key, this.start)
      }
    }
    const p = new Pipeline('state-in-constructor')
    words(p).process('counter', CountFromConstructor)
    const err = await failure(runToCompletion(p, { dataDir: dir() }))
    expect(err.code).toBe('WEIR_STATE_UNBOUND')
    expect(err.context).toMatchObject({ stage: 'counter', state: 'count' })
    expect(err.message).toContain("stage counter: state 'count' was used in the processor's constructor or a field initializer")
    expect(err.message).toContain('use it in onRecord or onTimer')
    expect(err.message).not.toContain('construct processors through a pipeline')
  })

  it('state declared in onRecord (after the actor started) says to declare it as a field', async () => {
    class DeclaresLate extends Processor<string, number> {
      onRecord(r: StreamRecord<string>, ctx: Context<number>): void {
        const seen = this.state.value<number>('seen')
        ctx.emit(r.key, seen.get() ?? 0)
      }
    }
    const p = new Pipeline('state-declared-late')
    words(p).process('late', DeclaresLate, { onError: policy.failStop() })
    const err = await failure(runToCompletion(p, { dataDir: dir() }))
    const causes = [err, err.cause, (err.cause as Error | undefined)?.cause]
    const unbound = causes.find((e): e is WeirError => e instanceof WeirError && e.code === 'WEIR_STATE_UNBOUND')
    expect(unbound?.message).toContain("state 'seen' was declared after the actor started")
    expect(unbound?.message).toContain('declare every state handle as a class field')
  })

  it('state used on a processor made with new, outside any pipeline, says to run it in a pipeline', () => {
    class Count extends Processor<string, number> {
      count = this.state.value<number>('count')
      onRecord(): void {
        this.count.set((this.count.get() ?? 0) + 1)
      }
    }
    const c = new Count()
    expect(() => c.onRecord()).toThrow(/state 'count' was used on a processor the runtime did not start.*add the processor to a pipeline/)
  })

  it('a bad or repeated state name names the stage and says what a name may be', async () => {
    class BadName extends Processor<string, number> {
      count = this.state.value<number>('the count')
      onRecord(): void {}
    }
    class Twice extends Processor<string, number> {
      a = this.state.value<number>('count')
      b = this.state.map<number>('count')
      onRecord(): void {}
    }
    const bad = new Pipeline('state-bad-name')
    words(bad).process('counter', BadName)
    expect((await failure(runToCompletion(bad, { dataDir: dir() }))).message).toBe("stage counter: state name 'the count' must be 1 to 128 letters, digits, _ . or - (it names the state in the store and the changelog)")
    const twice = new Pipeline('state-twice')
    words(twice).process('counter', Twice)
    expect((await failure(runToCompletion(twice, { dataDir: dir() }))).message).toBe("stage counter: state 'count' is declared twice in one processor: give each state handle its own name")
  })
})
