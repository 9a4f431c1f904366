/**
 * The order of test files: those that call runsAlone() first, then the rest in vitest's own
 * order (failed first, then longest first when it has timings). A file that runs alone
 * holds up the other fork (test/support/file-lock.ts); at the start that costs only the
 * alone files' own time, where one met among long shared files would wait for them too.
 */
import { readFileSync } from 'node:fs'
import { BaseSequencer, type TestSpecification } from 'vitest/node'

const ALONE = /^runsAlone\(\)/m

export class AloneFirstSequencer extends BaseSequencer {
  override async sort(files: TestSpecification[]): Promise<TestSpecification[]> {
    const alone = files.filter((f) => ALONE.test(readFileSync(f.moduleId, 'utf8')))
    const rest = files.filter((f) => !alone.includes(f))
    return [...alone, ...(await super.sort(rest))]
  }
}
