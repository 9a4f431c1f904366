/**
 * A pipeline under test whose sink writes to a relative path (`out/…`) writes into the test
 * run's directory, never into the project the tests run in: in-process and in a child
 * process, by default in the data dir, or where `workDir` says.
 */
import { existsSync, readFileSync } from 'node:fs'
import { join, resolve } from 'node:path'
import { describe, expect, it } from 'vitest'
import { removeDir, runFileToCompletion, runToCompletion, tempDataDir } from '../../testing/index.ts'
import relativeSink, { RELATIVE_OUT } from './fixtures/relative-sink.ts'

const FIXTURE = join(import.meta.dirname, 'fixtures', 'relative-sink.ts')

function lines(file: string): Array<{ key: string; value: string }> {
  return readFileSync(file, 'utf8').split('\n').filter((l) => l !== '').map((l) => JSON.parse(l) as { key: string; value: string })
}

describe('relative sink paths of a pipeline under test', () => {
  // Where the sink would write if relative paths resolved against the test process's working directory.
  const inProject = resolve(RELATIVE_OUT)

  it('in-process: written under the data dir by default, under workDir when given', async () => {
    const d = tempDataDir()
    try {
      await runToCompletion(relativeSink(), { dataDir: join(d, 'data') })
      expect(lines(join(d, 'data', RELATIVE_OUT))).toHaveLength(50)
      await runToCompletion(relativeSink(), { dataDir: join(d, 'data2'), workDir: join(d, 'work') })
      expect(lines(join(d, 'work', RELATIVE_OUT))).toHaveLength(50)
      expect(existsSync(inProject)).toBe(false)
    } finally {
      removeDir(d)
    }
  })

  it('in a child process: written under the data dir by default, under workDir when given', async () => {
    const d = tempDataDir()
    try {
      await runFileToCompletion(FIXTURE, { dataDir: join(d, 'data'), crashes: [{ kind: 'point', spec: { point: 'after-pipe-commit', hit: 1 } }] })
      expect(lines(join(d, 'data', RELATIVE_OUT)).map((l) => l.value).sort()).toEqual(Array.from({ length: 50 }, (_, i) => `word-${i}`).sort())
      await runFileToCompletion(FIXTURE, { dataDir: join(d, 'data2'), workDir: join(d, 'work') })
      expect(lines(join(d, 'work', RELATIVE_OUT))).toHaveLength(50)
      expect(existsSync(inProject)).toBe(false)
    } finally {
      removeDir(d)
    }
  })
})
