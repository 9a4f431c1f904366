/**
 * What a record value or a state value may be, so that what user code emits or stores is
 * exactly what comes back: a value the codec would drop, change or refuse later (a
 * function, a Map, a class instance, NaN in JSON, a BigInt beyond 64 bits) is refused
 * where it is handed over, naming the path of the bad field. State values are also frozen
 * when set or loaded, so user code cannot change them behind the runtime's back (the undo
 * journal, the pending changelog and the cache share them).
 */
import type { CodecName } from './codec.ts'

/** What is wrong with a value: where (`value.items[2]`) and why. */
export interface ValueProblem {
  path: string
  reason: string
}

/** Deeper than this is refused (a cycle, most likely): msgpack would overflow the stack. */
const MAX_DEPTH = 200
const INT64_MIN = -(2n ** 63n)
const UINT64_MAX = 2n ** 64n - 1n

/** What weir says about a BigInt msgpack cannot hold, where it is handed over and, if one got past that, where it is encoded. */
const BIGINT_TOO_LARGE = (v: bigint): string =>
  `is a BigInt outside 64 bits (${v}), which msgpack cannot hold: convert it to a string (String(n), back with BigInt(s)), or to a Number if losing precision is fine`

/**
 * msgpackr decodes an object key '__proto__' as '__proto_' (its guard against prototype
 * pollution), so such a key does not come back from a topic or the state as it went in.
 */
export const PROTO_KEY_REASON = "is a key msgpack does not give back (msgpackr decodes '__proto__' as '__proto_', a guard against prototype pollution): rename the key"

/**
 * Checks that `value` survives a round trip through the built-in codec `codec` unchanged;
 * undefined when it does. Values of user-supplied codecs are not checked. A frozen object
 * is taken as checked (state values are frozen once checked; see freezeStateValue): one
 * frozen by user code that the codec refuses fails where it is encoded, in the same words
 * (findValueProblem).
 */
export function checkValue(value: unknown, codec: CodecName): ValueProblem | undefined {
  switch (codec) {
    case 'msgpack': return typeof value === 'object' && value !== null ? walkValue(value, msgpackLeaf, false) : leafProblem(msgpackLeaf, value, 'value')
    case 'json': return typeof value === 'object' && value !== null ? walkValue(value, jsonLeaf, false) : leafProblem(jsonLeaf, value, 'value')
    case 'string': return typeof value === 'string' ? undefined : { path: 'value', reason: `is ${describe(value)}; the string codec takes strings only` }
    case 'raw': return value instanceof Uint8Array ? undefined : { path: 'value', reason: `is ${describe(value)}; the raw codec takes Buffers (Uint8Array) only` }
  }
}

/**
 * Like checkValue, but walks frozen objects too: for explaining an encode failure. The
 * checks where values are handed over take a frozen object as checked (weir freezes state
 * values once checked), so an object frozen by user code gets past them unchecked; this
 * finds what in it the codec refused. Too slow for every value, fine for an error.
 */
export function findValueProblem(value: unknown, codec: 'msgpack' | 'json'): ValueProblem | undefined {
  const leaf = codec === 'msgpack' ? msgpackLeaf : jsonLeaf
  return typeof value === 'object' && value !== null ? walkValue(value, leaf, false, false) : leafProblem(leaf, value, 'value')
}

/**
 * Checks a state value (stored with msgpack) and makes it immutable, in one pass: objects
 * and arrays are frozen deeply; Buffers and Dates, which cannot be frozen, are copied, so
 * the caller's later changes do not reach the state. An object that is frozen already is
 * taken as it is (weir froze it when it was stored; one you froze yourself must not hold
 * objects you change later). Returns the value to store, or the problem.
 */
