// A stage's panel: its latest committed records (/api/sample) and, when it serves views, a
// lookup box (/api/views, /api/views/lookup). The monitor asks the pipeline's workers for
// both, so either may say that none answered; the rest of the dashboard carries on.
// Everything shown goes in through textContent/attributes (dom.js), never as HTML.
// Stable attributes for browser tests: data-field on the parts, data-record on record rows
// (`partition:offset`), data-entry on prefix rows, data-sample-at / data-lookup-at on the
// panel after each answer.

import { el } from './dom.js'

const SAMPLE_N = 20
const SCAN_LIMIT = 20
/** Characters of a value's JSON shown in a table cell (the whole of it is its tooltip). */
const CELL_CHARS = 120
const TIP_CHARS = 2000

function clip(text, max) {
  return text.length <= max ? text : `${text.slice(0, max - 1)}…`
}

/** A value as compact JSON, and whether it was cut (by the worker or here). */
function valueText(item, max) {
  if (item.truncated !== undefined) return { text: `${clip(item.truncated.json, max)}…`, tip: `the first ${item.truncated.json.length} of ${item.truncated.chars} characters`, cut: true }
  const json = JSON.stringify(item.value ?? null)
  return { text: clip(json, max), tip: clip(json, TIP_CHARS), cut: json.length > max }
}

/** UTC, to the millisecond: records of several machines line up. */
function utc(ms) {
  const d = new Date(ms)
  return Number.isFinite(d.getTime()) ? d.toISOString().replace('T', ' ').replace('Z', '') : String(ms)
}

function positionsText(positions) {
  const parts = Object.entries(positions ?? {}).map(([topic, offset]) => `${topic} @ ${offset}`)
  return parts.length === 0 ? '–' : parts.join(', ')
}

/** GETs a monitor API path: { ok: true, body } or { ok: false, message } (the API's own message when it gave one). */
async function getApi(path) {
  try {
    const res = await fetch(path, { credentials: 'same-origin', cache: 'no-store' })
    const body = await res.json().catch(() => null)
    if (res.ok) return { ok: true, body }
    return { ok: false, message: body?.error?.message ?? `HTTP ${res.status}`, code: body?.error?.code ?? null }
  } catch (err) {
    return { ok: false, message: `cannot reach the monitor: ${err.message}`, code: null }
  }
}

function query(target, extra) {
  return new URLSearchParams({ cluster: target.cluster, pipeline: target.pipeline, ...extra })
}

function recordsTable(records) {
  const table = el('table', { class: 'records', 'data-field': 'sample' })
  const head = el('tr')
  for (const h of ['partition', 'offset', 'time (UTC)', 'key', 'value', 'headers']) head.append(el('th', {}, h))
  table.append(head)
  // Newest first: what flows now is what one looks for.
  for (const r of [...records].reverse()) {
    const row = el('tr', { 'data-record': `${r.partition}:${r.offset}` })
    row.append(el('td', { 'data-col': 'partition' }, String(r.partition)), el('td', { 'data-col': 'offset' }, String(r.offset)), el('td', { 'data-col': 'time' }, utc(r.timestamp)))
    const key = el('td', { 'data-col': 'key', class: r.key === null ? 'none' : '' }, r.key === null ? '–' : clip(r.key, 60) + (r.keyTruncated ? '…' : ''))
    if (r.key !== null) key.setAttribute('title', clip(r.key, TIP_CHARS))
    row.append(key)
    if (r.decodeError !== undefined) {
      row.append(el('td', { 'data-col': 'value', class: 'error', title: r.raw === undefined ? '' : `base64: ${r.raw}` }, `undecodable: ${r.decodeError}`))
    } else {
      const v = valueText(r, CELL_CHARS)
      row.append(el('td', { 'data-col': 'value', class: v.cut ? 'value cut' : 'value', title: v.tip }, v.text))
    }
    const headers = Object.entries(r.headers ?? {}).map(([k, v]) => `${k}=${v}`).join(', ')
    row.append(el('td', { 'data-col': 'headers', class: headers === '' ? 'none' : '', title: clip(headers, TIP_CHARS) }, headers === '' ? '–' : clip(headers, 60)))
    table.append(row)
  }
  return table
}

