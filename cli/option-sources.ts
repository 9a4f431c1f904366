/**
 * Where a command's options come from besides its command line: each option not given as a
 * flag is taken from its `WEIR_<OPTION>` variable, else from the configuration file, so every
 * command gets the same precedence (flag > environment > file > the command's default)
 * without code of its own. The sources are remembered, so a refusal of a value that came
 * from the file or the environment names the config field or the variable, not the flag.
 *
 * @example
 * const sources = fillOptions('worker', WORKER_OPTIONS, values, { env: process.env, cwd: process.cwd() })
 * sources.get('metrics-port') // { kind: 'file', file: 'weir.config.json', key: 'worker.metricsPort' }
 */
import { ConfigError } from '../runtime/errors.ts'
import { CONFIG_SECTIONS, findConfigFile, isLegacyMonitorConfig, loadConfigFile, readConfigDocument, type ConfigFile, type OptionDefs } from './config-file.ts'

/** Where an option's value came from. */
export type OptionSource = { kind: 'flag' } | { kind: 'env'; name: string } | { kind: 'file'; file: string; key: string }

/** Option values as parseArgs returns them. */
export type OptionValues = Record<string, string | boolean | string[] | undefined>

/** Options a command reads that are not configuration. */
const NOT_FILLED = new Set(['help', 'config'])

/**
 * Options that answer the same question two ways; the more specific source wins and the other
 * group is dropped. `weir peek` asks a views server over HTTP or any worker over the bus: a
 * `--url` on the command line beats a `bus` from the environment or the file.
 */
const ALTERNATIVES: Record<string, ReadonlyArray<readonly string[]>> = {
  peek: [['url', 'data-dir', 'token-file'], ['bus', 'cluster', 'nats-token-file', 'nats-user', 'nats-password-file', 'nats-creds', 'nats-nkey', 'nats-ca', 'nats-cert', 'nats-key']],
}

/**
 * Options whose WEIR_ variable the commands and the bus read themselves (they predate the
 * config file): left to them, so their messages keep naming the variable.
 */
const READ_BY_COMMAND = new Set(['bus', 'pipe', 'nats-user', 'nats-creds', 'nats-nkey', 'nats-ca', 'nats-cert', 'nats-key'])

/** The variable overriding an option: `--metrics-port` → `WEIR_METRICS_PORT`. */
export function envName(option: string): string {
  return `WEIR_${option.toUpperCase().replace(/-/g, '_')}`
}

/**
 * The section of the file a command reads, and the options that section holds. A command's
 * own by default; subcommands share their command's (`weir savepoint create` and `restore`
 * both read `savepoint`), and only the section's options come from the file or the
 * environment: the rest (`--target`, `--allow-dropped-state`) are given each time.
 */
export interface ConfigSection {
  name: string
  options: OptionDefs
}

/** The sources of the last command line parsed in this process (one command per process). */
let lastSources = new Map<string, OptionSource>()

/**
 * Fills `values` (parseArgs' result, changed in place) for every option of `command` the
 * command line did not give: from `WEIR_<OPTION>`, else the config file (--config,
 * WEIR_CONFIG, or ./weir.config.{json,yaml,yml}), its section `section.name` (the command's
 * own unless given). Throws ConfigError naming the variable or the file's field. Returns
 * each option's source.
 */
export function fillOptions(command: string, defs: OptionDefs, values: OptionValues, io: { env: NodeJS.ProcessEnv; cwd: string }, section: ConfigSection = { name: command, options: defs }): Map<string, OptionSource> {
  const sources = new Map<string, OptionSource>()
  const rank = new Map<string, number>()
  lastSources = sources
  // `weir config` and `weir help` read no configuration of their own.
  if (!(CONFIG_SECTIONS as readonly string[]).includes(section.name)) return sources
  const file = openConfig(command, section, values, io)
  for (const option of Object.keys(defs)) {
    if (NOT_FILLED.has(option) || !Object.hasOwn(section.options, option)) continue
    if (values[option] !== undefined) {
      sources.set(option, { kind: 'flag' })
      rank.set(option, 0)
      continue
    }
    const name = envName(option)
    const fromEnv = io.env[name]
    if (fromEnv !== undefined && fromEnv !== '') {
      // The command reads this variable itself and names it in its messages; the file must not shadow it.
      if (!READ_BY_COMMAND.has(option)) values[option] = envValue(fromEnv, name, option, defs[option]!)
      sources.set(option, { kind: 'env', name })
      rank.set(option, 1)
      continue
    }
    const entry = file?.lookup(section.name, option)
    if (entry !== undefined) {
      values[option] = entry.value
      sources.set(option, { kind: 'file', file: file!.shown, key: entry.key })
      rank.set(option, entry.key.startsWith(`${section.name}.`) ? 2 : 3)
    }
  }
  dropAlternatives(command, values, sources, rank)
  return sources
}

