/**
 * The configuration file's loader: where it is found, how JSON and YAML are read, and that
 * every problem (unknown key, inline secret, wrong type, bad port) is reported naming its field.
 */
import { mkdirSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { camelKey, checkConfig, ConfigFileError, findConfigFile, isLegacyMonitorConfig, kebabKey, loadConfigFile, type OptionDefs } from '../../cli/config-file.ts'
import { NATS_OPTIONS } from '../../cli/nats-options.ts'
import { ConfigError } from '../../runtime/errors.ts'
import { tempDirs } from '../support/weir-cli.ts'

const tempDir = tempDirs('weir-config-file-')

const WORKER: OptionDefs = {
  pipe: { type: 'string' }, bus: { type: 'string' }, cluster: { type: 'string' }, param: { type: 'string', multiple: true },
  'metrics-port': { type: 'string' }, 'metrics-token-file': { type: 'string' }, 'epoch-ms': { type: 'string' }, quiet: { type: 'boolean' },
  ...NATS_OPTIONS, help: { type: 'boolean', short: 'h' },
}
const MONITOR: OptionDefs = { port: { type: 'string' }, slo: { type: 'string', multiple: true }, 'token-file': { type: 'string' }, config: { type: 'string' } }

describe('findConfigFile', () => {
  it('takes --config, else WEIR_CONFIG, else weir.config.{json,yaml,yml} in the working directory', () => {
    const dir = tempDir()
    expect(findConfigFile({ flag: 'a.json', env: { WEIR_CONFIG: 'b.json' }, cwd: dir })).toEqual({ path: join(dir, 'a.json'), field: '--config' })
    expect(findConfigFile({ flag: undefined, env: { WEIR_CONFIG: 'b.json' }, cwd: dir })).toEqual({ path: join(dir, 'b.json'), field: 'WEIR_CONFIG' })
    expect(findConfigFile({ flag: undefined, env: { WEIR_CONFIG: '' }, cwd: dir })).toBeUndefined()
    writeFileSync(join(dir, 'weir.config.yml'), 'bus: nats://127.0.0.1:4222\n')
    expect(findConfigFile({ flag: undefined, env: {}, cwd: dir })).toEqual({ path: join(dir, 'weir.config.yml'), field: 'weir.config.yml' })
  })

  it('refuses two default files side by side rather than picking one', () => {
    const dir = tempDir()
    writeFileSync(join(dir, 'weir.config.json'), '{}')
    writeFileSync(join(dir, 'weir.config.yaml'), '{}')
    expect(() => findConfigFile({ flag: undefined, env: {}, cwd: dir })).toThrow(/both weir\.config\.json and weir\.config\.yaml/)
  })
})

describe('loadConfigFile', () => {
  it('reads JSON and YAML alike, and looks an option up in its section, then the shared keys', () => {
    const dir = tempDir()
    const doc = { bus: 'nats://n:4222', cluster: 'prod', nats: { ca: 'ca.pem' }, worker: { metricsPort: 9464, cluster: 'blue', param: { a: 1, b: 'x' }, quiet: true } }
    writeFileSync(join(dir, 'c.json'), JSON.stringify(doc))
    writeFileSync(join(dir, 'c.yaml'), 'bus: nats://n:4222\ncluster: prod\nnats:\n  ca: ca.pem\nworker:\n  metricsPort: 9464\n  cluster: blue\n  param: { a: 1, b: x }\n  quiet: true\n')
    for (const name of ['c.json', 'c.yaml']) {
      const file = loadConfigFile(join(dir, name), { worker: WORKER }, { cwd: dir })
      expect(file.shown).toBe(name)
      expect(file.lookup('worker', 'metrics-port')).toEqual({ value: '9464', key: 'worker.metricsPort' })
      expect(file.lookup('worker', 'cluster')).toEqual({ value: 'blue', key: 'worker.cluster' })
      expect(file.lookup('worker', 'bus')).toEqual({ value: 'nats://n:4222', key: 'bus' })
      expect(file.lookup('worker', 'nats-ca')).toEqual({ value: 'ca.pem', key: 'nats.ca' })
      expect(file.lookup('worker', 'param')).toEqual({ value: ['a=1', 'b=x'], key: 'worker.param' })
      expect(file.lookup('worker', 'quiet')).toEqual({ value: true, key: 'worker.quiet' })
      expect(file.lookup('worker', 'epoch-ms')).toBeUndefined()
      expect(file.lookup('worker', 'help')).toBeUndefined()
    }
  })

  it('writes an SLO object as the --slo flag would', () => {
    const dir = tempDir()
    writeFileSync(join(dir, 'c.json'), JSON.stringify({ monitor: { slo: [{ cluster: 'prod', pipeline: 'p', output: 'sink', timelinessMs: 1500 }, 'p/out=2s'] } }))
    expect(loadConfigFile(join(dir, 'c.json'), { monitor: MONITOR }).lookup('monitor', 'slo')?.value).toEqual(['prod/p/sink=1500ms', 'p/out=2s'])
  })

  it('refuses an unreadable or malformed file naming the option or variable that named it', () => {
    const dir = tempDir()
    mkdirSync(join(dir, 'sub'))
    writeFileSync(join(dir, 'bad.yaml'), 'worker: [unclosed\n')
    expect(() => loadConfigFile(join(dir, 'missing.json'), {}, { field: 'WEIR_CONFIG' })).toThrow(/^WEIR_CONFIG: cannot read/)
    expect(() => loadConfigFile(join(dir, 'bad.yaml'), {})).toThrow(/^--config: .*bad\.yaml is not YAML/)
  })

  it('throws one ConfigFileError listing every problem, the first as its field', () => {
    const dir = tempDir()
    writeFileSync(join(dir, 'c.json'), JSON.stringify({ worker: { metricsPort: 'x', epochMs: -1 } }))
    let thrown: unknown
    try {
      loadConfigFile(join(dir, 'c.json'), { worker: WORKER }, { cwd: dir })
    } catch (err) {
      thrown = err
    }
    expect(thrown).toBeInstanceOf(ConfigFileError)
    expect(thrown).toBeInstanceOf(ConfigError)
    const err = thrown as ConfigFileError
    expect(err.context.field).toBe('worker.metricsPort')
    expect(err.issues.map((i) => i.path)).toEqual(['worker.metricsPort', 'worker.epochMs'])
    expect(err.message).toMatch(/^c\.json: worker\.metricsPort: expected a port number[^\n]*\n {2}c\.json: worker\.epochMs: /)
  })
})

describe('checkConfig', () => {
  const check = (doc: unknown): Array<[string, string]> => checkConfig(doc, { worker: WORKER, monitor: MONITOR }).map((i) => [i.path, i.message])

  it('accepts an empty file and a full one', () => {
    expect(check(null)).toEqual([])
    expect(check({})).toEqual([])
    expect(check({ pipe: 'kafka://k:9092', pipeConfig: 'kafka.json', param: ['a=1'], worker: { natsTokenFile: 't', nats: { user: 'u', passwordFile: 'p' } }, monitor: { tokenFile: 't' } })).toEqual([])
  })

  it('names the closest valid key of an unknown one, at every level', () => {
    expect(check({ wroker: {} })).toEqual([['wroker', "unknown key 'wroker'; did you mean 'worker'?"]])
    expect(check({ worker: { metricPort: 1 } })).toEqual([['worker.metricPort', "unknown key 'metricPort'; did you mean 'metricsPort'?"]])
    expect(check({ nats: { caFile: 'x' } })[0]![1]).toMatch(/unknown key 'caFile'/)
    // kebab-case is the flag's spelling, not the file's.
    expect(check({ worker: { 'metrics-port': 1 } })[0]![0]).toBe('worker.metrics-port')
  })

  it('says where an option that is not shared belongs', () => {
    expect(check({ metricsPort: 9464 })).toEqual([['metricsPort', "'metricsPort' is not a shared key: put it in a command's section (worker.metricsPort)"]])
  })

  it('refuses secrets written inline, saying where they come from instead', () => {
    const found = check({ worker: { metricsToken: 's' }, monitor: { token: 's' }, nats: { token: 's' }, password: 'p', worker2: undefined })
    expect(found).toContainEqual(['worker.metricsToken', expect.stringMatching(/not read from the config file.*metricsTokenFile \(a file holding it\) or WEIR_METRICS_TOKEN/)])
    expect(found).toContainEqual(['monitor.token', expect.stringMatching(/tokenFile \(a file holding it\) or WEIR_MONITOR_TOKEN/)])
    expect(found).toContainEqual(['nats.token', expect.stringMatching(/nats\.tokenFile \(a file holding it\) or WEIR_NATS_TOKEN/)])
    expect(found).toContainEqual(['password', expect.stringMatching(/WEIR_KAFKA_PASSWORD/)])
    expect(check({ worker: { apiSecret: 'x' } })[0]![1]).toMatch(/secrets are not read/)
  })

  it('refuses credentials inside a URL', () => {
    expect(check({ bus: 'nats://tok@n:4222' })[0]).toEqual(['bus', expect.stringMatching(/credentials in the bus URL/)])
    expect(check({ pipe: 'kafka://u:p@k:9092' })[0]).toEqual(['pipe', expect.stringMatching(/a password in the URL/)])
  })

  it('checks types and what a name promises: ports, milliseconds, booleans, lists', () => {
    expect(check({ worker: { metricsPort: 65536 } })).toEqual([['worker.metricsPort', "expected a port number in 0..65535, got '65536'"]])
    expect(check({ worker: { metricsPort: '9464', epochMs: 100 } })).toEqual([])
    expect(check({ worker: { epochMs: 1.5 } })).toEqual([['worker.epochMs', "expected a whole number of milliseconds, got '1.5'"]])
    expect(check({ worker: { quiet: 'yes' } })).toEqual([['worker.quiet', 'expected true or false']])
    expect(check({ worker: { bus: { url: 'x' } } })).toEqual([['worker.bus', 'expected a string or a number']])
    expect(check({ worker: { param: { a: [1] } } })[0]![0]).toMatch(/^worker\.param/)
    expect(check({ monitor: { slo: [{ output: 'x' }] } })[0]![0]).toMatch(/^monitor\.slo\.0/)
    expect(check([1, 2])).toEqual([['(file)', expect.stringMatching(/expected an object/)]])
    expect(check({ worker: 3 })).toEqual([['worker', "expected an object of the command's options"]])
  })
})

describe('key spelling', () => {
  it('camelCases a long option and back', () => {
    expect(camelKey('metrics-token-file')).toBe('metricsTokenFile')
    expect(kebabKey('metricsTokenFile')).toBe('metrics-token-file')
    expect(kebabKey(camelKey('dead-letter'))).toBe('dead-letter')
  })
})

describe('isLegacyMonitorConfig', () => {
  it("recognises the monitor's older file and nothing else", () => {
    expect(isLegacyMonitorConfig({ slos: [] })).toBe(true)
    expect(isLegacyMonitorConfig({ port: 9464, host: '127.0.0.1' })).toBe(true)
    expect(isLegacyMonitorConfig({ cluster: 'prod' })).toBe(false)
    expect(isLegacyMonitorConfig({ monitor: { port: 1 } })).toBe(false)
  })
})
