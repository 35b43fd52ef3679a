import { useEffect, useState } from 'preact/hooks'
import { api, hasQueryParameter, listIfAvailable, query } from './api.js'
import { Diff } from './audit.js'
import { formatNumber, formatTime, html, Notice, Unavailable } from './ui.js'

export function InstancesPage () {
  const [list, setList] = useState(null)
  const [message, setMessage] = useState(null)
  useEffect(() => {
    let stopped = false
    const load = () => api('GET', '/admin/instances').then((result) => { if (!stopped) setList(result) }, (err) => { if (!stopped) setMessage({ error: true, text: err.message }) })
    load()
    const timer = setInterval(load, 5000)
    return () => { stopped = true; clearInterval(timer) }
  }, [])
  return html`
    <h1 tabindex="-1">Instances</h1>
    <p class="hint">Every gateway process sharing this database, from the heartbeat each writes every 5 s; each worker of a WORKERS cluster is an instance of its own.</p>
    <${Notice} message=${message} />
    ${list === null ? html`<p>Loading…</p>` : html`<div class="table-wrap"><table>
      <thead><tr><th scope="col">instanceId</th><th scope="col">healthy</th><th scope="col">host</th><th scope="col">pid</th><th scope="col">version</th><th scope="col">startedAt</th><th scope="col">lastSeenAt</th><th scope="col">configRevision</th><th scope="col">requestsPerSecond</th></tr></thead>
      <tbody>${list.items.map((item) => html`<tr key=${item.instanceId}>
        <td>${item.instanceId}</td><td class=${item.healthy ? 'ok' : 'bad'}>${item.healthy ? 'healthy' : 'unseen for over 15 s'}</td>
        <td>${item.host}</td><td>${item.pid}</td><td>${item.version}</td><td>${formatTime(item.startedAt)}</td><td>${formatTime(item.lastSeenAt)}</td>
        <td>${item.configRevision}</td><td>${formatNumber(item.requestsPerSecond, 1)}</td></tr>`)}</tbody>
    </table></div>`}
  `
}

const ignored = new Set(['id', 'createdAt', 'updatedAt'])
/** An item without the fields the gateway does not compare (docs/config-history.md "Diff"). */
const compared = (entity) => entity && typeof entity === 'object' ? Object.fromEntries(Object.entries(entity).filter(([key]) => !ignored.has(key))) : entity
const comparable = (entity) => JSON.stringify(Object.fromEntries(Object.entries(entity).filter(([key]) => !ignored.has(key)).sort(([a], [b]) => a.localeCompare(b))))
const keyOf = (entity) => entity.name ?? entity.id ?? comparable(entity)

/** What a PUT of `next` would change, computed here when the gateway has no dry run. */
function localDiff (current, next) {
  const changes = { creating: [], updating: [], deleting: [] }
  const kinds = new Set([...Object.keys(current), ...Object.keys(next)].filter((kind) => Array.isArray(current[kind]) || Array.isArray(next[kind])))
  for (const kind of kinds) {
    const before = new Map((current[kind] ?? []).map((entity) => [keyOf(entity), entity]))
    const after = new Map((next[kind] ?? []).map((entity) => [keyOf(entity), entity]))
    const singular = kind.replace(/s$/, '')
    for (const [name, entity] of after) {
      const old = before.get(name)
      if (old === undefined) changes.creating.push({ kind: singular, name, new: entity })
      else if (comparable(old) !== comparable({ ...old, ...entity })) changes.updating.push({ kind: singular, name, old, new: entity })
    }
    for (const [name, entity] of before) if (!after.has(name)) changes.deleting.push({ kind: singular, name, old: entity })
  }
  return changes
}

/** A diff's changes ({creating, updating, deleting}) as counts and one line per item. */
function Changes ({ changes }) {
  const count = (list) => list?.length ?? 0
  return html`<p>${count(changes.creating)} to create, ${count(changes.updating)} to update, ${count(changes.deleting)} to delete.</p>
    <ul>
      ${(changes.creating ?? []).map((change) => html`<li><span class="change">creating ${label(change)}</span></li>`)}
      ${(changes.updating ?? []).map((change) => html`<li><span class="change">updating ${label(change)}</span>
        <${Diff} detail=${{ action: 'update', resource: change.kind, id: change.name, before: compared(change.old), after: compared(change.new) }} /></li>`)}
      ${(changes.deleting ?? []).map((change) => html`<li><span class="change">deleting ${label(change)}</span></li>`)}
    </ul>`
}

