import { useEffect, useState } from 'preact/hooks'
import { api, ApiError, listIfAvailable } from './api.js'
import { confirmDelete, formatTime, html, Notice, ResourceForm, Unavailable } from './ui.js'

/**
 * A list of one admin resource with search, create, edit, enable/disable and delete. Features
 * that may not be in this gateway (certificates, egress rules) are detected at run time: a 404
 * from the list endpoint shows "not available" instead.
 */
export function ResourcePage ({ title, singular, path, fields, columns, describe, editable = false, editMethod = 'PATCH', editLabel = 'Edit', toggle = false, rowExtra, afterCreate }) {
  const [items, setItems] = useState(null)
  const [unavailable, setUnavailable] = useState(false)
  const [search, setSearch] = useState('')
  const [mode, setMode] = useState(null)
  const [message, setMessage] = useState(null)

  async function load () {
    try {
      const page = await listIfAvailable(`${path}?limit=1000`)
      if (page === false) return setUnavailable(true)
      setItems(page.items)
    } catch (err) {
      setMessage({ error: true, text: err.message })
    }
  }
  useEffect(() => { load() }, [path])

  if (unavailable) return html`<h1 tabindex="-1">${title}</h1><${Unavailable} what=${title} />`

  async function create (body) {
    const created = await api('POST', path, body)
    setMode(null)
    setMessage({ text: `${singular} ${describe(created)} created.` })
    if (afterCreate) await afterCreate(created, setMessage)
    await load()
  }
  async function edit (item, body) {
    await api(editMethod, `${path}/${encodeURIComponent(item.id)}`, body)
    setMode(null)
    setMessage({ text: `${singular} ${describe(item)} saved.` })
    await load()
  }
  async function remove (item) {
    if (!confirmDelete(`${singular.toLowerCase()} ${describe(item)}`)) return
    try {
      await api('DELETE', `${path}/${encodeURIComponent(item.id)}`)
      setMessage({ text: `${singular} ${describe(item)} deleted.` })
    } catch (err) {
      setMessage({ error: true, text: err.message })
    }
    await load()
  }
  async function setEnabled (item, enabled) {
    try {
      await api('PATCH', `${path}/${encodeURIComponent(item.id)}`, { enabled })
      setMessage({ text: `${singular} ${describe(item)} ${enabled ? 'enabled' : 'disabled'}.` })
    } catch (err) {
      setMessage({ error: true, text: err.message })
    }
    await load()
  }

  const needle = search.trim().toLowerCase()
  const shown = (items ?? []).filter((item) => needle === '' || JSON.stringify(item).toLowerCase().includes(needle))
  const editing = mode !== null && mode !== 'create' ? mode : null

  return html`
    <h1 tabindex="-1">${title}</h1>
    <${Notice} message=${message} />
    <div class="row">
      <div class="field"><label for="search">Search</label>
        <input id="search" type="search" value=${search} onInput=${(e) => setSearch(e.currentTarget.value)} /></div>
      <div class="field"><button type="button" onClick=${() => setMode(mode === 'create' ? null : 'create')} aria-expanded=${mode === 'create'}>New ${singular.toLowerCase()}</button></div>
    </div>
    ${mode === 'create' ? html`<section class="panel" aria-label=${`New ${singular.toLowerCase()}`}>
      <h2>New ${singular.toLowerCase()}</h2>
      <${ResourceForm} fields=${fields} submitLabel="Create" onSubmit=${create} onCancel=${() => setMode(null)} idPrefix="create" />
    </section>` : null}
    ${editing !== null ? html`<section class="panel" aria-label=${`${editLabel} ${describe(editing)}`}>
      <h2>${editLabel} ${singular.toLowerCase()} ${describe(editing)}</h2>
      <${ResourceForm} key=${editing.id} fields=${fields} initial=${editing} editing=${true} submitLabel="Save" onSubmit=${(body) => edit(editing, body)} onCancel=${() => setMode(null)} idPrefix="edit" />
    </section>` : null}
    ${items === null ? html`<p>Loading…</p>` : html`
      <p class="hint">${shown.length} of ${items.length}</p>
      <div class="table-wrap"><table>
        <thead><tr>${columns.map((column) => html`<th scope="col">${column.label}</th>`)}<th scope="col">Actions</th></tr></thead>
        <tbody>${shown.map((item) => html`<tr key=${item.id}>
          ${columns.map((column) => html`<td>${column.value(item)}</td>`)}
          <td class="actions">
            ${editable ? html`<button type="button" class="secondary" onClick=${() => setMode(item)} aria-label=${`${editLabel} ${describe(item)}`}>${editLabel}</button>` : null}
            ${toggle ? html`<button type="button" class="secondary" onClick=${() => setEnabled(item, !item.enabled)} aria-label=${`${item.enabled ? 'Disable' : 'Enable'} ${describe(item)}`}>${item.enabled ? 'Disable' : 'Enable'}</button>` : null}
            <button type="button" class="danger" onClick=${() => remove(item)} aria-label=${`Delete ${describe(item)}`}>Delete</button>
          </td>
        </tr>
        ${rowExtra ? rowExtra(item, columns.length + 1, setMessage) : null}`)}</tbody>
      </table></div>`}
  `
}

