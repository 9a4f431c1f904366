/**
 * The weir configuration file (`weir.config.json`, `.yaml`, `.yml`): found, read and checked
 * here, so a command sees only option values that passed. Layout: shared keys at the top
 * (`pipe`, `pipeConfig`, `bus`, `cluster`, `param`, `nats: {…}`), then a section per command
 * whose keys are the camelCase of its long options (`worker: { metricsPort: 9464 }`).
 * Secrets never come from this file: an inline token or password is refused, naming the
 * `…File` option or the variable to use instead.
 *
 * @example
 * const file = findConfigFile({ flag: undefined, env: process.env, cwd: process.cwd() })
 * const config = file === undefined ? undefined : loadConfigFile(file, { worker: WORKER_OPTIONS })
 * config?.lookup('worker', 'metrics-port') // { value: '9464', key: 'worker.metricsPort' }
 */
import { existsSync, readFileSync } from 'node:fs'
import { isAbsolute, relative, resolve } from 'node:path'
import type { ParseArgsConfig } from 'node:util'
import { parse as parseYaml } from 'yaml'
import { z } from 'zod'
import { ConfigError } from '../runtime/errors.ts'
import { closestName } from '../runtime/suggest.ts'

/** parseArgs option definitions of one command. */
export type OptionDefs = NonNullable<ParseArgsConfig['options']>

/** Every command that takes options from the file, by section name. */
export const CONFIG_SECTIONS = ['run', 'worker', 'coordinator', 'monitor', 'status', 'jobs', 'peek', 'tail', 'actor', 'savepoint'] as const

/** The names looked for in the working directory when neither --config nor WEIR_CONFIG says. */
export const DEFAULT_CONFIG_NAMES = ['weir.config.json', 'weir.config.yaml', 'weir.config.yml']

/** Top-level keys every command taking that option reads, unless its own section says otherwise. */
export const SHARED_OPTIONS = ['pipe', 'pipe-config', 'bus', 'cluster', 'param'] as const

/** `nats: { tokenFile, user, … }` at the top or in a section stands for the --nats-* options. */
const NATS_KEYS = ['token-file', 'user', 'password-file', 'creds', 'nkey', 'ca', 'cert', 'key']

/** Options that are not configuration: what a file would set for them means nothing. */
const NOT_CONFIGURABLE = new Set(['help', 'config'])

/**
 * Secrets as a key might name them, and where they come from instead. A key not listed but
 * looking like a secret (token, password, secret) gets the generic advice.
 */
const SECRET_SOURCES: Record<string, { file?: string; env: string }> = {
  'metrics-token': { file: 'metricsTokenFile', env: 'WEIR_METRICS_TOKEN' },
  'views-token': { file: 'viewsTokenFile', env: 'WEIR_VIEWS_TOKEN' },
  'monitor-token': { env: 'WEIR_MONITOR_TOKEN' },
  'nats-token': { file: 'nats.tokenFile', env: 'WEIR_NATS_TOKEN' },
  'nats-password': { file: 'nats.passwordFile', env: 'WEIR_NATS_PASSWORD' },
  'kafka-password': { env: 'WEIR_KAFKA_PASSWORD' },
  password: { env: 'WEIR_KAFKA_PASSWORD or WEIR_NATS_PASSWORD' },
}
const SECRET_WORD = /token|password|passwd|secret|credential|apikey|privatekey/i

/** One problem with the file: where (`worker.metricsPort`) and what. */
export interface ConfigIssue {
  path: string
  message: string
}

/** The file was refused; `issues` lists every problem, each naming its field. */
export class ConfigFileError extends ConfigError {
  constructor(readonly file: string, readonly issues: readonly ConfigIssue[]) {
    super(issues[0]?.path ?? '(file)', issues[0]?.message ?? 'invalid', { file })
    // Every problem at once: fixing them one start at a time is slow.
    this.message = [`${file}: ${this.message}`, ...issues.slice(1).map((i) => `  ${file}: ${i.path}: ${i.message}`)].join('\n')
  }
}

/** A value from the file for one option, as parseArgs would give it, and the key that set it. */
export interface ConfigEntry {
  value: string | boolean | string[]
  key: string
}

/** A loaded, checked configuration file. */
export interface ConfigFile {
  /** Absolute path. */
  path: string
  /** As errors show it: relative to the working directory when inside it. */
  shown: string
  /** The parsed document (for `weir config print`). */
  raw: Record<string, unknown>
  /** The value of `option` (long name) for `section`: its own key first, then a shared one. */
  lookup(section: string, option: string): ConfigEntry | undefined
}

