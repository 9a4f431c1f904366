/**
 * weir/testing's child-process runs report which planned crashes were crashes: a kill
 * that finds the child already finished, or a point the run never reaches, is not one,
 * and a crash placed by a stage's progress is a real SIGKILL in the middle of the run.
 */
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { listFiles, removeDir, runFileToCompletion, runToCompletion, tempDataDir, type ProcessCrash } from '../../testing/index.ts'
import wordcount from '../../examples/wordcount.ts'

const WORDCOUNT = join(import.meta.dirname, '..', '..', 'examples', 'wordcount.ts')

/** The last count per word in a word count's sink files. */
function totals(outDir: string): Record<string, number> {
  const t: Record<string, number> = {}
  for (const f of listFiles(outDir)) for (const l of readFileSync(f, 'utf8').split('\n')) if (l !== '') {
    const { word, count } = JSON.parse(l) as { word: string; count: number }
    t[word] = Math.max(t[word] ?? 0, count)
  }
  return t
}

describe('child-process crash runs', () => {
  it('a kill due after the child finished, and a point the run never reaches, are planned but not crashes', async () => {
    const d = tempDataDir()
    try {
      const late: ProcessCrash = { kind: 'timer', afterMs: 55_000 }
      const never: ProcessCrash = { kind: 'point', spec: { point: 'before-commit', hit: 1_000_000 } }
      const r = await runFileToCompletion(WORDCOUNT, { dataDir: join(d, 'data'), params: { lines: '300', out: join(d, 'out', 'c-{partition}.jsonl') }, crashes: [late, never], epochIntervalMs: 20 })
      expect(r.planned).toEqual([late, never])
      expect(r.crashed).toEqual([])
      expect(r.kills).toBe(0)
    } finally {
      removeDir(d)
    }
  }, 60_000)

  it('a crash placed after a stage processed N records is a SIGKILL mid-run, and the restart finishes exactly', async () => {
    const ref = tempDataDir()
    const d = tempDataDir()
    try {
      await runToCompletion(wordcount({ lines: '3000', out: join(ref, 'out', 'c-{partition}.jsonl') }), { dataDir: join(ref, 'data'), epochIntervalMs: 20 })
      // 3,000 lines of 8 words: the count stage processes 24,000 records in a whole run.
      const crash: ProcessCrash = { kind: 'point', spec: { point: 'after-pipe-commit', hit: 1, afterRecords: { stage: 'count', records: 12_000 } } }
      const r = await runFileToCompletion(WORDCOUNT, { dataDir: join(d, 'data'), params: { lines: '3000', out: join(d, 'out', 'c-{partition}.jsonl') }, crashes: [crash], epochIntervalMs: 20 })
      expect(r.crashed).toEqual([crash])
      expect(totals(join(d, 'out'))).toEqual(totals(join(ref, 'out')))
    } finally {
      removeDir(ref)
      removeDir(d)
    }
  }, 60_000)
})
