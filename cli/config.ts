/**
 * `weir config check|print`: the configuration file checked against every command's options,
 * and the configuration each command would run with (file, WEIR_* variables, defaults),
 * secrets masked. Exit 0 when the file is fine, 2 with every problem, each naming its field.
 */
import { DEFAULT_RELEASE_TIMEOUT_MS, DEFAULT_WORKER_PROBE_MS } from '../coordinator/coordinator.ts'
import { DEFAULT_MONITOR_HOST, DEFAULT_MONITOR_PORT } from '../monitor/config.ts'
import { ConfigError } from '../runtime/errors.ts'
import { redactBusUrl } from '../runtime/open-bus.ts'
import { closestName } from '../runtime/suggest.ts'
import { ACTOR_OPTIONS } from './actor.ts'
import { COORDINATOR_OPTIONS, WORKER_OPTIONS } from './cluster.ts'
import { camelKey, CONFIG_SECTIONS, ConfigFileError, findConfigFile, loadConfigFile, type ConfigFile, type OptionDefs } from './config-file.ts'
import { JOBS_OPTIONS } from './jobs.ts'
import { MONITOR_OPTIONS } from './monitor.ts'
import { envName, fillOptions, type OptionValues } from './option-sources.ts'
import { parseCommandArgs } from './options.ts'
import { PEEK_OPTIONS } from './peek.ts'
import { printRefusal, UsageError } from './report.ts'
import { RUN_OPTIONS } from './run.ts'
import { SAVEPOINT_OPTIONS } from './savepoint.ts'
import { DEFAULT_STATUS_WAIT_MS, STATUS_OPTIONS } from './status.ts'
import { DEFAULT_LIMIT, TAIL_OPTIONS } from './tail.ts'
import { CONFIG_USAGE } from './usage.ts'
import { DEFAULT_EPOCH_INTERVAL_MS } from '../coordinator/epochs.ts'

/** Every command's options: what each section of the file may hold. */
export const COMMAND_OPTIONS: Record<(typeof CONFIG_SECTIONS)[number], OptionDefs> = {
  run: RUN_OPTIONS,
  worker: WORKER_OPTIONS,
  coordinator: COORDINATOR_OPTIONS,
  monitor: MONITOR_OPTIONS,
  status: STATUS_OPTIONS,
  jobs: JOBS_OPTIONS,
  peek: PEEK_OPTIONS,
  tail: TAIL_OPTIONS,
  actor: ACTOR_OPTIONS,
  savepoint: SAVEPOINT_OPTIONS,
}

const LOOPBACK = '127.0.0.1'
const DATA_DIR = '.weir/<pipeline>'

/** What each command uses when nothing gives an option (as its usage says); computed ones in <…>. */
const DEFAULTS: Record<string, Record<string, unknown>> = {
  run: { dataDir: DATA_DIR, epochMs: DEFAULT_EPOCH_INTERVAL_MS, pipe: 'embedded', cluster: 'embedded', quiet: false, monitor: false, monitorPort: DEFAULT_MONITOR_PORT, monitorHost: DEFAULT_MONITOR_HOST, metricsHost: LOOPBACK, viewsPort: 0, viewsHost: LOOPBACK },
  worker: { cluster: 'default', stateDir: '.weir/<pipeline>-worker', id: '<generated>', epochMs: DEFAULT_EPOCH_INTERVAL_MS, heartbeatMs: 1000, metricsHost: LOOPBACK, viewsPort: 0, viewsHost: LOOPBACK },
  coordinator: { cluster: 'default', epochMs: DEFAULT_EPOCH_INTERVAL_MS, workerTimeoutMs: 10_000, workerProbeMs: DEFAULT_WORKER_PROBE_MS, settleMs: 3000, releaseTimeoutMs: DEFAULT_RELEASE_TIMEOUT_MS, leaseTtlMs: 5000, name: '<hostname>-<pid>' },
  monitor: { cluster: '*', port: DEFAULT_MONITOR_PORT, host: DEFAULT_MONITOR_HOST },
  status: { cluster: '*', waitMs: DEFAULT_STATUS_WAIT_MS, json: false },
  jobs: { dataDir: DATA_DIR, pipe: 'embedded', json: false },
  peek: { dataDir: DATA_DIR, stale: false, json: false },
  tail: { dataDir: DATA_DIR, pipe: 'embedded', limit: DEFAULT_LIMIT, follow: false, deadLetter: false, json: false },
  actor: { cluster: 'default', waitMs: 10_000 },
  savepoint: { pipe: 'embedded', dataDir: `${DATA_DIR} (a temporary dir with a kafka:// pipe)` },
}

/** Secrets a command reads from the environment (never from the file), by the option that shows it needs them. */
const SECRET_VARIABLES: Array<[option: string, variable: string]> = [
  ['metrics-token-file', 'WEIR_METRICS_TOKEN'],
  ['views-token-file', 'WEIR_VIEWS_TOKEN'],
  ['monitor', 'WEIR_MONITOR_TOKEN'],
  ['nats-token-file', 'WEIR_NATS_TOKEN'],
  ['nats-password-file', 'WEIR_NATS_PASSWORD'],
  ['pipe', 'WEIR_KAFKA_PASSWORD'],
]

