import { render } from 'preact'
import { useEffect, useRef, useState } from 'preact/hooks'
import { api, ApiError, onUnauthorized, token } from './api.js'
import { AuditPage } from './audit.js'
import { OverviewPage } from './overview.js'
import { CertificatesPage, ConsumersPage, EgressRulesPage, FiltersPage, RoutesPage } from './resources.js'
import { ConfigPage, InstancesPage } from './system.js'
import { html } from './ui.js'

const PAGES = [
  { hash: 'overview', title: 'Overview', component: OverviewPage },
  { hash: 'routes', title: 'Routes', component: RoutesPage },
  { hash: 'consumers', title: 'Consumers', component: ConsumersPage },
  { hash: 'filters', title: 'Filters', component: FiltersPage },
  { hash: 'certificates', title: 'Certificates', component: CertificatesPage },
  { hash: 'egress-rules', title: 'Egress rules', component: EgressRulesPage },
  { hash: 'audit', title: 'Audit', component: AuditPage },
  { hash: 'instances', title: 'Instances', component: InstancesPage },
  { hash: 'config', title: 'Config', component: ConfigPage }
]

function currentPage () {
  const hash = location.hash.replace(/^#\/?/, '')
  return PAGES.find((page) => page.hash === hash) ?? PAGES[0]
}

function Login ({ notice, onSignedIn }) {
  const [value, setValue] = useState('')
  const [error, setError] = useState(notice)
  const [busy, setBusy] = useState(false)
  const input = useRef(null)
  useEffect(() => { input.current?.focus() }, [])

  async function submit (event) {
    event.preventDefault()
    setBusy(true)
    setError(null)
    try {
      await api('GET', '/admin/status', undefined, { tokenValue: value })
      token.set(value)
      onSignedIn()
    } catch (err) {
      setError(err instanceof ApiError && err.status === 401 ? 'Wrong admin token (401).' : err.message)
      input.current?.focus()
    } finally {
      setBusy(false)
    }
  }

  return html`<main class="login" id="main">
    <h1>Gatehouse dashboard</h1>
    <form onSubmit=${submit}>
      <label for="admin-token">Admin token</label>
      <input id="admin-token" ref=${input} type="password" autocomplete="current-password" required value=${value}
        aria-invalid=${error ? 'true' : undefined} aria-describedby=${error ? 'login-error' : 'login-hint'}
        onInput=${(e) => setValue(e.currentTarget.value)} />
      <p class="hint" id="login-hint">Kept in this tab only (sessionStorage) and sent to this gateway's admin API.</p>
      ${error ? html`<p class="error" id="login-error" role="alert">${error}</p>` : null}
      <button type="submit" disabled=${busy || value === ''}>Sign in</button>
    </form>
  </main>`
}

function Shell ({ onSignOut }) {
  const [page, setPage] = useState(currentPage)
  const main = useRef(null)
  useEffect(() => {
    const onHash = () => setPage(currentPage())
    window.addEventListener('hashchange', onHash)
    return () => window.removeEventListener('hashchange', onHash)
  }, [])
  useEffect(() => {
    document.title = `${page.title} · Gatehouse dashboard`
    // Keyboard and screen-reader users land on the new page's heading.
    const heading = main.current?.querySelector('h1')
    if (heading && document.activeElement?.closest('nav')) heading.focus()
  }, [page])
  const Page = page.component

  return html`
    <a class="skip" href="#main" onClick=${(e) => { e.preventDefault(); main.current?.querySelector('h1')?.focus() }}>Skip to content</a>
    <header class="top">
      <span class="brand">Gatehouse</span>
      <nav class="main" aria-label="Dashboard pages">
        <ul>${PAGES.map((entry) => html`<li><a href=${`#/${entry.hash}`} aria-current=${entry === page ? 'page' : undefined}>${entry.title}</a></li>`)}</ul>
      </nav>
      <button type="button" class="secondary" onClick=${onSignOut}>Sign out</button>
    </header>
    <main id="main" ref=${main}><${Page} key=${page.hash} /></main>
  `
}

function App () {
  const [signedIn, setSignedIn] = useState(() => token.get() !== null)
  const [notice, setNotice] = useState(null)
  useEffect(() => {
    onUnauthorized((message) => { setNotice(message); setSignedIn(false) })
  }, [])
  if (!signedIn) return html`<${Login} notice=${notice} onSignedIn=${() => { setNotice(null); setSignedIn(true) }} />`
  return html`<${Shell} onSignOut=${() => { token.clear(); setNotice(null); setSignedIn(false) }} />`
}

render(html`<${App} />`, document.getElementById('root'))