export function freezeStateValue<T>(value: T): { value: T } | { problem: ValueProblem } {
  if (typeof value !== 'object' || value === null) {
    const problem = leafProblem(msgpackLeaf, value, 'value')
    return problem === undefined ? { value } : { problem }
  }
  if (value instanceof Uint8Array || value instanceof Date) {
    const problem = leafProblem(msgpackLeaf, value, 'value')
    return problem === undefined ? { value: copyUnfreezable(value) } : { problem }
  }
  const problem = walkValue(value, msgpackLeaf, true)
  return problem === undefined ? { value } : { problem }
}

/** Freezes a value decoded from the store (already known to be msgpack-clean). */
export function freezeLoaded<T>(value: T): T {
  if (typeof value !== 'object' || value === null || value instanceof Uint8Array || value instanceof Date) return value
  walk(value, 0, () => undefined, true)
  return value
}

/** What copyCheckedValue returns for a value msgpack cannot hold; findValueProblem says where and why. */
export const VALUE_REFUSED: unique symbol = Symbol('weir.value-refused')

/**
 * A copy of a value equal to what a msgpack encode and decode would give back, for a record
 * handed along a chained edge without bytes; or VALUE_REFUSED where
 * findValueProblem(value, 'msgpack') finds a problem, checked in the same walk. Plain
 * objects and arrays are copied, Buffers and Uint8Arrays become Buffer copies, Dates new
 * Dates; strings and other leaves are immutable and shared. A frozen object is checked
 * (frozen by user code, it may hold what msgpack cannot) and shared as it is, unless it
 * holds a Buffer or a Date (freezing leaves their contents changeable): then it is copied. The receiver may change its copy; the sender's later
 * changes do not reach it. No field paths are built: on a refusal the caller asks
 * findValueProblem for the path and the reason, once.
 *
 * @example
 * const copy = copyCheckedValue(value)
 * if (copy === VALUE_REFUSED) throw explain(findValueProblem(value, 'msgpack'))
 */
export function copyCheckedValue<T>(value: T): T | typeof VALUE_REFUSED {
  if (typeof value !== 'object' || value === null) return leafFits(value) ? value : VALUE_REFUSED
  return copyChecked(value as object, 0) as T | typeof VALUE_REFUSED
}

/** msgpackLeaf for what is not an object, without the words. */
function leafFits(v: unknown): boolean {
  switch (typeof v) {
    case 'number': case 'string': case 'boolean': case 'undefined': return true
    case 'bigint': return v >= INT64_MIN && v <= UINT64_MAX
    default: return v === null
  }
}

function copyChecked(v: object, depth: number): unknown {
  if (v instanceof Uint8Array) return Buffer.isBuffer(v) || v.constructor === Uint8Array ? Buffer.from(v) : VALUE_REFUSED
  if (v instanceof Date) return Number.isNaN(v.getTime()) ? VALUE_REFUSED : new Date(v.getTime())
  if (depth > MAX_DEPTH) return VALUE_REFUSED
  if (Object.isFrozen(v)) {
    const found = scanFrozen(v, depth)
    if (found === REFUSED) return VALUE_REFUSED
    if (found === SHAREABLE) return v
  }
  if (Array.isArray(v)) {
    const out = new Array<unknown>(v.length)
    for (let i = 0; i < v.length; i++) {
      const e: unknown = v[i]
      if (typeof e === 'object' && e !== null) {
        const c = copyChecked(e, depth + 1)
        if (c === VALUE_REFUSED) return c
        out[i] = c
      } else if (leafFits(e)) out[i] = e
      else return VALUE_REFUSED
    }
    return out
  }
  const proto: unknown = Object.getPrototypeOf(v)
  if (proto !== Object.prototype && proto !== null) return VALUE_REFUSED
  const o = v as Record<string, unknown>
  const out: Record<string, unknown> = {}
  // for-in: the prototype is Object.prototype or null, nothing is inherited.
  for (const k in o) {
    if (k === '__proto__') return VALUE_REFUSED
    const e = o[k]
    let c: unknown = e
    if (typeof e === 'object' && e !== null) {
      c = copyChecked(e, depth + 1)
      if (c === VALUE_REFUSED) return c
    } else if (!leafFits(e)) return VALUE_REFUSED
    out[k] = c
  }
  return out
}

