/**
 * The JSONL file sink writes each record once: across crashes anywhere in the checkpoint
 * protocol (between the pipe commit and the publish too), with no line of an uncommitted
 * checkpoint ever in the file, and with a zombie worker (paused past its timeout while its
 * actor moved, then resumed) on a real cluster. It refuses a file shortened outside weir.
 */
import { randomUUID } from 'node:crypto'
import { existsSync, readFileSync, readdirSync, statSync, truncateSync } from 'node:fs'
import { join } from 'node:path'
import { afterAll, describe, expect, it, onTestFailed, onTestFinished } from 'vitest'
import { Pipeline } from '../../index.ts'
import { GeneratorSource, JsonlFileSink } from '../../processors/index.ts'
import { readState, removeDir, runToCompletion, tempDataDir } from '../../testing/index.ts'
import { startEmbedded } from '../../runner/embedded-runner.ts'
import { assignmentMessage, type AssignmentMessage } from '../../runtime/control/messages.ts'
import { NatsBus } from '../../runtime/control/nats/nats-bus.ts'
import { Faults, SimulatedCrash } from '../../runtime/faults.ts'
import { TestCluster } from '../support/cluster.ts'
import { requireService } from '../support/services.ts'
import { countsPerWord, expectExactWordCounts, sleep, tempDirs, until, wordcountReference } from '../support/weir-cli.ts'

const kafka = await requireService('kafka')
const nats = await requireService('nats')
const dirs: string[] = []

function sinkPipeline(out: string, count: number): Pipeline {
  const p = new Pipeline('sink')
  p.source<number>('n', () => new GeneratorSource<number>({ count, generate: (i) => ({ key: `k${i}`, value: i }) }))
    .to('file', () => new JsonlFileSink<number>({ path: out, format: (r) => r.value }))
  return p
}

function numbers(out: string): number[] {
  const text = readFileSync(out, 'utf8')
  return text === '' ? [] : text.trim().split('\n').map(Number)
}

const staging = (dir: string): string[] => readdirSync(dir).filter((f) => f.endsWith('.staging'))

