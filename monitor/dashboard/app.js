// The weir monitor dashboard: polls /api/status every second and draws each pipeline as
// a graph (stages in columns by depth, sources left, outputs right) with per-output
// timeliness charts from /api/history. Plain ES module, no build step, no framework.
// Everything from the API goes in through textContent/attributes, never as HTML.
// Stable attributes for browser tests: data-stage, data-edge, data-output, data-field,
// and data-updated-at on #app after each successful poll. Clicking a stage opens its panel
// (inspect.js): its latest committed records and a lookup in its views.

import { el, svg } from './dom.js'
import { createInspectPanel } from './inspect.js'

const POLL_MS = 1000
const HISTORY_EVERY_MS = 2000
const NODE_W = 190
const NODE_H = 70
const COL_GAP = 90
const ROW_GAP = 24
const LAGGING_MS = 5000

const app = document.getElementById('app')
const pollState = document.getElementById('poll-state')
/** `${cluster}/${pipeline}/${output}` → { at, answer } */
const histories = new Map()
const panel = createInspectPanel({
  panel: document.getElementById('inspect'),
  layout: document.getElementById('layout'),
  // The graph is redrawn on every poll; between polls the selection is marked in place.
  onChange: (selected) => {
    for (const node of app.querySelectorAll('[data-stage]')) node.classList.toggle('selected', isSelected(node, selected))
  },
})

function isSelected(node, selected) {
  const section = node.closest('[data-pipeline]')
  return selected !== null && section !== null && node.getAttribute('data-stage') === selected.stage && section.getAttribute('data-cluster') === selected.cluster && section.getAttribute('data-name') === selected.pipeline
}

/** The stage a click or key press on the graph names, as { cluster, pipeline, stage }. */
function stageTarget(event) {
  const node = event.target instanceof Element ? event.target.closest('[data-stage]') : null
  const section = node?.closest('[data-pipeline]')
  if (node === null || node === undefined || section === null || section === undefined) return null
  return { cluster: section.getAttribute('data-cluster'), pipeline: section.getAttribute('data-name'), stage: node.getAttribute('data-stage') }
}

app.addEventListener('click', (event) => {
  const target = stageTarget(event)
  if (target !== null) panel.open(target)
})
app.addEventListener('keydown', (event) => {
  if (event.key !== 'Enter' && event.key !== ' ') return
  const target = stageTarget(event)
  if (target === null) return
  event.preventDefault()
  panel.open(target)
})

function seconds(ms) {
  if (ms === null || ms === undefined) return '–'
  const s = ms / 1000
  return s < 60 ? `${s.toFixed(1)} s` : s < 3600 ? `${(s / 60).toFixed(1)} min` : `${(s / 3600).toFixed(1)} h`
}

function rate(r) {
  return r === null || r === undefined ? '–' : `${r < 10 ? r.toFixed(2) : Math.round(r)}/s`
}

function count(n) {
  return Math.round(n).toString().replace(/\B(?=(\d{3})+(?!\d))/g, '\u2009')
}

function stageHealth(stage) {
  if ((stage.actors.failed ?? 0) > 0) return 'failed'
  if (stage.actors.missing > 0) return 'missing'
  if ((stage.failureRate ?? 0) > 0) return 'failing'
  if (stage.stalled || (stage.watermarkLagMs ?? 0) > LAGGING_MS) return 'lagging'
  return 'ok'
}

/** Longest path from a source: the column of each stage. */
function depths(stages) {
  const byName = new Map(stages.map((s) => [s.name, s]))
  const depth = new Map()
  const visit = (name, seen) => {
    if (depth.has(name)) return depth.get(name)
    const s = byName.get(name)
    if (s === undefined || seen.has(name)) return -1
    seen.add(name)
    const d = s.inputs.reduce((m, i) => Math.max(m, visit(i, seen) + 1), 0)
    depth.set(name, d)
    return d
  }
  for (const s of stages) visit(s.name, new Set())
  return depth
}

