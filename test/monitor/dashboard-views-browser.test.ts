/**
 * A stage's panel in a real headless Chromium (playwright-core, the Debian `chromium` that
 * scripts/browser.sh installs): a word count serving views runs embedded with the monitor on
 * its bus, as `weir run --monitor` does, its worker answering inspect requests. Clicking the
 * count stage shows its latest committed records (the same as its output topic ends with),
 * and a lookup in its view shows the value a ViewClient reads, with its partition and epoch.
 * Leaves a screenshot in test-artifacts/dashboard-views.png. Without a browser it skips,
 * unless WEIR_REQUIRE_SERVICES=1 (CI), where a missing browser fails the run.
 */
import { existsSync, mkdirSync } from 'node:fs'
import { join } from 'node:path'
import { pino } from 'pino'
import { chromium, type Browser, type Page } from 'playwright-core'
import { afterAll, describe, expect, it } from 'vitest'
import { LocalBus } from '../../runtime/control/local/local-bus.ts'
import { sampleEdge } from '../../runtime/tail.ts'
import { startMonitor, type RunningMonitor } from '../../monitor/monitor.ts'
import { ROOT } from '../support/weir-cli.ts'
import { expectedCounts, startInspectRun, type InspectRun } from './inspect-fixtures.ts'

const CHROMIUM = process.env.WEIR_CHROMIUM || '/usr/bin/chromium'
const hasBrowser = existsSync(CHROMIUM)
if (!hasBrowser) {
  const message = `no Chromium at ${CHROMIUM} (WEIR_CHROMIUM); install it with scripts/browser.sh`
  if (process.env.WEIR_REQUIRE_SERVICES === '1') throw new Error(`WEIR_REQUIRE_SERVICES=1: ${message}`)
  console.warn(`skipping the dashboard views browser test: ${message}`)
}

const SCREENSHOT = join(ROOT, 'test-artifacts', 'dashboard-views.png')
const log = pino({ level: 'silent' })

/** The sample table's rows as the page shows them. */
function shownRecords(page: Page): Promise<Array<Record<string, string>>> {
  return page.$$eval('#inspect [data-field=sample] tr[data-record]', (rows) =>
    rows.map((row) => Object.fromEntries([...row.querySelectorAll('td[data-col]')].map((td) => [td.getAttribute('data-col') ?? '', td.textContent ?? '']))),
  )
}

