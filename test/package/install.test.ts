/**
 * weir as a user gets it: `npm pack` (which builds dist/ through `prepare`), the tarball
 * installed into an empty project with the project's own fast-check, TypeScript and vitest,
 * then what a newcomer does with it: a plain .mjs importing `weir` and `weir/processors`, a
 * strict tsc over the shipped .d.ts, the installed `weir` bin running TypeScript pipeline
 * files on Node 22 and Node 24 (also from a folder without "type": "module"), and every
 * README block marked `<!-- file: NAME -->` copied verbatim and run.
 *
 * Node binaries: WEIR_NODE24 and WEIR_NODE22 (paths to `node`); without WEIR_NODE24 the
 * test's own Node counts as 24 when it is one (.ci/run puts Node 24 first on PATH and sets
 * WEIR_NODE22). A missing one skips its cases with a line saying so, or fails them under
 * WEIR_REQUIRE_SERVICES=1.
 */
import { execFile } from 'node:child_process'
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { requireService } from '../support/services.ts'
import { ROOT, cleanEnv } from '../support/weir-cli.ts'

/** The consumer's own fast-check: another version than weir's pin (4.10.2), as a user's would be. */
const CONSUMER_FAST_CHECK = '4.11.0'
const devVersion = (name: string): string => (JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { devDependencies: Record<string, string> }).devDependencies[name]!

interface Ran {
  code: number
  stdout: string
  stderr: string
}

function run(cmd: string, args: string[], options: { cwd: string; node?: string; timeoutMs?: number }): Promise<Ran> {
  // The chosen Node first on PATH: npm, npx and the weir bin (#!/usr/bin/env node) run on it.
  const env = cleanEnv()
  if (options.node !== undefined) env.PATH = `${dirname(options.node)}:${env.PATH ?? ''}`
  delete env.NODE_OPTIONS
  delete env.VITEST
  delete env.VITEST_POOL_ID
  delete env.VITEST_WORKER_ID
  delete env.TEST
  delete env.NODE_ENV
  return new Promise((resolve) => {
    execFile(cmd, args, { cwd: options.cwd, env, timeout: options.timeoutMs ?? 120_000, maxBuffer: 64 * 1024 * 1024 }, (err, stdout, stderr) => {
      const code = err === null ? 0 : typeof (err as { code?: unknown }).code === 'number' ? (err as { code: number }).code : 1
      resolve({ code, stdout, stderr })
    })
  })
}

async function versionOf(node: string): Promise<number> {
  const r = await run(node, ['-p', 'process.versions.node'], { cwd: tmpdir() })
  return Number(r.stdout.trim().split('.')[0])
}

/** The Node binaries to run the installed bin on, by major version. */
async function nodes(): Promise<Map<22 | 24, string>> {
  const found = new Map<22 | 24, string>()
  const own = Number(process.versions.node.split('.')[0])
  for (const major of [22, 24] as const) {
    const given = process.env[`WEIR_NODE${major}`]
    const path = given !== undefined && given !== '' ? given : own === major ? process.execPath : undefined
    if (path === undefined) continue
    if (!existsSync(path)) throw new Error(`WEIR_NODE${major}=${path}: no such file`)
    const v = await versionOf(path)
    if (v !== major) throw new Error(`WEIR_NODE${major}=${path} is Node ${v}, not ${major}`)
    found.set(major, path)
  }
  return found
}