function drawGraph(pipeline) {
  const holding = new Map()
  for (const o of pipeline.outputs) if (o.holdingBack !== null) holding.set(o.holdingBack.stage, o.holdingBack.reason)
  const depth = depths(pipeline.stages)
  const columns = []
  for (const s of pipeline.stages) {
    const d = Math.max(0, depth.get(s.name) ?? 0)
    ;(columns[d] ??= []).push(s)
  }
  const pos = new Map()
  columns.forEach((col, c) => col.forEach((s, r) => pos.set(s.name, { x: 10 + c * (NODE_W + COL_GAP), y: 10 + r * (NODE_H + ROW_GAP) })))
  const width = 20 + columns.length * (NODE_W + COL_GAP) - COL_GAP
  const height = 20 + Math.max(1, ...columns.map((c) => c.length)) * (NODE_H + ROW_GAP) - ROW_GAP
  const root = svg('svg', { width, height, viewBox: `0 0 ${width} ${height}`, role: 'img', 'aria-label': `graph of ${pipeline.pipeline}` })
  const defs = svg('defs')
  const marker = svg('marker', { id: 'arrow', viewBox: '0 0 10 10', refX: 10, refY: 5, markerWidth: 7, markerHeight: 7, orient: 'auto-start-reverse' })
  marker.append(svg('path', { d: 'M 0 0 L 10 5 L 0 10 z', fill: '#9a9aa0' }))
  defs.append(marker)
  root.append(defs)

  for (const s of pipeline.stages) {
    const to = pos.get(s.name)
    for (const input of s.inputs) {
      const from = pos.get(input)
      if (from === undefined) continue
      const x1 = from.x + NODE_W
      const y1 = from.y + NODE_H / 2
      const x2 = to.x
      const y2 = to.y + NODE_H / 2
      const g = svg('g', { class: 'edge', 'data-edge': `${input}->${s.name}` })
      g.append(svg('path', { d: `M ${x1} ${y1} C ${x1 + COL_GAP / 2} ${y1}, ${x2 - COL_GAP / 2} ${y2}, ${x2} ${y2}` }))
      // The tooltip sits on the group, so the label's textContent stays just the figure.
      g.append(svg('title', {}, `unprocessed records from ${input} to ${s.name}`))
      g.append(svg('text', { x: (x1 + x2) / 2, y: (y1 + y2) / 2 - 5, 'text-anchor': 'middle', 'data-field': 'unprocessed' }, count(s.unprocessedByInput[input] ?? 0)))
      root.append(g)
    }
  }

  for (const s of pipeline.stages) {
    const { x, y } = pos.get(s.name)
    const classes = ['node', stageHealth(s)]
    if (holding.has(s.name)) classes.push('holding-back')
    const chosen = panel.selected()
    if (chosen !== null && chosen.cluster === pipeline.cluster && chosen.pipeline === pipeline.pipeline && chosen.stage === s.name) classes.push('selected')
    const g = svg('g', { class: classes.join(' '), 'data-stage': s.name, transform: `translate(${x} ${y})`, tabindex: 0, role: 'button', 'aria-label': `${s.name}: show its latest records and views` })
    g.append(svg('rect', { width: NODE_W, height: NODE_H, rx: 5 }))
    g.append(svg('text', { x: 8, y: 17, class: 'name' }, s.name))
    g.append(svg('text', { x: 8, y: 34, class: 'fig', 'data-field': 'watermarkLag' }, `lag ${s.ended ? 'ended' : seconds(s.watermarkLagMs)}`))
    g.append(svg('text', { x: 8, y: 50, class: 'fig', 'data-field': 'failureRate' }, `failures ${rate(s.failureRate)}`))
    g.append(svg('text', { x: 8, y: 65, class: 'fig', 'data-field': 'actors' }, `actors ${s.actors.running}/${s.actors.total}${(s.actors.failed ?? 0) > 0 ? ` (${s.actors.failed} failed)` : ''}${s.actors.missing > 0 ? ` (${s.actors.missing} missing)` : ''}`))
    const tip = [`${s.name} (${s.kind}, ${s.parallelism} partitions)`, `unprocessed ${count(s.unprocessed)}`, `in ${rate(s.recordsInRate)}, out ${rate(s.recordsOutRate)}, late ${rate(s.lateRate)}`, `checkpoint age ${seconds(s.checkpointAgeMs)}`]
    if (holding.has(s.name)) tip.push(`holding back: ${holding.get(s.name)}`)
    tip.push('click: its latest committed records and views')
    g.append(svg('title', {}, tip.join('\n')))
    root.append(g)
  }
  return root
}

