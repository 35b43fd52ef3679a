import { useEffect, useState } from 'preact/hooks'
import { api, query } from './api.js'
import { formatTime, html, Notice } from './ui.js'

const OUTCOMES = ['', 'proxied', 'no_route', 'blocked', 'unauthorized', 'rate_limited', 'too_large', 'upstream_error', 'admin', 'cached']
const EVENT_TYPES = ['', 'request', 'admin', 'egress']
const PAGE = 50

/** Flattens an object into "a.b.c" → value, so a diff can list exactly what changed. */
function flatten (value, prefix = '', out = {}) {
  if (value !== null && typeof value === 'object' && !Array.isArray(value)) {
    for (const [key, inner] of Object.entries(value)) flatten(inner, prefix === '' ? key : `${prefix}.${key}`, out)
    if (Object.keys(value).length === 0 && prefix !== '') out[prefix] = '{}'
  } else if (prefix !== '') {
    out[prefix] = JSON.stringify(value)
  }
  return out
}

/** An admin event's before/after, field by field: only what changed. */
export function Diff ({ detail }) {
  const before = flatten(detail?.before ?? {})
  const after = flatten(detail?.after ?? {})
  const keys = [...new Set([...Object.keys(before), ...Object.keys(after)])].sort()
  const changed = keys.filter((key) => before[key] !== after[key])
  return html`<div class="diff">
    <p>${detail?.action ?? 'change'} ${detail?.resource ?? ''} ${detail?.id ?? detail?.resourceId ?? ''}${detail?.actor ? ` by ${detail.actor}` : ''}:
      ${changed.length} field${changed.length === 1 ? '' : 's'} changed${keys.length > changed.length ? `, ${keys.length - changed.length} unchanged` : ''}.</p>
    <div class="table-wrap"><table>
      <thead><tr><th scope="col">field</th><th scope="col">before</th><th scope="col">after</th></tr></thead>
      <tbody>${changed.map((key) => html`<tr><th scope="row"><code>${key}</code></th>
        <td class="before">${before[key] === undefined ? '' : `− ${before[key]}`}</td>
        <td class="after">${after[key] === undefined ? '' : `+ ${after[key]}`}</td></tr>`)}</tbody>
    </table></div>
  </div>`
}

const FILTERS = [
  { name: 'eventType', options: EVENT_TYPES },
  { name: 'clientIp' },
  { name: 'routeId', hint: 'id or name' },
  { name: 'status' },
  { name: 'outcome', options: OUTCOMES },
  { name: 'since', type: 'datetime-local' },
  { name: 'until', type: 'datetime-local' }
]

export function AuditPage () {
  const [form, setForm] = useState(Object.fromEntries(FILTERS.map((filter) => [filter.name, ''])))
  const [applied, setApplied] = useState({})
  const [offset, setOffset] = useState(0)
  const [page, setPage] = useState(null)
  const [open, setOpen] = useState(new Set())
  const [message, setMessage] = useState(null)

  useEffect(() => {
    let stopped = false
    api('GET', `/admin/audit/logs${query({ ...applied, limit: PAGE, offset })}`)
      .then((result) => { if (!stopped) { setPage(result); setMessage(null) } }, (err) => { if (!stopped) setMessage({ error: true, text: err.message }) })
    return () => { stopped = true }
  }, [applied, offset])

  function submit (event) {
    event.preventDefault()
    const next = {}
    for (const [key, value] of Object.entries(form)) {
      if (value === '') continue
      next[key] = key === 'since' || key === 'until' ? new Date(value).toISOString() : value
    }
    setOffset(0)
    setApplied(next)
  }
  const toggle = (id) => { const next = new Set(open); if (next.has(id)) next.delete(id); else next.add(id); setOpen(next) }

  return html`
    <h1 tabindex="-1">Audit</h1>
    <form class="panel" onSubmit=${submit} aria-label="Filter the audit log">
      <div class="row">
        ${FILTERS.map((filter) => html`<div class="field">
          <label for=${`audit-${filter.name}`}><code>${filter.name}</code></label>
          ${filter.options
            ? html`<select id=${`audit-${filter.name}`} value=${form[filter.name]} onChange=${(e) => setForm({ ...form, [filter.name]: e.currentTarget.value })}>
                ${filter.options.map((option) => html`<option value=${option}>${option === '' ? 'any' : option}</option>`)}</select>`
            : html`<input id=${`audit-${filter.name}`} type=${filter.type ?? 'text'} value=${form[filter.name]} onInput=${(e) => setForm({ ...form, [filter.name]: e.currentTarget.value })} />`}
        </div>`)}
        <div class="field"><button type="submit">Apply filters</button></div>
      </div>
    </form>
    <${Notice} message=${message} />
    ${page === null ? html`<p>Loading…</p>` : html`
      <p class="hint" role="status">${page.total} row${page.total === 1 ? '' : 's'}${page.total > 0 ? `, ${offset + 1}–${Math.min(offset + PAGE, page.total)} shown` : ''}</p>
      <div class="table-wrap"><table data-testid="audit-table">
        <thead><tr><th scope="col">ts</th><th scope="col">eventType</th><th scope="col">method</th><th scope="col">path</th><th scope="col">status</th><th scope="col">outcome</th><th scope="col">clientIp</th><th scope="col">durationMs</th><th scope="col">detail</th></tr></thead>
        <tbody>${page.items.map((row) => html`<tr key=${row.id}>
          <td>${formatTime(row.ts)}</td><td>${row.eventType}</td><td>${row.method ?? ''}</td><td>${row.path ?? ''}</td><td>${row.status ?? ''}</td>
          <td>${row.outcome}</td><td>${row.clientIp ?? ''}</td><td>${row.durationMs ?? ''}</td>
          <td>${row.eventType === 'admin' && row.detail && typeof row.detail === 'object'
            ? html`<button type="button" class="secondary" aria-expanded=${open.has(row.id)} onClick=${() => toggle(row.id)}>${open.has(row.id) ? 'Hide' : 'Show'} changes</button>`
            : typeof row.detail === 'string' ? row.detail : ''}</td>
        </tr>
        ${open.has(row.id) ? html`<tr><td colspan="9"><${Diff} detail=${row.detail} /></td></tr>` : null}`)}</tbody>
      </table></div>
      <div class="row">
        <button type="button" class="secondary" disabled=${offset === 0} onClick=${() => setOffset(Math.max(0, offset - PAGE))}>Newer</button>
        <button type="button" class="secondary" disabled=${offset + PAGE >= page.total} onClick=${() => setOffset(offset + PAGE)}>Older</button>
      </div>`}
  `
}
