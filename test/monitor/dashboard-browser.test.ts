/**
 * The dashboard in a real headless Chromium (playwright-core, the Debian `chromium` that
 * scripts/browser.sh installs): a running multi-stage pipeline served by `weir run
 * --monitor` shows every stage of its topology with live figures that match /api/status,
 * every edge, and its output's timeliness. Leaves a screenshot in test-artifacts/ (with
 * WEIR_UPDATE_DOCS=1 also in docs/img/, which the README shows). Without a browser it skips, unless
 * WEIR_REQUIRE_SERVICES=1 (CI), where a missing browser fails the run.
 */
import { copyFileSync, existsSync, mkdirSync } from 'node:fs'
import { join } from 'node:path'
import { chromium, type Browser, type Page } from 'playwright-core'
import { afterAll, describe, expect, it } from 'vitest'
import { ROOT, startWeir, tempDirs, waitFor } from '../support/weir-cli.ts'

const CHROMIUM = process.env.WEIR_CHROMIUM || '/usr/bin/chromium'
const hasBrowser = existsSync(CHROMIUM)
if (!hasBrowser) {
  const message = `no Chromium at ${CHROMIUM} (WEIR_CHROMIUM); install it with scripts/browser.sh`
  if (process.env.WEIR_REQUIRE_SERVICES === '1') throw new Error(`WEIR_REQUIRE_SERVICES=1: ${message}`)
  console.warn(`skipping the dashboard browser test: ${message}`)
}

const tempDir = tempDirs('weir-dashboard-browser-')
const SCREENSHOT = join(ROOT, 'test-artifacts', 'dashboard.png')
const DOCS_SCREENSHOT = join(ROOT, 'docs', 'img', 'dashboard.png')
const OUTPUT = 'signals-file'

interface StatusStage {
  name: string
  inputs: string[]
  watermarkLagMs: number | null
  ended: boolean
  actors: { running: number; total: number; missing: number }
}
interface StatusOutput { output: string; timelinessMs: number | null; ended: boolean }
interface StatusPipeline { pipeline: string; topologyKnown: boolean; stages: StatusStage[]; outputs: StatusOutput[] }
interface Status { at: number; pipelines: StatusPipeline[] }

/** What the page shows for one stage (figures as the dashboard formats them). */
interface ShownStage { name: string; lag: string; failures: string; actors: string }

/** The dashboard's `seconds()` text (`3.1 s`, `2.0 min`, `1.0 h`) back in ms; null when it is not a figure. */
function shownMs(text: string): number | null {
  const m = /(\d+(?:\.\d+)?) (s|min|h)$/.exec(text.trim())
  if (m === null) return null
  return Number(m[1]) * { s: 1000, min: 60_000, h: 3_600_000 }[m[2] as 's' | 'min' | 'h']
}

async function status(url: string): Promise<Status> {
  const res = await fetch(`${url}api/status`, { signal: AbortSignal.timeout(5000) })
  expect(res.status).toBe(200)
  return (await res.json()) as Status
}

/** Waits until the status shows the pipeline's topology with a watermark on every stage. */
async function liveStatus(url: string, pipeline: string, withinMs: number): Promise<StatusPipeline> {
  const deadline = Date.now() + withinMs
  for (;;) {
    const p = (await status(url)).pipelines.find((x) => x.pipeline === pipeline)
    if (p !== undefined && p.topologyKnown && p.stages.length > 0 && p.stages.every((s) => s.watermarkLagMs !== null) && p.outputs.every((o) => o.timelinessMs !== null)) return p
    if (Date.now() > deadline) throw new Error(`no live status of ${pipeline} within ${withinMs} ms: ${JSON.stringify(p)}`)
    await new Promise((r) => setTimeout(r, 200))
  }
}

/** Every stage node's figures as the page shows them now. */
function shownStages(page: Page): Promise<ShownStage[]> {
  return page.$$eval('[data-stage]', (nodes) =>
    nodes.map((n) => ({
      name: n.getAttribute('data-stage') ?? '',
      lag: n.querySelector('[data-field=watermarkLag]')?.textContent ?? '',
      failures: n.querySelector('[data-field=failureRate]')?.textContent ?? '',
      actors: n.querySelector('[data-field=actors]')?.textContent ?? '',
    })),
  )
}

