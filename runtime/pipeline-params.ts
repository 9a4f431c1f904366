/**
 * `--param key=value` (weir run, weir worker) and weir/testing's `params` reach a pipeline
 * function as a plain-looking object; a param the function never reads would be ignored
 * silently, so a typo (`cuont=10`) would run with the default. weir learns which params a
 * pipeline takes by watching it read them: the function gets an object that records every
 * key it looks at (`params.count`, `'count' in params`, destructuring, `Object.hasOwn`), and a
 * given param it never looked at is refused, naming the params it does read and the closest.
 *
 * The rule for pipeline authors: read every param while the pipeline function runs, or in a
 * stage's processor factory (weir calls each factory once before refusing anything). A param
 * read only later (in onRecord, in a callback) counts as unread. Enumerating the params
 * (`{ ...params }`, `Object.keys(params)`, `JSON.stringify(params)`) counts as reading all
 * of them: weir cannot tell which ones the pipeline then uses.
 *
 * @example
 * export default function ticker(params: Record<string, string>): Pipeline {
 *   const rate = Number(params.rate ?? 1000)       // read here: --param rate=… is accepted
 *   const { out = 'out/ticker.jsonl' } = params     // destructuring counts as reading out
 *   ...
 * }
 */
import { relative, isAbsolute } from 'node:path'
import { ConfigError } from './errors.ts'
import { instantiate, type Pipeline } from './api/pipeline.ts'
import { constructProcessor } from './api/state.ts'
import { closestName } from './suggest.ts'

/** The params object handed to a pipeline function, and what the function looked at. */
export interface TrackedParams {
  readonly params: Record<string, string>
  readonly given: Readonly<Record<string, string>>
  /** Keys the function looked up, given or not. */
  readonly read: ReadonlySet<string>
  /** True once it enumerated the params: then every given one counts as read. */
  readonly enumerated: boolean
}

/** Names every plain object has: looking them up is not reading a param. */
const OBJECT_MEMBERS = new Set(Object.getOwnPropertyNames(Object.prototype).concat(['then', 'toJSON']))

/** A copy of `given` that records which keys are looked up. */
export function trackParams(given: Readonly<Record<string, string>>): TrackedParams {
  const read = new Set<string>()
  const tracked = { given, read, enumerated: false, params: {} as Record<string, string> }
  const note = (key: string | symbol): void => {
    if (typeof key === 'string' && !OBJECT_MEMBERS.has(key)) read.add(key)
  }
  tracked.params = new Proxy({ ...given }, {
    get(target, key, receiver) {
      note(key)
      return Reflect.get(target, key, receiver)
    },
    has(target, key) {
      note(key)
      return Reflect.has(target, key)
    },
    getOwnPropertyDescriptor(target, key) {
      note(key)
      return Reflect.getOwnPropertyDescriptor(target, key)
    },
    ownKeys(target) {
      tracked.enumerated = true
      return Reflect.ownKeys(target)
    },
  })
  return tracked
}

/** Given params the pipeline function (and its stages' factories) never read. */
function unread(tracked: TrackedParams): string[] {
  if (tracked.enumerated) return []
  return Object.keys(tracked.given).filter((k) => !tracked.read.has(k))
}

/** A param given to a pipeline that never reads it; `context.param` names it, `context.suggestion` the closest it reads. */
export class UnknownParamError extends ConfigError {
  constructor(file: string, unreadKeys: readonly string[], tracked: TrackedParams) {
    const reads = [...tracked.read].filter((k) => !unreadKeys.includes(k)).sort()
    const shown = isAbsolute(file) && !relative(process.cwd(), file).startsWith('..') ? relative(process.cwd(), file) : file
    const sentences = unreadKeys.map((key) => {
      const suggestion = closestName(key, reads)
      const head = `--param ${key}=${tracked.given[key]}: ${shown} does not read a param '${key}' (${reads.length === 0 ? 'it reads no params' : `with these params it reads ${reads.join(', ')}`})`
      return suggestion !== undefined
        ? `${head}; did you mean ${suggestion}?`
        : `${head}, so it would be ignored: remove it, or read params.${key} in the pipeline function while it builds the pipeline`
    })
    const first = unreadKeys[0]!
    super('--param', '', { file, param: first, suggestion: closestName(first, reads), reads })
    this.message = sentences.join('\n')
  }
}

/**
 * Refuses given params the pipeline function never read. Params read only in a stage's
 * processor factory count: before refusing, every factory is called once (as the run does
 * before it starts); a factory that throws is left for the run to report.
 */
export function refuseUnreadParams(file: string, tracked: TrackedParams, pipeline: Pipeline): void {
  if (unread(tracked).length === 0) return
  for (const spec of pipeline.actorStages) {
    try {
      constructProcessor(spec.name, () => instantiate(spec))
    } catch {
      // Reported with its stage when the run validates its factories.
    }
  }
  const keys = unread(tracked)
  if (keys.length > 0) throw new UnknownParamError(file, keys, tracked)
}
