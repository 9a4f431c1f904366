/**
 * The order test files start in: the files that call runsAlone() first, then the rest as
 * vitest orders them (longest or largest first). A file that runs alone waits until every
 * other running file has finished, with its own fork idle meanwhile; started among shared
 * files it costs that drain each time (about 150 s of a 19-minute run here, seven such
 * files). Started first, they run one after the other before any shared file, and nothing
 * drains.
 *
 * @example
 * // vitest.config.ts
 * sequence: { sequencer: AloneFirstSequencer }
 */
import { readFileSync } from 'node:fs'
import { BaseSequencer, type TestSpecification } from 'vitest/node'

/** A top-level `runsAlone()` call, as test/support/file-lock.ts asks files to make it. */
const RUNS_ALONE = /^runsAlone\(\)/m

export class AloneFirstSequencer extends BaseSequencer {
  override async sort(files: TestSpecification[]): Promise<TestSpecification[]> {
    const sorted = await super.sort(files)
    const alone = new Set(sorted.filter((f) => RUNS_ALONE.test(readFileSync(f.moduleId, 'utf8'))))
    return [...sorted.filter((f) => alone.has(f)), ...sorted.filter((f) => !alone.has(f))]
  }
}