/** Blocks of README.md preceded by `<!-- file: NAME -->`: written verbatim into the consumer project. */
function markedBlocks(markdown: string): Array<{ name: string; body: string; line: number }> {
  const lines = markdown.split('\n')
  const blocks: Array<{ name: string; body: string; line: number }> = []
  for (let i = 0; i < lines.length; i++) {
    const marker = /^<!--\s*file:\s*(\S+)\s*-->\s*$/.exec(lines[i]!)
    if (marker === null) continue
    let j = i + 1
    while (j < lines.length && lines[j]!.trim() === '') j++
    const fence = /^(```+|~~~+)/.exec(lines[j] ?? '')
    if (fence === null) throw new Error(`README.md:${i + 1}: <!-- file: ${marker[1]} --> is not followed by a fenced code block`)
    const end = lines.findIndex((l, k) => k > j && l.startsWith(fence[1]!))
    if (end === -1) throw new Error(`README.md:${j + 1}: the block for ${marker[1]} is not closed`)
    blocks.push({ name: marker[1]!, body: lines.slice(j + 1, end).join('\n') + '\n', line: j + 1 })
    i = end
  }
  return blocks
}

const work = mkdtempSync(join(tmpdir(), 'weir-package-'))
const app = join(work, 'app')
let tarball: { file: string; files: string[]; size: number }
let node: Map<22 | 24, string>
const requireAll = process.env.WEIR_REQUIRE_SERVICES === '1'
const blocks = markedBlocks(readFileSync(join(ROOT, 'README.md'), 'utf8'))
const timings: Record<string, number> = {}
const kafka = await requireService('kafka')
const nats = await requireService('nats')

afterAll(() => {
  process.stdout.write(`package test: ${JSON.stringify({ tarballFiles: tarball?.files.length, tarballBytes: tarball?.size, nodes: [...(node ?? new Map()).keys()], ms: timings })}\n`)
  rmSync(work, { recursive: true, force: true })
})

beforeAll(async () => {
  node = await nodes()
  let t = Date.now()
  // npm pack runs prepare, which builds dist/ afresh.
  const packed = await run('npm', ['pack', '--json', '--pack-destination', work], { cwd: ROOT, timeoutMs: 180_000 })
  expect(packed.code, packed.stderr).toBe(0)
  const info = (JSON.parse(packed.stdout.slice(packed.stdout.indexOf('['))) as Array<{ filename: string; size: number; files: Array<{ path: string }> }>)[0]!
  tarball = { file: join(work, info.filename), files: info.files.map((f) => f.path), size: info.size }
  timings.pack = Date.now() - t

  t = Date.now()
  mkdirSync(app)
  writeFileSync(join(app, 'package.json'), JSON.stringify({ name: 'first-hour', private: true, type: 'module' }, null, 2))
  const installed = await run('npm', ['install', '--prefer-offline', '--no-audit', '--no-fund', tarball.file, `fast-check@${CONSUMER_FAST_CHECK}`, `typescript@${devVersion('typescript')}`, `@types/node@${devVersion('@types/node')}`, `vitest@${devVersion('vitest')}`], { cwd: app, timeoutMs: 240_000 })
  expect(installed.code, installed.stderr).toBe(0)
  timings.install = Date.now() - t
}, 420_000)

describe('the package', { timeout: 180_000 }, () => {
  it('holds the compiled library, its types and the bin, and no tests, benchmarks, CI or TypeScript sources', () => {
    const files = tarball.files
    expect(files.filter((f) => /^(test|benchmarks|\.ci|examples|scripts|deploy|types)\//.test(f) || f.startsWith('.'))).toEqual([])
    expect(files.filter((f) => f.endsWith('.ts') && !f.endsWith('.d.ts'))).toEqual([])
    for (const f of ['package.json', 'README.md', 'LICENSE', 'bin/weir.js', 'dist/index.js', 'dist/index.d.ts', 'dist/processors/index.js', 'dist/testing/index.d.ts', 'dist/testing/child-runner.js', 'dist/cli/main.js', 'dist/monitor/dashboard/index.html']) {
      expect(files, f).toContain(f)
    }
  })

  it('a plain .mjs imports weir and weir/processors and runs a pipeline with startEmbedded to completion', async () => {
    writeFileSync(join(app, 'doubles.mjs'), `
import { readFileSync } from 'node:fs'
import { Pipeline, Processor, startEmbedded } from 'weir'
import { GeneratorSource, JsonlFileSink } from 'weir/processors'

class Double extends Processor {
  onRecord(r, ctx) { ctx.emit(r.key, r.value * 2) }
}
const p = new Pipeline('doubles')
p.source('numbers', () => new GeneratorSource({ count: 50, generate: (i) => ({ key: String(i % 5), value: i }) }))
  .process('double', () => new Double())
  .to('sink', () => new JsonlFileSink({ path: 'out/doubles.jsonl' }))
const result = await (await startEmbedded(p, { dataDir: '.weir-doubles' })).done
const values = readFileSync('out/doubles.jsonl', 'utf8').trim().split('\\n').map((l) => JSON.parse(l).value)
console.log(JSON.stringify({ outcome: result.outcome, values: values.sort((a, b) => a - b) }))
`)
    const r = await run(node.get(24) ?? process.execPath, ['doubles.mjs'], { cwd: app })
    expect(r.code, r.stderr).toBe(0)
    expect(JSON.parse(r.stdout.trim().split('\n').at(-1)!)).toEqual({ outcome: 'finished', values: Array.from({ length: 50 }, (_, i) => i * 2) })
  })

  it.skipIf(!kafka.available || !nats.available)('a plain .mjs runs a pipeline on Kafka with NATS as the bus, with the public API only', async () => {
    const name = `pkg-kafka-${Date.now().toString(36)}`
    writeFileSync(join(app, 'on-kafka.mjs'), `
import { readFileSync } from 'node:fs'
import { Pipeline, Processor, openBus, openPipe, startEmbedded } from 'weir'
import { GeneratorSource, JsonlFileSink } from 'weir/processors'

class Double extends Processor {
  onRecord(r, ctx) { ctx.emit(r.key, r.value * 2) }
}
const p = new Pipeline('${name}')
p.source('numbers', () => new GeneratorSource({ count: 40, generate: (i) => ({ key: String(i % 4), value: i }) }), { partitions: 2 })
  .keyBy(2)
  .process('double', () => new Double())
  .to('sink', () => new JsonlFileSink({ path: 'out/${name}-{partition}.jsonl' }))
const dataDir = '.weir-${name}'
const pipe = await openPipe('kafka://${kafka.url}', { dataDir })
const bus = await openBus('${nats.url}', { name: '${name}' })
const seen = []
const sub = bus.subscribe('weir.${name}.>', (m, subject) => seen.push(subject))
const result = await (await startEmbedded(p, { dataDir, pipe, bus, cluster: '${name}', epochIntervalMs: 200 })).done
sub.unsubscribe()
await pipe.close()
await bus.close()
const values = [0, 1].flatMap((n) => readFileSync('out/${name}-' + n + '.jsonl', 'utf8').trim().split('\\n').map((l) => JSON.parse(l).value))
console.log(JSON.stringify({ outcome: result.outcome, pipe: pipe.kind, busMessages: seen.length > 0, values: values.sort((a, b) => a - b) }))
`)
    const r = await run(node.get(24) ?? process.execPath, ['on-kafka.mjs'], { cwd: app })
    expect(r.code, r.stderr).toBe(0)
    expect(JSON.parse(r.stdout.trim().split('\n').at(-1)!)).toEqual({ outcome: 'finished', pipe: 'kafka', busMessages: true, values: Array.from({ length: 80 }, (_, i) => Math.floor(i / 2) * 2) })
  })

  it("a strict TypeScript consumer type-checks against the shipped .d.ts with its own fast-check (no skipLibCheck)", async () => {
    const t = Date.now()
    writeFileSync(join(app, 'tsconfig.json'), JSON.stringify({
      compilerOptions: { target: 'ES2022', module: 'NodeNext', moduleResolution: 'NodeNext', strict: true, noEmit: true, skipLibCheck: false, types: ['node'] },
      files: ['consumer.ts'],
    }, null, 2))
    writeFileSync(join(app, 'consumer.ts'), `
import fc from 'fast-check'
import { Pipeline, Processor, openBus, openPipe, resolveBusTarget, startEmbedded, type Context, type ControlBus, type Pipe, type RunOptions, type RunResult, type StreamRecord } from 'weir'
import { GeneratorSource, JsonlFileSink } from 'weir/processors'
import { arbitraries, runToCompletion, readStageOutput, multisetDiff, tempDataDir, type CrashSpec } from 'weir/testing'
import { fc as weirFc } from 'weir/testing'

class Count extends Processor<number, number> {
  count = this.state.value<number>('count')
  onRecord(r: StreamRecord<number>, ctx: Context<number>): void {
    const n = (this.count.get() ?? 0) + r.value
    this.count.set(n)
    ctx.emit(r.key, n)
  }
}

export function makePipeline(): Pipeline {
  const p = new Pipeline('typed')
  p.source('numbers', () => new GeneratorSource({ count: 10, generate: (i) => ({ key: String(i % 3), value: 1 }) }))
    .keyBy(2)
    .process('count', Count)
    .to('sink', () => new JsonlFileSink({ path: 'out/typed.jsonl' }))
  return p
}

const options: RunOptions = { dataDir: tempDataDir(), epochIntervalMs: 100 }
export const started = (): ReturnType<typeof startEmbedded> => startEmbedded(makePipeline(), options)

// The user's fast-check (${CONSUMER_FAST_CHECK}) drives weir's arbitraries.
export const property = fc.asyncProperty(arbitraries.crashSchedule(2), fc.integer({ min: 1, max: 3 }), async (crashes: CrashSpec[], _n: number) => {
  const ref = tempDataDir(), crashed = tempDataDir()
  await runToCompletion(makePipeline(), { dataDir: ref })
  await runToCompletion(makePipeline(), { dataDir: crashed, crashes })
  const diff = multisetDiff(
    (await readStageOutput<number>(makePipeline(), ref, 'count')).map((r) => [r.key, r.value]),
    (await readStageOutput<number>(makePipeline(), crashed, 'count')).map((r) => [r.key, r.value]))
  return diff.missing.length === 0 && diff.extra.length === 0
})
// What weir run --pipe kafka://… --bus nats://… does, from code.
export async function onKafka(pipeline: Pipeline): Promise<RunResult> {
  const pipe: Pipe = await openPipe('kafka://127.0.0.1:9092', { dataDir: './.weir/typed' })
  const bus: ControlBus = await openBus(resolveBusTarget({ url: 'nats://127.0.0.1:4222', env: process.env }), { name: 'typed' })
  const run: RunOptions = { dataDir: './.weir/typed', pipe, bus, cluster: 'prod', actorConfig: { maxBatch: 500 } }
  try {
    return await (await startEmbedded(pipeline, run)).done
  } finally {
    await pipe.close()
    await bus.close()
  }
}
export const viaWeir = weirFc.assert(weirFc.asyncProperty(arbitraries.crashSpec(), async (c) => c.hit > 0), { numRuns: 1 })
`)
    const r = await run(join(app, 'node_modules/.bin/tsc'), ['-p', '.'], { cwd: app, node: node.get(24) })
    expect(r.code, r.stdout + r.stderr).toBe(0)
    // The project's own fast-check is the one weir resolves (a peer dependency, not a second copy).
    expect(JSON.parse(readFileSync(join(app, 'node_modules/fast-check/package.json'), 'utf8')).version).toBe(CONSUMER_FAST_CHECK)
    expect(existsSync(join(app, 'node_modules/weir/node_modules/fast-check'))).toBe(false)
    timings.tsc = Date.now() - t
  })

  const pipelineFile = (name: string, extra = ''): string => `
import { Pipeline, Processor, type Context, type StreamRecord } from 'weir'
import { GeneratorSource, JsonlFileSink } from 'weir/processors'
${extra}
class Double extends Processor<number, number> {
  onRecord(r: StreamRecord<number>, ctx: Context<number>): void { ctx.emit(r.key, r.value * ${extra === '' ? '2' : 'Factor.Two'}) }
}
export default (params: Record<string, string>): Pipeline => {
  const p = new Pipeline('${name}')
  p.source('numbers', () => new GeneratorSource({ count: 30, generate: (i) => ({ key: String(i % 3), value: i }) }))
    .process('double', Double)
    .to('sink', () => new JsonlFileSink({ path: params.out ?? 'out/${name}.jsonl' }))
  return p
}
`
  const doubled = (file: string): number[] => readFileSync(file, 'utf8').trim().split('\n').map((l) => (JSON.parse(l) as { value: number }).value).sort((a, b) => a - b)
  const expected = Array.from({ length: 30 }, (_, i) => i * 2)

  it("weir/testing runs in the project's vitest: in-process crashes and SIGKILLed child runs (the compiled child runner)", async () => {
    writeFileSync(join(app, 'kit-pipeline.ts'), pipelineFile('kit'))
    writeFileSync(join(app, 'kit.test.ts'), `
import { readFileSync } from 'node:fs'
import { expect, it } from 'vitest'
import { arbitraries, fc, readStageOutput, runFileToCompletion, runToCompletion, multisetDiff, tempDataDir } from 'weir/testing'
import makePipeline from './kit-pipeline.ts'

// What the sink wrote (the double stage's own topic is purged once the sink consumed it).
const output = (dir: string): number[] => readFileSync(dir + '/out.jsonl', 'utf8').trim().split('\\n').map((l) => JSON.parse(l).value as number)
const expected = Array.from({ length: 30 }, (_, i) => i * 2)

it('in-process crashes lose and double nothing', async () => {
  await fc.assert(fc.asyncProperty(arbitraries.crashSchedule(2), async (crashes) => {
    const ref = tempDataDir(), crashed = tempDataDir()
    await runToCompletion(makePipeline({ out: ref + '/out.jsonl' }), { dataDir: ref })
    const run = await runToCompletion(makePipeline({ out: crashed + '/out.jsonl' }), { dataDir: crashed, crashes })
    expect(run.planned).toEqual(crashes)
    expect(output(ref).sort((a, b) => a - b)).toEqual(expected)
    expect(multisetDiff(output(ref), output(crashed))).toEqual({ missing: [], extra: [] })
  }), { numRuns: 3 })
}, 60_000)

it('a child process killed at a protocol point recovers', async () => {
  const dataDir = tempDataDir()
  const r = await runFileToCompletion('kit-pipeline.ts', { dataDir, params: { out: dataDir + '/out.jsonl' }, crashes: [{ kind: 'point', spec: { point: 'after-pipe-commit', hit: 1 } }] })
  expect(r.kills).toBe(1)
  expect(output(dataDir).sort((a, b) => a - b)).toEqual(expected)
  await expect(readStageOutput(makePipeline({}), dataDir, 'double')).rejects.toMatchObject({ code: 'WEIR_STAGE_OUTPUT_PURGED' })
}, 60_000)
`)
    const r = await run('npx', ['vitest', 'run', 'kit.test.ts'], { cwd: app, node: node.get(24) ?? process.execPath })
    expect(r.code, r.stdout + r.stderr).toBe(0)
    expect(r.stdout.replace(/\u001b\[[0-9;]*m/g, '')).toMatch(/Tests\s+2 passed/)
  })

  for (const major of [22, 24] as const) {
    describe(`the installed weir bin on Node ${major}`, () => {
      const skip = (): boolean => {
        if (node.has(major)) return false
        const why = `no Node ${major}: set WEIR_NODE${major} to a node binary${major === 24 ? ' (or run the test on Node 24)' : ''}`
        if (requireAll) throw new Error(`${why} (WEIR_REQUIRE_SERVICES=1)`)
        process.stdout.write(`package test: skipping the Node ${major} cases: ${why}\n`)
        return true
      }

      it('runs a TypeScript pipeline file (npx weir run pipeline.ts) with Node type stripping', async (ctx) => {
        if (skip()) return ctx.skip()
        writeFileSync(join(app, `doubles-${major}.ts`), pipelineFile(`doubles-${major}`))
        // --monitor: the compiled monitor serves the dashboard files copied into dist/.
        const r = await run('npx', ['weir', 'run', `doubles-${major}.ts`, '--data-dir', `.weir-run-${major}`, '--monitor', '--monitor-port', '0'], { cwd: app, node: node.get(major) })
        expect(r.code, r.stderr).toBe(0)
        expect(r.stdout + r.stderr).toMatch(/monitor at http:\/\/127\.0\.0\.1:\d+\//)
        expect(r.stdout).toMatch(/outcome:\s+finished/)
        expect(doubled(join(app, `out/doubles-${major}.jsonl`))).toEqual(expected)
      })

      it('falls back to tsx for what type stripping cannot do (an enum)', async (ctx) => {
        if (skip()) return ctx.skip()
        writeFileSync(join(app, `enum-${major}.ts`), pipelineFile(`enum-${major}`, 'enum Factor { Two = 2 }'))
        const r = await run('npx', ['weir', 'run', `enum-${major}.ts`, '--data-dir', `.weir-enum-${major}`], { cwd: app, node: node.get(major) })
        expect(r.code, r.stderr).toBe(0)
        expect(doubled(join(app, `out/enum-${major}.jsonl`))).toEqual(expected)
      })

      it('loads a pipeline .ts in a folder without "type": "module", or says to rename it to .mts when it cannot', async (ctx) => {
        if (skip()) return ctx.skip()
        const dir = join(app, `commonjs-${major}`)
        mkdirSync(dir, { recursive: true })
        writeFileSync(join(dir, 'package.json'), JSON.stringify({ name: 'not-a-module' }))
        writeFileSync(join(dir, 'plain.ts'), pipelineFile(`plain-${major}`))
        writeFileSync(join(dir, 'enum.ts'), pipelineFile(`cjs-enum-${major}`, 'enum Factor { Two = 2 }'))
        const plain = await run('npx', ['weir', 'run', 'plain.ts', '--data-dir', '.weir-plain', '--param', `out=out/plain.jsonl`], { cwd: dir, node: node.get(major) })
        expect(plain.code, plain.stderr).toBe(0)
        expect(doubled(join(dir, 'out/plain.jsonl'))).toEqual(expected)
        // Type stripping cannot do the enum, and tsx would load the file as CommonJS.
        const cjsEnum = await run('npx', ['weir', 'run', 'enum.ts', '--data-dir', '.weir-enum'], { cwd: dir, node: node.get(major) })
        expect(cjsEnum.code).toBe(2)
        expect(cjsEnum.stderr).toContain('[WEIR_PIPELINE_LOAD_FAILED]')
        expect(cjsEnum.stderr).toContain(`cannot load pipeline file ${join(dir, 'enum.ts')}`)
        expect(cjsEnum.stderr).toContain(`rename it to .mts, or add "type": "module" to ${join(dir, 'package.json')}`)
        expect(cjsEnum.stderr).not.toMatch(/in a cycle|not yet fully loaded/)
        // What the message says works: the same file as .mts.
        writeFileSync(join(dir, 'enum.mts'), readFileSync(join(dir, 'enum.ts'), 'utf8'))
        const renamed = await run('npx', ['weir', 'run', 'enum.mts', '--data-dir', '.weir-enum-mts', '--param', 'out=out/enum.jsonl'], { cwd: dir, node: node.get(major) })
        expect(renamed.code, renamed.stderr).toBe(0)
        expect(doubled(join(dir, 'out/enum.jsonl'))).toEqual(expected)
      })
    })
  }
})

describe('README blocks marked <!-- file: NAME -->, copied verbatim into the project', () => {
  it('README.md marks at least one block (the pipeline-writing example)', () => {
    expect(blocks.filter((b) => isPipelineFile(b)).length).toBeGreaterThan(0)
  })

  // A .ts block that exports a pipeline (default, or named `pipeline`) is a pipeline file;
  // another .ts block (processors a test imports) is only written.
  const isPipelineFile = (b: { name: string; body: string }): boolean => /\.m?ts$/.test(b.name) && !b.name.endsWith('.test.ts') && /export\s+(default|(const|let|function|async function)\s+pipeline\b)/.test(b.body)
  for (const block of blocks) {
    it(`${block.name} (README.md:${block.line}) ${block.name.endsWith('.test.ts') ? 'passes under the project\'s vitest' : isPipelineFile(block) ? 'runs with weir run' : 'is written'}`, async () => {
      // Every block is written first: a test or pipeline may import another block's file.
      for (const b of blocks) {
        mkdirSync(dirname(join(app, b.name)), { recursive: true })
        writeFileSync(join(app, b.name), b.body)
      }
      const t = Date.now()
      const nodeBin = node.get(24) ?? process.execPath
      if (block.name.endsWith('.test.ts')) {
        const r = await run('npx', ['vitest', 'run', block.name], { cwd: app, node: nodeBin, timeoutMs: 240_000 })
        expect(r.code, r.stdout + r.stderr).toBe(0)
      } else if (isPipelineFile(block)) {
        // The README's `weir run` on every supported Node there is here (22 and 24 in CI).
        const nodes = node.size > 0 ? [...node] : [[24, process.execPath] as const]
        for (const [version, bin] of nodes) {
          // A directory per Node (weir and its dependencies resolve from the project's node_modules above it), so each run writes its own output files.
          const cwd = join(app, `readme-node${version}`)
          for (const b of blocks) {
            mkdirSync(dirname(join(cwd, b.name)), { recursive: true })
            writeFileSync(join(cwd, b.name), b.body)
          }
          const r = await run('npx', ['weir', 'run', block.name, '--data-dir', join('.weir-readme', block.name)], { cwd, node: bin })
          expect(r.code, `Node ${version}: ${r.stdout}${r.stderr}`).toBe(0)
          expect(r.stdout).toMatch(/outcome:\s+finished/)
        }
      }
      timings[`readme:${block.name}`] = Date.now() - t
    }, 300_000)
  }
})
