/**
 * Pipeline files in a folder whose package.json has no "type": "module", run by `weir run`
 * from weir's sources (bin/weir.js registers tsx there, and tsx loads such a .ts file as
 * CommonJS): the file either loads, or the run fails with WEIR_PIPELINE_LOAD_FAILED saying
 * to rename it to .mts or add "type": "module", never with Node's "Cannot require() ES
 * Module … in a cycle" (what Node 20 said before). The compiled bin's cases (type stripping
 * first, then tsx) are in test/package/install.test.ts.
 */
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { ROOT, tempDirs, weir } from '../support/weir-cli.ts'

const tempDir = tempDirs('weir-module-import-')

const pipelineFile = (name: string): string => `
import { Pipeline, Processor, type Context, type StreamRecord } from '${ROOT}/index.ts'
import { GeneratorSource, JsonlFileSink } from '${ROOT}/processors/index.ts'
class Double extends Processor<number, number> {
  onRecord(r: StreamRecord<number>, ctx: Context<number>): void { ctx.emit(r.key, r.value * 2) }
}
const p = new Pipeline('${name}')
p.source('numbers', () => new GeneratorSource({ count: 20, generate: (i) => ({ key: String(i % 2), value: i }) }))
  .process('double', Double)
  .to('sink', () => new JsonlFileSink({ path: 'out/${name}.jsonl' }))
export default p
`

describe('a pipeline .ts file in a package without "type": "module"', () => {
  it('loads, or fails saying to rename it to .mts or add "type": "module"', async () => {
    const dir = tempDir()
    mkdirSync(join(dir, 'app'))
    writeFileSync(join(dir, 'app/package.json'), JSON.stringify({ name: 'not-a-module' }))
    writeFileSync(join(dir, 'app/pipeline.ts'), pipelineFile('cjs-folder'))
    const r = await weir(['run', 'pipeline.ts', '--data-dir', join(dir, 'data'), '-q'], { cwd: join(dir, 'app') })
    expect(r.stderr).not.toMatch(/in a cycle|not yet fully loaded|not been linked/)
    if (r.code === 0) {
      const values = readFileSync(join(dir, 'app/out/cjs-folder.jsonl'), 'utf8').trim().split('\n').map((l) => (JSON.parse(l) as { value: number }).value)
      expect(values.sort((a, b) => a - b)).toEqual(Array.from({ length: 20 }, (_, i) => i * 2))
    } else {
      expect(r.code, r.stderr).toBe(2)
      expect(r.stderr).toContain(`cannot load pipeline file ${join(dir, 'app/pipeline.ts')}`)
      expect(r.stderr).toContain(`rename it to .mts, or add "type": "module" to ${join(dir, 'app/package.json')}`)
      expect(r.stderr).toContain('[WEIR_PIPELINE_LOAD_FAILED]')
    }
    process.stdout.write(`module-import: Node ${process.versions.node} ${r.code === 0 ? 'loaded the file' : 'refused it with the advice'}\n`)
  })

  it('as .mts it loads', async () => {
    const dir = tempDir()
    mkdirSync(join(dir, 'app'))
    writeFileSync(join(dir, 'app/package.json'), JSON.stringify({ name: 'not-a-module' }))
    writeFileSync(join(dir, 'app/pipeline.mts'), pipelineFile('mts-file'))
    const r = await weir(['run', 'pipeline.mts', '--data-dir', join(dir, 'data'), '-q'], { cwd: join(dir, 'app') })
    expect(r.code, r.stderr).toBe(0)
    expect(readFileSync(join(dir, 'app/out/mts-file.jsonl'), 'utf8').trim().split('\n')).toHaveLength(20)
  })
})
