/**
 * A state handle used where no actor's state is bound says which of the three mistakes it
 * is (used while the processor is constructed, declared after the actor started, used on a
 * processor the runtime never started), names the stage when it is known, and says what to
 * do instead. A field named like a lifecycle hook is refused at start, naming the field.
 */
import { rmSync } from 'node:fs'
import { afterAll, describe, expect, it } from 'vitest'
import { ConfigError, Pipeline, Processor, Source, WeirError, policy, type Context, type SourceStatus, type StreamRecord } from '../../../index.ts'
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

  it('a field named like a lifecycle hook is refused at start, naming the stage, the field and the hook it shadows', async () => {
    // TypeScript refuses it too, but a pipeline file run with Node's type stripping is not type-checked.
    class OpenAsState extends Processor<string, number> {
      // @ts-expect-error a state field where the hook open(ctx) is
      open = this.state.value<boolean>('open')
      onRecord(): void {}
    }
    const p = new Pipeline('state-named-open')
    // @ts-expect-error its open is not the hook
    words(p).process('gate', OpenAsState)
    const err = await failure(runToCompletion(p, { dataDir: dir() }))
    expect(err).toBeInstanceOf(ConfigError)
    expect(err.code).toBe('WEIR_CONFIG_INVALID')
    expect(err.context).toMatchObject({ stage: 'gate', field: 'stages.gate.open', state: 'open' })
    expect(err.message).toBe("stages.gate.open: the processor's field 'open' holds state 'open' and clashes with the lifecycle hook open() the runtime calls on it: rename the field (openState, say)")
  })

  it.each(['onRecord', 'onTimer', 'onCheckpoint', 'onCheckpointCommitted', 'close'])('a plain field named %s is refused too, and a function-valued one is a hook', async (hook) => {
    class Shadows extends Processor<string, number> {
      constructor() {
        super()
        Object.defineProperty(this, hook, { value: 1, enumerable: true })
      }
      onRecord(): void {}
    }
    const p = new Pipeline('field-named-hook')
    words(p).process('shadow', Shadows)
    expect((await failure(runToCompletion(p, { dataDir: dir() }))).message).toBe(`stages.shadow.${hook}: the processor's field '${hook}' clashes with the lifecycle hook ${hook}() the runtime calls on it: rename the field (${hook}State, say)`)

    class ArrowHook extends Processor<string, string> {
      onRecord = (r: StreamRecord<string>, ctx: Context<string>): void => ctx.emit(r.key, r.value)
    }
    const ok = new Pipeline('arrow-hook')
    words(ok).process('arrow', ArrowHook)
    expect((await runToCompletion(ok, { dataDir: dir() })).result.outcome).toBe('finished')
  })

  it("a source's field named poll is refused", async () => {
    class PollAsState extends Source<string> {
      poll = this.state.actorValue<number>('poll') as unknown as (ctx: unknown) => SourceStatus
    }
    const p = new Pipeline('source-poll-field')
    p.source<string>('ticks', PollAsState, { partitions: 1 })
    expect((await failure(runToCompletion(p, { dataDir: dir() }))).message).toBe("stages.ticks.poll: the processor's field 'poll' holds state 'poll' and clashes with the lifecycle hook poll() the runtime calls on it: rename the field (pollState, say)")
  })
})