export async function configCommand(argv: string[]): Promise<number> {
  try {
    const { values, positionals } = parseCommandArgs('config', { args: argv, allowPositionals: true, options: { config: { type: 'string' }, command: { type: 'string' }, help: { type: 'boolean', short: 'h' } } })
    if (values.help || positionals.length === 0) {
      process.stdout.write(CONFIG_USAGE)
      return values.help ? 0 : 2
    }
    const [verb, ...rest] = positionals
    if (rest.length > 0) throw new UsageError(`config: unexpected argument '${rest[0]}'`)
    const io = { env: process.env, cwd: process.cwd() }
    if (verb === 'check') {
      if (values.command !== undefined) throw new ConfigError('--command', 'only with weir config print')
      return check(values.config, io)
    }
    if (verb === 'print') return print(values.config, values.command, io)
    throw new UsageError(`config: unknown subcommand '${verb}'${closestName(verb!, ['check', 'print']) === undefined ? '' : `; did you mean ${closestName(verb!, ['check', 'print'])}?`} (expected check or print)`)
  } catch (err) {
    return printRefusal(err, 'config')
  }
}

interface Io {
  env: NodeJS.ProcessEnv
  cwd: string
}

function load(flag: string | undefined, io: Io): ConfigFile | undefined {
  const found = findConfigFile({ flag, env: io.env, cwd: io.cwd })
  return found === undefined ? undefined : loadConfigFile(found.path, COMMAND_OPTIONS, { field: found.field, cwd: io.cwd })
}

function check(flag: string | undefined, io: Io): number {
  let file: ConfigFile | undefined
  try {
    file = load(flag, io)
  } catch (err) {
    if (!(err instanceof ConfigFileError)) throw err
    for (const issue of err.issues) process.stderr.write(`weir: error: ${err.file}: ${issue.path}: ${issue.message}\n`)
    process.stderr.write(`weir config check: ${err.file}: ${err.issues.length} error${err.issues.length === 1 ? '' : 's'} [WEIR_CONFIG_INVALID]\n`)
    return 2
  }
  if (file === undefined) throw new ConfigError('--config', `no configuration file: give --config FILE, set WEIR_CONFIG, or create ./weir.config.json in ${io.cwd}`)
  const sections = CONFIG_SECTIONS.filter((s) => file.raw[s] !== undefined)
  process.stdout.write(`weir config check: ${file.shown} is valid${sections.length > 0 ? ` (sections: ${sections.join(', ')})` : ''}\n`)
  return 0
}

function print(flag: string | undefined, command: string | undefined, io: Io): number {
  if (command !== undefined && !(CONFIG_SECTIONS as readonly string[]).includes(command)) {
    const suggestion = closestName(command, CONFIG_SECTIONS)
    throw new ConfigError('--command', `'${command}' is not a command with options${suggestion === undefined ? `; one of ${CONFIG_SECTIONS.join(', ')}` : `; did you mean ${suggestion}?`}`)
  }
  const file = load(flag, io)
  const out: Record<string, unknown> = { file: file?.shown ?? null }
  for (const section of command === undefined ? CONFIG_SECTIONS : [command as (typeof CONFIG_SECTIONS)[number]]) {
    out[section] = effective(section, file, io)
  }
  process.stdout.write(`${JSON.stringify(out, null, 2)}\n`)
  return 0
}

/** One command's configuration: each option from the environment, else the file, else its default; secrets masked. */
export function effective(command: (typeof CONFIG_SECTIONS)[number], file: ConfigFile | undefined, io: Io): Record<string, unknown> {
  const defs = COMMAND_OPTIONS[command]
  // The file is the one found for all commands (as --config); its own section and shared keys apply.
  const filled: OptionValues = file === undefined ? {} : { config: file.path }
  fillOptions(command, defs, filled, io)
  const result: Record<string, unknown> = {}
  for (const option of Object.keys(defs)) {
    if (option === 'help' || option === 'config') continue
    const key = camelKey(option)
    // Variables the commands read themselves (WEIR_BUS, WEIR_PIPE, WEIR_NATS_CA …) are not filled in.
    const fromEnv = io.env[envName(option)]
    const v = filled[option] ?? (fromEnv === '' ? undefined : fromEnv)
    if (v !== undefined) result[key] = shown(option, v)
    else if (DEFAULTS[command]?.[key] !== undefined) result[key] = DEFAULTS[command]![key]
  }
  const secrets: Record<string, string> = {}
  for (const [option, variable] of SECRET_VARIABLES) {
    if (Object.hasOwn(defs, option) && io.env[variable] !== undefined && io.env[variable] !== '') secrets[variable] = '***'
  }
  if (command === 'monitor' && io.env.WEIR_MONITOR_TOKEN) secrets.WEIR_MONITOR_TOKEN = '***'
  if (command === 'peek' && io.env.WEIR_VIEWS_TOKEN) secrets.WEIR_VIEWS_TOKEN = '***'
  if (Object.keys(secrets).length > 0) result.secrets = secrets
  return result
}

/** An option's value as print shows it: numbers as numbers, params as an object, credentials in URLs masked. */
function shown(option: string, v: string | boolean | string[]): unknown {
  if (typeof v === 'boolean') return v
  if (Array.isArray(v)) {
    if (option !== 'param') return v
    return Object.fromEntries(v.map((p) => [p.slice(0, Math.max(0, p.indexOf('='))), p.slice(p.indexOf('=') + 1)]))
  }
  if ((/(^|-)port$/.test(option) || /-ms$/.test(option) || option === 'limit') && /^\d+$/.test(v)) return Number(v)
  if (/^[a-z][a-z0-9+.-]*:\/\/[^/]*@/i.test(v)) return redactBusUrl(v)
  return v
}