describe('JSONL file sink', () => {
  it('holds every record exactly once after crashes around the commit', async () => {
    const d = tempDataDir('weir-sink-')
    dirs.push(d)
    const out = join(d, 'out.jsonl')
    await runToCompletion(sinkPipeline(out, 2000), {
      dataDir: join(d, 'data'),
      crashes: [{ point: 'before-commit', hit: 2 }, { point: 'after-pipe-commit', hit: 2 }, { point: 'mid-batch', hit: 3 }],
      epochIntervalMs: 10,
      actorConfig: { maxBatch: 100 },
    })
    expect(numbers(out)).toEqual(Array.from({ length: 2000 }, (_, i) => i))
  })

  it('holds every record exactly once after crashes between the pipe commit and the publish, also in the publish at start', async () => {
    const d = tempDataDir('weir-sink-')
    dirs.push(d)
    const out = join(d, 'out.jsonl')
    // The third crash is the first publish of its run: the one at start, of the newest committed checkpoint.
    const crashes = [{ point: 'before-publish', hit: 2 }, { point: 'after-publish', hit: 3 }, { point: 'before-publish', hit: 1 }, { point: 'after-publish', hit: 1 }] as const
    const { crashed } = await runToCompletion(sinkPipeline(out, 2000), { dataDir: join(d, 'data'), crashes: [...crashes], epochIntervalMs: 10, actorConfig: { maxBatch: 100 } })
    expect(crashed, 'every crash point was reached').toEqual(crashes)
    expect(numbers(out)).toEqual(Array.from({ length: 2000 }, (_, i) => i))
    expect(staging(d), 'staging files left after the run').toEqual([])
  })

  it('publishes an epoch of several MiB (staged in parts) whole, also when a crash came before its publish (durable: true)', async () => {
    const d = tempDataDir('weir-sink-')
    dirs.push(d)
    const out = join(d, 'out.jsonl')
    const p = (): Pipeline => {
      const pipeline = new Pipeline('sink')
      pipeline.source<number>('n', () => new GeneratorSource<number>({ count: 6000, generate: (i) => ({ key: `k${i}`, value: i }) }))
        .to('file', () => new JsonlFileSink<number>({ path: out, durable: true, format: (r) => ({ n: r.value, pad: 'x'.repeat(1000) }) }))
      return pipeline
    }
    // Rare epochs: after the first micro-batch (committed at once) the rest comes in one or two checkpoints of MiBs.
    const { crashed } = await runToCompletion(p(), { dataDir: join(d, 'data'), crashes: [{ point: 'before-publish', hit: 2 }], epochIntervalMs: 5000, actorConfig: { maxBatch: 10_000 } })
    expect(crashed).toHaveLength(1)
    const lines = readFileSync(out, 'utf8').split('\n').filter((l) => l !== '').map((l) => (JSON.parse(l) as { n: number }).n)
    expect(lines).toEqual(Array.from({ length: 6000 }, (_, i) => i))
    expect(staging(d)).toEqual([])
  })

  it('never shows a line of a checkpoint that did not commit: after a crash the file holds only what committed state accounts for', async () => {
    // Lines big enough that an epoch also spills to its staging file before the barrier.
    const p = (out: string): Pipeline => {
      const pipeline = new Pipeline('sink')
      pipeline.source<number>('n', () => new GeneratorSource<number>({ count: 3000, generate: (i) => ({ key: `k${i}`, value: i }) }))
        .to('file', () => new JsonlFileSink<number>({ path: out, format: (r) => ({ n: r.value, pad: 'x'.repeat(600) }) }))
      return pipeline
    }
    const linesOf = (out: string): number[] => (existsSync(out) ? readFileSync(out, 'utf8') : '').split('\n').filter((l) => l !== '').map((l) => (JSON.parse(l) as { n: number }).n)
    // Hits of 'before-commit' come from the source's and the sink's barriers, in an order the
    // timing decides. Counted from the moment the sink processed `records` in the run, the next
    // sink barrier closes an epoch holding lines (spilled to its staging file by onCheckpoint):
    // it is hit 1 or hit 2, so each place is tried with both and one of them usually crashes
    // there; hit 3 too, since an epoch the sink closes empty has nothing staged. How far each
    // run gets before its crash is timing as well (a round ended after two crashes once), so
    // rounds on fresh data repeat until enough crashes came at a sink barrier with lines staged.
    const places = [1, 150, 300, 450, 600, 900].flatMap((records) => [1, 2, 3].map((hit) => ({ records, hit })))
    const wanted = 3
    let sinkCrashes = 0
    let crashes = 0
    let rounds = 0
    while (sinkCrashes < wanted && rounds < 12) {
      rounds++
      const d = tempDataDir('weir-sink-')
      dirs.push(d)
      const out = join(d, 'out.jsonl')
      for (const { records, hit } of places) {
        const faults = new Faults({ point: 'before-commit', hit, afterRecords: { stage: 'file', records } }, 'throw')
        const run = await startEmbedded(p(out), { dataDir: join(d, 'data'), epochIntervalMs: 20, actorConfig: { maxBatch: 250 }, faults })
        const crashed = await run.done.then(() => false, (err: unknown) => {
          if (!(err instanceof SimulatedCrash)) throw err
          return true
        })
        const committed = ((await readState(p(out), join(d, 'data'), 'file')).actor[0]?.['committed-bytes'] as number | undefined) ?? 0
        const size = existsSync(out) ? statSync(out).size : 0
        expect(size, `after a crash at before-commit hit ${hit} after ${records} sink records: ${size} bytes in the file, committed state accounts for ${committed}`).toBeLessThanOrEqual(committed)
        const lines = linesOf(out)
        expect(lines, 'the file holds a prefix of the records, each once').toEqual(Array.from({ length: lines.length }, (_, i) => i))
        if (!crashed) break
        crashes++
        if (staging(d).length > 0) sinkCrashes++
      }
      await runToCompletion(p(out), { dataDir: join(d, 'data'), epochIntervalMs: 20 })
      expect(linesOf(out)).toEqual(Array.from({ length: 3000 }, (_, i) => i))
      expect(staging(d), 'staging files left after the run').toEqual([])
    }
    console.log(`jsonl sink uncommitted lines: ${JSON.stringify({ rounds, crashes, sinkCrashesWithLinesStaged: sinkCrashes })}`)
    expect(sinkCrashes, `crashes at a barrier of the sink with lines staged, in ${rounds} rounds`).toBeGreaterThanOrEqual(wanted)
  })

  it('refuses to start when the file is shorter than its last checkpoint', async () => {
    const d = tempDataDir('weir-sink-')
    dirs.push(d)
    const out = join(d, 'out.jsonl')
    await runToCompletion(sinkPipeline(out, 100), { dataDir: join(d, 'data') })
    truncateSync(out, 10)
    const run = await startEmbedded(sinkPipeline(out, 100), { dataDir: join(d, 'data') })
    await expect(run.done).rejects.toMatchObject({ code: 'WEIR_STATE_CORRUPTED' })
  })

  it('refuses a path without {partition} for a stage of several actors', async () => {
    const d = tempDataDir('weir-sink-')
    dirs.push(d)
    const p = new Pipeline('sink')
    p.source<number>('n', () => new GeneratorSource<number>({ count: 10, generate: (i) => ({ key: `k${i}`, value: i }) }), { partitions: 2 })
      .to('file', () => new JsonlFileSink<number>({ path: join(d, 'out.jsonl') }))
    const run = await startEmbedded(p, { dataDir: join(d, 'data') })
    await expect(run.done).rejects.toMatchObject({ code: 'WEIR_CONFIG_INVALID', context: { field: 'path' } })
  })
})