/** Where the configuration file is: --config, else WEIR_CONFIG, else ./weir.config.{json,yaml,yml} if one exists. */
export function findConfigFile(sources: { flag: string | undefined; env: NodeJS.ProcessEnv; cwd: string }): { path: string; field: string } | undefined {
  if (sources.flag !== undefined) return { path: resolve(sources.cwd, sources.flag), field: '--config' }
  const fromEnv = sources.env.WEIR_CONFIG
  if (fromEnv !== undefined && fromEnv !== '') return { path: resolve(sources.cwd, fromEnv), field: 'WEIR_CONFIG' }
  const present = DEFAULT_CONFIG_NAMES.filter((n) => existsSync(resolve(sources.cwd, n)))
  if (present.length > 1) throw new ConfigError('--config', `both ${present.join(' and ')} are in ${sources.cwd}: keep one, or say which with --config FILE`)
  return present.length === 1 ? { path: resolve(sources.cwd, present[0]!), field: present[0]! } : undefined
}

/** Reads and parses the file (JSON, or YAML by its extension); ConfigError naming `field` (--config, WEIR_CONFIG) when it cannot. */
export function readConfigDocument(path: string, field: string): unknown {
  let text: string
  try {
    text = readFileSync(path, 'utf8')
  } catch (err) {
    throw new ConfigError(field, `cannot read ${path}: ${(err as Error).message}`)
  }
  try {
    return /\.ya?ml$/i.test(path) ? parseYaml(text) : JSON.parse(text)
  } catch (err) {
    throw new ConfigError(field, `${path} is not ${/\.ya?ml$/i.test(path) ? 'YAML' : 'JSON'}: ${(err as Error).message}`)
  }
}

/** `metrics-port` → `metricsPort`. */
export function camelKey(option: string): string {
  return option.replace(/-([a-z0-9])/g, (_, c: string) => c.toUpperCase())
}

/** `metricsPort` → `metrics-port`. */
export function kebabKey(key: string): string {
  return key.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)
}

/** How errors name the file: relative to the working directory when inside it. */
export function shownPath(path: string, cwd: string): string {
  const rel = relative(cwd, path)
  return rel !== '' && !rel.startsWith('..') && !isAbsolute(rel) ? rel : path
}

/**
 * Loads `path` and checks it: the top level, and every section in `sections` against that
 * command's options (other known sections need only be objects; `weir config check` passes
 * every command). Throws ConfigFileError listing every problem.
 */
export function loadConfigFile(path: string, sections: Partial<Record<string, OptionDefs>>, options: { field?: string; cwd?: string } = {}): ConfigFile {
  const shown = shownPath(path, options.cwd ?? process.cwd())
  const raw = readConfigDocument(path, options.field ?? '--config')
  const issues = checkConfig(raw, sections)
  if (issues.length > 0) throw new ConfigFileError(shown, issues)
  return configFile(path, shown, raw as Record<string, unknown>, sections)
}

/** Every problem of a parsed document, each naming its field; empty when it is fine. */
export function checkConfig(raw: unknown, sections: Partial<Record<string, OptionDefs>>): ConfigIssue[] {
  if (raw === null || raw === undefined) return []
  const top = z.record(z.unknown())
  if (!top.safeParse(raw).success || Array.isArray(raw)) return [{ path: '(file)', message: 'expected an object of settings (shared keys and a section per command)' }]
  const doc = raw as Record<string, unknown>
  const issues: ConfigIssue[] = []
  const known = new Set<string>([...CONFIG_SECTIONS, ...Object.keys(sections)])
  const topKeys = [...SHARED_OPTIONS.map(camelKey), 'nats', ...known]
  const sharedDefs: OptionDefs = { pipe: { type: 'string' }, 'pipe-config': { type: 'string' }, bus: { type: 'string' }, cluster: { type: 'string' }, param: { type: 'string', multiple: true } }
  for (const [key, value] of Object.entries(doc)) {
    if (known.has(key)) {
      const defs = sections[key]
      if (defs !== undefined) issues.push(...checkSection(value, key, defs, key))
      else if (!isObject(value)) issues.push({ path: key, message: 'expected an object of the command\'s options' })
    } else if (key === 'nats') {
      issues.push(...checkNats(value, 'nats'))
    } else if (Object.hasOwn(sharedDefs, kebabKey(key)) && camelKey(kebabKey(key)) === key) {
      issues.push(...checkValue(value, key, kebabKey(key), sharedDefs[kebabKey(key)]!))
    } else {
      issues.push(unknownKey(key, key, topKeys, sections))
    }
  }
  return issues
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v)
}