function lookupResult(answer) {
  const box = el('div', { class: 'lookup-result' })
  if (answer.kind === 'lookup') {
    box.append(el('p', { 'data-field': 'lookup-found', class: answer.found ? 'found' : 'none' }, answer.found ? `value of ${JSON.stringify(answer.key)}` : `no value for key ${JSON.stringify(answer.key)}`))
    if (answer.found) {
      const pretty = answer.truncated === undefined ? JSON.stringify(answer.value ?? null, null, 2) : `${answer.truncated.json}…`
      box.append(el('pre', { class: 'value', 'data-field': 'lookup-value' }, pretty))
      if (answer.truncated !== undefined) box.append(el('p', { class: 'note' }, `the first ${answer.truncated.json.length} of ${answer.truncated.chars} characters`))
    }
    const facts = el('dl', { class: 'facts' })
    const fact = (label, field, text) => facts.append(el('dt', {}, label), el('dd', { 'data-field': field }, text))
    fact('partition', 'lookup-partition', String(answer.partition))
    fact('epoch', 'lookup-epoch', String(answer.epoch))
    fact('positions', 'lookup-positions', positionsText(answer.positions))
    fact('committed', 'lookup-committed', `${utc(answer.committedAt)}${answer.standby ? ' (standby replica)' : ''}`)
    box.append(facts)
    return box
  }
  // A prefix: the page of entries, and the checkpoint each partition's part comes from.
  box.append(el('p', { 'data-field': 'lookup-found' }, `${answer.entries.length} ${answer.entries.length === 1 ? 'entry' : 'entries'} with prefix ${JSON.stringify(answer.prefix)}${answer.next !== undefined ? ' (more follow)' : ''}`))
  const table = el('table', { class: 'records', 'data-field': 'lookup-entries' })
  const head = el('tr')
  for (const h of ['key', 'value', 'partition']) head.append(el('th', {}, h))
  table.append(head)
  for (const e of answer.entries) {
    const row = el('tr', { 'data-entry': e.key })
    const v = valueText(e, CELL_CHARS)
    row.append(el('td', { 'data-col': 'key', title: clip(e.key, TIP_CHARS) }, clip(e.key, 60)), el('td', { 'data-col': 'value', class: v.cut ? 'value cut' : 'value', title: v.tip }, v.text), el('td', { 'data-col': 'partition' }, String(e.partition)))
    table.append(row)
  }
  box.append(table)
  const states = el('ul', { class: 'partition-states', 'data-field': 'lookup-partitions' })
  for (const p of answer.partitions) states.append(el('li', {}, `partition ${p.partition}: epoch ${p.epoch}, ${positionsText(p.positions)}${p.standby ? ' (standby)' : ''}`))
  box.append(states)
  return box
}

/**
 * The panel in `panel` (an element outside the redrawn graph, so it survives each poll);
 * `layout` gets class `with-panel` while it is open; `onChange(selected)` hears each
 * opening and closing.
 */