const ROUTE_FIELDS = [
  { name: 'name', required: true, hint: 'unique: a-z, 0-9, "_" and "-"' },
  { name: 'path', required: true, hint: 'path prefix, starts with "/"' },
  { name: 'targets', type: 'targets', required: true, hint: 'one upstream per line: URL and optional weight, e.g. "http://127.0.0.1:9001 1"', rows: 3 },
  { name: 'hosts', type: 'csv', hint: 'comma-separated; empty: any host' },
  { name: 'methods', type: 'csv', hint: 'comma-separated, e.g. GET, POST; empty: any method' },
  { name: 'stripPath', type: 'checkbox' },
  { name: 'preserveHost', type: 'checkbox' },
  { name: 'loadBalancing', type: 'select', options: ['round-robin', 'least-connections'] },
  { name: 'timeoutMs', type: 'number', hint: 'default 30000' },
  { name: 'retries', type: 'number', hint: 'default 1' },
  { name: 'bodyLimit', type: 'number', hint: 'bytes' },
  { name: 'auth', type: 'json', hint: 'JSON, e.g. {"type": "api-key"}; empty: none' },
  { name: 'rateLimit', type: 'json', hint: 'JSON, e.g. {"max": 100, "windowMs": 60000, "by": "ip"}' },
  { name: 'healthCheck', type: 'json', hint: 'JSON, e.g. {"path": "/health", "intervalMs": 5000}' },
  { name: 'cors', type: 'json', hint: 'JSON, e.g. {"origins": ["https://app.example.com"]}' },
  { name: 'enabled', type: 'checkbox', default: true }
]

export function RoutesPage () {
  return html`<${ResourcePage} title="Routes" singular="Route" path="/admin/routes" fields=${ROUTE_FIELDS} editable toggle
    describe=${(route) => route.name}
    columns=${[
      { label: 'name', value: (route) => route.name },
      { label: 'path', value: (route) => route.path },
      { label: 'targets', value: (route) => route.targets.map((target) => target.url).join(', ') },
      { label: 'methods', value: (route) => route.methods.length === 0 ? 'any' : route.methods.join(', ') },
      { label: 'auth', value: (route) => route.auth?.type ?? 'none' },
      { label: 'enabled', value: (route) => route.enabled ? 'yes' : 'no' }
    ]} />`
}

const FILTER_FIELDS = [
  { name: 'action', type: 'select', options: ['deny', 'allow'], default: 'deny' },
  { name: 'ip', hint: 'an address or CIDR, e.g. 203.0.113.7 or 10.0.0.0/8' },
  { name: 'path', hint: 'a path prefix, e.g. /api/private' },
  { name: 'expiresAt', type: 'datetime', hint: 'ISO-8601 date and time; empty: never' },
  { name: 'reason' }
]

export function FiltersPage () {
  return html`<${ResourcePage} title="Filters" singular="Filter" path="/admin/filters" fields=${FILTER_FIELDS}
    describe=${(filter) => `${filter.action} ${[filter.ip, filter.path].filter(Boolean).join(' ')}`}
    columns=${[
      { label: 'action', value: (filter) => filter.action },
      { label: 'ip', value: (filter) => filter.ip ?? '' },
      { label: 'path', value: (filter) => filter.path ?? '' },
      { label: 'expiresAt', value: (filter) => formatTime(filter.expiresAt) },
      { label: 'reason', value: (filter) => filter.reason ?? '' }
    ]} />`
}

const CERTIFICATE_FIELDS = [
  { name: 'name', required: true },
  { name: 'snis', type: 'csv', hint: 'comma-separated host names, e.g. api.example.com, *.example.org' },
  { name: 'cert', type: 'pem', required: true, hint: 'PEM certificate (chain)', rows: 6 },
  { name: 'key', type: 'pem', required: true, hint: 'PEM private key: stored, never shown again', rows: 6 }
]

export function CertificatesPage () {
  // Replacing (rotation) is a PUT of the whole certificate: the key is never shown, so it is given again.
  return html`<${ResourcePage} title="Certificates" singular="Certificate" path="/admin/certificates" fields=${CERTIFICATE_FIELDS} editable editMethod="PUT" editLabel="Replace"
    describe=${(cert) => cert.name}
    columns=${[
      { label: 'name', value: (cert) => cert.name },
      { label: 'snis', value: (cert) => (cert.snis ?? []).join(', ') },
      { label: 'subject', value: (cert) => cert.subject ?? '' },
      { label: 'notAfter', value: (cert) => formatTime(cert.notAfter) },
      { label: 'fingerprint', value: (cert) => cert.fingerprint ?? '' }
    ]} />`
}

