/**
 * `weir savepoint` end to end, with real processes: a paced word count stopped with SIGTERM
 * halfway, a savepoint of its data dir, inspect --verify, diff, and `weir run
 * --from-savepoint` on a new data dir (a new embedded pipe) finishing the input: the output
 * files (the JSONL sink continues at the length its restored state committed) hold every
 * count once. A changed byte in the savepoint is refused naming the file; a rerun of the
 * restored run resumes from its data dir.
 */
import { cpSync, readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { expectExactWordCounts, finalCounts, sleep, startWeir, tempDirs, until, weir, wordcountReference } from '../support/weir-cli.ts'

const tempDir = tempDirs('weir-savepoint-cli-')
const LINES = 4000

describe('weir savepoint', () => {
  it('refused while the run holds its data dir; create after a SIGTERM halfway, inspect --verify, diff, run --from-savepoint on a new data dir: every word counted once across both runs', async () => {
    const dir = tempDir()
    const expected = await wordcountReference(dir, LINES)
    const out = join(dir, 'out')
    const params = ['--param', `lines=${LINES}`, '--param', `out=${out}/c-{partition}.jsonl`]
    // Paced at 400 lines/s per partition (10 s): stopped well before its end.
    const first = startWeir(['run', 'examples/wordcount.ts', '--data-dir', join(dir, 'a'), ...params, '--param', 'rate=400', '-q'])
    await until(() => { try { return Object.keys(finalCounts(out)).length > 0 } catch { return false } }, 20_000, 'the first run writes counts')
    // While it runs, its data dir is refused: a savepoint is taken of a stopped pipeline.
    const running = await weir(['savepoint', 'create', 'examples/wordcount.ts', '--data-dir', join(dir, 'a'), '--target', join(dir, 'sp-running'), ...params])
    expect(running.code).toBe(2)
    expect(running.stderr).toMatch(/WEIR_SAVEPOINT_PIPELINE_RUNNING[\s\S]*--data-dir|in use by a running pipeline: stop it first/)
    await sleep(300)
    first.child.kill('SIGTERM')
    const stopped = await first.done
    expect(stopped.code, stopped.stderr).toBe(0)
    const partial = Object.values(finalCounts(out)).reduce((a, b) => a + b, 0)
    const total = Object.values(expected).reduce((a, b) => a + b, 0)
    expect(partial, 'the first run stopped before the end of its input').toBeLessThan(total)

    const sp = join(dir, 'sp')
    const created = await weir(['savepoint', 'create', 'examples/wordcount.ts', '--data-dir', join(dir, 'a'), '--target', sp, ...params])
    expect(created.code, created.stderr).toBe(0)
    expect(created.stdout).toMatch(/^savepoint sp-\S+ of pipeline wordcount written to /)
    expect(created.stdout).toMatch(/count \(processor, 4 actors, keyed\): \d+ keys, 0 timers; states count v1/)

    const inspected = await weir(['savepoint', 'inspect', sp, '--verify'])
    expect(inspected.code, inspected.stderr).toBe(0)
    expect(inspected.stdout).toMatch(/verified: \d+ files match the manifest's sizes, entry counts and SHA-256/)
    const json = JSON.parse((await weir(['savepoint', 'inspect', sp, '--json'])).stdout) as { pipeline: string; stages: Record<string, unknown> }
    expect(json.pipeline).toBe('wordcount')
    expect(Object.keys(json.stages).sort()).toEqual(['count', 'lines', 'sink', 'split'])

    const diff = await weir(['savepoint', 'diff', sp, 'examples/wordcount.ts', ...params])
    expect(diff.code, diff.stdout + diff.stderr).toBe(0)
    expect(diff.stdout).toContain('same topology as the pipeline')
    expect(diff.stdout).toContain('result: restorable')

    const restored = await weir(['run', 'examples/wordcount.ts', '--data-dir', join(dir, 'b'), '--from-savepoint', sp, ...params, '-q'])
    expect(restored.code, restored.stderr).toBe(0)
    expectExactWordCounts(out, expected)
    // A rerun on the restored data dir resumes there (finished), writing nothing more.
    const rerun = await weir(['run', 'examples/wordcount.ts', '--data-dir', join(dir, 'b'), '--from-savepoint', sp, ...params, '-q'])
    expect(rerun.code, rerun.stderr).toBe(0)
    expectExactWordCounts(out, expected)

    // A changed byte: inspect --verify and a restore refuse it, naming the file.
    const bad = join(dir, 'sp-bad')
    cpSync(sp, bad, { recursive: true })
    const file = join(bad, 'stages', 'count', '0', 'keyed.count.frames')
    const bytes = readFileSync(file)
    bytes[bytes.length - 1] ^= 0xff
    writeFileSync(file, bytes)
    const verify = await weir(['savepoint', 'inspect', bad, '--verify'])
    expect(verify.code).toBe(2)
    expect(verify.stderr).toMatch(/WEIR_SAVEPOINT_INVALID/)
    expect(verify.stderr).toContain('keyed.count.frames')
    const refused = await weir(['run', 'examples/wordcount.ts', '--data-dir', join(dir, 'c'), '--from-savepoint', bad, ...params, '-q'])
    expect(refused.code).toBe(2)
    expect(refused.stderr).toContain('keyed.count.frames')
  }, 120_000)

  it('refuses what it cannot do, naming the field: no --target, a target that is not empty, a data dir without a run, a savepoint that does not exist', async () => {
    const dir = tempDir()
    const noTarget = await weir(['savepoint', 'create', 'examples/wordcount.ts', '--data-dir', dir])
    expect(noTarget.code).toBe(2)
    expect(noTarget.stderr).toContain('--target')
    const empty = await weir(['savepoint', 'create', 'examples/wordcount.ts', '--data-dir', join(dir, 'none'), '--target', join(dir, 'sp')])
    expect(empty.code).toBe(2)
    expect(empty.stderr).toContain('--data-dir')
    writeFileSync(join(dir, 'file'), 'x')
    const full = await weir(['savepoint', 'create', 'examples/wordcount.ts', '--data-dir', dir, '--target', dir])
    expect(full.code).toBe(2)
    expect(full.stderr).toMatch(/--data-dir|WEIR_SAVEPOINT_TARGET_EXISTS/)
    const missing = await weir(['run', 'examples/wordcount.ts', '--data-dir', join(dir, 'x'), '--from-savepoint', join(dir, 'nope'), '-q'])
    expect(missing.code).toBe(2)
    expect(missing.stderr).toMatch(/savepoint .*nope does not exist/)
    const flag = await weir(['run', 'examples/wordcount.ts', '--allow-dropped-state', '-q'])
    expect(flag.code).toBe(2)
    expect(flag.stderr).toContain('--allow-dropped-state')
  }, 60_000)
})
