/**
 * `weir actor clear <pipeline> <actor> --bus nats://…`: asks the leading coordinator to
 * forget an actor's failures. A quarantined actor (it failed for good on two workers) is
 * then placed again; one that failed once may go back to the worker it failed on. The
 * request and the answer travel on the control bus (`.actor-clear`, `.actor-clear-answer`).
 *
 * Exit codes: 0 cleared (or nothing to clear), 1 no coordinator answered or the bus failed,
 * 2 refused (bad option, no such actor).
 */
import { randomUUID } from 'node:crypto'
import { checkClusterName, subjects, type ControlBus } from '../runtime/control/bus.ts'
import { actorClearAnswer, type ActorClear, type ActorClearAnswer } from '../runtime/control/messages.ts'
import { ConfigError } from '../runtime/errors.ts'
import { openBus, redactBusUrl, type BusTarget } from '../runtime/open-bus.ts'
import { busTargetOf, NATS_OPTIONS } from './nats-options.ts'
import { parseCommandArgs } from './options.ts'
import { printError, printRefusal, UsageError } from './report.ts'
import { ACTOR_USAGE } from './usage.ts'

const DEFAULT_WAIT_MS = 10_000
const MAX_WAIT_MS = 10 * 60_000

export interface ActorClearArgs {
  /** The bus URL, credentials redacted (for messages). */
  bus: string
  /** Where to connect, with credentials and TLS (absent: `bus` as it is). */
  busTarget?: BusTarget
  cluster: string
  pipeline: string
  actor: string
  waitMs: number
}

/** The options of `weir actor` (a config file's `actor` section takes the same, camelCased). */
export const ACTOR_OPTIONS = { bus: { type: 'string' }, cluster: { type: 'string' }, 'wait-ms': { type: 'string' }, ...NATS_OPTIONS, help: { type: 'boolean', short: 'h' } } as const

/**
 * Parses `actor clear`'s arguments; `help` when --help was given. Throws UsageError or ConfigError.
 *
 * @example
 * parseActorArgs(['clear', 'wordcount', 'count/1', '--bus', 'nats://127.0.0.1:4222'])
 * // { bus: 'nats://127.0.0.1:4222', busTarget: {…}, cluster: 'default', pipeline: 'wordcount', actor: 'count/1', waitMs: 10000 }
 */
export function parseActorArgs(argv: string[], env: NodeJS.ProcessEnv = process.env): ActorClearArgs | 'help' {
  const parsed = parseCommandArgs('actor', { args: argv, allowPositionals: true, options: ACTOR_OPTIONS }, { env })
  const { values, positionals } = parsed
  if (values.help) return 'help'
  const [verb, pipeline, actor, ...rest] = positionals
  if (verb !== 'clear') throw new UsageError(verb === undefined ? 'actor: expected a subcommand: clear' : `actor: unknown subcommand '${verb}' (expected clear)`)
  if (pipeline === undefined || actor === undefined || rest.length > 0) throw new UsageError('actor clear: expected <pipeline> <actor>, e.g. weir actor clear wordcount count/1')
  if (!/^[A-Za-z0-9_-]{1,200}$/.test(pipeline)) throw new ConfigError('<pipeline>', `'${pipeline}' is not a pipeline name`)
  if (!/^[^/\s]+\/\d+$/.test(actor)) throw new ConfigError('<actor>', `'${actor}' is not an actor id: expected <stage>/<partition>, e.g. count/1`)
  const bus = values.bus ?? env.WEIR_BUS
  if (bus === undefined) throw new ConfigError('--bus', 'weir actor talks to the coordinator over the control bus: give --bus nats://host:port (or WEIR_BUS)')
  const busTarget = busTargetOf(bus, values.bus === undefined ? 'WEIR_BUS' : '--bus', values, env)
  const cluster = values.cluster ?? 'default'
  checkClusterName(cluster, '--cluster')
  const raw = values['wait-ms']
  const waitMs = raw === undefined ? DEFAULT_WAIT_MS : Number(raw)
  if (raw !== undefined && (!/^\d+$/.test(raw) || waitMs < 1 || waitMs > MAX_WAIT_MS)) throw new ConfigError('--wait-ms', `'${raw}' must be a whole number of milliseconds from 1 to ${MAX_WAIT_MS}`)
  return { bus: redactBusUrl(bus), busTarget, cluster, pipeline, actor, waitMs }
}

/**
 * Sends the clear request and waits for the leader's answer (undefined: none within `waitMs`).
 *
 * @example
 * const answer = await requestClear(bus, { bus: url, cluster: 'prod', pipeline: 'wordcount', actor: 'count/1', waitMs: 10_000 })
 * if (answer?.outcome === 'cleared') console.log('placed again in generation', answer.generation)
 */
export function requestClear(bus: ControlBus, args: ActorClearArgs): Promise<ActorClearAnswer | undefined> {
  const requestId = randomUUID()
  return new Promise((resolve) => {
    const sub = bus.subscribe(subjects.actorClearAnswer(args.cluster, args.pipeline), (raw) => {
      const answer = actorClearAnswer.safeParse(raw)
      if (!answer.success || answer.data.requestId !== requestId) return
      finish(answer.data)
    })
    const timer = setTimeout(() => finish(undefined), args.waitMs)
    function finish(answer: ActorClearAnswer | undefined): void {
      clearTimeout(timer)
      sub.unsubscribe()
      resolve(answer)
    }
    const request: ActorClear = { v: 1, actor: args.actor, requestId }
    bus.publish(subjects.actorClear(args.cluster, args.pipeline), request)
  })
}

/** `weir actor …`. Returns the exit code. */
export async function actorCommand(argv: string[]): Promise<number> {
  let args: ActorClearArgs
  try {
    const parsed = parseActorArgs(argv)
    if (parsed === 'help') {
      process.stdout.write(ACTOR_USAGE)
      return 0
    }
    args = parsed
  } catch (err) {
    return printRefusal(err, 'actor')
  }
  let bus: ControlBus
  try {
    bus = await openBus(args.busTarget ?? args.bus, { name: 'weir-actor' })
  } catch (err) {
    printError(err)
    return err instanceof ConfigError ? 2 : 1
  }
  let answer: ActorClearAnswer | undefined
  try {
    answer = await requestClear(bus, args)
  } finally {
    await bus.close().catch(() => undefined)
  }
  const which = `${args.actor} of pipeline ${args.pipeline} (cluster ${args.cluster})`
  if (answer === undefined) {
    process.stderr.write(`weir: error: no coordinator answered within ${args.waitMs} ms: is 'weir coordinator' running for cluster ${args.cluster}, and has a worker of ${args.pipeline} spoken to it? [WEIR_NO_COORDINATOR]\n`)
    return 1
  }
  if (answer.outcome === 'unknown-actor') {
    process.stderr.write(`weir: error: pipeline ${args.pipeline} has no actor ${args.actor} [WEIR_UNKNOWN_ACTOR]\n`)
    return 2
  }
  if (answer.outcome === 'not-failed') {
    process.stdout.write(`weir actor: ${which} has no recorded failure; nothing to clear\n`)
    return 0
  }
  const f = answer.failure
  const had = f === undefined ? '' : ` (it had failed on ${f.workers.join(' and ')}: ${f.error.message})`
  process.stdout.write(`weir actor: cleared ${which}${had}; placed again in generation ${answer.generation}\n`)
  return 0
}
