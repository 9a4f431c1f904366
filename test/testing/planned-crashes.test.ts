/**
 * A crash the kit plans is not a failure: it is logged below error level, saying it was
 * planned, so a passing recovery test does not print error lines with stacks. A real
 * failure still logs at error level.
 */
import { join } from 'node:path'
import { pino } from 'pino'
import { describe, expect, it } from 'vitest'
import { Pipeline, Processor, policy, type StreamRecord } from '../../index.ts'
import { GeneratorSource } from '../../processors/index.ts'
import { removeDir, runToCompletion, tempDataDir } from '../../testing/index.ts'
import wordcount from '../../examples/wordcount.ts'

type LogLine = { level: number; msg: string; [field: string]: unknown }

function capture(): { log: pino.Logger; lines: LogLine[] } {
  const lines: LogLine[] = []
  return { lines, log: pino({ level: 'trace' }, { write: (l: string) => void lines.push(JSON.parse(l) as LogLine) }) }
}

class Refuses extends Processor<string, string> {
  onRecord(r: StreamRecord<string>): void {
    throw new Error(`cannot handle ${r.value}`)
  }
}

describe('planned crashes in the log', () => {
  it('a simulated crash logs at info, says it was planned, and carries no stack', async () => {
    const d = tempDataDir()
    try {
      const { log, lines } = capture()
      const crashes = [{ point: 'after-pipe-commit' as const, hit: 2 }, { point: 'mid-batch' as const, hit: 3 }]
      const r = await runToCompletion(wordcount({ lines: '300', out: join(d, 'out', 'c-{partition}.jsonl') }), { dataDir: join(d, 'data'), crashes, log })
      expect(r.crashed).toEqual(crashes)
      expect(lines.filter((l) => l.level >= 50)).toEqual([])
      const planned = lines.filter((l) => l.msg.startsWith('planned crash'))
      expect(planned.map((l) => [l.level, l.point, l.hit])).toEqual([[30, 'after-pipe-commit', 2], [30, 'mid-batch', 3]])
      expect(JSON.stringify(planned)).not.toContain('stack')
    } finally {
      removeDir(d)
    }
  })

  it('a real failure still logs at error level', async () => {
    const d = tempDataDir()
    try {
      const { log, lines } = capture()
      const p = new Pipeline('refuses')
      p.source<string>('lines', () => new GeneratorSource<string>({ count: 5, generate: (i) => ({ key: `k${i}`, value: `v${i}` }) }))
        .process('refuse', Refuses, { onError: policy.failStop() })
      await expect(runToCompletion(p, { dataDir: d, log })).rejects.toThrow()
      const errors = lines.filter((l) => l.level >= 50)
      expect(errors.length).toBeGreaterThan(0)
      expect(errors.some((l) => JSON.stringify(l).includes('cannot handle v'))).toBe(true)
      expect(lines.some((l) => l.msg.startsWith('planned crash'))).toBe(false)
    } finally {
      removeDir(d)
    }
  })
})
