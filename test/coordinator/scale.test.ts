/**
 * Scale test: 1 → 3 → 1 workers during a run; every actor runs on exactly one worker at
 * every generation, and output is exact.
 *
 * Real `weir coordinator` and `weir worker` processes on Kafka and NATS. A paced, bounded
 * word count (~15 s) starts on worker a; b joins at ~3 s and c at ~5 s; b and c are stopped
 * gracefully (SIGTERM) at ~8 s and ~10 s and must exit 0 after handing their actors off;
 * a finishes the pipeline. A test-side NATS client observes every assignment, hello, leave
 * and progress event of the pipeline:
 * - generations strictly increase (a repeated generation is only a re-publish, identical);
 * - every generation maps every actor (all stages × partitions) to one worker that is alive
 *   then (hello heard, no leave heard, process not exited), balanced (max − min ≤ 1); an
 *   actor in a planned move is listed as releasing from its old owner to its new one, and
 *   counts for the new one;
 * - the workers of successive generations are {a}, {a,b}, {a,b,c}, {a,c}, {a};
 * - no actor is reported running/committing by two workers at overlapping times beyond a
 *   short hand-off window (progress events come about once a second per actor).
 * The output equals `weir run`'s reference and every word's counts are 1..N.
 */
import { randomUUID } from 'node:crypto'
import { join } from 'node:path'
import { pino } from 'pino'
import { describe, expect, it, onTestFinished } from 'vitest'
import { coordinatedPipeline } from '../../coordinator/coordinator.ts'
import { assignmentMessage, workerHello, workerLeave } from '../../runtime/control/messages.ts'
import { NatsBus } from '../../runtime/control/nats/nats-bus.ts'
import { actorProgress } from '../../runtime/control/progress.ts'
import { loadPipeline } from '../../runtime/pipeline-file.ts'
import { requireService } from '../support/services.ts'
import { expectExactWordCounts, ROOT, sleep, startWeir, tempDirs, wordcountReference, type Outcome } from '../support/weir-cli.ts'

const kafka = await requireService('kafka')
const nats = await requireService('nats')
const tempDir = tempDirs('weir-scale-')
/** Lines per source partition, and lines per second per partition: about 15 s of input. */
const LINES = 600
const RATE = 40
/** How long two workers may both report one actor running while it moves (progress comes ~1/s). */
const HANDOFF_WINDOW_MS = 3000

interface Proc {
  id: string
  startedAt: number
  exitedAt?: number
  done: Promise<Outcome>
  kill(signal?: NodeJS.Signals): void
  stdout(): string
}

/** What the test heard on the bus and did to the processes, in order, for the failure messages. */
interface Generation {
  generation: number
  at: number
  actors: Record<string, string>
}

interface Stint {
  worker: string
  from: number
  to: number
}

/**
 * Per actor, the spans during which each worker reported it running or committing: a new
 * span starts after a silence longer than `gapMs` (the actor left that worker and came back).
 */
function runningStints(events: { actor: string; worker: string; at: number }[], gapMs: number): Map<string, Stint[]> {
  const byActor = new Map<string, Stint[]>()
  const open = new Map<string, Stint>()
  for (const e of [...events].sort((x, y) => x.at - y.at)) {
    const key = `${e.actor}\u0000${e.worker}`
    const s = open.get(key)
    if (s !== undefined && e.at - s.to <= gapMs) {
      s.to = e.at
      continue
    }
    const stint = { worker: e.worker, from: e.at, to: e.at }
    open.set(key, stint)
    byActor.set(e.actor, [...(byActor.get(e.actor) ?? []), stint])
  }
  return byActor
}