const EGRESS_FIELDS = [
  { name: 'action', type: 'select', options: ['allow', 'deny'], default: 'allow' },
  { name: 'host', hint: 'example.com or *.example.com' },
  { name: 'cidr', hint: 'e.g. 10.0.0.0/8' },
  { name: 'ports', type: 'ints', hint: 'comma-separated, e.g. 443' },
  { name: 'expiresAt', type: 'datetime', hint: 'ISO-8601; empty: never' },
  { name: 'reason' }
]

export function EgressRulesPage () {
  return html`<${ResourcePage} title="Egress rules" singular="Egress rule" path="/admin/egress-rules" fields=${EGRESS_FIELDS}
    describe=${(rule) => `${rule.action} ${[rule.host, rule.cidr].filter(Boolean).join(' ')}`}
    columns=${[
      { label: 'action', value: (rule) => rule.action },
      { label: 'host', value: (rule) => rule.host ?? '' },
      { label: 'cidr', value: (rule) => rule.cidr ?? '' },
      { label: 'ports', value: (rule) => (rule.ports ?? []).join(', ') },
      { label: 'expiresAt', value: (rule) => formatTime(rule.expiresAt) },
      { label: 'reason', value: (rule) => rule.reason ?? '' }
    ]} />`
}

const CONSUMER_FIELDS = [
  { name: 'name', required: true, hint: 'unique: a-z, 0-9, "_" and "-"' },
  { name: 'rateLimit', type: 'json', hint: 'JSON, e.g. {"max": 100, "windowMs": 60000}; empty: none' }
]

/** A consumer's keys and basic credentials, opened under its row. */
function ConsumerCredentials ({ consumer, span, setMessage }) {
  const [open, setOpen] = useState(false)
  const [keys, setKeys] = useState([])
  const [shownKey, setShownKey] = useState(null)
  const base = `/admin/consumers/${encodeURIComponent(consumer.id)}`

  async function loadKeys () {
    try { setKeys((await api('GET', `${base}/keys`)).items) } catch (err) { setMessage({ error: true, text: err.message }) }
  }
  async function newKey () {
    try {
      const created = await api('POST', `${base}/keys`)
      setShownKey(created)
      setOpen(true)
      await loadKeys()
    } catch (err) { setMessage({ error: true, text: err.message }) }
  }
  async function deleteKey (key) {
    if (!confirmDelete(`API key ${key.prefix}…`)) return
    try { await api('DELETE', `${base}/keys/${encodeURIComponent(key.id)}`) } catch (err) { setMessage({ error: true, text: err.message }) }
    await loadKeys()
  }
  async function setBasic (body) {
    await api('PUT', `${base}/basic`, body)
    setMessage({ text: `Basic credentials of ${consumer.name} set.` })
  }

  return html`<tr><td colspan=${span}>
    <button type="button" class="secondary" aria-expanded=${open} onClick=${() => { if (!open) loadKeys(); setOpen(!open); setShownKey(null) }}>Credentials of ${consumer.name}</button>
    <button type="button" onClick=${newKey}>New API key for ${consumer.name}</button>
    ${shownKey !== null ? html`<div class="secret" role="status">
      <strong>API key for ${consumer.name}: </strong><code data-testid="new-key">${shownKey.key}</code>
      <p>Copy it now: it is shown only this once (the gateway keeps a hash).</p>
      <button type="button" class="secondary" onClick=${() => setShownKey(null)}>I have copied it</button>
    </div>` : null}
    ${open ? html`<div class="panel">
      <h2>API keys</h2>
      ${keys.length === 0 ? html`<p>No keys.</p>` : html`<ul>${keys.map((key) => html`<li key=${key.id}>
        <code>${key.prefix}…</code> created ${formatTime(key.createdAt)}
        <button type="button" class="danger" onClick=${() => deleteKey(key)} aria-label=${`Delete API key ${key.prefix}`}>Delete</button></li>`)}</ul>`}
      <h2>Basic credentials</h2>
      <${ResourceForm} fields=${[{ name: 'username', required: true }, { name: 'password', type: 'password', required: true }]} submitLabel="Set basic credentials" onSubmit=${setBasic} idPrefix="basic" />
    </div>` : null}
  </td></tr>`
}

export function ConsumersPage () {
  return html`<${ResourcePage} title="Consumers" singular="Consumer" path="/admin/consumers" fields=${CONSUMER_FIELDS}
    describe=${(consumer) => consumer.name}
    columns=${[
      { label: 'name', value: (consumer) => consumer.name },
      { label: 'rateLimit', value: (consumer) => consumer.rateLimit ? `${consumer.rateLimit.max} / ${consumer.rateLimit.windowMs} ms` : 'none' },
      { label: 'createdAt', value: (consumer) => formatTime(consumer.createdAt) }
    ]}
    rowExtra=${(consumer, span, setMessage) => html`<${ConsumerCredentials} key=${`c-${consumer.id}`} consumer=${consumer} span=${span} setMessage=${setMessage} />`} />`
}

export { ApiError }
