/** How the CLI prints errors: `weir: error: <message> [code]`, then context and causes. */
import { pino, type Logger } from 'pino'
import { ConfigError, WeirError } from '../runtime/errors.ts'
import { attributeToSource } from './option-sources.ts'

/** A malformed command line: printed with a pointer to the usage, exit 2. */
export class UsageError extends Error {}

/** Prints a refusal at start (bad command line or input) for `command`; the exit code is 2. */
export function printRefusal(err: unknown, command: string): 2 {
  if (err instanceof UsageError) process.stderr.write(`weir: error: ${err.message}\nRun 'weir help ${command}' for usage.\n`)
  else printError(err)
  return 2
}

/**
 * A command's pino logger on stderr (or through `write`), at WEIR_LOG_LEVEL or
 * `defaultLevel`; a level pino does not know is refused naming WEIR_LOG_LEVEL.
 */
export function commandLogger(service: string, defaultLevel: string, write?: (line: string) => void): Logger {
  const level = process.env.WEIR_LOG_LEVEL ?? defaultLevel
  try {
    return pino({ level, base: { service } }, write === undefined ? pino.destination(2) : { write })
  } catch (err) {
    throw new ConfigError('WEIR_LOG_LEVEL', `${(err as Error).message}`)
  }
}

const CONTEXT_ORDER = ['stage', 'actor', 'topic', 'partition', 'offset', 'field']

function show(v: unknown): string {
  if (typeof v === 'string') return v
  try {
    return JSON.stringify(v) ?? String(v)
  } catch {
    return String(v)
  }
}

function messageOf(err: unknown): string {
  if (err instanceof Error) return err.message
  return String(err)
}

/** The first stack frame of an error outside Node and installed packages: where user code threw. */
function whereOf(err: Error): string | undefined {
  const frame = err.stack?.split('\n').find((l) => /^\s+at /.test(l) && !/\(node:|^\s+at node:|[/\\]node_modules[/\\]/.test(l))
  return frame?.trim().replace(/^at /, '')
}

function contextLines(err: WeirError, indent: string): string[] {
  const entries = Object.entries(err.context).filter(([, v]) => v !== undefined)
  entries.sort(([a], [b]) => {
    const ia = CONTEXT_ORDER.indexOf(a)
    const ib = CONTEXT_ORDER.indexOf(b)
    return (ia < 0 ? CONTEXT_ORDER.length : ia) - (ib < 0 ? CONTEXT_ORDER.length : ib)
  })
  return entries.map(([k, v]) => `${indent}${k}: ${show(v)}`)
}

/** Formats an error with its code, context fields (stage, actor, topic, partition, offset, field) and causes. */
export function formatError(err: unknown): string {
  // A value from the config file or a WEIR_* variable is named as such, not as its flag.
  attributeToSource(err)
  const lines: string[] = []
  const head = err instanceof WeirError ? `${err.message} [${err.code}]` : messageOf(err)
  lines.push(`weir: error: ${head}`)
  if (err instanceof WeirError) lines.push(...contextLines(err, '  '))

  let parent: unknown = err
  let cause: unknown = err instanceof Error ? err.cause : undefined
  for (let depth = 0; cause !== undefined && depth < 8; depth++) {
    const repeated = messageOf(parent).includes(messageOf(cause))
    if (cause instanceof WeirError) {
      lines.push(`  caused by: ${cause.message} [${cause.code}]`)
      const parentContext = parent instanceof WeirError ? parent.context : {}
      lines.push(...contextLines(cause, '    ').filter((l) => {
        const [k, ...rest] = l.trim().split(': ')
        return show(parentContext[k!]) !== rest.join(': ')
      }))
    } else if (!repeated) {
      lines.push(`  caused by: ${messageOf(cause)}`)
    }
    parent = cause
    cause = cause instanceof Error ? cause.cause : undefined
  }
  // Where user code threw (the innermost plain error), unless the message already says.
  if (!(parent instanceof WeirError) && parent instanceof Error) {
    const where = whereOf(parent)
    if (where !== undefined && !messageOf(parent).includes(where)) lines.push(`  at: ${where}`)
  }
  return lines.join('\n') + '\n'
}

export function printError(err: unknown): void {
  process.stderr.write(formatError(err))
}