function openConfig(command: string, section: ConfigSection, values: OptionValues, io: { env: NodeJS.ProcessEnv; cwd: string }): ConfigFile | undefined {
  const flag = typeof values.config === 'string' ? values.config : undefined
  const found = findConfigFile({ flag, env: io.env, cwd: io.cwd })
  if (found === undefined) return undefined
  // `weir monitor --config` still takes the monitor's own older file; the monitor reads it.
  if (command === 'monitor' && found.field === '--config' && isLegacyMonitorConfig(readConfigDocument(found.path, found.field))) return undefined
  // The section is checked against all it may hold, whichever subcommand reads it.
  return loadConfigFile(found.path, { [section.name]: section.options }, { field: found.field, cwd: io.cwd })
}

/** A variable's text as the option's value: booleans are true/false/1/0, lists are a JSON list (or object of params) or one item. */
function envValue(text: string, name: string, option: string, def: OptionDefs[string]): string | boolean | string[] {
  if (def.type === 'boolean') {
    if (/^(1|true|yes|on)$/i.test(text)) return true
    if (/^(0|false|no|off)$/i.test(text)) return false
    throw new ConfigError(name, `expected true or false, got '${text}'`)
  }
  if (!def.multiple) return text
  if (!/^\s*[[{]/.test(text)) return [text]
  let parsed: unknown
  try {
    parsed = JSON.parse(text)
  } catch (err) {
    throw new ConfigError(name, `a list is written as JSON (["a=1","b=2"]): ${(err as Error).message}`)
  }
  if (Array.isArray(parsed) && parsed.every((v) => typeof v === 'string' || typeof v === 'number')) return parsed.map(String)
  if (option === 'param' && typeof parsed === 'object' && parsed !== null && !Array.isArray(parsed)) return Object.entries(parsed).map(([k, v]) => `${k}=${String(v)}`)
  throw new ConfigError(name, option === 'param' ? 'expected a JSON list of key=value or a JSON object' : 'expected a JSON list of strings')
}

function dropAlternatives(command: string, values: OptionValues, sources: Map<string, OptionSource>, rank: Map<string, number>): void {
  const groups = ALTERNATIVES[command]
  if (groups === undefined) return
  const best = groups.map((g) => Math.min(...g.map((o) => rank.get(o) ?? Infinity)))
  const winner = Math.min(...best)
  groups.forEach((group, i) => {
    if (best[i] === winner) return
    for (const option of group) {
      if ((rank.get(option) ?? 0) === 0) continue
      values[option] = undefined
      sources.delete(option)
    }
  })
}

/** The sources of the options of the last command line parsed in this process. */
export function optionSources(): ReadonlyMap<string, OptionSource> {
  return lastSources
}

/**
 * A refusal of an option's value names where the value came from: `--metrics-port: …`
 * becomes `weir.config.json: worker.metricsPort: …` or `WEIR_METRICS_PORT: …`. Other errors
 * are returned as they are.
 */
export function attributeToSource<E>(err: E): E {
  if (!(err instanceof ConfigError)) return err
  const field = err.context.field
  if (typeof field !== 'string' || !field.startsWith('--')) return err
  const source = lastSources.get(field.slice(2))
  if (source === undefined || source.kind === 'flag') return err
  const named = source.kind === 'env' ? source.name : `${source.file}: ${source.key}`
  if (err.message.startsWith(`${field}: `)) err.message = `${named}${err.message.slice(field.length)}`
  err.context.field = source.kind === 'env' ? source.name : source.key
  if (source.kind === 'file') err.context.file = source.file
  return err
}
