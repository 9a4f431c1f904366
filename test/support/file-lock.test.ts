/**
 * The test files' lock (file-lock.ts) across real processes: an exclusive holder never
 * overlaps another holder, shared holders overlap each other, a waiting exclusive file is
 * not starved by shared ones that keep coming, and a dead holder's entry does not block.
 */
import { spawn } from 'node:child_process'
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, describe, expect, it } from 'vitest'

const LOCK = join(import.meta.dirname, 'file-lock.ts')
const dir = mkdtempSync(join(tmpdir(), 'weir-file-lock-test-'))
afterAll(() => rmSync(dir, { recursive: true, force: true }))

/** A process that takes the lock, holds it `holdMs`, and appends its enter and leave times to `log`. */
function holder(lockDir: string, log: string, name: string, mode: 'exclusive' | 'shared', holdMs: number): Promise<number | null> {
  const script = `
    import { acquireFileLock } from ${JSON.stringify(LOCK)}
    import { appendFileSync } from 'node:fs'
    const lock = await acquireFileLock(${JSON.stringify(lockDir)}, ${JSON.stringify(mode)})
    appendFileSync(${JSON.stringify(log)}, JSON.stringify({ name: ${JSON.stringify(name)}, mode: ${JSON.stringify(mode)}, at: Date.now(), what: 'enter' }) + '\\n')
    await new Promise((r) => setTimeout(r, ${holdMs}))
    appendFileSync(${JSON.stringify(log)}, JSON.stringify({ name: ${JSON.stringify(name)}, mode: ${JSON.stringify(mode)}, at: Date.now(), what: 'leave' }) + '\\n')
    lock.release()
  `
  const child = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], { stdio: 'inherit' })
  return new Promise((resolve) => child.on('exit', (code) => resolve(code)))
}

interface Span { name: string; mode: string; enter: number; leave: number }

function spans(log: string): Span[] {
  const events = readFileSync(log, 'utf8').trim().split('\n').map((l) => JSON.parse(l) as { name: string; mode: string; at: number; what: string })
  return events.filter((e) => e.what === 'enter').map((e) => ({ name: e.name, mode: e.mode, enter: e.at, leave: events.find((x) => x.name === e.name && x.what === 'leave')!.at }))
}

const overlap = (a: Span, b: Span): boolean => a.enter < b.leave && b.enter < a.leave

describe('the test files\' lock', () => {
  it('runs an exclusive holder alone, lets shared holders overlap, and does not starve a waiting exclusive one', async () => {
    const lockDir = join(dir, 'a')
    mkdirSync(lockDir)
    const log = join(dir, 'a.jsonl')
    const entered = (): string[] => (existsSync(log) ? readFileSync(log, 'utf8') : '').split('\n').filter((l) => l.includes('"enter"')).map((l) => (JSON.parse(l) as { name: string }).name)
    const waitFor = async (check: () => boolean): Promise<void> => {
      while (!check()) await new Promise((r) => setTimeout(r, 20))
    }
    const first = [holder(lockDir, log, 's1', 'shared', 2500), holder(lockDir, log, 's2', 'shared', 2500)]
    await waitFor(() => entered().length === 2)
    const exclusive = [holder(lockDir, log, 'x1', 'exclusive', 400), holder(lockDir, log, 'x2', 'exclusive', 400)]
    await waitFor(() => readdirSync(lockDir).filter((n) => n.startsWith('wants-')).length === 2)
    // Comes while x1 and x2 wait: it must not go before them.
    const late = holder(lockDir, log, 's3', 'shared', 200)
    const codes = await Promise.all([...first, ...exclusive, late])
    expect(codes).toEqual([0, 0, 0, 0, 0])
    const all = spans(log)
    expect(all).toHaveLength(5)
    const by = (n: string): Span => all.find((s) => s.name === n)!
    expect(overlap(by('s1'), by('s2')), 'shared holders run together').toBe(true)
    for (const x of ['x1', 'x2']) for (const other of all) if (other.name !== x) expect(overlap(by(x), other), `${x} beside ${other.name}`).toBe(false)
    expect(by('s3').enter, 'the later shared holder waits for the waiting exclusive ones').toBeGreaterThan(Math.max(by('x1').leave, by('x2').leave) - 1)
  }, 30_000)

  it('ignores the entries of a holder that died', async () => {
    const lockDir = join(dir, 'b')
    mkdirSync(join(lockDir, 'held-999999999'), { recursive: true })
    mkdirSync(join(lockDir, 'shared-999999998'), { recursive: true })
    const log = join(dir, 'b.jsonl')
    expect(await holder(lockDir, log, 'x', 'exclusive', 10)).toBe(0)
    expect(spans(log).map((s) => s.name)).toEqual(['x'])
  }, 30_000)
})