describe.skipIf(!hasBrowser)('a stage\'s records and views in the dashboard, in a browser', () => {
  let browser: Browser | undefined
  let fx: InspectRun | undefined
  let monitor: RunningMonitor | undefined
  let bus: LocalBus | undefined
  afterAll(async () => {
    await browser?.close()
    await monitor?.close()
    await fx?.stop()
    await bus?.close()
  })

  it('clicking a stage shows its latest committed records, and a view lookup shows the value a ViewClient reads', async () => {
    bus = new LocalBus(log)
    const [started, launched] = await Promise.all([
      startInspectRun(bus, { cluster: 'local', name: 'wordcount' }),
      chromium.launch({ executablePath: CHROMIUM, headless: true, args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage'] }),
    ])
    fx = started
    browser = launched
    monitor = await startMonitor({ bus, cluster: 'local', port: 0, log, intervalMs: 200 })
    await fx.settled()

    const page = await browser.newPage({ viewport: { width: 1700, height: 900 } })
    const errors: string[] = []
    page.on('pageerror', (err) => errors.push(err.message))
    page.on('console', (m) => {
      if (m.type() === 'error') errors.push(m.text())
    })
    await page.goto(monitor.url)
    await page.waitForSelector('[data-stage="count"]', { timeout: 10_000 })
    await page.click('[data-stage="count"]')

    // The records: the 20 latest of the count topic, newest first, as the pipe holds them.
    await page.waitForSelector('#inspect[data-sample-at] [data-field=sample] tr[data-record]', { timeout: 10_000 })
    expect(await page.textContent('#inspect [data-field=panel-stage]')).toMatch(/^count/)
    const direct = await sampleEdge(fx.run.pipe, fx.pipeline, 'count', 20)
    const shown = await shownRecords(page)
    expect(shown).toHaveLength(20)
    expect(shown.map((r) => ({ partition: r.partition, offset: r.offset, key: r.key, value: r.value, headers: r.headers }))).toEqual(
      [...direct].reverse().map((d) => ({ partition: String(d.partition), offset: String(d.offset), key: d.key, value: JSON.stringify(d.value), headers: 'x-counted-by=count' })),
    )
    for (const r of shown) expect(r.time).toMatch(/^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3}$/)
    // The selection outlives the graph's redraws.
    const polled = Number(await page.getAttribute('#app', 'data-updated-at'))
    await page.waitForFunction((at) => Number(document.getElementById('app')!.getAttribute('data-updated-at')) > at, polled, { timeout: 5000 })
    expect(await page.getAttribute('[data-stage="count"]', 'class')).toMatch(/\bselected\b/)

    // Refresh asks again.
    const sampledAt = Number(await page.getAttribute('#inspect', 'data-sample-at'))
    await page.click('#inspect [data-field=sample-refresh]')
    await page.waitForFunction((at) => Number(document.getElementById('inspect')!.getAttribute('data-sample-at')) > at, sampledAt, { timeout: 5000 })

    // The views of the stage, and a prefix's entries.
    await page.waitForSelector('#inspect [data-field=view]', { timeout: 10_000 })
    expect(await page.$$eval('#inspect [data-field=view] option', (os) => os.map((o) => o.textContent))).toEqual(['counts', 'totals'])
    await page.fill('#inspect [data-field=key]', 'ant')
    await page.check('#inspect [data-field=prefix]')
    await page.click('#inspect [data-field=lookup-submit]')
    await page.waitForSelector('#inspect [data-entry]', { timeout: 5000 })
    const expected = expectedCounts()
    const entries = await page.$$eval('#inspect [data-entry]', (rows) => rows.map((r) => [r.getAttribute('data-entry'), r.querySelector('[data-col=value]')?.textContent]))
    expect(entries).toEqual([['ant', String(expected.ant)], ['antelope', String(expected.antelope)], ['anthem', String(expected.anthem)]])

    // Text typed in is shown as text, never as markup.
    await page.uncheck('#inspect [data-field=prefix]')
    await page.fill('#inspect [data-field=key]', '<img src=x id=injected>')
    let lookedUpAt = Number((await page.getAttribute('#inspect', 'data-lookup-at')) ?? 0)
    await page.click('#inspect [data-field=lookup-submit]')
    await page.waitForFunction((at) => Number(document.getElementById('inspect')!.getAttribute('data-lookup-at')) > at, lookedUpAt, { timeout: 5000 })
    expect(await page.textContent('#inspect [data-field=lookup-found]')).toBe('no value for key "<img src=x id=injected>"')
    expect(await page.$('#injected')).toBeNull()

    // A key's value, as a ViewClient reads it, with where it came from.
    await page.fill('#inspect [data-field=key]', 'fox')
    const before = await fx.views.get('counts', 'fox')
    lookedUpAt = Number(await page.getAttribute('#inspect', 'data-lookup-at'))
    await page.click('#inspect [data-field=lookup-submit]')
    await page.waitForFunction((at) => Number(document.getElementById('inspect')!.getAttribute('data-lookup-at')) > at, lookedUpAt, { timeout: 5000 })
    const after = await fx.views.get('counts', 'fox')
    const value = JSON.parse((await page.textContent('#inspect [data-field=lookup-value]')) ?? 'null') as unknown
    expect(value).toBe(before.value)
    expect(value).toBe(expected.fox)
    expect(await page.textContent('#inspect [data-field=lookup-partition]')).toBe(String(before.partition))
    const epoch = Number(await page.textContent('#inspect [data-field=lookup-epoch]'))
    expect(epoch).toBeGreaterThanOrEqual(before.epoch)
    expect(epoch).toBeLessThanOrEqual(after.epoch)
    expect(await page.textContent('#inspect [data-field=lookup-positions]')).toMatch(/^weir\.wordcount\.\S+ @ \d+/)

    mkdirSync(join(ROOT, 'test-artifacts'), { recursive: true })
    await page.screenshot({ path: SCREENSHOT, fullPage: true })

    // A stage without views says so; its records are there all the same.
    await page.click('[data-stage="words"]')
    await page.waitForSelector('#inspect [data-field=views-none]', { timeout: 5000 })
    expect(await page.textContent('#inspect [data-field=views-none]')).toMatch(/^This stage serves no views\. The pipeline's views: counts \(stage count\), totals \(stage count\)\.$/)
    await page.waitForSelector('#inspect[data-sample-at] [data-field=sample] tr[data-record]', { timeout: 5000 })
    await page.keyboard.press('Escape')
    expect(await page.isHidden('#inspect')).toBe(true)
    expect(errors).toEqual([])
  }, 40_000)
})