function checkSection(value: unknown, path: string, defs: OptionDefs, command: string): ConfigIssue[] {
  if (!isObject(value)) return [{ path, message: 'expected an object of the command\'s options' }]
  const options = Object.keys(defs).filter((o) => !NOT_CONFIGURABLE.has(o))
  const keys = options.map(camelKey)
  const takesNats = options.some((o) => o.startsWith('nats-'))
  const issues: ConfigIssue[] = []
  for (const [key, v] of Object.entries(value)) {
    const option = kebabKey(key)
    if (key === 'nats' && takesNats) issues.push(...checkNats(v, `${path}.nats`))
    else if (options.includes(option) && camelKey(option) === key) issues.push(...checkValue(v, `${path}.${key}`, option, defs[option]!))
    else issues.push(unknownKey(key, `${path}.${key}`, takesNats ? [...keys, 'nats'] : keys, undefined, command))
  }
  return issues
}

function checkNats(value: unknown, path: string): ConfigIssue[] {
  if (!isObject(value)) return [{ path, message: `expected an object of NATS settings (${NATS_KEYS.map(camelKey).join(', ')})` }]
  const issues: ConfigIssue[] = []
  for (const [key, v] of Object.entries(value)) {
    const option = kebabKey(key)
    if (NATS_KEYS.includes(option)) issues.push(...checkValue(v, `${path}.${key}`, `nats-${option}`, { type: 'string' }))
    else issues.push(unknownKey(key, `${path}.${key}`, NATS_KEYS.map(camelKey), undefined, 'nats'))
  }
  return issues
}

/** An unknown key: a secret written inline, an option in the wrong place, or a typo with its closest valid key. */
function unknownKey(key: string, path: string, valid: readonly string[], sections?: Partial<Record<string, OptionDefs>>, command?: string): ConfigIssue {
  const secret = secretAdvice(key, command)
  if (secret !== undefined) return { path, message: secret }
  const suggestion = closestName(key, valid)
  if (suggestion !== undefined) return { path, message: `unknown key '${key}'; did you mean '${suggestion}'?` }
  const homes = sections === undefined ? [] : Object.entries(sections).filter(([, defs]) => defs !== undefined && Object.hasOwn(defs, kebabKey(key))).map(([s]) => `${s}.${key}`)
  if (homes.length > 0) return { path, message: `'${key}' is not a shared key: put it in a command's section (${homes.join(', ')})` }
  return { path, message: `unknown key '${key}'; valid here: ${valid.join(', ')}` }
}

function secretAdvice(key: string, command: string | undefined): string | undefined {
  const option = kebabKey(key)
  const nats = command === 'nats' ? `nats-${option}` : option
  const tokenOf: Record<string, string> = { monitor: 'WEIR_MONITOR_TOKEN', peek: 'WEIR_VIEWS_TOKEN' }
  const known = SECRET_SOURCES[nats] ?? (option === 'token' && command !== undefined && tokenOf[command] !== undefined ? { file: 'tokenFile', env: tokenOf[command]! } : undefined)
  if (known === undefined && !SECRET_WORD.test(key)) return undefined
  const where = known === undefined ? 'a …File option or its environment variable' : known.file === undefined ? known.env : `${known.file} (a file holding it) or ${known.env}`
  return `secrets are not read from the config file (it is shown and shared): give it with ${where}`
}

/** The zod schema of one option's value in the file, by its definition and what its name says it holds. */
function valueSchema(option: string, def: OptionDefs[string], value: unknown): z.ZodType<unknown> {
  if (def.type === 'boolean') return z.boolean({ invalid_type_error: 'expected true or false' })
  const scalar = z.union([z.string(), z.number().finite()], { errorMap: () => ({ message: 'expected a string or a number' }) }).superRefine((v, ctx) => {
    const problem = conventionProblem(option, v)
    if (problem !== undefined) ctx.addIssue({ code: 'custom', message: problem })
    const secret = urlSecret(option, v)
    if (secret !== undefined) ctx.addIssue({ code: 'custom', message: secret })
  })
  if (!def.multiple) return scalar
  const item = option === 'slo' ? z.union([scalar, sloObject], { errorMap: () => ({ message: 'expected OUTPUT=DURATION or { output, timelinessMs }' }) }) : scalar
  const list = z.array(item, { invalid_type_error: 'expected a list' })
  // A repeatable option takes one value or a list; each reports its own problems.
  if (option !== 'param') return Array.isArray(value) ? list : item
  return z.union([list, z.record(z.union([z.string(), z.number().finite(), z.boolean()], { errorMap: () => ({ message: 'expected a string, number or boolean' }) }))], { errorMap: () => ({ message: 'expected an object of key: value or a list of key=value' }) })
}

