/**
 * A value msgpack or JSON cannot hold is refused in weir's words, naming the stage or state
 * and the field and saying what to convert it to, on every path: emit, keyed and actor
 * state, what onCheckpoint stages, including objects frozen by user code (which the checks
 * take as already checked, so msgpackr's own advice, naming options a weir user cannot set,
 * surfaced at encode time); and a record key that is not a string, Buffer or null.
 */
import { rmSync } from 'node:fs'
import fc from 'fast-check'
import { afterAll, describe, expect, it } from 'vitest'
import { Pipeline, Processor, Source, policy, type Context, type SourceContext, type StreamRecord } from '../../index.ts'
import { GeneratorSource } from '../../processors/index.ts'
import { codecFor, msgpack } from '../../runtime/codec.ts'
import { checkValue, copyCheckedValue, findValueProblem, freezeStateValue, PROTO_KEY_REASON, VALUE_REFUSED } from '../../runtime/values.ts'
import { WeirError } from '../../runtime/errors.ts'
import { runToCompletion, tempDataDir } from '../../testing/index.ts'

const BIG = 2n ** 70n
const dirs: string[] = []
afterAll(() => dirs.forEach((d) => rmSync(d, { recursive: true, force: true })))

/** Every message in the error's cause chain. */
function messages(err: unknown): string {
  const out: string[] = []
  for (let e = err; e instanceof Error; e = e.cause) out.push(e.message)
  return out.join('\n')
}

type Kind = 'emit' | 'emit-chained' | 'emit-json' | 'keyed-state' | 'actor-state' | 'staged' | 'key'

async function failureOf(kind: Kind): Promise<string> {
  class Misbehaves extends Processor<number, unknown> {
    total = this.state.value<unknown>('total')
    last = this.state.actorValue<unknown>('last')
    onRecord(r: StreamRecord<number>, ctx: Context<unknown>): void {
      const frozen = Object.freeze({ n: BIG })
      if (kind === 'emit' || kind === 'emit-chained' || kind === 'emit-json') ctx.emit(r.key, frozen)
      if (kind === 'keyed-state') this.total.set(frozen)
      if (kind === 'actor-state') this.last.set(frozen)
      if (kind === 'key') ctx.emit(BIG as unknown as string, r.value)
    }
    override onCheckpoint(): unknown {
      return kind === 'staged' ? Object.freeze({ n: BIG }) : undefined
    }
    override onCheckpointCommitted(): void {}
  }
  const p = new Pipeline(`values-${kind}`)
  const misbehaves = p.source<number>('numbers', () => new GeneratorSource<number>({ count: 2, generate: (i) => ({ key: `k${i}`, value: i }) }), { partitions: 1 })
    .process('misbehaves', Misbehaves, { onError: policy.failStop(), codec: kind === 'emit-json' ? 'json' : 'msgpack' })
  // Chained to misbehaves: its records are handed over as values, never encoded.
  if (kind === 'emit-chained') misbehaves.process('reads', () => new (class extends Processor<unknown, unknown> { onRecord(): void {} })())
  const dataDir = tempDataDir('weir-values-')
  dirs.push(dataDir)
  const err = await runToCompletion(p, { dataDir }).then(() => undefined, (e: unknown) => e)
  expect(err, `${kind} should fail`).toBeInstanceOf(Error)
  return messages(err)
}

const TO_STRING = 'convert it to a string (String(n), back with BigInt(s)), or to a Number if losing precision is fine'

describe('a BigInt beyond 64 bits says what a weir user can do', () => {
  it.each([
    ['emit', "stage misbehaves, key \"k0\": ctx.emit: value.n is a BigInt outside 64 bits (1180591620717411303424), which msgpack cannot hold"],
    ['emit-chained', "stage misbehaves, key \"k0\": ctx.emit: value.n is a BigInt outside 64 bits (1180591620717411303424), which msgpack cannot hold"],
    // A frozen object is taken as a checked state value where it is set; the changelog's
    // encoding then names the state.
    ['keyed-state', "actor misbehaves/0: state 'total' cannot be stored: value.n is a BigInt outside 64 bits"],
    ['actor-state', "actor misbehaves/0: state 'last' cannot be stored: value.n is a BigInt outside 64 bits"],
    ['staged', 'actor misbehaves/0: the value onCheckpoint returned cannot be stored: value.n is a BigInt outside 64 bits'],
  ] as const)('%s of an object frozen by user code', async (kind, text) => {
    const m = await failureOf(kind)
    expect(m).toContain(text)
    expect(m).toContain(TO_STRING)
    expect(m).not.toMatch(/useBigIntExtension|largeBigIntToFloat/)
  })

  it('emit of a frozen object to a JSON output', async () => {
    const m = await failureOf('emit-json')
    expect(m).toContain('stage misbehaves, key "k0": ctx.emit: value.n is a BigInt, which JSON cannot encode: convert it to a string (String(n)) or a Number, or use the msgpack codec')
    expect(m).not.toContain('Do not know how to serialize a BigInt')
  })

  it('the msgpack codec itself, handed a value no check saw', () => {
    const err = (() => {
      try {
        codecFor('msgpack').encode({ list: [1, BIG] })
      } catch (e) {
        return e
      }
    })()
    expect(err).toBeInstanceOf(WeirError)
    expect((err as WeirError).code).toBe('WEIR_VALUE_UNSUPPORTED')
    expect((err as WeirError).message).toBe(`the msgpack codec cannot encode this value: value.list[1] is a BigInt outside 64 bits (${BIG}), which msgpack cannot hold: ${TO_STRING}`)
  })
})

