/**
 * `weir run` end to end: every test spawns `node bin/weir.js` as a real child process with
 * a temp data dir, and reads its exit code, stdout (the summary) and stderr.
 */
import { spawn, spawnSync } from 'node:child_process'
import { existsSync, mkdirSync, readFileSync, readdirSync, statSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { BIN, ROOT, cleanEnv, startWeir, tempDirs, weir } from '../support/weir-cli.ts'
import { readTopic } from '../../testing/index.ts'

const fixture = (name: string): string => join(ROOT, 'test/cli/fixtures', name)
const tempDir = tempDirs('weir-cli-')

interface StageRow {
  kind: string
  actors: number
  in: number
  out: number
  deadLettered: number
  errors: number
}

interface Summary {
  pipeline: string
  outcome: string
  lastEpoch: number
  dataDir: string
  stages: Record<string, StageRow>
  deadLetters: string[]
  output: string[]
}

/** Reads the summary `weir run` prints on stdout. */
function parseSummary(stdout: string): Summary {
  const lines = stdout.split('\n')
  const field = (name: string): string => {
    const line = lines.find((l) => l.startsWith(`${name}:`))
    if (line === undefined) throw new Error(`summary has no '${name}:' line:\n${stdout}`)
    return line.slice(name.length + 1).trim()
  }
  const section = (heading: string): string[] => {
    const at = lines.findIndex((l) => l.startsWith(heading))
    if (at < 0) return []
    const out: string[] = []
    for (const l of lines.slice(at + 1)) {
      if (!l.startsWith('  ')) break
      out.push(l.trim())
    }
    return out
  }
  const stages: Record<string, StageRow> = {}
  for (const row of section('stages:').slice(1)) {
    const [name, kind, actors, rin, rout, dead, errors] = row.split(/\s+/)
    stages[name!] = { kind: kind!, actors: Number(actors), in: Number(rin), out: Number(rout), deadLettered: Number(dead), errors: Number(errors) }
  }
  return {
    pipeline: field('pipeline'),
    outcome: field('outcome').split(' ')[0]!,
    lastEpoch: Number(field('last epoch')),
    dataDir: field('data dir'),
    stages,
    deadLetters: lines.filter((l) => l.startsWith('dead letters:')).concat(section('dead letters:')),
    output: section('output:'),
  }
}

/** Every file under `dir` with its size and modification time: "untouched" means equal snapshots. */
function snapshot(dir: string): Record<string, string> {
  const out: Record<string, string> = {}
  const walk = (d: string): void => {
    for (const e of readdirSync(d, { withFileTypes: true })) {
      const p = join(d, e.name)
      if (e.isDirectory()) walk(p)
      else {
        const s = statSync(p)
        out[p.slice(dir.length)] = `${s.size}:${s.mtimeMs}`
      }
    }
  }
  walk(dir)
  return out
}

async function waitFor<T>(what: string, probe: () => T | undefined, timeoutMs = 15_000): Promise<T> {
  const until = Date.now() + timeoutMs
  for (;;) {
    const v = probe()
    if (v !== undefined) return v
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`)
    await new Promise((r) => setTimeout(r, 50))
  }
}

const traceLines = (file: string): string[] => (existsSync(file) ? readFileSync(file, 'utf8').trim().split('\n').filter(Boolean) : [])

describe('weir command', () => {
  it('prints usage for --help, help, help run and run --help, exit 0', async () => {
    const [a, b, c, d] = await Promise.all([weir(['--help']), weir(['help']), weir(['help', 'run']), weir(['run', '--help'])])
    for (const r of [a, b]) {
      expect(r.code).toBe(0)
      expect(r.stdout).toContain('Usage: weir <command>')
      expect(r.stdout).toContain('run <pipeline.ts>')
    }
    expect(c.code).toBe(0)
    expect(c.stdout).toContain('--data-dir DIR')
    expect(c.stdout).toContain('--param key=value')
    expect(d.code).toBe(0)
    expect(d.stdout).toBe(c.stdout)
  })

  it('refuses an unknown subcommand with a message and the usage, exit 2', async () => {
    const r = await weir(['frobnicate'])
    expect(r.code).toBe(2)
    expect(r.stderr).toContain("weir: error: unknown command 'frobnicate'")
    expect(r.stderr).toContain('Usage: weir <command>')
  })
})

describe('weir run: a bounded pipeline', () => {
  const dir = tempDir()
  const dataDir = join(dir, 'data')
  const args = ['run', fixture('counting.ts'), '--data-dir', dataDir, '--epoch-ms', '100', '--param', 'n=100', '--param', 'partitions=2', '--param', 'countPartitions=3']

  it('runs to completion and prints a summary with the record counts of each stage; nothing on stderr off a terminal', async () => {
    const r = await weir(args)
    expect(r.stderr).toBe('')
    expect(r.code).toBe(0)
    const s = parseSummary(r.stdout)
    expect(s.pipeline).toBe('counting')
    expect(s.outcome).toBe('finished')
    expect(s.dataDir).toBe(dataDir)
    expect(s.lastEpoch).toBeGreaterThanOrEqual(1)
    // The function export received n=100, partitions=2, countPartitions=3.
    expect(s.stages.numbers).toEqual({ kind: 'source', actors: 2, in: 0, out: 200, deadLettered: 0, errors: 0 })
    expect(s.stages.count).toEqual({ kind: 'processor', actors: 3, in: 200, out: 200, deadLettered: 0, errors: 0 })
    expect(s.deadLetters).toEqual([])
    expect(s.output).toEqual(['running counts per key: topic weir.counting.count'])
    expect(r.stdout).toMatch(/^elapsed: +\d+(\.\d)?s$/m)
  })

  it('a second run on the same data dir resumes: the source is finished and nothing is processed twice', async () => {
    const r = await weir(args)
    expect(r.code).toBe(0)
    const s = parseSummary(r.stdout)
    expect(s.outcome).toBe('finished')
    expect(s.stages.numbers!.out).toBe(0)
    expect(s.stages.count!.in).toBe(0)
    expect(s.stages.count!.out).toBe(0)
    expect(existsSync(join(dataDir, 'topology.json'))).toBe(true)
  })

  it('refuses a changed partition count against the data dir, naming the stage and field, and leaves the data dir untouched', async () => {
    const before = snapshot(dataDir)
    const sourcePartitions = await weir(args.map((a) => (a === 'partitions=2' ? 'partitions=4' : a)))
    expect(sourcePartitions.code).toBe(2)
    expect(sourcePartitions.stdout).toBe('')
    expect(sourcePartitions.stderr).toContain('weir: error: the topology of pipeline')
    expect(sourcePartitions.stderr).toContain("stage 'numbers' changed parallelism from 2 to 4")
    expect(sourcePartitions.stderr).toContain('weir savepoint create')
    expect(sourcePartitions.stderr).toContain('[WEIR_TOPOLOGY_CHANGED]')
    expect(sourcePartitions.stderr).toContain('field: stages.numbers.parallelism')

    const keyedPartitions = await weir(args.map((a) => (a === 'countPartitions=3' ? 'countPartitions=5' : a)))
    expect(keyedPartitions.code).toBe(2)
    expect(keyedPartitions.stderr).toContain("stage 'numbers' changed outputPartitions from 3 to 5")
    expect(keyedPartitions.stderr).toContain('stage: numbers')
    expect(keyedPartitions.stderr).toContain('field: stages.numbers.outputPartitions')
    expect(snapshot(dataDir)).toEqual(before)
  })
})

describe('weir run: loading the pipeline file', () => {
  it('gives each pipeline its own default data dir, so two pipelines run one after the other in one directory', async () => {
    const cwd = tempDir()
    expect((await weir(['run', fixture('static.ts')], { cwd })).code).toBe(0)
    const second = await weir(['run', fixture('named-export.ts')], { cwd })
    expect(second.stderr).toBe('')
    expect(second.code).toBe(0)
    expect(parseSummary(second.stdout).dataDir).toBe(join(cwd, '.weir', 'named'))
  })

  it('uses ./.weir/<pipeline> under the working directory by default, with a Pipeline instance as the default export, and prints its describeOutput notes', async () => {
    const cwd = tempDir()
    const r = await weir(['run', fixture('static.ts')], { cwd })
    expect(r.code).toBe(0)
    const s = parseSummary(r.stdout)
    expect(s.dataDir).toBe(join(cwd, '.weir', 'static'))
    expect(existsSync(join(cwd, '.weir', 'static', 'topology.json'))).toBe(true)
    expect(s.stages.fifty!.out).toBe(50)
    expect(s.stages.count!.in).toBe(50)
    expect(s.output).toEqual(['counts: topic weir.static.count (a note from describeOutput)'])
  })

  it("accepts an export named 'pipeline'; without describeOutput notes the summary names the output topics", async () => {
    const r = await weir(['run', fixture('named-export.ts'), '--data-dir', join(tempDir(), 'd'), '--quiet'])
    expect(r.code).toBe(0)
    const s = parseSummary(r.stdout)
    expect(s.pipeline).toBe('named')
    expect(s.stages.three!.out).toBe(3)
    expect(s.output).toEqual(['three: topic weir.named.three'])
  })
})

describe.concurrent('weir run: refusals exit 2 and never create the data dir', () => {
  const cases: Array<{ name: string; args: (dataDir: string) => string[]; env?: Record<string, string>; expect: RegExp[] }> = [
    { name: 'a missing pipeline file', args: (d) => ['run', 'test/cli/fixtures/does-not-exist.ts', '--data-dir', d], expect: [/weir: error: pipeline: file not found: .*does-not-exist\.ts/] },
    { name: 'a file that fails to import (its error is shown)', args: (d) => ['run', fixture('broken.ts'), '--data-dir', d], expect: [/cannot load pipeline file .*broken\.ts: fixture broken\.ts blew up at import time/, /\[WEIR_PIPELINE_LOAD_FAILED\]/, /broken\.ts:\d+/] },
    { name: 'a file that exports no pipeline', args: (d) => ['run', fixture('no-export.ts'), '--data-dir', d], expect: [/exports no pipeline/, /it exports only 'answer', 'helper'/] },
    { name: 'a pipeline function that throws', args: (d) => ['run', fixture('counting.ts'), '--data-dir', d, '--param', 'n=lots'], expect: [/pipeline function .* threw: param n must be a non-negative integer, got 'lots'/] },
    { name: '--param given to a Pipeline instance export', args: (d) => ['run', fixture('static.ts'), '--data-dir', d, '--param', 'n=1'], expect: [/--param: .* is a Pipeline, not a function taking params/] },
    { name: '--epoch-ms abc', args: (d) => ['run', fixture('static.ts'), '--data-dir', d, '--epoch-ms', 'abc'], expect: [/weir: error: --epoch-ms: .*got 'abc' \[WEIR_CONFIG_INVALID\]/] },
    { name: '--epoch-ms 0', args: (d) => ['run', fixture('static.ts'), '--data-dir', d, '--epoch-ms', '0'], expect: [/weir: error: --epoch-ms: .*got '0'/] },
    { name: '--param without =', args: (d) => ['run', fixture('counting.ts'), '--data-dir', d, '--param', 'n'], expect: [/weir: error: --param: expected key=value, got 'n'/] },
    { name: 'an unknown option', args: (d) => ['run', fixture('static.ts'), '--data-dir', d, '--bogus'], expect: [/weir: error: unknown option --bogus; weir run takes --data-dir, --epoch-ms, /, /weir run --help/] },
    { name: 'an option without its value', args: (d) => ['run', fixture('static.ts'), '--data-dir', d, '--epoch-ms'], expect: [/Option '--epoch-ms <value>' argument missing/] },
    { name: 'no pipeline file', args: (d) => ['run', '--data-dir', d], expect: [/weir: error: run: missing the pipeline file/] },
    { name: 'a malformed WEIR_CRASH_AT', args: (d) => ['run', fixture('static.ts'), '--data-dir', d], env: { WEIR_CRASH_AT: 'sometime' }, expect: [/WEIR_CRASH_AT: expected <point>:<hit>/] },
  ]
  for (const c of cases) {
    it(`refuses ${c.name}`, async () => {
      const dataDir = join(tempDir(), 'data')
      const r = await weir(c.args(dataDir), { env: c.env })
      expect(r.code).toBe(2)
      expect(r.stdout).toBe('')
      for (const re of c.expect) expect(r.stderr).toMatch(re)
      expect(existsSync(dataDir)).toBe(false)
    })
  }

  it('refuses a --data-dir that is a file, leaving the file as it was', async () => {
    const file = join(tempDir(), 'not-a-dir')
    writeFileSync(file, 'keep me')
    const r = await weir(['run', fixture('static.ts'), '--data-dir', file])
    expect(r.code).toBe(2)
    expect(r.stderr).toContain(`--data-dir: ${file} exists and is not a directory`)
    expect(readFileSync(file, 'utf8')).toBe('keep me')
  })
})

describe('weir run: failures', () => {
  it('reports dead-lettered records with their count and dead-letter topic, and still exits 0', async () => {
    const r = await weir(['run', fixture('counting.ts'), '--data-dir', join(tempDir(), 'd'), '--param', 'n=100', '--param', 'failEvery=10'])
    expect(r.code).toBe(0)
    const s = parseSummary(r.stdout)
    expect(s.stages.count).toMatchObject({ in: 100, out: 90, deadLettered: 10, errors: 10 })
    expect(s.deadLetters).toEqual(['dead letters: 10 records dead-lettered', 'count: 10 in topic weir.counting.count.dlq'])
  })

  it('a failed run prints the error with its code and stage/actor/topic/partition/offset, and exits 1', async () => {
    const dataDir = join(tempDir(), 'd')
    const r = await weir(['run', fixture('failing.ts'), '--data-dir', dataDir])
    expect(r.code).toBe(1)
    expect(parseSummary(r.stdout).outcome).toBe('failed')
    expect(r.stderr).toContain('weir: error: actor picky/0 stopped: picky failed on a record: picky cannot stand 7 [WEIR_ACTOR_FAILED]')
    // Value 7's offset (the source's watermark marks sit between its records, so it is not 7).
    // picky is chained to its source: the record was never in a topic, so no offset; the stage it came from instead.
    for (const line of ['stage: picky', 'actor: picky/0', 'topic: weir.failing.ten', 'partition: 0', 'chainedTo: ten']) expect(r.stderr).toContain(`  ${line}\n`)
    expect(r.stderr).not.toContain('offset:')
    expect(r.stderr).toMatch(/at: Picky\.onRecord \(.*failing\.ts:\d+:\d+\)/)
  })

  it('a failed unchained stage names the offset of the record it failed on', async () => {
    const dataDir = join(tempDir(), 'd')
    const r = await weir(['run', fixture('failing.ts'), '--data-dir', dataDir, '--param', 'chain=false'])
    expect(r.code).toBe(1)
    expect(r.stderr).toContain('weir: error: actor picky/0 stopped: picky failed on a record: picky cannot stand 7 [WEIR_ACTOR_FAILED]')
    // Value 7's offset (the source's watermark marks sit between its records, so it is not 7).
    const offset = (await readTopic<number>(dataDir, 'weir.failing.ten')).find((rec) => rec.value === 7)!.offset
    for (const line of ['stage: picky', 'actor: picky/0', 'topic: weir.failing.ten', 'partition: 0', `offset: ${offset}`]) expect(r.stderr).toContain(`  ${line}\n`)
  })
})

describe('weir run: an unbounded pipeline', () => {
  it('SIGINT takes a final checkpoint and exits 0 with the summary; SIGTERM on a second run does the same, and that run resumes where the first stopped', async () => {
    const dir = tempDir()
    const dataDir = join(dir, 'data')
    const trace = join(dir, 'trace')
    const args = ['run', fixture('ticker.ts'), '--data-dir', dataDir, '--epoch-ms', '200', '--param', `trace=${trace}`]

    const first = startWeir(args)
    await waitFor('the source to open', () => (traceLines(trace).length >= 1 ? true : undefined))
    await new Promise((r) => setTimeout(r, 700))
    first.child.kill('SIGINT')
    const r1 = await first.done
    expect(r1.stderr).toBe('')
    expect(r1.code).toBe(0)
    const s1 = parseSummary(r1.stdout)
    expect(s1.outcome).toBe('stopped')
    const emitted = s1.stages.ticks!.out
    expect(emitted).toBeGreaterThan(0)
    expect(s1.stages.count!.in).toBeLessThanOrEqual(emitted)
    // The source closed after its final checkpoint at the position it reported.
    expect(traceLines(trace)).toEqual(['ticks/0 start 0', `ticks/0 stop ${emitted}`])

    const second = startWeir(args)
    await waitFor('the source to reopen', () => (traceLines(trace).length >= 3 ? true : undefined))
    // Restored from the final checkpoint: it goes on exactly where the first run stopped.
    expect(traceLines(trace)[2]).toBe(`ticks/0 start ${emitted}`)
    await new Promise((r) => setTimeout(r, 300))
    second.child.kill('SIGTERM')
    const r2 = await second.done
    expect(r2.code).toBe(0)
    const s2 = parseSummary(r2.stdout)
    expect(s2.outcome).toBe('stopped')
    expect(traceLines(trace)[3]).toBe(`ticks/0 stop ${emitted + s2.stages.ticks!.out}`)
  })

  it('a second SIGINT while stopping exits at once with 130', async () => {
    const dir = tempDir()
    const trace = join(dir, 'trace')
    const run = startWeir(['run', fixture('ticker.ts'), '--data-dir', join(dir, 'data'), '--param', `trace=${trace}`, '--param', 'closeDelayMs=20000'])
    await waitFor('the source to open', () => (traceLines(trace).length >= 1 ? true : undefined))
    run.child.kill('SIGINT')
    await new Promise((r) => setTimeout(r, 400))
    const sentAt = Date.now()
    run.child.kill('SIGINT')
    const r = await run.done
    expect(r.code).toBe(130)
    expect(Date.now() - sentAt).toBeLessThan(5000)
    expect(r.stderr).toContain('SIGINT again: exiting without waiting for the final checkpoint')
    // It did not wait for the (slow) close of the source.
    expect(traceLines(trace)).toEqual(['ticks/0 start 0'])
  })
})

const hasScript = spawnSync('script', ['--version']).status === 0

describe.runIf(hasScript)('weir run: on a terminal', () => {
  /** Runs a shell command under `script`, which gives it a pseudo-terminal. */
  function onTerminal(shell: string): Promise<string> {
    return new Promise((resolveOut, reject) => {
      const child = spawn('script', ['-qfec', shell, '/dev/null'], { cwd: ROOT, env: cleanEnv({ COLUMNS: '120' }), stdio: ['ignore', 'pipe', 'pipe'] })
      let out = ''
      child.stdout.on('data', (d: Buffer) => (out += d.toString()))
      child.on('error', reject)
      child.on('close', () => resolveOut(out))
    })
  }

  it('shows live progress (records/s, totals, epoch) redrawn in place, then the summary; --quiet shows none', async () => {
    const dir = tempDir()
    mkdirSync(dir, { recursive: true })
    const live = await onTerminal(`node ${BIN} run ${fixture('ticker.ts')} --data-dir ${join(dir, 'a')} --epoch-ms 200 & P=$!; sleep 3; kill -INT $P; wait $P; echo "rc=$?"`)
    expect(live).toMatch(/weir: ticker {2}running .* epoch \d+/)
    expect(live).toMatch(/ticks +1 actor +\d[\d,]* rec\/s +total \d/)
    expect(live).toMatch(/count +2 actors +\d[\d,]* rec\/s +total \d[\d,]* +lag \d/)
    expect(live).toMatch(/timeliness of count: (no watermark yet|watermark \S+, [\d.]+ ?m?s behind now)/)
    expect(live).toContain('\x1b[4A') // moves up over the four lines it drew (header, two stages, timeliness)
    expect(live).toContain('outcome:    stopped')
    expect(live).toContain('rc=0')

    const quiet = await onTerminal(`node ${BIN} run ${fixture('static.ts')} --data-dir ${join(dir, 'b')} --quiet; echo "rc=$?"`)
    expect(quiet).not.toContain('rec/s')
    expect(quiet).not.toContain('\x1b[')
    expect(quiet).toContain('outcome:    finished')
    expect(quiet).toContain('rc=0')
  })
})
