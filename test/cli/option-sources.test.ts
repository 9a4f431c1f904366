/**
 * How an option's value is chosen: the command line, then WEIR_<OPTION>, then the command's
 * section of the config file, then a shared key; and a refusal names where the value came from.
 */
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import type { OptionDefs } from '../../cli/config-file.ts'
import { attributeToSource, envName, fillOptions, optionSources, type OptionValues } from '../../cli/option-sources.ts'
import { parseCommandArgs } from '../../cli/options.ts'
import { SAVEPOINT_OPTIONS } from '../../cli/savepoint.ts'
import { ConfigError } from '../../runtime/errors.ts'
import { tempDirs } from '../support/weir-cli.ts'

const tempDir = tempDirs('weir-option-sources-')

const DEFS: OptionDefs = {
  bus: { type: 'string' }, cluster: { type: 'string' }, 'epoch-ms': { type: 'string' }, 'metrics-port': { type: 'string' },
  param: { type: 'string', multiple: true }, quiet: { type: 'boolean' }, config: { type: 'string' }, help: { type: 'boolean' },
}

function withFile(doc: unknown): string {
  const dir = tempDir()
  writeFileSync(join(dir, 'weir.config.json'), JSON.stringify(doc))
  return dir
}

describe('fillOptions', () => {
  it('takes the flag, else the variable, else the section, else the shared key', () => {
    const cwd = withFile({ cluster: 'shared', bus: 'nats://file:4222', worker: { cluster: 'section', epochMs: 300, metricsPort: 9000 } })
    const values: OptionValues = { 'metrics-port': '1234' }
    const sources = fillOptions('worker', DEFS, values, { cwd, env: { WEIR_EPOCH_MS: '200' } })
    expect(values).toEqual({ 'metrics-port': '1234', 'epoch-ms': '200', cluster: 'section', bus: 'nats://file:4222' })
    expect(sources.get('metrics-port')).toEqual({ kind: 'flag' })
    expect(sources.get('epoch-ms')).toEqual({ kind: 'env', name: 'WEIR_EPOCH_MS' })
    expect(sources.get('cluster')).toEqual({ kind: 'file', file: 'weir.config.json', key: 'worker.cluster' })
    expect(sources.get('bus')).toEqual({ kind: 'file', file: 'weir.config.json', key: 'bus' })
    expect(sources.has('help')).toBe(false)
  })

  it('reads booleans and lists from variables; an empty variable is unset', () => {
    const cwd = tempDir()
    const values: OptionValues = {}
    fillOptions('run', DEFS, values, { cwd, env: { WEIR_QUIET: 'true', WEIR_PARAM: '{"a":1,"b":"x=y"}', WEIR_CLUSTER: '' } })
    expect(values).toEqual({ quiet: true, param: ['a=1', 'b=x=y'] })
    const list: OptionValues = {}
    fillOptions('run', DEFS, list, { cwd, env: { WEIR_PARAM: '["a=1","b=2"]', WEIR_QUIET: '0' } })
    expect(list).toEqual({ quiet: false, param: ['a=1', 'b=2'] })
    const one: OptionValues = {}
    fillOptions('run', DEFS, one, { cwd, env: { WEIR_PARAM: 'a=1' } })
    expect(one).toEqual({ param: ['a=1'] })
    expect(() => fillOptions('run', DEFS, {}, { cwd, env: { WEIR_QUIET: 'maybe' } })).toThrow(/^WEIR_QUIET: expected true or false/)
    expect(() => fillOptions('run', DEFS, {}, { cwd, env: { WEIR_PARAM: '[1,' } })).toThrow(/^WEIR_PARAM: a list is written as JSON/)
  })

  it('does nothing for a command without a section (weir config)', () => {
    const values: OptionValues = {}
    fillOptions('config', DEFS, values, { cwd: withFile({ bus: 'nats://x:1' }), env: { WEIR_CLUSTER: 'c' } })
    expect(values).toEqual({})
  })

  it("leaves the monitor's older --config file to the monitor", () => {
    const cwd = withFile({ slos: [], port: 1 })
    const values: OptionValues = { config: join(cwd, 'weir.config.json') }
    fillOptions('monitor', { port: { type: 'string' }, config: { type: 'string' } }, values, { cwd, env: {} })
    expect(values.port).toBeUndefined()
  })

  it('peek: an HTTP target on the command line drops a bus from the environment or the file', () => {
    const cwd = withFile({ bus: 'nats://file:4222', cluster: 'prod' })
    const defs: OptionDefs = { url: { type: 'string' }, 'data-dir': { type: 'string' }, 'token-file': { type: 'string' }, bus: { type: 'string' }, cluster: { type: 'string' } }
    const http: OptionValues = { url: 'http://127.0.0.1:1' }
    fillOptions('peek', defs, http, { cwd, env: {} })
    expect(http).toMatchObject({ url: 'http://127.0.0.1:1', bus: undefined, cluster: undefined })
    const bus: OptionValues = {}
    fillOptions('peek', defs, bus, { cwd, env: {} })
    expect(bus).toMatchObject({ bus: 'nats://file:4222', cluster: 'prod' })
  })
})