describe('a record key that is not a string, Buffer or null', () => {
  it('from a processor names the stage and says to convert it', async () => {
    const m = await failureOf('key')
    expect(m).toContain('stage misbehaves: ctx.emit: key is a bigint (1180591620717411303424); a record key is a string, a Buffer or null: convert it (String(key))')
    expect(m).not.toContain('The first argument must be of type string')
  })

  it('from a source names the stage', async () => {
    class NumberKeys extends Source<number> {
      poll(ctx: SourceContext<number>): 'done' {
        ctx.emit(42 as unknown as string, 1)
        return 'done'
      }
    }
    const p = new Pipeline('values-source-key')
    p.source<number>('numbers', NumberKeys, { partitions: 1 })
    const dataDir = tempDataDir('weir-values-')
    dirs.push(dataDir)
    const m = messages(await runToCompletion(p, { dataDir }).then(() => undefined, (e: unknown) => e))
    expect(m).toContain('stage numbers: ctx.emit: key is a number (42); a record key is a string, a Buffer or null')
  })
})

/** The copy of a value msgpack holds (the test fails on a refusal). */
function copyValue<T>(value: T): T {
  const copy = copyCheckedValue(value)
  if (copy === VALUE_REFUSED) throw new Error(`refused: ${JSON.stringify(findValueProblem(value, 'msgpack'))}`)
  return copy
}

describe('copyCheckedValue (a record handed along a chained edge)', () => {
  it('gives what a msgpack round trip gives, sharing nothing the sender can change', () => {
    const sender = { n: 1, s: 'x', list: [1, { deep: [2] }], at: new Date(5), bytes: new Uint8Array([1, 2]), buf: Buffer.from('ab'), none: null, gone: undefined, big: 2n ** 40n }
    const copy = copyValue(sender)
    expect(copy).toEqual(msgpack.decode(msgpack.encode(sender)))
    expect(Buffer.isBuffer(copy.bytes)).toBe(true)
    sender.list.push(3)
    ;(sender.list[1] as { deep: number[] }).deep.push(9)
    sender.at.setTime(6)
    sender.bytes[0] = 42
    sender.buf[0] = 0
    expect(copy.list).toEqual([1, { deep: [2] }])
    expect(copy.at.getTime()).toBe(5)
    expect([...copy.bytes]).toEqual([1, 2])
    expect(copy.buf.toString()).toBe('ab')
  })

  it('shares frozen objects (immutable state values), refuses an own __proto__ key, and passes leaves through', () => {
    const frozen = Object.freeze({ a: Object.freeze([1]) })
    expect(copyValue({ f: frozen }).f).toBe(frozen)
    // Freezing leaves a Buffer's bytes and a Date's time changeable: such a frozen object is copied.
    const holder = Object.freeze({ b: Buffer.from('x'), at: new Date(1) })
    const held = copyValue({ f: holder }).f
    expect(held).not.toBe(holder)
    holder.b[0] = 0x79
    holder.at.setTime(2)
    expect([held.b.toString(), held.at.getTime()]).toEqual(['x', 1])
    // msgpackr decodes a '__proto__' key as '__proto_': a chained copy refuses it as the topic's encode would.
    const proto = (): Record<string, unknown> => JSON.parse('{"y": {"__proto__": {"x": 1}}}') as Record<string, unknown>
    const odd = proto()
    expect(msgpack.decode(msgpack.encode(odd))).toEqual({ y: { __proto_: { x: 1 } } })
    expect(copyCheckedValue(odd)).toBe(VALUE_REFUSED)
    expect(copyCheckedValue(Object.freeze(proto()))).toBe(VALUE_REFUSED)
    expect(findValueProblem(odd, 'msgpack')).toEqual({ path: 'value.y.__proto__', reason: PROTO_KEY_REASON })
    expect(checkValue(odd, 'msgpack')?.path).toBe('value.y.__proto__')
    expect(freezeStateValue(odd)).toEqual({ problem: { path: 'value.y.__proto__', reason: PROTO_KEY_REASON } })
    // JSON.parse gives an own '__proto__' key back as a key: the json codec holds it.
    expect(checkValue(odd, 'json')).toBeUndefined()
    for (const leaf of [1, 'a', null, undefined, true, 3n]) expect(copyValue(leaf)).toBe(leaf)
  })
})