describe.skipIf(!hasBrowser)('the dashboard in a browser', () => {
  let browser: Browser | undefined
  afterAll(async () => {
    await browser?.close()
  })

  it('draws every stage and edge of a running pipeline with live figures that match /api/status', async () => {
    const dir = tempDir()
    const run = startWeir([
      'run', 'examples/ticker.ts',
      '--param', 'unbounded=true', '--param', 'rate=200', '--param', `out=${join(dir, 'signals.jsonl')}`,
      '--epoch-ms', '200', '--monitor', '--monitor-port', '0', '--slo', `${OUTPUT}=5s`, '-q', '--data-dir', join(dir, 'data'),
    ])
    try {
      const [[, url], launched] = await Promise.all([
        waitFor(run.child.stderr!, /weir: monitor at (http:\/\/127\.0\.0\.1:\d+\/)\n/),
        chromium.launch({ executablePath: CHROMIUM, headless: true, args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage'] }),
      ])
      browser = launched
      const expected = await liveStatus(url!, 'ticker', 15_000)
      // A pipeline of several stages, so the graph has columns and edges to draw.
      expect(expected.stages.length).toBeGreaterThanOrEqual(3)
      expect(expected.outputs.map((o) => o.output)).toEqual([OUTPUT])
      const names = expected.stages.map((s) => s.name)

      const page = await browser.newPage({ viewport: { width: 2000, height: 480 } })
      const errors: string[] = []
      page.on('pageerror', (err) => errors.push(err.message))
      await page.goto(url!)

      // Every stage of the topology, once, each with a watermark lag that is a figure.
      await page.waitForFunction(
        (stages) => stages.every((name) => {
          const nodes = document.querySelectorAll(`[data-stage="${CSS.escape(name)}"]`)
          return nodes.length === 1 && /^lag \d+(\.\d+)? (s|min|h)$/.test(nodes[0]!.querySelector('[data-field=watermarkLag]')?.textContent ?? '')
        }),
        names,
        { timeout: 15_000 },
      )
      expect((await shownStages(page)).map((s) => s.name).sort()).toEqual([...names].sort())
      for (const s of expected.stages) {
        for (const input of s.inputs) expect(await page.locator(`[data-edge="${input}->${s.name}"]`).count(), `edge ${input}->${s.name}`).toBe(1)
      }
      const edgeLabels = await page.$$eval('[data-edge] [data-field=unprocessed]', (ts) => ts.map((t) => t.textContent ?? ''))
      expect(edgeLabels.length).toBe(expected.stages.reduce((n, s) => n + s.inputs.length, 0))
      for (const label of edgeLabels) expect(label).toMatch(/^\d[\d\u2009]*$/)

      // Live: the page polls again, and each poll draws a newer status.
      const firstPoll = Number(await page.getAttribute('#app', 'data-updated-at'))
      await page.waitForFunction((before) => Number(document.getElementById('app')!.getAttribute('data-updated-at')) > before, firstPoll, { timeout: 5000 })

      // The figures are the API's: bracket one poll of the page between two API reads.
      const beforeStatus = await status(url!)
      const before = beforeStatus.pipelines.find((p) => p.pipeline === 'ticker')!
      await page.waitForFunction((at) => Number(document.getElementById('app')!.getAttribute('data-updated-at')) > at, beforeStatus.at, { timeout: 5000 })
      const shown = await shownStages(page)
      const shownTimeliness = (await page.locator(`[data-output="${OUTPUT}"] [data-field=timeliness]`).textContent()) ?? ''
      const after = (await status(url!)).pipelines.find((p) => p.pipeline === 'ticker')!
      // Rounded to 0.1 s on the page; watermarks move every epoch (200 ms) between the reads.
      const SLACK_MS = 600
      const within = (ms: number | null, a: number | null, b: number | null, what: string): void => {
        expect(ms, what).not.toBeNull()
        expect(a, what).not.toBeNull()
        expect(b, what).not.toBeNull()
        expect(ms!, what).toBeGreaterThanOrEqual(Math.min(a!, b!) - SLACK_MS)
        expect(ms!, what).toBeLessThanOrEqual(Math.max(a!, b!) + SLACK_MS)
      }
      for (const s of shown) {
        const a = before.stages.find((x) => x.name === s.name)!
        const b = after.stages.find((x) => x.name === s.name)!
        within(shownMs(s.lag.replace(/^lag /, '')), a.watermarkLagMs, b.watermarkLagMs, `watermark lag of ${s.name}: ${s.lag}`)
        expect(s.failures, s.name).toMatch(/^failures (–|\d+(\.\d+)?\/s)$/)
        expect(s.actors, s.name).toBe(`actors ${b.actors.running}/${b.actors.total}`)
      }
      const [oa, ob] = [before, after].map((p) => p.outputs.find((o) => o.output === OUTPUT)!)
      within(shownMs(shownTimeliness), oa!.timelinessMs, ob!.timelinessMs, `timeliness of ${OUTPUT}: ${shownTimeliness}`)
      await expect(page.locator(`[data-output="${OUTPUT}"] [data-field=slo]`).textContent()).resolves.toMatch(/^SLO 5\.0 s: (ok|broken|unknown)$/)

      // The history chart has its first points: the screenshot shows a full dashboard.
      // Attached, not visible: a timeliness that held still is a flat line, whose empty box Playwright calls hidden.
      const line = await page.waitForSelector(`[data-output="${OUTPUT}"] svg.chart polyline`, { state: 'attached', timeout: 10_000 })
      expect((await line.getAttribute('points'))!.trim().split(' ').length, 'points of the timeliness chart').toBeGreaterThanOrEqual(2)
      expect(errors).toEqual([])
      mkdirSync(join(ROOT, 'test-artifacts'), { recursive: true })
      await page.screenshot({ path: SCREENSHOT, fullPage: true })
      if (process.env.WEIR_UPDATE_DOCS === '1') {
        mkdirSync(join(ROOT, 'docs', 'img'), { recursive: true })
        copyFileSync(SCREENSHOT, DOCS_SCREENSHOT)
      }
    } finally {
      run.child.kill('SIGTERM')
    }
    const r = await run.done
    expect(r.code, r.stderr).toBe(0)
  }, 45_000)
})