describe('attributeToSource', () => {
  it('renames a refusal of a flag to the field or variable its value came from', () => {
    const cwd = withFile({ worker: { metricsPort: 99999 } })
    // The file itself refuses the port; a value that passes the file but not the command is what the command refuses.
    const ok = withFile({ worker: { epochMs: 0 } })
    fillOptions('worker', DEFS, {}, { cwd: ok, env: { WEIR_CLUSTER: 'a.b' } })
    const fromFile = attributeToSource(new ConfigError('--epoch-ms', "expected whole milliseconds in 1..86400000, got '0'"))
    expect(fromFile.message).toBe("weir.config.json: worker.epochMs: expected whole milliseconds in 1..86400000, got '0'")
    expect(fromFile.context).toMatchObject({ field: 'worker.epochMs', file: 'weir.config.json' })
    const fromEnv = attributeToSource(new ConfigError('--cluster', 'bad'))
    expect(fromEnv.message).toBe('WEIR_CLUSTER: bad')
    // Neither a flag the command line gave nor an error of another kind is touched.
    expect(attributeToSource(new ConfigError('--bus', 'x')).message).toBe('--bus: x')
    expect(attributeToSource(new Error('--epoch-ms: x')).message).toBe('--epoch-ms: x')
    expect(() => fillOptions('worker', DEFS, {}, { cwd, env: {} })).toThrow(/^weir\.config\.json: worker\.metricsPort: expected a port number/)
  })

  it('names every option by its WEIR_ variable', () => {
    expect(envName('metrics-token-file')).toBe('WEIR_METRICS_TOKEN_FILE')
    expect(envName('nats-ca')).toBe('WEIR_NATS_CA')
  })
})

describe('parseCommandArgs', () => {
  it('adds --config to every command and fills what the command line left out', () => {
    const cwd = withFile({ status: { waitMs: 700 } })
    const { values } = parseCommandArgs('status', { args: ['--bus', 'nats://a:1'], options: { bus: { type: 'string' }, 'wait-ms': { type: 'string' } } }, { cwd, env: {} })
    expect(values).toMatchObject({ bus: 'nats://a:1', 'wait-ms': '700' })
    const other = tempDir()
    writeFileSync(join(other, 'mine.yaml'), 'status:\n  waitMs: 900\n')
    const flagged = parseCommandArgs('status', { args: ['--config', 'mine.yaml'], options: { 'wait-ms': { type: 'string' } } }, { cwd: other, env: {} })
    expect((flagged.values as OptionValues)['wait-ms']).toBe('900')
  })

  it('lets subcommands share a section: weir savepoint create and restore read `savepoint`, and only the options it holds', () => {
    const cwd = withFile({ pipe: 'kafka://k:9092', savepoint: { dataDir: '/var/tmp/sp-state', param: { lines: 10 } } })
    const create = { target: { type: 'string' }, ...SAVEPOINT_OPTIONS } as const
    const { values } = parseCommandArgs('savepoint create', { args: [], options: create }, { cwd, env: { WEIR_TARGET: '/nowhere', WEIR_PIPE_CONFIG: 'kafka.json' } }, { name: 'savepoint', options: SAVEPOINT_OPTIONS })
    // --target is one savepoint's, never the environment's or the file's.
    expect(values).toEqual({ pipe: 'kafka://k:9092', 'pipe-config': 'kafka.json', 'data-dir': '/var/tmp/sp-state', param: ['lines=10'] })
    expect(optionSources().get('data-dir')).toEqual({ kind: 'file', file: 'weir.config.json', key: 'savepoint.dataDir' })
    expect(optionSources().get('pipe')).toEqual({ kind: 'file', file: 'weir.config.json', key: 'pipe' })
    // A per-savepoint decision in the section is refused, whichever subcommand reads it.
    const decided = withFile({ savepoint: { allowDroppedState: true } })
    expect(() => parseCommandArgs('savepoint create', { args: [], options: create }, { cwd: decided, env: {} }, { name: 'savepoint', options: SAVEPOINT_OPTIONS })).toThrow(/savepoint\.allowDroppedState: unknown key/)
    // Without a section a subcommand reads nothing (weir savepoint inspect).
    const inspect = parseCommandArgs('savepoint inspect', { args: [], options: { json: { type: 'boolean' }, pipe: { type: 'string' } } }, { cwd, env: { WEIR_JSON: 'true' } })
    expect(inspect.values).toEqual({})
  })

  it('reads no file for --help, so a broken file never hides the usage', () => {
    const cwd = withFile({ status: { bogus: 1 } })
    expect(() => parseCommandArgs('status', { args: [], options: { help: { type: 'boolean' } } }, { cwd, env: {} })).toThrow(/status\.bogus/)
    expect(parseCommandArgs('status', { args: ['--help'], options: { help: { type: 'boolean' } } }, { cwd, env: {} }).values.help).toBe(true)
  })
})