/**
 * Reads the word count's sink files now and then every 20 ms until stopped; reports the
 * first lines seen twice (a word's count in two lines) or torn (not JSON; a last line still
 * being written is not looked at), with the time since the watch began.
 */
function watchForRepeats(dir: string): { stop(): { problems: string[]; reads: number } } {
  const since = Date.now()
  const problems: string[] = []
  let reads = 0
  const look = (): void => {
    const seen = new Set<string>()
    for (const f of existsSync(dir) ? readdirSync(dir).filter((x) => !x.startsWith('.')) : []) {
      const text = readFileSync(join(dir, f), 'utf8')
      for (const line of text.slice(0, text.lastIndexOf('\n') + 1).split('\n')) {
        if (line === '') continue
        let r: { word: string; count: number }
        try {
          r = JSON.parse(line) as { word: string; count: number }
        } catch {
          problems.push(`+${Date.now() - since} ms: ${f} has a torn line ${JSON.stringify(line.slice(0, 80))}`)
          continue
        }
        const id = `${r.word} ${r.count}`
        if (seen.has(id)) problems.push(`+${Date.now() - since} ms: ${f} repeats '${r.word}' count ${r.count}`)
        seen.add(id)
      }
    }
    reads++
  }
  look()
  const timer = setInterval(() => {
    if (problems.length < 5) look()
  }, 20)
  return {
    stop: () => {
      clearInterval(timer)
      return { problems: problems.slice(0, 5), reads }
    },
  }
}