/** What scanFrozen finds in a frozen object: findValueProblem would find a problem. */
const REFUSED = 0
/** Immutable all the way down: shared. */
const SHAREABLE = 1
/** Holds a Buffer or a Date, which freezing does not make immutable: copied. */
const HOLDS_MUTABLE = 2
type Frozen = typeof REFUSED | typeof SHAREABLE | typeof HOLDS_MUTABLE

/** Checks a frozen object as findValueProblem would, without building paths. */
function scanFrozen(v: object, depth: number): Frozen {
  if (v instanceof Uint8Array) return Buffer.isBuffer(v) || v.constructor === Uint8Array ? HOLDS_MUTABLE : REFUSED
  if (v instanceof Date) return Number.isNaN(v.getTime()) ? REFUSED : HOLDS_MUTABLE
  if (depth > MAX_DEPTH) return REFUSED
  let found: Frozen = SHAREABLE
  if (Array.isArray(v)) {
    for (let i = 0; i < v.length; i++) {
      found = scanElement(v[i], depth, found)
      if (found === REFUSED) return found
    }
    return found
  }
  const proto: unknown = Object.getPrototypeOf(v)
  if (proto !== Object.prototype && proto !== null) return REFUSED
  const o = v as Record<string, unknown>
  for (const k in o) {
    if (k === '__proto__') return REFUSED
    found = scanElement(o[k], depth, found)
    if (found === REFUSED) return found
  }
  return found
}

/** What scanFrozen finds with one more element of a container at `depth`, given what it found so far. */
function scanElement(e: unknown, depth: number, found: Frozen): Frozen {
  if (typeof e !== 'object' || e === null) return leafFits(e) ? found : REFUSED
  const r = scanFrozen(e, depth + 1)
  return r === SHAREABLE ? found : r
}

/** What is wrong with a leaf, or undefined; `inArray`: it is an element of an array. */
type Leaf = (v: unknown, inArray: boolean) => string | undefined

/** The problem of a leaf at `path`, if any. */
function leafProblem(leaf: Leaf, v: unknown, path: string): ValueProblem | undefined {
  const reason = leaf(v, false)
  return reason === undefined ? undefined : { path, reason }
}

/**
 * Walks plain objects and arrays, asking `leaf` about everything else; with `freeze`, each
 * container is frozen once its contents passed (Buffers and Dates in it replaced by copies).
 * A problem's path is relative to `v` (`.items[2]`) and built only for a problem, while
 * the walk returns: a value that passes costs no strings.
 */
function walk(v: object, depth: number, leaf: Leaf, freeze: boolean, trustFrozen = true): ValueProblem | undefined {
  if (depth > MAX_DEPTH) return { path: '', reason: `is nested deeper than ${MAX_DEPTH} levels (a reference cycle?)` }
  if (trustFrozen && Object.isFrozen(v)) return undefined
  const o = v as Record<string, unknown>
  if (Array.isArray(v)) {
    for (let i = 0; i < v.length; i++) {
      const p = entry(o, i, true, depth, leaf, freeze, trustFrozen)
      if (p !== undefined) {
        p.path = `[${i}]${p.path}`
        return p
      }
    }
  } else {
    const proto: unknown = Object.getPrototypeOf(v)
    if (proto !== Object.prototype && proto !== null) return leafProblem(leaf, v, '')
    // for-in is safe here: the prototype is Object.prototype or null, so nothing is inherited.
    for (const k in o) {
      const p = k === '__proto__' && leaf === msgpackLeaf ? { path: '', reason: PROTO_KEY_REASON } : entry(o, k, false, depth, leaf, freeze, trustFrozen)
      if (p !== undefined) {
        p.path = `${fieldPath(k)}${p.path}`
        return p
      }
    }
  }
  if (freeze) Object.freeze(v)
  return undefined
}