describe.skipIf(!kafka.available || !nats.available)('scaling a cluster during a run', () => {
  it('1 → 3 → 1 workers: one worker per actor at every generation, balanced, graceful hand-offs, exact output', async () => {
    const dir = tempDir()
    const expected = await wordcountReference(dir, LINES)

    const cluster = `s${randomUUID().slice(0, 8)}`
    const name = `scale-${randomUUID().slice(0, 8)}`
    const out = join(dir, 'out')
    const params = { name, lines: String(LINES), rate: String(RATE), out: `${out}/c-{partition}.jsonl` }
    const allActors = coordinatedPipeline(await loadPipeline(join(ROOT, 'examples/wordcount.ts'), params)).shape.stages
      .flatMap((s) => Array.from({ length: s.parallelism }, (_, p) => `${s.name}/${p}`)).sort()

    // The observer: every control and progress message of this pipeline.
    const bus = await NatsBus.connect({ servers: [nats.url], name: 'weir-scale-test', log: pino({ level: 'silent' }) })
    onTestFinished(() => bus.close())
    const timeline: string[] = []
    const t0 = Date.now()
    const note = (what: string): void => void timeline.push(`${((Date.now() - t0) / 1000).toFixed(2)}s ${what}`)
    const generations: Generation[] = []
    const problems: string[] = []
    const helloAt = new Map<string, number>()
    const leaveAt = new Map<string, number>()
    const procs = new Map<string, Proc>()
    const running: { actor: string; worker: string; at: number }[] = []
    const lifecycles = new Set<string>()
    let finishedStages = ''

    const aliveAt = (w: string, at: number): string | undefined => {
      const p = procs.get(w)
      if (p === undefined) return 'no such process'
      if (!helloAt.has(w)) return 'no hello heard yet'
      if (leaveAt.has(w)) return `it left at ${((leaveAt.get(w)! - t0) / 1000).toFixed(2)}s`
      if (p.exitedAt !== undefined && p.exitedAt <= at) return 'its process had exited'
      return undefined
    }

    bus.subscribe(`weir.${cluster}.${name}.>`, (raw, subject) => {
      const kind = subject.split('.').at(-1)
      const at = Date.now()
      if (kind === 'worker-hello') {
        const m = workerHello.safeParse(raw)
        if (m.success && !helloAt.has(m.data.worker)) {
          helloAt.set(m.data.worker, at)
          note(`hello ${m.data.worker}`)
        }
      } else if (kind === 'worker-leave') {
        const m = workerLeave.safeParse(raw)
        if (m.success) {
          leaveAt.set(m.data.worker, at)
          note(`leave ${m.data.worker}`)
        }
      } else if (kind === 'assignment') {
        const m = assignmentMessage.safeParse(raw)
        if (!m.success) return void problems.push(`malformed assignment: ${JSON.stringify(raw)}`)
        const g = m.data
        // Where every actor goes: an actor being released counts for its new owner.
        const target: Record<string, string> = { ...g.actors }
        for (const [actor, r] of Object.entries(g.releasing ?? {})) {
          if (g.actors[actor] !== undefined) problems.push(`generation ${g.generation} assigns ${actor} to ${g.actors[actor]} while ${r.from} releases it`)
          if (r.to !== undefined) target[actor] = r.to
        }
        const last = generations.at(-1)
        if (last !== undefined && g.generation === last.generation) {
          // A worker repeating its hello gets the current generation again: it must be the same.
          if (JSON.stringify(target) !== JSON.stringify(last.actors)) problems.push(`generation ${g.generation} published twice with different actors`)
          return
        }
        if (last !== undefined && g.generation < last.generation) problems.push(`generation ${g.generation} after ${last.generation}`)
        generations.push({ generation: g.generation, at, actors: target })
        const perWorker = new Map<string, number>()
        for (const w of Object.values(target)) perWorker.set(w, (perWorker.get(w) ?? 0) + 1)
        const releasing = Object.keys(g.releasing ?? {}).length
        note(`generation ${g.generation}: ${[...perWorker].sort().map(([w, n]) => `${w}×${n}`).join(' ')}${releasing > 0 ? ` (${releasing} releasing)` : ''}`)
        const mapped = Object.keys(target).sort()
        if (JSON.stringify(mapped) !== JSON.stringify(allActors)) problems.push(`generation ${g.generation} maps ${mapped.join(',')}, expected every actor ${allActors.join(',')}`)
        for (const w of perWorker.keys()) {
          const why = aliveAt(w, at)
          if (why !== undefined) problems.push(`generation ${g.generation} assigns actors to ${w}: ${why}`)
        }
        const counts = [...perWorker.values()]
        if (Math.max(...counts) - Math.min(...counts) > 1) problems.push(`generation ${g.generation} unbalanced: ${[...perWorker].map(([w, n]) => `${w}×${n}`).join(' ')}`)
        // Every live member has actors: none joined and was left idle.
        for (const w of procs.keys()) {
          if (aliveAt(w, at) === undefined && !perWorker.has(w)) problems.push(`generation ${g.generation} gives nothing to live worker ${w}`)
        }
      } else if (kind === 'actor-finished') {
        const m = raw as { actor?: string; worker?: string }
        note(`actor ${m.actor} finished on ${m.worker}`)
      } else if (kind === 'epoch') {
        const m = raw as { finishedStages?: string[] }
        const f = (m.finishedStages ?? []).join(',')
        if (f !== finishedStages) note(`finished stages: ${(finishedStages = f) || '-'}`)
      } else if (kind === 'progress') {
        const m = actorProgress.safeParse(raw)
        if (!m.success) return
        lifecycles.add(m.data.lifecycle)
        if (m.data.lifecycle === 'running' || m.data.lifecycle === 'committing') running.push({ actor: m.data.actor, worker: m.data.worker, at: m.data.at })
      }
    })

    const start = (id: string, args: string[]): Proc => {
      const p = startWeir(args, { env: { WEIR_LOG_LEVEL: 'warn' } })
      let stdout = ''
      p.child.stdout!.on('data', (d: Buffer) => (stdout += d.toString()))
      onTestFinished(() => void p.child.kill('SIGKILL'))
      const proc: Proc = { id, startedAt: Date.now(), done: p.done, kill: (signal = 'SIGKILL') => void p.child.kill(signal), stdout: () => stdout }
      void p.done.then((o) => {
        proc.exitedAt = Date.now()
        note(`${id} exited (code ${o.code}, signal ${o.signal})`)
      })
      procs.set(id, proc)
      note(`${id} started`)
      return proc
    }
    const coordinator = startWeir(['coordinator', '--bus', nats.url, '--cluster', cluster, '--epoch-ms', '300', '--worker-timeout-ms', '10000', '--settle-ms', '300'], { env: { WEIR_LOG_LEVEL: 'warn' } })
    onTestFinished(() => void coordinator.child.kill('SIGKILL'))
    let said = ''
    coordinator.child.stdout!.on('data', (d: Buffer) => (said += d.toString()))
    for (let i = 0; i < 150 && !said.includes('leading cluster'); i++) await sleep(100)
    expect(said).toMatch(/leading cluster/)

    const kafkaUrl = `kafka://${kafka.url}`
    const worker = (id: string): Proc => start(id, ['worker', 'examples/wordcount.ts', '--pipe', kafkaUrl, '--bus', nats.url, '--cluster', cluster, '--epoch-ms', '300', '--heartbeat-ms', '250',
      '--id', id, '--state-dir', join(dir, id), ...Object.entries(params).flatMap(([k, v]) => ['--param', `${k}=${v}`])])
    const begin = Date.now()
    const at = (ms: number): Promise<void> => sleep(Math.max(0, begin + ms - Date.now()))
    // A worker is stopped only once it runs actors (on a loaded machine a worker takes 2–5 s
    // to load and join): a SIGTERM before that is not a hand-off.
    // The scale-up is complete (all three hold actors) before the scale-down starts.
    const holdActors = async (ids: string[]): Promise<void> => {
      for (let i = 0; i < 300 && !ids.every((id) => Object.values(generations.at(-1)?.actors ?? {}).includes(id)); i++) await sleep(100)
      await sleep(1000)
    }
    const holdsActors = (id: string): Promise<void> => holdActors([id])
    const a = worker('a')
    await at(3000)
    const b = worker('b')
    await at(5000)
    const c = worker('c')
    await at(8000)
    await holdActors(['b', 'c'])
    note('SIGTERM b')
    b.kill('SIGTERM')
    await at(10_000)
    await holdsActors('c')
    note('SIGTERM c')
    c.kill('SIGTERM')
    const [ra, rb, rc] = await Promise.all([a.done, b.done, c.done])
    coordinator.child.kill('SIGTERM')
    await coordinator.done
    const story = `\n${timeline.join('\n')}\na: ${ra.stdout}b: ${rb.stdout}c: ${rc.stdout}`

    // Graceful stops exit 0 after handing off; the last worker finishes the pipeline.
    expect(rb.code, `b: ${rb.stderr}${story}`).toBe(0)
    expect(rb.stdout).toMatch(/weir worker b: stopped/)
    expect(rc.code, `c: ${rc.stderr}${story}`).toBe(0)
    expect(rc.stdout).toMatch(/weir worker c: stopped/)
    expect(ra.code, `a: ${ra.stderr}${story}`).toBe(0)
    expect(ra.stdout).toMatch(/weir worker a: finished/)
    // b and c stopped while the input still ran: the scale-down happened mid-run.
    expect(leaveAt.get('b'), story).toBeLessThan(procs.get('a')!.exitedAt!)
    expect(leaveAt.get('c'), story).toBeLessThan(procs.get('a')!.exitedAt!)

    // Assignments: ordered, complete, live, balanced; and the scale-up and scale-down took place.
    expect(problems, story).toEqual([])
    const sets: string[] = []
    for (const g of generations) {
      const s = [...new Set(Object.values(g.actors))].sort().join(',')
      if (sets.at(-1) !== s) sets.push(s)
    }
    expect(sets, story).toEqual(['a', 'a,b', 'a,b,c', 'a,c', 'a'])

    // Progress: no actor running on two workers at once beyond the hand-off window.
    expect(running.length).toBeGreaterThan(0)
    const overlaps: string[] = []
    let worstOverlapMs = 0
    for (const [actor, stints] of runningStints(running, 2500)) {
      for (let i = 0; i < stints.length; i++) {
        for (let j = i + 1; j < stints.length; j++) {
          const x = stints[i]!
          const y = stints[j]!
          if (x.worker === y.worker) continue
          const overlap = Math.min(x.to, y.to) - Math.max(x.from, y.from)
          if (overlap <= 0) continue
          worstOverlapMs = Math.max(worstOverlapMs, overlap)
          const s = (t: number): string => ((t - t0) / 1000).toFixed(2)
          overlaps.push(`${actor}: ${x.worker} ${s(x.from)}–${s(x.to)}s and ${y.worker} ${s(y.from)}–${s(y.to)}s overlap ${overlap} ms`)
        }
      }
    }
    console.log(`scale test: ${generations.length} generations, ${running.length} running progress events (lifecycles seen: ${[...lifecycles].join(', ')}); worst running overlap between two workers ${worstOverlapMs} ms${overlaps.length > 0 ? `:\n  ${overlaps.join('\n  ')}` : ''}${story}`)
    expect(overlaps.filter((o) => Number(/overlap (\d+) ms/.exec(o)![1]) > HANDOFF_WINDOW_MS), story).toEqual([])

    // Output exact: the reference's final counts, and every word counted 1..N once each.
    expectExactWordCounts(out, expected)
  }, 240_000)
})