const sloObject = z.object({ cluster: z.string().optional(), pipeline: z.string().optional(), output: z.string(), timelinessMs: z.number().positive() }).strict()

/** What the option's name promises (a port, milliseconds) checked early, with the command's wording. */
function conventionProblem(option: string, v: string | number): string | undefined {
  const text = String(v)
  if (/(^|-)port$/.test(option) && (!/^\d{1,5}$/.test(text) || Number(text) > 65535)) return `expected a port number in 0..65535, got '${text}'`
  if (/-ms$/.test(option) && !/^\d+$/.test(text)) return `expected a whole number of milliseconds, got '${text}'`
  return undefined
}

/** Credentials inside a URL are secrets too: a NATS URL's user or token, any URL's password. */
function urlSecret(option: string, v: string | number): string | undefined {
  if (typeof v !== 'string' || !/^[a-z][a-z0-9+.-]*:\/\//i.test(v)) return undefined
  let url: URL
  try {
    url = new URL(v)
  } catch {
    return undefined
  }
  if (option === 'bus' && url.username !== '') return 'credentials in the bus URL are secrets: give them with nats.tokenFile, nats.user + nats.passwordFile, or WEIR_NATS_TOKEN / WEIR_NATS_PASSWORD'
  if (url.password !== '') return 'a password in the URL is a secret: give it with its environment variable (WEIR_KAFKA_PASSWORD for a kafka:// pipe)'
  return undefined
}

function checkValue(value: unknown, path: string, option: string, def: OptionDefs[string]): ConfigIssue[] {
  const r = valueSchema(option, def, value).safeParse(value)
  if (r.success) return []
  // One message per place: a union reports each branch, and the first says it best.
  const seen = new Set<string>()
  const issues: ConfigIssue[] = []
  for (const issue of r.error.issues) {
    const at = [path, ...issue.path.map(String)].join('.')
    if (seen.has(at)) continue
    seen.add(at)
    issues.push({ path: at, message: issue.message })
  }
  return issues
}

function configFile(path: string, shown: string, raw: Record<string, unknown>, sections: Partial<Record<string, OptionDefs>>): ConfigFile {
  const doc = raw ?? {}
  return {
    path,
    shown,
    raw: doc,
    lookup(section, option) {
      const def = sections[section]?.[option]
      if (def === undefined || NOT_CONFIGURABLE.has(option)) return undefined
      const own = isObject(doc[section]) ? doc[section] : {}
      const candidates: Array<[unknown, string]> = [[own[camelKey(option)], `${section}.${camelKey(option)}`]]
      if (option.startsWith('nats-')) {
        const natsKey = camelKey(option.slice('nats-'.length))
        candidates.push([isObject(own.nats) ? own.nats[natsKey] : undefined, `${section}.nats.${natsKey}`])
        candidates.push([isObject(doc.nats) ? doc.nats[natsKey] : undefined, `nats.${natsKey}`])
      }
      if ((SHARED_OPTIONS as readonly string[]).includes(option)) candidates.push([doc[camelKey(option)], camelKey(option)])
      for (const [value, key] of candidates) {
        if (value !== undefined && value !== null) return { value: asOptionValue(value, option, def), key }
      }
      return undefined
    },
  }
}

/** A checked file value as parseArgs gives an option's: strings, a boolean, or a list of strings. */
function asOptionValue(value: unknown, option: string, def: OptionDefs[string]): string | boolean | string[] {
  if (def.type === 'boolean') return value as boolean
  if (!def.multiple) return String(value)
  if (isObject(value)) return Object.entries(value).map(([k, v]) => `${k}=${String(v)}`)
  const items = Array.isArray(value) ? value : [value]
  return items.map((item) => (isObject(item) ? sloFlag(item as z.infer<typeof sloObject>) : String(item)))
}

/** `{ pipeline, output, timelinessMs }` as the --slo flag writes it. */
function sloFlag(slo: z.infer<typeof sloObject>): string {
  return `${[slo.cluster, slo.pipeline, slo.output].filter((p) => p !== undefined).join('/')}=${slo.timelinessMs}ms`
}

/**
 * The monitor's own older file (`{ "slos": [...], "port": …, "host": … }`, docs/monitoring.md),
 * still taken by `weir monitor --config` and read by the monitor itself.
 */
export function isLegacyMonitorConfig(raw: unknown): boolean {
  if (!isObject(raw)) return false
  const keys = Object.keys(raw)
  const legacy = ['slos', 'port', 'host', 'cluster']
  return keys.includes('slos') || (keys.length > 0 && keys.every((k) => legacy.includes(k)) && (keys.includes('port') || keys.includes('host')))
}