function label (change) { return `${change.kind} ${typeof change.name === 'string' && change.name.length < 80 ? change.name : '(unnamed)'}` }

const REVISIONS_PAGE = 20

export function ConfigPage () {
  const [exported, setExported] = useState(null)
  const [download, setDownload] = useState(null)
  const [text, setText] = useState('')
  const [preview, setPreview] = useState(null)
  const [message, setMessage] = useState(null)
  const [revisions, setRevisions] = useState(null)
  const [revisionOffset, setRevisionOffset] = useState(0)
  const [diffRange, setDiffRange] = useState({ from: '', to: '' })
  const [revisionDiff, setRevisionDiff] = useState(null)

  async function loadRevisions (offset = revisionOffset) {
    try {
      setRevisions(await listIfAvailable(`/admin/config/revisions${query({ limit: REVISIONS_PAGE, offset })}`))
      setRevisionOffset(offset)
    } catch (err) { setMessage({ error: true, text: err.message }) }
  }
  useEffect(() => { loadRevisions(0) }, [])

  async function exportConfig () {
    try {
      const document = await api('GET', '/admin/config')
      const json = JSON.stringify(document, null, 2)
      setExported(json)
      if (download) URL.revokeObjectURL(download)
      setDownload(URL.createObjectURL(new Blob([json], { type: 'application/json' })))
    } catch (err) { setMessage({ error: true, text: err.message }) }
  }

  function parsed () {
    try { return JSON.parse(text) } catch { throw new Error('The document is not valid JSON.') }
  }

  async function previewImport () {
    setPreview(null)
    try {
      const next = parsed()
      // The gateway's own dry run when it has one (asked of its OpenAPI document: a gateway
      // without it must never receive the PUT); otherwise compared here with what is running.
      const changes = await hasQueryParameter('/admin/config', 'put', 'dryRun')
        ? (await api('PUT', '/admin/config?dryRun=true', next)).changes
        : localDiff(await api('GET', '/admin/config'), next)
      setPreview(changes)
      setMessage(null)
    } catch (err) { setMessage({ error: true, text: err.message }) }
  }

  async function applyImport () {
    if (!window.confirm('Replace the whole configuration with this document? What it omits is deleted.')) return
    try {
      await api('PUT', '/admin/config', parsed())
      setPreview(null)
      setMessage({ text: 'Configuration imported.' })
      await loadRevisions(0)
    } catch (err) { setMessage({ error: true, text: err.message }) }
  }

  async function rollback (revision) {
    if (!window.confirm(`Roll the configuration back to revision ${revision}?`)) return
    try {
      const result = await api('POST', '/admin/config/rollback', { revision })
      setMessage({ text: `Rolled back to revision ${revision}${result?.revision ? ` (new revision ${result.revision})` : ''}.` })
      await loadRevisions(0)
    } catch (err) { setMessage({ error: true, text: err.message }) }
  }

  async function showDiff (from, to) {
    setRevisionDiff(null)
    try {
      if (!/^\d+$/.test(from)) throw new Error('from: a revision number (0 is the empty configuration).')
      if (to !== '' && !/^\d+$/.test(to)) throw new Error('to: a revision number, or empty for the newest.')
      const diff = await api('GET', `/admin/config/diff${query({ from, to })}`)
      setRevisionDiff({ from, to: to === '' ? 'newest' : to, changes: diff.changes })
      setMessage(null)
    } catch (err) { setMessage({ error: true, text: err.message }) }
  }
  function compareRevisions (event) {
    event.preventDefault()
    showDiff(diffRange.from.trim(), diffRange.to.trim())
  }

  async function readFile (event) {
    const file = event.currentTarget.files?.[0]
    if (file) setText(await file.text())
  }

  return html`
    <h1 tabindex="-1">Config</h1>
    <${Notice} message=${message} />
    <section class="panel" aria-labelledby="export-title">
      <h2 id="export-title">Export</h2>
      <button type="button" onClick=${exportConfig}>Export configuration</button>
      ${download ? html` <a href=${download} download="gatehouse-config.json">Download gatehouse-config.json</a>` : null}
      ${exported ? html`<pre data-testid="exported">${exported}</pre>` : null}
    </section>
    <section class="panel" aria-labelledby="import-title">
      <h2 id="import-title">Import</h2>
      <div class="field"><label for="config-file">Read a file</label><input id="config-file" type="file" accept="application/json,.json" onChange=${readFile} /></div>
      <div class="field"><label for="config-document">Configuration document (JSON, as exported)</label>
        <textarea id="config-document" rows="10" value=${text} onInput=${(e) => { setText(e.currentTarget.value); setPreview(null) }}></textarea></div>
      <div class="row"><button type="button" onClick=${previewImport}>Preview changes</button>
        <button type="button" class="danger" disabled=${preview === null} onClick=${applyImport}>Apply import</button></div>
      ${preview ? html`<div data-testid="preview"><h2>Changes</h2><${Changes} changes=${preview} /></div>` : null}
    </section>
    <section class="panel" aria-labelledby="revisions-title">
      <h2 id="revisions-title">Revisions</h2>
      ${revisions === null ? html`<p>Loading…</p>` : revisions === false ? html`<${Unavailable} what="Configuration revisions" />` : html`<div class="table-wrap"><table>
        <thead><tr><th scope="col">revision</th><th scope="col">ts</th><th scope="col">actor</th><th scope="col">source</th><th scope="col">summary</th><th scope="col">Actions</th></tr></thead>
        <tbody>${(revisions.items ?? []).map((item) => html`<tr key=${item.revision}>
          <td>${item.revision}</td><td>${formatTime(item.ts)}</td><td>${item.actor ?? ''}</td><td>${item.source ?? ''}</td>
          <td>${item.summary ? `${item.summary.created ?? 0} created, ${item.summary.updated ?? 0} updated, ${item.summary.deleted ?? 0} deleted` : ''}</td>
          <td class="actions"><button type="button" class="secondary" onClick=${() => showDiff(String(item.revision - 1), String(item.revision))}>Changes in ${item.revision}</button>
            <button type="button" class="danger" onClick=${() => rollback(item.revision)}>Roll back to ${item.revision}</button></td></tr>`)}</tbody>
      </table></div>
      <div class="row">
        <p class="hint" data-testid="revisions-page">${revisions.total === 0 ? 'No revision yet.' : `${revisionOffset + 1}–${revisionOffset + revisions.items.length} of ${revisions.total}`}</p>
        <button type="button" class="secondary" disabled=${revisionOffset === 0} onClick=${() => loadRevisions(Math.max(0, revisionOffset - REVISIONS_PAGE))}>Newer</button>
        <button type="button" class="secondary" disabled=${revisionOffset + REVISIONS_PAGE >= revisions.total} onClick=${() => loadRevisions(revisionOffset + REVISIONS_PAGE)}>Older</button>
      </div>`}
      ${revisions ? html`<form class="row" onSubmit=${compareRevisions} aria-label="Compare revisions">
        <div class="field"><label for="diff-from">from</label><input id="diff-from" inputmode="numeric" value=${diffRange.from} onInput=${(e) => setDiffRange({ ...diffRange, from: e.currentTarget.value })} /></div>
        <div class="field"><label for="diff-to">to</label><input id="diff-to" inputmode="numeric" placeholder="newest" value=${diffRange.to} onInput=${(e) => setDiffRange({ ...diffRange, to: e.currentTarget.value })} /></div>
        <div class="field"><button type="submit">Compare revisions</button></div>
      </form>` : null}
      ${revisionDiff ? html`<div data-testid="revision-diff"><h2>From revision ${revisionDiff.from} to ${revisionDiff.to}</h2><${Changes} changes=${revisionDiff.changes} /></div>` : null}
    </section>
  `
}