describe('copyCheckedValue against findValueProblem and a msgpack round trip', () => {
  class Point {
    constructor(readonly x: number) {}
  }
  // Leaves msgpack holds, and ones it refuses or changes; -0 is left out (msgpack gives 0 back, a copy keeps -0).
  const leaf = fc.oneof(
    fc.integer(), fc.double().map((d) => (Object.is(d, -0) ? 0 : d)), fc.string(), fc.boolean(), fc.constant(null), fc.constant(undefined),
    fc.bigInt({ min: -(2n ** 63n), max: 2n ** 64n - 1n }),
    fc.date({ noInvalidDate: true }),
    fc.uint8Array({ maxLength: 4 }), fc.uint8Array({ maxLength: 4 }).map((a) => Buffer.from(a)),
  )
  const refusedLeaf = fc.oneof(
    fc.constant(2n ** 64n), fc.constant(new Date(NaN)), fc.constant(() => 1), fc.constant(Symbol('s')),
    fc.constant(new Map([[1, 2]])), fc.constant(new Set([1])), fc.constant(new Point(1)), fc.constant(new Int8Array(2)),
  )
  const value = (withRefused: boolean): fc.Arbitrary<unknown> => fc.letrec((tie) => ({
    node: fc.oneof({ depthSize: 'small', withCrossShrink: true }, withRefused ? fc.oneof({ weight: 8, arbitrary: leaf }, { weight: 1, arbitrary: refusedLeaf }) : leaf, tie('array'), tie('object'), tie('frozen')),
    array: fc.array(tie('node'), { maxLength: 5 }),
    object: fc.dictionary(fc.string({ maxLength: 4 }), tie('node'), { maxKeys: 5 }),
    frozen: tie('node').map((v) => (typeof v === 'object' && v !== null && !ArrayBuffer.isView(v) ? Object.freeze(v) : v)),
  })).node

  it('refuses exactly what findValueProblem finds a problem in; otherwise copies what a round trip gives, sharing only frozen objects', () => {
    let refused = 0
    let copied = 0
    fc.assert(fc.property(value(true), (v) => {
      const copy = copyCheckedValue(v)
      const problem = findValueProblem(v, 'msgpack')
      expect(copy === VALUE_REFUSED, JSON.stringify(problem)).toBe(problem !== undefined)
      if (copy === VALUE_REFUSED) {
        refused++
        return
      }
      copied++
      expect(copy).toEqual(msgpack.decode(msgpack.encode(v)))
      if (typeof v === 'object' && v !== null && !Object.isFrozen(v)) expect(copy).not.toBe(v)
    }), { numRuns: 2000 })
    console.log(`copyCheckedValue property: ${copied} copied, ${refused} refused`)
    expect(refused).toBeGreaterThan(100)
    expect(copied).toBeGreaterThan(100)
  })

  it('refuses a value nested deeper than msgpack can encode, as findValueProblem does', () => {
    let deep: unknown = 1
    for (let i = 0; i < 250; i++) deep = [deep]
    expect(copyCheckedValue(deep)).toBe(VALUE_REFUSED)
    expect(findValueProblem(deep, 'msgpack')?.reason).toContain('nested deeper')
    let frozenDeep: unknown = 1
    for (let i = 0; i < 250; i++) frozenDeep = Object.freeze([frozenDeep])
    expect(copyCheckedValue({ f: frozenDeep })).toBe(VALUE_REFUSED)
  })
})

describe('the path of a problem', () => {
  it('names the field from the top of the value, through arrays and objects', () => {
    expect(findValueProblem({ a: [1, { f: () => 1 }] }, 'msgpack')).toEqual({ path: 'value.a[1].f', reason: 'is a function, which msgpack would drop' })
    // A key that is not an identifier is quoted: `value.a.b[0]` would name other fields.
    expect(findValueProblem({ 'a.b': { 'c[0]': NaN } }, 'json')?.path).toBe('value["a.b"]["c[0]"]')
    expect(findValueProblem({ $k_1: { '': 2n ** 70n } }, 'msgpack')?.path).toBe('value.$k_1[""]')
    expect(findValueProblem([[0, new Map()]], 'msgpack')?.path).toBe('value[0][1]')
    expect(findValueProblem(Symbol('s'), 'msgpack')?.path).toBe('value')
    // JSON drops undefined in an object but turns it into null in an array: only the latter is a problem.
    expect(findValueProblem({ 'x]': undefined, xs: [1, 2, undefined] }, 'json')).toEqual({ path: 'value.xs[2]', reason: 'is undefined in an array, which JSON turns into null' })
    let deep: unknown = 1
    for (let i = 0; i < 202; i++) deep = { d: deep }
    expect(findValueProblem(deep, 'msgpack')?.path).toBe(`value${'.d'.repeat(201)}`)
  })
})
