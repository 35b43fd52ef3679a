import { execFileSync } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { request as httpForward } from 'node:http'
import { createServer as createHttpsServer } from 'node:https'
import path from 'node:path'
import t from 'tap'
import { ADMIN_TOKEN, httpRequest, spawnGateway, startGateway, tempDir, type TestContext } from '../helper.js'
import { DESKTOP, launchBrowser, openDashboard, PHONE, SKIP_MESSAGE, signIn } from './browser.js'

const PAGES = ['overview', 'routes', 'consumers', 'filters', 'certificates', 'egress-rules', 'audit', 'instances', 'config']

t.test('GET /dashboard serves the page and every asset from the gateway, gzipped, under a strict CSP', async (t) => {
  const gw = await startGateway(t)
  const page = await httpRequest(`${gw.url}/dashboard`)
  t.equal(page.statusCode, 200)
  t.match(page.headers['content-type'], /^text\/html/)
  const csp = String(page.headers['content-security-policy'])
  t.match(csp, /default-src 'none'/)
  t.match(csp, /script-src 'self' 'sha256-[A-Za-z0-9+/=]+'(;|$)/)
  t.match(csp, /connect-src 'self'/)
  t.notMatch(csp, /unsafe-inline|unsafe-eval|\*/, 'no inline script or style, no wildcard')
  t.equal(page.headers['x-content-type-options'], 'nosniff')
  t.notMatch(page.body, /https?:\/\//, 'the page names no other origin')

  // Every module the import map and the page name, and everything they import.
  const importMap = JSON.parse(/<script type="importmap">(.*?)<\/script>/.exec(page.body)![1]) as { imports: Record<string, string> }
  const urls = new Set([...Object.values(importMap.imports), ...[...page.body.matchAll(/(?:src|href)="([^"]+)"/g)].map((m) => m[1])])
  const queue = [...urls]
  let gzippedJs = 0
  while (queue.length > 0) {
    const url = queue.shift()!
    const response = await httpRequest(`${gw.url}${url}`, { headers: { 'accept-encoding': 'gzip' } })
    t.equal(response.statusCode, 200, url)
    t.equal(response.headers['content-encoding'], 'gzip', url)
    const plain = await httpRequest(`${gw.url}${url}`)
    t.equal(plain.headers['content-encoding'], undefined, `${url} plain to a client that does not ask for gzip`)
    if (url.endsWith('.js')) {
      gzippedJs += Number(response.headers['content-length'])
      const text = plain.body
      t.notMatch(text, /from\s*["']https?:/, `${url} imports nothing from another origin`)
      for (const match of text.matchAll(/from\s*["'](\.\/[^"']+)["']/g)) {
        const next = new URL(match[1], `http://x${url}`).pathname
        if (!urls.has(next)) { urls.add(next); queue.push(next) }
      }
    }
  }
  t.ok(urls.has('/dashboard/app.js') && urls.has('/dashboard/overview.js') && urls.has('/dashboard/vendor/uplot.js'))
  t.ok(gzippedJs < 150 * 1024, `JavaScript shipped: ${gzippedJs} bytes gzipped (< 150 KB)`)
  t.comment(`JavaScript shipped: ${gzippedJs} bytes gzipped over ${[...urls].filter((u) => u.endsWith('.js')).length} files`)

  const etag = (await httpRequest(`${gw.url}/dashboard/app.js`)).headers.etag as string
  t.equal((await httpRequest(`${gw.url}/dashboard/app.js`, { headers: { 'if-none-match': etag } })).statusCode, 304)
  const missing = await httpRequest(`${gw.url}/dashboard/nope.js`)
  t.equal(missing.statusCode, 404)
  t.match(missing.json(), { statusCode: 404, message: 'no dashboard file at /dashboard/nope.js' })
  // Not proxied traffic: the dashboard's own files are not counted.
  t.equal(gw.app.metrics.traffic.requests, 0)
})

t.test('the dashboard is served by every worker of a WORKERS=2 gateway', async (t) => {
  const gw = await spawnGateway(t, { WORKERS: '2' }, { startTimeoutMs: 120_000 })
  for (let i = 0; i < 6; i++) {
    t.equal((await httpRequest(`${gw.url}/dashboard`)).statusCode, 200)
    t.equal((await httpRequest(`${gw.url}/dashboard/app.js`)).statusCode, 200)
  }
})

/**
 * A TLS-terminating reverse proxy in front of the gateway (as nginx or a load balancer would be),
 * with a self-signed certificate made by openssl: https://127.0.0.1:PORT → the gateway.
 */
async function tlsFront (t: TestContext, gatewayPort: number): Promise<string> {
  const dir = tempDir(t)
  const key = path.join(dir, 'key.pem')
  const cert = path.join(dir, 'cert.pem')
  execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', key, '-out', cert, '-days', '1', '-subj', '/CN=127.0.0.1',
    '-addext', 'subjectAltName=IP:127.0.0.1'], { stdio: 'ignore' })
  const server = createHttpsServer({ key: readFileSync(key), cert: readFileSync(cert) }, (req, res) => {
    const upstream = httpForward({ host: '127.0.0.1', port: gatewayPort, method: req.method, path: req.url, headers: { ...req.headers, 'x-forwarded-proto': 'https' } }, (answer) => {
      res.writeHead(answer.statusCode ?? 502, answer.headers)
      answer.pipe(res)
    })
    upstream.on('error', () => { res.destroy() })
    req.pipe(upstream)
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  t.teardown(() => new Promise<void>((resolve) => { server.closeAllConnections(); server.close(() => resolve()) }))
  return `https://127.0.0.1:${(server.address() as { port: number }).port}`
}

t.test('in a real browser', async (t) => {
  const browser = await launchBrowser(t)
  if (browser === null) return void t.plan(0, SKIP_MESSAGE)

  t.test('login: a wrong token stays on the login; the right one opens the Overview and lives in sessionStorage only', async (t) => {
    const gw = await startGateway(t)
    const session = await openDashboard(browser, gw.url)
    const { page } = session
    const started = Date.now()
    await signIn(page, 'not-the-token')
    await page.getByText('Wrong admin token (401).').waitFor()
    t.equal(await page.getByLabel('Admin token').getAttribute('type'), 'password')
    t.equal(await page.evaluate(() => sessionStorage.length), 0)

    await signIn(page)
    await page.getByRole('heading', { name: 'Overview' }).waitFor()
    await page.locator('[data-testid=chart-rps] canvas').waitFor()
    t.comment(`login to first Overview render with charts: ${Date.now() - started} ms`)
    t.equal(await page.evaluate(() => sessionStorage.getItem('gatehouse.adminToken')), ADMIN_TOKEN)
    t.equal(await page.evaluate(() => localStorage.length), 0, 'nothing in localStorage')
    t.same(await session.context.cookies(), [], 'no cookies')
    t.equal(await page.evaluate(() => document.cookie), '')

    // A token the gateway no longer accepts (a 401 on any call) returns to the login.
    await page.evaluate(() => { sessionStorage.setItem('gatehouse.adminToken', 'stale') })
    await page.reload()
    await page.getByText('The admin token was refused (401): sign in again.').waitFor()
    t.equal(await page.evaluate(() => sessionStorage.getItem('gatehouse.adminToken')), null)

    // Signing out forgets the token.
    await signIn(page)
    await page.getByRole('heading', { name: 'Overview' }).waitFor()
    await page.getByRole('button', { name: 'Sign out' }).click()
    await page.getByLabel('Admin token').waitFor()
    t.equal(await page.evaluate(() => sessionStorage.length), 0)
    t.same(session.consoleErrors.filter((line) => !/status of 401/.test(line)), [], 'no console errors besides the refused logins')
    t.same(session.foreignRequests, [], 'no request left the gateway')
    await session.context.close()
  })

  t.test('behind a TLS-terminating proxy: signs in and draws the Overview over https, nothing insecure or foreign', async (t) => {
    const gw = await startGateway(t)
    const front = await tlsFront(t, gw.port)
    const context = await browser.newContext({ ignoreHTTPSErrors: true, viewport: DESKTOP })
    t.teardown(() => context.close())
    const page = await context.newPage()
    const errors: string[] = []
    const insecure: string[] = []
    page.on('console', (message) => { if (message.type() === 'error' || message.type() === 'warning') errors.push(message.text()) })
    page.on('pageerror', (err) => { errors.push(err.message) })
    context.on('request', (request) => { if (!request.url().startsWith(`${front}/`) && !request.url().startsWith('blob:')) insecure.push(request.url()) })
    await page.goto(`${front}/dashboard`)
    await signIn(page)
    await page.getByRole('heading', { name: 'Overview' }).waitFor()
    await page.locator('[data-testid=chart-rps] canvas').waitFor()
    t.same(errors, [], 'no errors or mixed-content warnings')
    t.same(insecure, [], 'every request went to the https origin')
  })

  t.test('the admin brute-force limit (429) is shown as such', async (t) => {
    const gw = await startGateway(t, { env: { ADMIN_AUTH_MAX_FAILURES: '2' } })
    const session = await openDashboard(browser, gw.url)
    for (let i = 0; i < 4; i++) await signIn(session.page, `wrong-${i}`)
    await session.page.getByText(/Too many failed admin attempts from this address \(429\): try again in \d+ s/).waitFor()
    // Even the right token is refused until the minute is over, and the page says why.
    await signIn(session.page)
    await session.page.getByText(/\(429\)/).waitFor()
    t.equal(await session.page.evaluate(() => sessionStorage.length), 0)
    t.same(session.foreignRequests, [])
    await session.context.close()
  })

  t.test('keyboard only: skip link, navigation with visible focus, a form opened and filled', async (t) => {
    const gw = await startGateway(t)
    const session = await openDashboard(browser, gw.url)
    const { page } = session
    await page.getByLabel('Admin token').waitFor()
    t.equal(await page.evaluate(() => document.activeElement?.id), 'admin-token', 'the token field has focus')
    await page.keyboard.type(ADMIN_TOKEN)
    await page.keyboard.press('Enter')
    await page.getByRole('heading', { name: 'Overview' }).waitFor()

    const focused = async () => await page.evaluate(() => {
      const element = document.activeElement as HTMLElement
      const style = getComputedStyle(element)
      return { text: element.textContent?.trim() ?? '', tag: element.tagName, outline: style.outlineStyle, outlineWidth: style.outlineWidth }
    })
    await page.keyboard.press('Tab')
    t.match(await focused(), { text: 'Skip to content', tag: 'A' })
    await page.keyboard.press('Tab')
    const first = await focused()
    t.match(first, { text: 'Overview', tag: 'A' })
    t.not(first.outline, 'none', 'focus is visible')
    t.not(first.outlineWidth, '0px')
    // Tab to "Routes" and follow it with Enter.
    await page.keyboard.press('Tab')
    t.match(await focused(), { text: 'Routes' })
    await page.keyboard.press('Enter')
    await page.getByRole('heading', { name: 'Routes' }).waitFor()
    t.match(await focused(), { tag: 'H1', text: 'Routes' }, 'focus moves to the new page\'s heading')
    // From the heading: search field, then "New route".
    await page.keyboard.press('Tab')
    t.match(await focused(), { tag: 'INPUT' })
    await page.keyboard.press('Tab')
    t.match(await focused(), { text: 'New route', tag: 'BUTTON' })
    await page.keyboard.press('Enter')
    await page.keyboard.press('Tab')
    t.equal(await page.evaluate(() => document.activeElement?.getAttribute('name')), 'name')
    await page.keyboard.type('kbd')
    await page.keyboard.press('Tab')
    await page.keyboard.type('/kbd')
    await page.keyboard.press('Tab')
    await page.keyboard.type('http://127.0.0.1:9')
    // Submit with Enter from a text field of the form is not possible from a textarea: tab to Create.
    for (let i = 0; i < 40; i++) {
      if ((await focused()).text === 'Create') break
      await page.keyboard.press('Tab')
    }
    await page.keyboard.press('Enter')
    await page.getByText('Route kbd created.').waitFor()
    t.equal(gw.app.routeTable.routes.find((route) => route.name === 'kbd')?.path, '/kbd')
    t.same(session.consoleErrors, [])
    t.same(session.foreignRequests, [])
    await session.context.close()
  })

  for (const colorScheme of ['light', 'dark'] as const) {
    for (const [name, viewport] of [['1280×720', DESKTOP], ['390×844', PHONE]] as const) {
      t.test(`${colorScheme} at ${name}: every page fits without horizontal scrolling, colours follow the system`, async (t) => {
        const gw = await startGateway(t)
        const session = await openDashboard(browser, gw.url, { viewport, colorScheme })
        const { page } = session
        await signIn(page)
        await page.getByRole('heading', { name: 'Overview' }).waitFor()
        const background = await page.evaluate(() => getComputedStyle(document.body).backgroundColor)
        t.equal(background, colorScheme === 'dark' ? 'rgb(17, 20, 24)' : 'rgb(255, 255, 255)')
        for (const hash of PAGES) {
          await page.goto(`${gw.url}/dashboard#/${hash}`)
          await page.locator('main h1').waitFor()
          await page.waitForLoadState('networkidle')
          const { scrollWidth, clientWidth } = await page.evaluate(() => ({ scrollWidth: document.documentElement.scrollWidth, clientWidth: document.documentElement.clientWidth }))
          t.ok(scrollWidth <= clientWidth, `${hash}: page ${scrollWidth} px wide in a ${clientWidth} px viewport`)
          t.ok(await page.getByRole('navigation', { name: 'Dashboard pages' }).isVisible())
          t.ok(await page.locator('main').isVisible())
        }
        t.same(session.consoleErrors, [])
        t.same(session.foreignRequests, [])
        await session.context.close()
      })
    }
  }
})