function entry(o: Record<string | number, unknown>, k: string | number, inArray: boolean, depth: number, leaf: Leaf, freeze: boolean, trustFrozen: boolean): ValueProblem | undefined {
  const e = o[k]
  if (typeof e !== 'object' || e === null) {
    const reason = leaf(e, inArray)
    return reason === undefined ? undefined : { path: '', reason }
  }
  if (e instanceof Uint8Array || e instanceof Date) {
    const reason = leaf(e, inArray)
    if (reason === undefined && freeze) o[k] = copyUnfreezable(e)
    return reason === undefined ? undefined : { path: '', reason }
  }
  return walk(e, depth + 1, leaf, freeze, trustFrozen)
}

/**
 * The path step of object key `key`: `.name` for an identifier, `["a.b"]` otherwise, so a
 * key holding `.` or `[` cannot be read as two steps.
 *
 * @example
 * fieldPath('items') // '.items'
 * fieldPath('a.b')   // '["a.b"]'
 */
export function fieldPath(key: string): string {
  return /^[A-Za-z_$][\w$]*$/.test(key) ? `.${key}` : `[${JSON.stringify(key)}]`
}

/** walk from the top of a value: paths start at `value`. */
function walkValue(v: object, leaf: Leaf, freeze: boolean, trustFrozen = true): ValueProblem | undefined {
  const p = walk(v, 0, leaf, freeze, trustFrozen)
  if (p !== undefined) p.path = `value${p.path}`
  return p
}

/** Buffers and Dates cannot be frozen: the state keeps its own copy. */
function copyUnfreezable<T>(v: T): T {
  if (v instanceof Date) return new Date(v.getTime()) as T
  return Buffer.from(v as Uint8Array) as T
}

/** msgpack (weir's default codec and the state encoding): what comes back as it went in. */
function msgpackLeaf(v: unknown): string | undefined {
  switch (typeof v) {
    case 'number': case 'string': case 'boolean': case 'undefined': return undefined
    case 'bigint': return v >= INT64_MIN && v <= UINT64_MAX ? undefined : BIGINT_TOO_LARGE(v)
    case 'function': return 'is a function, which msgpack would drop'
    case 'symbol': return 'is a symbol, which msgpack cannot encode'
  }
  if (v === null || Buffer.isBuffer(v) || (v instanceof Uint8Array && v.constructor === Uint8Array)) return undefined
  if (v instanceof Date) return Number.isNaN(v.getTime()) ? 'is an invalid Date' : undefined
  return `is ${describe(v)}, which msgpack would turn into ${v instanceof Map ? 'a plain object' : v instanceof Set ? 'an array' : 'something else'}; use plain objects, arrays, strings, numbers, booleans, null, Dates and Buffers`
}

/** JSON: only what JSON.parse gives back as JSON.stringify got it. */
function jsonLeaf(v: unknown, inArray: boolean): string | undefined {
  switch (typeof v) {
    case 'string': case 'boolean': return undefined
    case 'number': return Number.isFinite(v) ? undefined : `is ${v}, which JSON turns into null`
    case 'undefined': return inArray ? 'is undefined in an array, which JSON turns into null' : undefined
    case 'bigint': return 'is a BigInt, which JSON cannot encode: convert it to a string (String(n)) or a Number, or use the msgpack codec (BigInts within 64 bits)'
    case 'function': return 'is a function, which JSON drops'
    case 'symbol': return 'is a symbol, which JSON drops'
  }
  if (v === null) return undefined
  if (v instanceof Date) return 'is a Date, which JSON turns into a string; emit date.toISOString() or a number of ms'
  return `is ${describe(v)}, which JSON would not give back as it is; use plain objects, arrays, strings, finite numbers, booleans and null`
}

function describe(v: unknown): string {
  if (v === null) return 'null'
  if (typeof v !== 'object') return `a ${typeof v}`
  const name = (v as { constructor?: { name?: string } }).constructor?.name
  return name === undefined || name === '' ? 'an object with a custom prototype' : `a ${name}`
}