describe.skipIf(!kafka.available || !nats.available)('JSONL file sink in a cluster', () => {
  const tempDir = tempDirs('weir-sink-zombie-')
  const LINES = 600

  it('a worker paused past its timeout while its sink actors move, then resumed: each file holds each line once', async () => {
    const dir = tempDir()
    const expected = await wordcountReference(dir, LINES)
    const cluster = `z${randomUUID().slice(0, 8)}`
    const name = `sink-zombie-${randomUUID().slice(0, 8)}`
    const out = join(dir, 'out')
    const c = new TestCluster({ cluster, kafka: `kafka://${kafka.url}`, nats: nats.url, logDir: join(dir, 'logs') })
    onTestFinished(() => c.killAll())
    onTestFailed(() => console.log(`assignments: ${JSON.stringify(assignments.map((a) => [a.generation, a.actors]))}\n${c.logTails(30)}`))
    const observer = await NatsBus.connect({ servers: [nats.url], name: 'sink-zombie-test' })
    onTestFinished(() => observer.close())
    const assignments: AssignmentMessage[] = []
    observer.subscribe(`weir.${cluster}.${name}.assignment`, (m) => {
      const a = assignmentMessage.safeParse(m)
      if (a.success) assignments.push(a.data)
    })
    // Epochs of a second: the zombie is paused with lines of an open epoch in hand, most likely
    // not in the middle of a commit (which would end in its fencing before it writes more).
    c.startCoordinator('c1', ['--epoch-ms', '1000', '--worker-timeout-ms', '2000', '--settle-ms', '300'])
    const args = (id: string): string[] => ['--epoch-ms', '1000', '--heartbeat-ms', '250', '--state-dir', join(dir, id),
      '--param', `name=${name}`, '--param', `lines=${LINES}`, '--param', 'rate=40', '--param', `out=${out}/c-{partition}.jsonl`]
    const workers = [c.startWorker('a', 'examples/wordcount.ts', args('a')), c.startWorker('b', 'examples/wordcount.ts', args('b'))]
    const sinksOf = (a: AssignmentMessage, worker: string): string[] => Object.entries(a.actors).filter(([actor, w]) => w === worker && actor.startsWith('sink/')).map(([actor]) => actor)
    // Both workers placed; then the worker that runs sink actors is paused once they have written a while.
    const placed = await until(() => [...assignments].reverse().find((a) => new Set(Object.values(a.actors)).size === 2), 30_000, 'actors on both workers')
    await sleep(1000)
    const before = assignments.at(-1)!
    const zombie = workers.find((w) => sinksOf(before, w.name).length > 0)!
    const successor = workers.find((w) => w !== zombie)!.name
    const moved = sinksOf(before, zombie.name)
    const files = moved.map((x) => join(out, `c-${x.split('/')[1]}.jsonl`))
    const size = (f: string): number => (existsSync(f) ? statSync(f).size : 0)
    await until(() => files.every((f) => size(f) > 0), 30_000, `${zombie.name} wrote to its sink actors' files`)
    await sleep(500)
    zombie.signal('SIGSTOP')
    const pausedAt = Date.now()
    // The coordinator declares it dead and gives its actors to the other worker, which restores them and writes on.
    await until(() => assignments.some((a) => a.generation > before.generation && !Object.values(a.actors).includes(zombie.name) && moved.every((x) => a.actors[x] === successor)), 30_000, `${moved.join(', ')} moved from ${zombie.name} to ${successor} (placed: ${JSON.stringify(placed.actors)})`)
    const sizes = files.map(size)
    await until(() => files.every((f, i) => size(f) > sizes[i]!), 30_000, `${successor} wrote to the moved actors' files`)
    // The zombie's writes could also be undone later (a restart that truncates, say): the
    // files are watched from just before it resumes, and must never hold a torn or a repeated line.
    const watch = watchForRepeats(out)
    zombie.signal('SIGCONT')
    const resumedAt = Date.now()
    for (const w of workers) {
      const o = await w.done
      expect(o.code, `${w.name}${w === zombie ? ' (the zombie)' : ''}: ${o.stderr.slice(-2000)}`).toBe(0)
    }
    const seen = watch.stop()
    // It did act after waking: its sink actors went on to a commit, which was fenced.
    const fenced = readFileSync(zombie.logFile, 'utf8').split('\n').filter((l) => l.includes('actor fenced') && moved.some((x) => l.includes(`"actor":"${x}"`)) && Number(/"time":(\d+)/.exec(l)?.[1]) >= resumedAt)
    expect(fenced.length, `${zombie.name}'s sink actors were fenced after it resumed`).toBeGreaterThan(0)
    const report = `${zombie.name} (sink actors ${moved.join(', ')}) paused ${((resumedAt - pausedAt) / 1000).toFixed(1)} s; the files were read ${seen.reads} times`
    expect(seen.problems, report).toEqual([])
    for (const [word, counts] of countsPerWord(out)) {
      const doubled = counts.filter((n, i) => counts.indexOf(n) !== i)
      expect(doubled, `'${word}': lines written twice\n${report}`).toEqual([])
    }
    expectExactWordCounts(out, expected)
  }, 180_000)
})

afterAll(() => {
  for (const d of dirs) removeDir(d)
})
