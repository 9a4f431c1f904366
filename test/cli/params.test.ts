/** `weir run --param` with a param the pipeline never reads is refused before anything is written. */
import { existsSync } from 'node:fs'
import { join } from 'node:path'
import { expect, it } from 'vitest'
import { tempDirs, weir } from '../support/weir-cli.ts'

const tempDir = tempDirs('weir-cli-params-')

it('weir run --param kyes=3 is refused naming the params the pipeline reads and the closest', async () => {
  const dataDir = join(tempDir(), 'data')
  const r = await weir(['run', 'test/cli/fixtures/counting.ts', '--data-dir', dataDir, '--param', 'n=5', '--param', 'kyes=3'])
  expect(r.code, r.stderr).toBe(2)
  expect(r.stderr).toContain("weir: error: --param kyes=3: test/cli/fixtures/counting.ts does not read a param 'kyes' (with these params it reads countPartitions, failEvery, keys, n, partitions); did you mean keys? [WEIR_CONFIG_INVALID]")
  expect(existsSync(dataDir)).toBe(false)
})