function drawChart(answer) {
  const W = 320
  const H = 90
  const root = svg('svg', { class: 'chart', width: W, height: H, viewBox: `0 0 ${W} ${H}` })
  root.append(svg('rect', { class: 'frame', x: 0, y: 0, width: W, height: H }))
  const points = (answer?.points ?? []).filter((p) => p.timelinessMs !== null)
  if (points.length < 2) {
    root.append(svg('text', { x: 8, y: H / 2 }, 'collecting…'))
    return root
  }
  const t0 = points[0].at
  const t1 = points[points.length - 1].at
  const sloMs = answer.slo?.timelinessMs ?? 0
  const max = Math.max(sloMs * 1.2, ...points.map((p) => p.timelinessMs), 1)
  const x = (t) => ((t - t0) / Math.max(1, t1 - t0)) * (W - 10) + 5
  const y = (v) => H - 5 - (v / max) * (H - 15)
  root.append(svg('polyline', { points: points.map((p) => `${x(p.at).toFixed(1)},${y(p.timelinessMs).toFixed(1)}`).join(' ') }))
  if (answer.slo !== null) root.append(svg('line', { class: 'slo', x1: 0, x2: W, y1: y(sloMs), y2: y(sloMs) }))
  root.append(svg('text', { x: 4, y: 11 }, `max ${seconds(max)} · last ${t1 - t0 < 90_000 ? `${Math.round((t1 - t0) / 1000)} s` : `${Math.round((t1 - t0) / 60000)} min`}`))
  return root
}

function drawOutput(pipeline, o) {
  const box = el('div', { class: 'output', 'data-output': o.output })
  const title = el('h3', {}, o.output)
  if (o.slo !== null) title.append(el('span', { class: `badge ${o.slo.state}`, 'data-field': 'slo' }, `SLO ${seconds(o.slo.timelinessMs)}: ${o.slo.state}`))
  box.append(title)
  const figures = el('div', { class: 'figures' })
  const timeliness = el('span', { class: 'figure' }, 'timeliness ')
  timeliness.append(el('b', { 'data-field': 'timeliness' }, o.ended ? 'ended' : seconds(o.timelinessMs)))
  const e2e = el('span', { class: 'figure' }, 'end-to-end ')
  e2e.append(el('b', { 'data-field': 'endToEnd' }, seconds(o.endToEndMs)))
  figures.append(timeliness, e2e)
  box.append(figures)
  if (o.holdingBack !== null) box.append(el('div', { class: 'holding', 'data-field': 'holdingBack' }, `held back by ${o.holdingBack.stage}: ${o.holdingBack.reason}`))
  box.append(drawChart(histories.get(`${pipeline.cluster}/${pipeline.pipeline}/${o.output}`)?.answer))
  return box
}

function drawWorkers(pipeline) {
  const table = el('table', { class: 'workers' })
  const head = el('tr')
  for (const h of ['worker', 'host', 'pid', 'state', 'actors', 'rss', 'loop p99']) head.append(el('th', {}, h))
  table.append(head)
  for (const w of pipeline.workers) {
    const row = el('tr', { class: w.state, 'data-worker': w.worker })
    for (const v of [w.worker, w.hostname, w.pid, w.state, w.actors.length, `${Math.round(w.rssBytes / 2 ** 20)} MiB`, `${w.eventLoopDelayMs.p99.toFixed(1)} ms`]) row.append(el('td', {}, v))
    table.append(row)
  }
  return table
}

