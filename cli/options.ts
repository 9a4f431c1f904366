/**
 * Command-line parsing for every `weir` command: node:util's parseArgs, with an unknown
 * option refused as a ConfigError naming it and the command's closest option
 * (`unknown option --datadir; did you mean --data-dir?`) instead of parseArgs' advice about
 * positional arguments starting with '-'. Every command also takes `--config FILE`, and
 * each option the command line leaves out comes from `WEIR_<OPTION>` or the config file
 * (option-sources.ts).
 */
import { parseArgs, type ParseArgsConfig } from 'node:util'
import { ConfigError } from '../runtime/errors.ts'
import { closestName } from '../runtime/suggest.ts'
import { fillOptions, type ConfigSection, type OptionValues } from './option-sources.ts'
import { UsageError } from './report.ts'

/** An option the command does not take; `context.suggestion` is the closest one it does, if any. */
export class UnknownOptionError extends ConfigError {
  constructor(option: string, command: string, valid: readonly string[]) {
    const typed = option.replace(/^-+/, '')
    const suggestion = closestName(typed, valid)
    super(option, '', { command, suggestion: suggestion === undefined ? undefined : `--${suggestion}` })
    this.message = suggestion !== undefined
      ? `unknown option ${option}; did you mean --${suggestion}? (weir ${command} --help lists its options)`
      : `unknown option ${option}; weir ${command} takes ${valid.map((v) => `--${v}`).join(', ')} (weir ${command} --help says what each does)`
  }
}

type Parsed<T extends ParseArgsConfig> = ReturnType<typeof parseArgs<T>>

/** Where the environment and the config file are looked up (tests pass their own). */
export interface OptionIo {
  env?: NodeJS.ProcessEnv
  cwd?: string
}

/**
 * parseArgs for `weir <command>`, then the options not on the command line filled from
 * `WEIR_<OPTION>` variables and the config file (not for --help). Throws
 * UnknownOptionError for an option the command does not take, UsageError for the other
 * malformed command lines (a missing value, an argument where none is taken), whose
 * parseArgs messages already name the option, and ConfigError for a bad variable or file.
 * A subcommand names the section it shares (`section`); by default a command reads its own.
 *
 * @example
 * const { values } = parseCommandArgs('status', { args: argv, options: { bus: { type: 'string' } } })
 */
export function parseCommandArgs<T extends Omit<ParseArgsConfig, 'strict'>>(command: string, config: T, io: OptionIo = {}, section?: ConfigSection): Parsed<T> {
  const options = { ...config.options, config: config.options?.config ?? { type: 'string' } } as NonNullable<ParseArgsConfig['options']>
  const parsed = parseStrict(command, { ...config, options }) as Parsed<T>
  const values = parsed.values as OptionValues
  if (values.help !== true) fillOptions(command, options, values, { env: io.env ?? process.env, cwd: io.cwd ?? process.cwd() }, section)
  return parsed
}

function parseStrict<T extends Omit<ParseArgsConfig, 'strict'>>(command: string, config: T): Parsed<T> {
  try {
    return parseArgs(config) // strict, parseArgs' default
  } catch (err) {
    // An unknown option is reported first whatever parseArgs tripped on: in `--bsu x` the
    // unexpected argument x is the unknown option's value.
    const option = unknownOption(config)
    if (option !== undefined) throw new UnknownOptionError(option, command, Object.keys(config.options ?? {}))
    const code = (err as { code?: string }).code
    const positional = code === 'ERR_PARSE_ARGS_UNEXPECTED_POSITIONAL' ? /'(.*)'/.exec((err as Error).message)?.[1] : undefined
    if (positional !== undefined) throw new UsageError(`${command}: unexpected argument '${positional}': weir ${command} takes only options (a value goes right after its option, e.g. --cluster prod)`)
    throw new UsageError(`${command}: ${(err as Error).message}`)
  }
}

/** The first option of the command line the command does not define, as typed (`--datadir`, `-x`). */
function unknownOption(config: ParseArgsConfig): string | undefined {
  const options = config.options ?? {}
  const { tokens } = parseArgs({ ...config, strict: false, allowPositionals: true, tokens: true })
  for (const token of tokens ?? []) {
    if (token.kind !== 'option') continue
    // A known short option comes back under its long name.
    if (!Object.hasOwn(options, token.name)) return token.rawName
  }
  return undefined
}
