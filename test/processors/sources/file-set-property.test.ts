/**
 * FileSetSource over a directory: the recovery property with real SIGKILLs (see
 * fixtures/file-set-property.ts). WEIR_FILESET_PROPERTY_RUNS sets the case count (default 9),
 * WEIR_PROPERTY_SEED replays one.
 */
import { mkdirSync, writeFileSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { afterAll, describe, expect, it } from 'vitest'
import { removeTempDirs, tempDataDir } from '../../../testing/index.ts'
import { fileSetRecoveryProperty } from './fixtures/file-set-property.ts'

const RUNS = Number(process.env.WEIR_FILESET_PROPERTY_RUNS ?? 9)
const SEED = process.env.WEIR_PROPERTY_SEED === undefined ? undefined : Number(process.env.WEIR_PROPERTY_SEED)

afterAll(removeTempDirs)

describe('FileSetSource over a directory, killed', () => {
  it(`emits every line once and dead-letters the malformed one, across real SIGKILLs at generated points; a rerun of the run id emits nothing (${RUNS} cases)`, async () => {
    const stats = await fileSetRecoveryProperty({
      label: 'directory',
      runs: RUNS,
      seed: SEED,
      target: {
        async put(objects) {
          const dir = join(tempDataDir('weir-fileset-objects-'), 'objects')
          for (const [key, content] of Object.entries(objects)) {
            mkdirSync(dirname(join(dir, key)), { recursive: true })
            writeFileSync(join(dir, key), content)
          }
          return { dir }
        },
      },
    })
    expect(stats.cases).toBe(RUNS)
    expect(stats.fired).toBe(stats.planned)
  }, Math.max(300_000, RUNS * 30_000))
})