function drawFailures(pipeline) {
  const list = el('ul', { class: 'failures' })
  for (const f of pipeline.failedActors ?? []) {
    const what = f.quarantined ? `quarantined after failing on ${f.failedOn.join(' and ')}; clear: weir actor clear ${pipeline.pipeline} ${f.actor}` : `failed on ${f.worker}; being moved`
    list.append(el('li', { 'data-actor': f.actor }, `${f.actor} [${f.code}] ${f.message} (${what})`))
  }
  return list
}

function drawPipeline(p) {
  const section = el('section', { class: 'pipeline', 'data-pipeline': `${p.cluster}/${p.pipeline}`, 'data-cluster': p.cluster, 'data-name': p.pipeline })
  const title = el('h2', {}, p.pipeline)
  title.append(el('span', { class: 'meta' }, `cluster ${p.cluster}`))
  if (p.stalled) title.append(el('span', { class: 'badge stalled', 'data-field': 'stalled' }, 'stalled: no checkpoint'))
  section.append(title)
  if (!p.topologyKnown) {
    section.append(el('p', { class: 'empty' }, 'waiting for a worker health event (it carries the topology)…'))
    return section
  }
  const graph = el('div', { class: 'graph' })
  graph.append(drawGraph(p))
  section.append(graph)
  const outputs = el('div', { class: 'outputs' })
  for (const o of p.outputs) outputs.append(drawOutput(p, o))
  section.append(outputs)
  if ((p.failedActors ?? []).length > 0) section.append(drawFailures(p))
  section.append(drawWorkers(p))
  return section
}

async function getJson(path) {
  const res = await fetch(path, { credentials: 'same-origin', cache: 'no-store' })
  if (!res.ok) throw new Error(`${path}: HTTP ${res.status}`)
  return res.json()
}

async function refreshHistories(status) {
  const now = Date.now()
  const due = []
  for (const p of status.pipelines) {
    for (const o of p.outputs) {
      const key = `${p.cluster}/${p.pipeline}/${o.output}`
      const known = histories.get(key)
      if (known !== undefined && now - known.at < HISTORY_EVERY_MS) continue
      const q = new URLSearchParams({ cluster: p.cluster, pipeline: p.pipeline, output: o.output })
      due.push(getJson(`/api/history?${q}`).then((answer) => histories.set(key, { at: now, answer }), () => undefined))
    }
  }
  await Promise.all(due)
}

async function poll() {
  try {
    const status = await getJson('/api/status')
    await refreshHistories(status)
    const sections = status.pipelines.map(drawPipeline)
    if (sections.length === 0) sections.push(el('p', { class: 'empty' }, 'No pipeline has reported yet.'))
    // A stage node that had the keyboard's focus gets it back in the redrawn graph.
    const focused = document.activeElement?.closest?.('[data-stage]')
    const refocus = focused ? { stage: focused.getAttribute('data-stage'), pipeline: focused.closest('[data-pipeline]')?.getAttribute('data-pipeline') } : null
    app.replaceChildren(...sections)
    if (refocus !== null) {
      const section = [...app.querySelectorAll('[data-pipeline]')].find((s) => s.getAttribute('data-pipeline') === refocus.pipeline)
      const node = [...(section?.querySelectorAll('[data-stage]') ?? [])].find((n) => n.getAttribute('data-stage') === refocus.stage)
      node?.focus()
    }
    app.setAttribute('data-updated-at', String(status.at))
    pollState.textContent = `updated ${new Date().toLocaleTimeString()}`
    pollState.classList.remove('error')
  } catch (err) {
    pollState.textContent = `cannot reach the monitor: ${err.message}`
    pollState.classList.add('error')
  } finally {
    setTimeout(poll, POLL_MS)
  }
}

void poll()
