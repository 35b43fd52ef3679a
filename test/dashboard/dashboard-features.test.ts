import t from 'tap'
import type { Page } from 'playwright-core'
import { adminHeaders, httpRequest, startGateway } from '../helper.js'
import { makeCertificate } from '../tls-helper.js'
import { acceptNextDialog, launchBrowser, navigator, openDashboard, SKIP_MESSAGE, signIn, type Session } from './browser.js'

/**
 * The pages of the features that landed beside the dashboard (certificates, egress rules,
 * configuration revisions, diff, rollback and dry run) against their real endpoints.
 */
t.test('certificates, egress rules and configuration history in a real browser', async (t) => {
  const browser = await launchBrowser(t)
  if (browser === null) return void t.plan(0, SKIP_MESSAGE)
  const gw = await startGateway(t)
  const admin = async (path: string, init: { method?: string, body?: unknown } = {}) => await httpRequest(`${gw.url}${path}`, {
    method: init.method,
    headers: init.body === undefined ? adminHeaders : { ...adminHeaders, 'content-type': 'application/json' },
    body: init.body === undefined ? undefined : JSON.stringify(init.body)
  })
  const session: Session = await openDashboard(browser, gw.url)
  const page: Page = session.page
  await signIn(page)
  await page.getByRole('heading', { name: 'Overview' }).waitFor()
  const go = navigator(page, t)
  const fieldOf = (form: ReturnType<Page['getByRole']>, name: string) => form.locator('.field', { has: page.locator(`[name=${name}]`) })

  t.test('Certificates: create, a key that does not match shown next to it, listed without the key, delete', async (t) => {
    const api = makeCertificate(t, { cn: 'api.example.com' })
    const other = makeCertificate(t, { cn: 'other.example.com' })
    await go('certificates', 'Certificates')
    await page.getByRole('button', { name: 'New certificate' }).click()
    const form = page.getByRole('region', { name: 'New certificate' })
    await form.getByLabel('name').fill('api')
    await form.getByLabel('snis').fill('api.example.com, *.example.org')
    await form.getByLabel(/^cert\b/).fill(api.cert)
    await form.getByLabel(/^key\b/).fill(other.key)
    await form.getByRole('button', { name: 'Create' }).click()
    const keyField = fieldOf(form, 'key')
    await keyField.getByRole('alert').waitFor()
    t.equal(await keyField.getByRole('alert').textContent(), 'body/key: does not match the certificate')
    t.equal(await form.locator('textarea[name=key]').getAttribute('aria-invalid'), 'true')
    t.equal(await form.locator('textarea[name=cert]').getAttribute('aria-invalid'), null)
    t.equal((await admin('/admin/certificates')).json().total, 0, 'nothing was created')

    await form.getByLabel(/^key\b/).fill(api.key)
    await form.getByRole('button', { name: 'Create' }).click()
    await page.getByText('Certificate api created.').waitFor()
    const list = (await admin('/admin/certificates')).json()
    t.equal(list.total, 1)
    const stored = list.items[0]
    t.match(stored, { name: 'api', snis: ['*.example.org', 'api.example.com'], subject: 'CN=api.example.com' })
    const row = page.locator('tbody tr', { hasText: stored.fingerprint })
    await row.waitFor()
    const cells = await row.locator('td').allTextContents()
    t.equal(cells[0], 'api')
    t.equal(cells[1], '*.example.org, api.example.com')
    t.equal(cells[2], 'CN=api.example.com')
    t.equal(cells[3], await page.evaluate((iso) => new Date(iso).toLocaleString(), stored.notAfter as string), 'notAfter as the browser shows dates')
    t.equal(cells[4], stored.fingerprint)
    t.notMatch(await page.content(), /PRIVATE KEY/, 'the key is not on the page once the form is closed')

    // Rotation: PUT of the whole certificate; the key is never shown, so it is asked for again.
    const rotated = makeCertificate(t, { cn: 'api.example.com', type: 'rsa' })
    await page.getByRole('button', { name: 'Replace api' }).click()
    const replace = page.getByRole('region', { name: 'Replace api' })
    t.equal(await replace.getByLabel(/^cert\b/).inputValue(), api.cert.trim(), 'the current certificate is shown (as sent: the form trims)')
    t.equal(await replace.getByLabel(/^key\b/).inputValue(), '', 'the key is not')
    await replace.getByLabel(/^cert\b/).fill(rotated.cert)
    await replace.getByRole('button', { name: 'Save' }).click()
    await fieldOf(replace, 'key').getByRole('alert').filter({ hasText: /key/ }).waitFor()
    t.equal((await admin('/admin/certificates/api')).json().fingerprint, stored.fingerprint, 'unchanged')
    await replace.getByLabel(/^key\b/).fill(rotated.key)
    await replace.getByRole('button', { name: 'Save' }).click()
    await page.getByText('Certificate api saved.').waitFor()
    const replaced = (await admin('/admin/certificates/api')).json()
    t.not(replaced.fingerprint, stored.fingerprint)
    t.equal(replaced.id, stored.id)
    t.same(replaced.snis, stored.snis)
    await page.locator('tbody tr', { hasText: replaced.fingerprint }).waitFor()
    t.notMatch(await page.content(), /PRIVATE KEY/)

    page.once('dialog', (dialog) => { void dialog.dismiss() })
    await page.getByRole('button', { name: 'Delete api' }).click()
    t.equal((await admin('/admin/certificates/api')).statusCode, 200, 'dismissed: still there')
    acceptNextDialog(page)
    await page.getByRole('button', { name: 'Delete api' }).click()
    await page.getByText('Certificate api deleted.').waitFor()
    t.equal((await admin('/admin/certificates/api')).statusCode, 404)
    await page.getByText('0 of 0').waitFor()
  })

  t.test('Egress rules: a rule with neither host nor cidr refused, allow and deny rules created, delete', async (t) => {
    await go('egress-rules', 'Egress rules')
    await page.getByRole('button', { name: 'New egress rule' }).click()
    const form = page.getByRole('region', { name: 'New egress rule' })
    await form.getByLabel('ports').fill('443, 8443')
    await form.getByRole('button', { name: 'Create' }).click()
    const hostField = fieldOf(form, 'host')
    await hostField.getByRole('alert').waitFor()
    t.equal(await hostField.getByRole('alert').textContent(), 'body must set at least one of host or cidr')
    t.equal((await admin('/admin/egress-rules')).json().total, 0, 'nothing was created')

    await form.getByLabel('cidr').fill('10.20.0.0/16')
    await form.getByLabel('reason').fill('internal services')
    await form.getByRole('button', { name: 'Create' }).click()
    await page.getByText('Egress rule allow 10.20.0.0/16 created.').waitFor()

    await page.getByRole('button', { name: 'New egress rule' }).click()
    await form.getByLabel('action').selectOption('deny')
    await form.getByLabel('host').fill('*.Example.NET')
    await form.getByRole('button', { name: 'Create' }).click()
    await page.getByText('Egress rule deny *.example.net created.').waitFor()

    const rules = (await admin('/admin/egress-rules')).json()
    t.equal(rules.total, 2)
    const allow = rules.items.find((rule: { action: string }) => rule.action === 'allow')
    const deny = rules.items.find((rule: { action: string }) => rule.action === 'deny')
    t.match(allow, { host: null, cidr: '10.20.0.0/16', ports: [443, 8443], reason: 'internal services', expiresAt: null })
    t.match(deny, { host: '*.example.net', cidr: null, ports: [], reason: '' })
    const allowCells = await page.locator('tbody tr', { hasText: '10.20.0.0/16' }).locator('td').allTextContents()
    t.same(allowCells.slice(0, 6), ['allow', '', '10.20.0.0/16', '443, 8443', '', 'internal services'])
    const denyCells = await page.locator('tbody tr', { hasText: '*.example.net' }).locator('td').allTextContents()
    t.same(denyCells.slice(0, 4), ['deny', '*.example.net', '', ''])

    acceptNextDialog(page)
    await page.getByRole('button', { name: 'Delete deny *.example.net' }).click()
    await page.getByText('Egress rule deny *.example.net deleted.').waitFor()
    t.equal((await admin(`/admin/egress-rules/${deny.id as string}`)).statusCode, 404)
    t.equal((await admin(`/admin/egress-rules/${allow.id as string}`)).statusCode, 200)
    await page.getByText('1 of 1').waitFor()
  })

  t.test('Config: revisions with source and summary, a diff, rollback, import preview by dry run', async (t) => {
    // Two more admin changes: a route, then a filter.
    t.equal((await admin('/admin/routes', { method: 'POST', body: { name: 'orders', path: '/orders', targets: [{ url: 'http://127.0.0.1:9' }] } })).statusCode, 201)
    const afterRoute = (await admin('/admin/status')).json().configRevision as number
    t.equal((await admin('/admin/filters', { method: 'POST', body: { action: 'deny', ip: '203.0.113.7' } })).statusCode, 201)
    const revisions = (await admin('/admin/config/revisions')).json()
    const newest = revisions.items[0]
    t.equal(newest.revision, afterRoute + 1)

    await go('config', 'Config')
    const table = page.getByRole('region', { name: 'Revisions' }).locator('table')
    await table.locator('tbody tr').first().filter({ hasText: String(newest.revision) }).waitFor()
    const rows = await table.locator('tbody tr').all()
    t.equal(rows.length, revisions.total, 'every revision listed')
    const first = await rows[0].locator('td').allTextContents()
    t.equal(first[0], String(newest.revision))
    t.equal(first[2], 'admin-token')
    t.equal(first[3], 'admin-api')
    t.equal(first[4], '1 created, 0 updated, 0 deleted')
    // The certificate and egress-rule changes made through the UI above are revisions too.
    t.ok((await table.locator('tbody tr td:nth-child(4)').allTextContents()).every((source) => source === 'admin-api'))

    // What the filter changed: from the revision before it to the newest.
    await page.getByLabel('from', { exact: true }).fill(String(afterRoute))
    await page.getByRole('button', { name: 'Compare revisions' }).click()
    const diff = page.getByTestId('revision-diff')
    await diff.waitFor()
    t.match(await diff.textContent(), new RegExp(`From revision ${afterRoute} to newest`))
    t.match(await diff.textContent(), /1 to create, 0 to update, 0 to delete\./)
    t.same(await diff.locator('li > .change').allTextContents(), ['creating filter deny 203.0.113.7 any-path'])
    await page.getByLabel('from', { exact: true }).fill('0')
    await page.getByLabel('to', { exact: true }).fill(String(afterRoute))
    await page.getByRole('button', { name: 'Compare revisions' }).click()
    await diff.filter({ hasText: `From revision 0 to ${afterRoute}` }).waitFor()
    t.same((await diff.locator('li > .change').allTextContents()).sort(), ['creating egress rule allow 10.20.0.0/16 ports 443,8443', 'creating route orders'])

    // One revision's own changes, from its row.
    await page.getByRole('button', { name: `Changes in ${afterRoute}` }).click()
    await diff.filter({ hasText: `From revision ${afterRoute - 1} to ${afterRoute}` }).waitFor()
    t.same(await diff.locator('li > .change').allTextContents(), ['creating route orders'])

    // Roll back to before the filter: dismissed, nothing; accepted, a new revision without it.
    page.once('dialog', (dialog) => { void dialog.dismiss() })
    await page.getByRole('button', { name: `Roll back to ${afterRoute}` }).click()
    t.equal((await admin('/admin/filters')).json().total, 1)
    acceptNextDialog(page)
    await page.getByRole('button', { name: `Roll back to ${afterRoute}` }).click()
    await page.getByText(`Rolled back to revision ${afterRoute} (new revision ${newest.revision + 1}).`).waitFor()
    t.equal((await admin('/admin/filters')).json().total, 0, 'the filter is gone')
    t.equal((await admin('/admin/routes/orders')).statusCode, 200, 'the route is still there')
    t.same((await admin('/admin/config/diff?from=' + String(afterRoute))).json().summary, { creating: 0, updating: 0, deleting: 0 }, 'the configuration is that of the revision')
    await table.locator('tbody tr').first().filter({ hasText: String(newest.revision + 1) }).waitFor()
    const rolled = await table.locator('tbody tr').first().locator('td').allTextContents()
    t.equal(rolled[3], 'rollback')
    t.equal(rolled[4], '0 created, 0 updated, 1 deleted')

    // Import preview: the gateway's own dry run, which changes nothing; an invalid document is its 400.
    await page.getByRole('button', { name: 'Export configuration' }).click()
    const exported = JSON.parse((await page.getByTestId('exported').textContent())!)
    await page.getByLabel('Configuration document (JSON, as exported)').fill(JSON.stringify({ ...exported, routes: [{ ...exported.routes[0], path: 'no-slash' }] }))
    await page.getByRole('button', { name: 'Preview changes' }).click()
    await page.getByRole('alert').filter({ hasText: /routes\/0\/path must match pattern/ }).waitFor()
    t.equal(await page.getByTestId('preview').count(), 0)
    t.equal(await page.getByRole('button', { name: 'Apply import' }).isDisabled(), true, 'nothing to apply')
    exported.routes[0].timeoutMs = 8000
    exported.filters.push({ action: 'deny', ip: '198.51.100.1' })
    await page.getByLabel('Configuration document (JSON, as exported)').fill(JSON.stringify(exported))
    const [dryRun] = await Promise.all([
      page.waitForRequest((request) => request.method() === 'PUT' && request.url().endsWith('/admin/config?dryRun=true')),
      page.getByRole('button', { name: 'Preview changes' }).click()
    ])
    t.ok(dryRun)
    const preview = page.getByTestId('preview')
    await preview.waitFor()
    t.same((await preview.locator('li > .change').allTextContents()).sort(), ['creating filter deny 198.51.100.1 any-path', 'updating route orders'])
    // The update, field by field: only what changed.
    const changed = preview.locator('.diff tbody tr')
    t.same(await changed.locator('th').allTextContents(), ['timeoutMs'])
    t.equal(await changed.locator('td.before').textContent(), '− 30000')
    t.equal(await changed.locator('td.after').textContent(), '+ 8000')
    const status = (await admin('/admin/status')).json()
    t.equal(status.configRevision, newest.revision + 1, 'the dry run wrote no revision')
    t.equal((await admin('/admin/routes/orders')).json().timeoutMs, 30000, 'and changed nothing')
    acceptNextDialog(page)
    await page.getByRole('button', { name: 'Apply import' }).click()
    await page.getByText('Configuration imported.').waitFor()
    t.equal((await admin('/admin/routes/orders')).json().timeoutMs, 8000)
    await table.locator('tbody tr').first().filter({ hasText: 'config-import' }).waitFor()
  })

  t.test('Config: revisions page by page', async (t) => {
    for (let i = 1; i <= 20; i++) t.equal((await admin('/admin/filters', { method: 'POST', body: { action: 'deny', ip: `198.51.100.${i}` } })).statusCode, 201)
    const total = (await admin('/admin/config/revisions?limit=1')).json().total as number
    t.ok(total > 20 && total <= 40)
    await page.reload()
    await page.getByRole('heading', { name: 'Config', level: 1 }).waitFor()
    const table = page.getByRole('region', { name: 'Revisions' }).locator('table')
    await page.getByTestId('revisions-page').filter({ hasText: `1–20 of ${total}` }).waitFor()
    t.equal(await table.locator('tbody tr').count(), 20)
    t.equal(await page.getByRole('button', { name: 'Newer' }).isDisabled(), true)
    await page.getByRole('button', { name: 'Older' }).click()
    await page.getByTestId('revisions-page').filter({ hasText: `21–${total} of ${total}` }).waitFor()
    const older = (await admin('/admin/config/revisions?limit=20&offset=20')).json()
    t.same(await table.locator('tbody tr td:first-child').allTextContents(), older.items.map((item: { revision: number }) => String(item.revision)))
    t.equal(await page.getByRole('button', { name: 'Older' }).isDisabled(), true)
    await page.getByRole('button', { name: 'Newer' }).click()
    await page.getByTestId('revisions-page').filter({ hasText: `1–20 of ${total}` }).waitFor()
    await table.locator('tbody tr').first().filter({ hasText: String(total) }).waitFor()
  })

  t.test('no console errors and no request left the gateway', async (t) => {
    // Chromium logs every answer >= 400 it loads; the four 400s above are the validation checks.
    t.same(session.consoleErrors.filter((line) => !/status of 400 \(Bad Request\)/.test(line)), [])
    t.equal(session.consoleErrors.length, 4)
    t.same(session.foreignRequests, [])
  })
})
