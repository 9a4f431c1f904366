/**
 * Type tests of the pipeline builder, checked by `tsc --noEmit -p .` (never run): a stage
 * whose processor takes another type than its input stream holds does not compile, user
 * processors and built-ins alike; `process` returns a stream of what the processor emits;
 * `keyBy`'s key function sees the stream's records. Each `@ts-expect-error` fails the
 * type check if its line compiles.
 */
import { Pipeline, Processor, Source, type Context, type SourceContext, type SourceStatus, type Stream, type StreamRecord } from '../../index.ts'
import { GeneratorSource, JsonlFileSink, WindowAggregate, tumbling, type WindowAggregation } from '../../processors/index.ts'

/** True only when A and B are the same type (not merely assignable). */
type Equal<A, B> = (<X>() => X extends A ? 1 : 2) extends (<X>() => X extends B ? 1 : 2) ? true : false
function expectType<T>(_check: T): void {}

interface PageView {
  page: string
  user: string
  ms: number
}

class Views extends Source<PageView> {
  poll(ctx: SourceContext<PageView>): SourceStatus {
    ctx.emit('u1', { page: '/', user: 'u1', ms: 1 })
    return 'done'
  }
}

class CountPerKey extends Processor<PageView, number> {
  private readonly count = this.state.value<number>('count')
  onRecord(r: StreamRecord<PageView>, ctx: Context<number>): void {
    const n = (this.count.get() ?? 0) + 1
    this.count.set(n)
    ctx.emit(r.key, n)
  }
}

class Shout extends Processor<string, string> {
  onRecord(r: StreamRecord<string>, ctx: Context<string>): void {
    ctx.emit(r.key, r.value.toUpperCase())
  }
}

/** Takes anything: a wider input than any stream's is fine. */
class Log extends Processor<unknown, never> {
  onRecord(r: StreamRecord<unknown>): void {
    void r
  }
}

const clicks: WindowAggregation<PageView, number, number> = { create: () => 0, add: (n) => n + 1, result: (n) => n }
const letters: WindowAggregation<string, number, number> = { create: () => 0, add: (n, s) => n + s.length, result: (n) => n }

const p = new Pipeline('types')
const views = p.source('views', Views, { partitions: 2 })
expectType<Equal<typeof views, Stream<PageView>>>(true)

// process returns a stream of what the processor emits.
const counts = views.keyBy((v) => v.page).process('count', CountPerKey)
expectType<Equal<typeof counts, Stream<number>>>(true)
// @ts-expect-error CountPerKey emits numbers, not strings
const notStrings: Stream<string> = views.process('count-2', CountPerKey)
void notStrings

// A user processor of the wrong input type does not compile...
// @ts-expect-error Shout takes strings; views holds PageViews
views.process('shout', Shout)
// ...nor one that takes only part of what the stream holds.
declare const mixed: Stream<string | number>
// @ts-expect-error Shout takes strings; the stream also holds numbers
mixed.process('shout-2', Shout)
mixed.to('log', Log)
views.to('log-2', Log)

// Built-ins: a window aggregate's input is its aggregation's input.
const perMinute = views.keyBy((v) => v.page).process('per-minute', () => new WindowAggregate({ window: tumbling(60_000), aggregate: clicks }))
expectType<Equal<typeof perMinute, Stream<number>>>(true)
// @ts-expect-error this aggregation adds strings; views holds PageViews
views.process('letters', () => new WindowAggregate({ window: tumbling(60_000), aggregate: letters }))
// A JSON-lines sink takes any record, unless told its type.
views.to('file', () => new JsonlFileSink({ path: 'out/views-{partition}.jsonl' }))
counts.to('counts-file', () => new JsonlFileSink<number>({ path: 'out/counts-{partition}.jsonl' }))
// @ts-expect-error a sink of numbers cannot take PageViews
views.to('file-2', () => new JsonlFileSink<number>({ path: 'out/views-{partition}.jsonl' }))
// A source gives a stream of what it generates; a processor is no source.
const numbers = p.source('numbers', () => new GeneratorSource({ count: 10, generate: (i) => ({ key: null, value: i }) }))
expectType<Equal<typeof numbers, Stream<number>>>(true)
// @ts-expect-error Shout is not a Source
p.source('not-a-source', Shout)

// keyBy's key function sees the stream's records and returns a key.
const byUser = views.keyBy((v) => v.user, 4)
expectType<Equal<typeof byUser, Stream<PageView>>>(true)
// @ts-expect-error a PageView has no field 'path'
views.keyBy((v) => v.path)
// @ts-expect-error a key is a string or bytes, not a number
views.keyBy((v) => v.ms)
numbers.keyBy((n) => String(n % 3)).to('numbers-file', () => new JsonlFileSink({ path: 'out/numbers-{partition}.jsonl' }))