export function createInspectPanel({ panel, layout, onChange }) {
  let selected = null
  /** Which panel an answer belongs to: one that arrives after another stage was opened is dropped. */
  let generation = 0

  const isCurrent = (g) => g === generation && selected !== null

  function close() {
    selected = null
    generation++
    panel.hidden = true
    panel.replaceChildren()
    layout.classList.remove('with-panel')
    onChange(null)
  }

  async function loadSample(g, parts) {
    parts.refresh.disabled = true
    parts.sampleState.textContent = 'asking a worker for the latest records…'
    parts.sampleState.classList.remove('error')
    const answer = await getApi(`/api/sample?${query(selected, { stage: selected.stage, n: String(SAMPLE_N) })}`)
    if (!isCurrent(g)) return
    parts.refresh.disabled = false
    if (!answer.ok) {
      parts.sampleState.textContent = answer.message
      parts.sampleState.classList.add('error')
      parts.sampleBox.replaceChildren()
    } else {
      const { records, omitted, topic, purged } = answer.body
      const left = omitted > 0 ? ` (${omitted} older left out: the answer is size-limited)` : ''
      const purging = purged ? ' Records every reader of this edge has committed are deleted (purgeConsumedRecords), so only those not yet read by all are here.' : ''
      const now = new Date().toLocaleTimeString()
      parts.sampleState.textContent = records.length === 0 ? `topic ${topic} holds no committed records now · ${now}.${purging}` : `the ${records.length} latest committed records of topic ${topic}${left}, newest first · ${now}.${purging}`
      parts.sampleBox.replaceChildren(recordsTable(records))
    }
    panel.setAttribute('data-sample-at', String(Date.now()))
  }

  async function lookup(g, parts, inputs) {
    const view = inputs.select.value
    const text = inputs.key.value
    const byPrefix = inputs.prefix.checked
    parts.lookupBox.replaceChildren(el('p', { class: 'note' }, 'asking…'))
    const extra = byPrefix ? { view, prefix: text, limit: String(SCAN_LIMIT) } : { view, key: text }
    const answer = await getApi(`/api/views/lookup?${query(selected, extra)}`)
    if (!isCurrent(g)) return
    parts.lookupBox.replaceChildren(answer.ok ? lookupResult(answer.body) : el('p', { class: 'error', 'data-field': 'lookup-error' }, answer.message))
    panel.setAttribute('data-lookup-at', String(Date.now()))
  }

  function lookupForm(g, parts, views) {
    const form = el('form', { class: 'lookup', 'data-field': 'lookup' })
    const select = el('select', { name: 'view', 'data-field': 'view', 'aria-label': 'view' })
    for (const v of views) select.append(el('option', { value: v.name }, v.name))
    const key = el('input', { name: 'key', type: 'text', 'data-field': 'key', placeholder: 'key', 'aria-label': 'key', maxlength: 4096, autocomplete: 'off', spellcheck: 'false' })
    const prefix = el('input', { name: 'prefix', type: 'checkbox', 'data-field': 'prefix' })
    const prefixLabel = el('label', { class: 'toggle', title: 'list the entries whose keys start with this (empty: from the first key)' })
    prefixLabel.append(prefix, document.createTextNode(' prefix'))
    const submit = el('button', { type: 'submit', 'data-field': 'lookup-submit' }, 'Look up')
    form.append(select, key, prefixLabel, submit)
    const about = el('p', { class: 'note', 'data-field': 'view-about' })
    const describe = () => {
      const v = views.find((x) => x.name === select.value)
      about.textContent = v === undefined ? '' : `view ${v.name}: state '${v.state}' over ${v.parallelism} partitions; ${v.keyed ? 'a key is asked of the one partition that holds it' : 'its input is not keyed, so every partition is asked'}. Values are as of each partition's last checkpoint.`
    }
    select.addEventListener('change', describe)
    describe()
    // Handled here: the page's CSP allows no form submission, and none is needed.
    form.addEventListener('submit', (event) => {
      event.preventDefault()
      void lookup(g, parts, { select, key, prefix })
    })
    return [form, about]
  }

  async function loadViews(g, parts) {
    const answer = await getApi(`/api/views?${query(selected, {})}`)
    if (!isCurrent(g)) return
    if (!answer.ok) {
      parts.viewsBox.replaceChildren(el('p', { class: 'error', 'data-field': 'views-error' }, `views: ${answer.message}`))
      return
    }
    const mine = answer.body.views.filter((v) => v.stage === selected.stage)
    if (mine.length === 0) {
      const elsewhere = answer.body.views.map((v) => `${v.name} (stage ${v.stage})`)
      parts.viewsBox.replaceChildren(el('p', { class: 'note', 'data-field': 'views-none' }, `This stage serves no views.${elsewhere.length === 0 ? '' : ` The pipeline's views: ${elsewhere.join(', ')}.`}`))
      return
    }
    parts.viewsBox.replaceChildren(...lookupForm(g, parts, mine), parts.lookupBox)
    panel.setAttribute('data-views-at', String(Date.now()))
  }

  /** Opens (or reopens) the panel of `target`: { cluster, pipeline, stage }. */
  function open(target) {
    selected = { ...target }
    const g = ++generation
    const title = el('div', { class: 'panel-title' })
    const heading = el('h2', { 'data-field': 'panel-stage' }, target.stage)
    heading.append(el('span', { class: 'meta' }, `${target.pipeline} · cluster ${target.cluster}`))
    const closeButton = el('button', { type: 'button', class: 'close', 'data-field': 'close', 'aria-label': 'close' }, '×')
    closeButton.addEventListener('click', close)
    title.append(heading, closeButton)

    const parts = {
      refresh: el('button', { type: 'button', 'data-field': 'sample-refresh' }, 'Refresh'),
      sampleState: el('p', { class: 'note', 'data-field': 'sample-state' }),
      sampleBox: el('div', { class: 'sample' }),
      viewsBox: el('div', { class: 'views', 'data-field': 'views' }, 'asking a worker for the pipeline\'s views…'),
      lookupBox: el('div', { 'data-field': 'lookup-box' }),
    }
    parts.refresh.addEventListener('click', () => void loadSample(g, parts))
    const recordsHead = el('div', { class: 'section-head' })
    recordsHead.append(el('h3', {}, 'Latest committed records'), parts.refresh)
    const viewsHead = el('h3', {}, 'Views')

    panel.removeAttribute('data-sample-at')
    panel.removeAttribute('data-lookup-at')
    panel.removeAttribute('data-views-at')
    panel.replaceChildren(title, recordsHead, parts.sampleState, parts.sampleBox, viewsHead, parts.viewsBox)
    panel.hidden = false
    layout.classList.add('with-panel')
    onChange(selected)
    void loadSample(g, parts)
    void loadViews(g, parts)
  }

  document.addEventListener('keydown', (event) => {
    if (event.key === 'Escape' && selected !== null) close()
  })

  return { open, close, selected: () => selected }
}
