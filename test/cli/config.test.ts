/**
 * The configuration file as real `weir` processes read it: `weir config check` names every
 * bad field (exit 2), `weir config print` shows the effective configuration with secrets
 * masked, a flag beats its WEIR_* variable which beats the file, and a value from the file
 * takes effect in a real command, or is refused naming the file's field.
 */
import { existsSync, readdirSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { finalCounts, ROOT, tempDirs, weir } from '../support/weir-cli.ts'

const tempDir = tempDirs('weir-cli-config-')
const WORDCOUNT = join(ROOT, 'examples/wordcount.ts')

function write(dir: string, name: string, content: unknown): string {
  const file = join(dir, name)
  writeFileSync(file, typeof content === 'string' ? content : JSON.stringify(content, null, 2))
  return file
}

describe.concurrent('weir config check', () => {
  it('accepts a good JSON file and a good YAML file, exit 0', async () => {
    const dir = tempDir()
    const json = write(dir, 'weir.config.json', {
      pipe: 'kafka://127.0.0.1:9092', bus: 'nats://127.0.0.1:4222', cluster: 'prod', nats: { tokenFile: '/etc/weir/nats-token' },
      worker: { stateDir: '/var/lib/weir', metricsPort: 9464, metricsHost: '0.0.0.0', metricsTokenFile: '/etc/weir/metrics-token', param: { lines: 1000 } },
      coordinator: { epochMs: 500, leaseTtlMs: 3000 },
      monitor: { port: 9465, slo: [{ pipeline: 'wordcount', output: 'count', timelinessMs: 2000 }, 'wordcount/sink=5s'] },
    })
    const yaml = write(dir, 'weir.config.yaml', 'bus: nats://127.0.0.1:4222\nworker:\n  heartbeatMs: 500\n  param:\n    - lines=10\n')
    const [a, b] = await Promise.all([weir(['config', 'check', '--config', json]), weir(['config', 'check', '--config', yaml])])
    expect(a.code, a.stderr).toBe(0)
    expect(a.stdout).toMatch(/weir\.config\.json is valid \(sections: worker, coordinator, monitor\)/)
    expect(b.code, b.stderr).toBe(0)
    expect(b.stdout).toMatch(/weir\.config\.yaml is valid/)
  })

  it('prints every problem of a bad file, each naming its field, exit 2', async () => {
    const dir = tempDir()
    const file = write(dir, 'bad.json', {
      bus: 'nats://admin:hunter2@127.0.0.1:4222',
      worker: { metricPort: 9464, metricsPort: 70000, metricsToken: 'abc123', quiet: true },
      coordinator: { epochMs: 'soon', heartbeatMs: 5 },
      run: { quiet: 'yes' },
      nats: { password: 'pw' },
      wroker: {},
    })
    const r = await weir(['config', 'check', '--config', file])
    expect(r.code).toBe(2)
    expect(r.stdout).toBe('')
    const expected = [
      /bad\.json: bus: credentials in the bus URL are secrets/,
      /bad\.json: worker\.metricPort: unknown key 'metricPort'; did you mean 'metricsPort'\?/,
      /bad\.json: worker\.metricsPort: expected a port number in 0\.\.65535, got '70000'/,
      /bad\.json: worker\.metricsToken: secrets are not read from the config file .* metricsTokenFile .* WEIR_METRICS_TOKEN/,
      /bad\.json: worker\.quiet: unknown key 'quiet'/,
      /bad\.json: coordinator\.epochMs: expected a whole number of milliseconds, got 'soon'/,
      /bad\.json: coordinator\.heartbeatMs: unknown key/,
      /bad\.json: run\.quiet: expected true or false/,
      /bad\.json: nats\.password: secrets are not read .* nats\.passwordFile .* WEIR_NATS_PASSWORD/,
      /bad\.json: wroker: unknown key 'wroker'; did you mean 'worker'\?/,
    ]
    for (const e of expected) expect(r.stderr).toMatch(e)
    expect(r.stderr).toMatch(/10 errors \[WEIR_CONFIG_INVALID\]/)
    // The refused secrets are not echoed.
    expect(r.stderr).not.toMatch(/hunter2|abc123/)
  })

  it('refuses a file that is not JSON, or no file at all, naming --config', async () => {
    const dir = tempDir()
    const broken = write(dir, 'broken.json', '{ "bus": ')
    const [a, b] = await Promise.all([weir(['config', 'check', '--config', broken]), weir(['config', 'check'], { cwd: dir })])
    expect(a.code).toBe(2)
    expect(a.stderr).toMatch(/--config: .*broken\.json is not JSON/)
    expect(b.code).toBe(2)
    expect(b.stderr).toMatch(/--config: no configuration file/)
  })
})

describe.concurrent('weir config print', () => {
  it('shows the file, the environment and the defaults, with secrets masked', async () => {
    const dir = tempDir()
    write(dir, 'weir.config.json', { bus: 'nats://127.0.0.1:4222', worker: { metricsPort: 9464, metricsTokenFile: '/etc/weir/metrics-token', param: { lines: 5 } } })
    const r = await weir(['config', 'print', '--command', 'worker'], {
      cwd: dir,
      env: { WEIR_METRICS_TOKEN: 'top-secret-token', WEIR_NATS_PASSWORD: 'nats-pw', WEIR_NATS_USER: 'weir', WEIR_HEARTBEAT_MS: '250', WEIR_PIPE: 'kafka://127.0.0.1:9092' },
    })
    expect(r.code, r.stderr).toBe(0)
    const printed = JSON.parse(r.stdout) as { file: string; worker: Record<string, unknown> }
    expect(printed.file).toBe('weir.config.json')
    expect(printed.worker).toMatchObject({
      bus: 'nats://127.0.0.1:4222', pipe: 'kafka://127.0.0.1:9092', metricsPort: 9464, metricsTokenFile: '/etc/weir/metrics-token',
      heartbeatMs: 250, epochMs: 500, cluster: 'default', natsUser: 'weir', param: { lines: '5' },
      secrets: { WEIR_METRICS_TOKEN: '***', WEIR_NATS_PASSWORD: '***' },
    })
    expect(r.stdout).not.toMatch(/top-secret-token|nats-pw/)
  })

  it('masks credentials in a bus URL from the environment, and prints every command without --command', async () => {
    const dir = tempDir()
    const r = await weir(['config', 'print'], { cwd: dir, env: { WEIR_BUS: 'nats://admin:hunter2@127.0.0.1:4222' } })
    expect(r.code, r.stderr).toBe(0)
    const printed = JSON.parse(r.stdout) as Record<string, Record<string, unknown> | null>
    expect(printed.file).toBeNull()
    expect(Object.keys(printed)).toEqual(['file', 'run', 'worker', 'coordinator', 'monitor', 'status', 'jobs', 'peek', 'tail', 'actor', 'savepoint'])
    expect(printed.coordinator!.bus).toBe('nats://***@127.0.0.1:4222')
    expect(r.stdout).not.toContain('hunter2')
  })

  it('refuses an unknown --command naming the closest', async () => {
    const r = await weir(['config', 'print', '--command', 'wroker'])
    expect(r.code).toBe(2)
    expect(r.stderr).toMatch(/--command: 'wroker' is not a command with options; did you mean worker\?/)
  })
})

describe('a command reads the configuration', () => {
  it('a flag beats WEIR_<OPTION>, which beats the file: weir run uses the data dir each one names', async () => {
    const dir = tempDir()
    const out = join(dir, 'out')
    write(dir, 'weir.config.json', { run: { dataDir: join(dir, 'from-file'), quiet: true, epochMs: 100, param: { lines: 200, out: join(out, 'counts-{partition}.jsonl') } } })
    const [fromFile, fromEnv, fromFlag] = await Promise.all([
      weir(['run', WORDCOUNT], { cwd: dir }),
      // A repeatable option's variable is a JSON list (or, for params, an object).
      weir(['run', WORDCOUNT], { cwd: dir, env: { WEIR_DATA_DIR: join(dir, 'from-env'), WEIR_PARAM: JSON.stringify({ lines: 50, out: join(dir, 'out-env', 'c-{partition}.jsonl') }) } }),
      weir(['run', WORDCOUNT, '--data-dir', join(dir, 'from-flag'), '--param', 'lines=50', '--param', `out=${join(dir, 'out-flag', 'c-{partition}.jsonl')}`], { cwd: dir, env: { WEIR_DATA_DIR: join(dir, 'from-env-2') } }),
    ])
    expect(fromFile.code, fromFile.stderr).toBe(0)
    expect(fromFile.stdout).toContain(`data dir:   ${join(dir, 'from-file')}`)
    // The file's params reached the pipeline: its lines were counted into the file's out path.
    expect(Object.keys(finalCounts(out)).length).toBeGreaterThan(5)
    expect(fromEnv.code, fromEnv.stderr).toBe(0)
    expect(fromEnv.stdout).toContain(`data dir:   ${join(dir, 'from-env')}`)
    expect(readdirSync(join(dir, 'out-env')).length).toBeGreaterThan(0)
    expect(fromFlag.code, fromFlag.stderr).toBe(0)
    expect(fromFlag.stdout).toContain(`data dir:   ${join(dir, 'from-flag')}`)
    expect(readdirSync(join(dir, 'out-flag')).length).toBeGreaterThan(0)
    expect(existsSync(join(dir, 'from-env-2'))).toBe(false)
  }, 60_000)

  it('weir savepoint create and restore take the data dir, pipe and params from the savepoint section (or WEIR_*), --target only from the command line', async () => {
    const dir = tempDir()
    const out = join(dir, 'out')
    const param = { lines: 200, out: join(out, 'counts-{partition}.jsonl') }
    write(dir, 'weir.config.json', { pipe: 'embedded', run: { dataDir: join(dir, 'a'), quiet: true, epochMs: 100, param }, savepoint: { dataDir: join(dir, 'a'), param } })
    const ran = await weir(['run', WORDCOUNT], { cwd: dir })
    expect(ran.code, ran.stderr).toBe(0)
    const created = await weir(['savepoint', 'create', WORDCOUNT, '--target', join(dir, 'sp')], { cwd: dir })
    expect(created.code, created.stderr).toBe(0)
    expect(created.stdout).toContain(`of pipeline wordcount written to ${join(dir, 'sp')}`)
    const printed = JSON.parse((await weir(['config', 'print', '--command', 'savepoint'], { cwd: dir, env: { WEIR_DATA_DIR: join(dir, 'b') } })).stdout) as { savepoint: Record<string, unknown> }
    expect(printed.savepoint).toEqual({ pipe: 'embedded', dataDir: join(dir, 'b'), param: { lines: '200', out: param.out } })
    // WEIR_DATA_DIR beats the file: the restore goes to a new data dir, where a run then resumes.
    const restored = await weir(['savepoint', 'restore', join(dir, 'sp'), WORDCOUNT], { cwd: dir, env: { WEIR_DATA_DIR: join(dir, 'b') } })
    expect(restored.code, restored.stderr).toBe(0)
    expect(restored.stdout).toMatch(/restored for pipeline wordcount/)
    expect(existsSync(join(dir, 'b', 'pipe.json'))).toBe(true)
    // A decision for one savepoint is not configuration.
    write(dir, 'weir.config.json', { savepoint: { target: join(dir, 'sp2') } })
    const refused = await weir(['savepoint', 'create', WORDCOUNT, '--target', join(dir, 'sp2')], { cwd: dir })
    expect(refused.code).toBe(2)
    expect(refused.stderr).toMatch(/weir\.config\.json: savepoint\.target: unknown key 'target'/)
  }, 60_000)

  it('weir worker refuses a bad value from the file naming the field, from the environment naming the variable, before connecting', async () => {
    const dir = tempDir()
    const file = write(dir, 'cluster.json', { pipe: 'kafka://127.0.0.1:9092', bus: 'nats://127.0.0.1:4222', worker: { heartbeatMs: 10 } })
    const yaml = write(dir, 'cluster.yaml', 'pipe: kafka://127.0.0.1:9092\nbus: nats://127.0.0.1:4222\nworker:\n  metricsPort: 9464\n  metricsHost: 0.0.0.0\n')
    const [a, b, c, d] = await Promise.all([
      weir(['worker', WORDCOUNT, '--config', file]),
      weir(['worker', WORDCOUNT], { env: { WEIR_CONFIG: file, WEIR_HEARTBEAT_MS: '20' } }),
      weir(['worker', WORDCOUNT, '--config', file, '--heartbeat-ms', '30']),
      weir(['worker', WORDCOUNT, '--config', yaml]),
    ])
    expect(a.code).toBe(2)
    expect(a.stderr).toMatch(/weir: error: \S*cluster\.json: worker\.heartbeatMs: expected whole milliseconds in 50\.\.86400000, got '10' \[WEIR_CONFIG_INVALID\]/)
    expect(b.code).toBe(2)
    expect(b.stderr).toMatch(/weir: error: WEIR_HEARTBEAT_MS: expected whole milliseconds in 50\.\.86400000, got '20'/)
    expect(c.code).toBe(2)
    expect(c.stderr).toMatch(/weir: error: --heartbeat-ms: expected whole milliseconds in 50\.\.86400000, got '30'/)
    expect(d.code).toBe(2)
    expect(d.stderr).toMatch(/weir: error: \S*cluster\.yaml: worker\.metricsHost: '0\.0\.0\.0' is reachable from other machines/)
  })

  it('a broken file stops every command at start, listing its problems', async () => {
    const dir = tempDir()
    write(dir, 'weir.config.json', { coordinator: { epochMs: 'x' }, status: { wiatMs: 10 } })
    const r = await weir(['status'], { cwd: dir })
    expect(r.code).toBe(2)
    expect(r.stderr).toMatch(/weir\.config\.json: status\.wiatMs: unknown key 'wiatMs'; did you mean 'waitMs'\?/)
    // --help still works, so the operator can read what the keys are.
    const help = await weir(['status', '--help'], { cwd: dir })
    expect(help.code).toBe(0)
  })
})
