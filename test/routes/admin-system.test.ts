import t from 'tap'
import type { FastifyInstance } from 'fastify'
import { findRoute, insertRoute } from '../../repositories/routes.js'
import { adminHeaders, buildTestApp, createRoute, httpRequest, startGateway, startUpstream } from '../helper.js'

const target = { url: 'http://127.0.0.1:9', weight: 1 }

async function getConfig (app: FastifyInstance): Promise<Record<string, any[]>> {
  const response = await app.inject({ url: '/admin/config', headers: adminHeaders })
  if (response.statusCode !== 200) throw new Error(`GET /admin/config: ${response.statusCode} ${response.body}`)
  return response.json()
}

async function putConfig (app: FastifyInstance, document: unknown) {
  return app.inject({ method: 'PUT', url: '/admin/config', headers: adminHeaders, payload: document as object })
}

/** A document with every section empty except the given ones. */
function documentFor (app: FastifyInstance, sections: Record<string, unknown[]>): Record<string, unknown[]> {
  const document: Record<string, unknown[]> = {}
  for (const section of app.configSections.all) document[section.name] = []
  return { ...document, ...sections }
}

async function adminRows (app: FastifyInstance) {
  await app.audit.flush()
  const rows = await app.db.selectFrom('audit_log').selectAll().where('event_type', '=', 'admin').orderBy('id').execute()
  return rows.map((row) => JSON.parse(row.detail as string) as { action: string, resource: string, before: any, after: any })
}

t.test('POST /admin/reload rereads routes from the database', async (t) => {
  const upstream = await startUpstream(t, (_req, res) => res.end('fresh'))
  const { app, url } = await startGateway(t)
  await createRoute(app, { name: 'a', path: '/a', targets: [target] })
  // Written behind the gateway's back: no config_version bump, so nothing reloads by itself.
  const now = new Date().toISOString()
  await insertRoute(app.db, {
    id: 'manual', name: 'manual', path: '/manual', hosts: [], methods: [], stripPath: false, preserveHost: false,
    targets: [{ url: upstream.url, weight: 1 }], loadBalancing: 'round-robin', healthCheck: null, timeoutMs: 1000,
    retries: 0, bodyLimit: 1000, auth: { type: 'none' }, rateLimit: null, cors: null, cache: null, enabled: true, httpsRedirect: false, upstreamTls: null, websocket: false, createdAt: now, updatedAt: now
  })
  await new Promise((resolve) => setTimeout(resolve, 300))
  t.equal((await httpRequest(`${url}/manual`)).statusCode, 404, 'not loaded yet')

  const response = await httpRequest(`${url}/admin/reload`, { method: 'POST', headers: adminHeaders })
  t.equal(response.statusCode, 200)
  t.same(response.json(), { routes: 2, version: app.configChanges.version, configRevision: 1 }, 'the one revision: the route created through the API (the row written directly is none)')
  t.equal(typeof response.json().version, 'number')
  t.equal((await httpRequest(`${url}/manual`)).body, 'fresh', 'served right after the reload')

  const anonymous = await httpRequest(`${url}/admin/reload`, { method: 'POST' })
  t.equal(anonymous.statusCode, 401)
  const rows = await adminRows(app)
  t.same(rows.map((row) => [row.action, row.resource]), [['create', 'route'], ['reload', 'routes']])
})

t.test('GET /admin/config exports every section; routes as GET /admin/routes shows them', async (t) => {
  const app = await buildTestApp(t)
  await createRoute(app, { name: 'a', path: '/a', targets: [target] })
  await createRoute(app, { name: 'b', path: '/b', targets: [target], auth: { type: 'jwt', jwksUrl: 'https://id.example.com/jwks' } as never })
  const document = await getConfig(app)
  t.same(Object.keys(document).sort(), app.configSections.all.map((section) => section.name).sort())
  t.ok(app.configSections.all.some((section) => section.name === 'routes'), 'the routes section is registered')
  const routes = (await app.inject({ url: '/admin/routes', headers: adminHeaders })).json().items
  t.same(document.routes, routes)
  const anonymous = await app.inject({ url: '/admin/config' })
  t.equal(anonymous.statusCode, 401)
})

t.test('PUT /admin/config makes the stored state equal the document', async (t) => {
  const one = await startUpstream(t, (_req, res) => res.end('one'))
  const { app, url } = await startGateway(t)
  const kept = await createRoute(app, { name: 'kept', path: '/kept', targets: [{ url: one.url, weight: 1 }], retries: 3 })
  const unchanged = await createRoute(app, { name: 'unchanged', path: '/unchanged', targets: [target] })
  await createRoute(app, { name: 'dropped', path: '/dropped', targets: [{ url: one.url, weight: 1 }] })
  t.equal((await httpRequest(`${url}/dropped`)).body, 'one')

  const before = await getConfig(app)
  const { id: _id, createdAt: _c, updatedAt: _u, ...keptFields } = kept
  const document = {
    ...before,
    routes: [
      { ...keptFields, path: '/kept-v2' },
      before.routes.find((route) => route.name === 'unchanged'),
      { id: 'fresh-id', name: 'fresh', path: '/fresh', targets: [{ url: one.url }] }
    ]
  }
  const response = await putConfig(app, document)
  t.equal(response.statusCode, 200, response.body)
  const after = await getConfig(app)
  t.same(response.json(), after, 'answers the new document')
  t.same(after.routes.map((route) => route.name).sort(), ['fresh', 'kept', 'unchanged'])
  const byName = new Map(after.routes.map((route) => [route.name, route]))
  t.equal(byName.get('kept').id, kept.id, 'a route that stays keeps its id')
  t.equal(byName.get('kept').createdAt, kept.createdAt)
  t.equal(byName.get('kept').path, '/kept-v2')
  t.equal(byName.get('kept').retries, 3)
  t.same(byName.get('unchanged'), unchanged, 'an identical route is left alone, updatedAt included')
  t.equal(byName.get('fresh').id, 'fresh-id', 'a new route takes the id the document gives')
  t.equal(byName.get('fresh').timeoutMs, 30000, 'and gets every default')

  t.equal((await httpRequest(`${url}/dropped`)).statusCode, 404, 'omitted → deleted, at once')
  t.equal((await httpRequest(`${url}/fresh`)).body, 'one', 'new → live, at once')
  t.equal((await httpRequest(`${url}/kept-v2`)).body, 'one', 'changed → live, at once')

  const roundTrip = await putConfig(app, after)
  t.equal(roundTrip.statusCode, 200, 'what GET exports, PUT accepts')
  t.same(await getConfig(app), after, 'and a round trip changes nothing')

  const rows = (await adminRows(app)).filter((row) => row.resource === 'config')
  t.equal(rows.length, 2, 'one audit row per PUT')
  t.equal(rows[0].action, 'import')
  t.same(rows[0].before, before)
  t.same(rows[0].after, after)
})

t.test('a section left out of the document is emptied: what it omits is deleted', async (t) => {
  const upstream = await startUpstream(t, (_req, res) => res.end('one'))
  const { app, url } = await startGateway(t)
  await createRoute(app, { name: 'a', path: '/a', targets: [{ url: upstream.url, weight: 1 }] })
  const filter = await app.inject({ method: 'POST', url: '/admin/filters', headers: adminHeaders, payload: { action: 'deny', ip: '203.0.113.9', reason: 'test' } })
  t.equal(filter.statusCode, 201, filter.body)
  const response = await putConfig(app, { routes: (await getConfig(app)).routes })
  t.equal(response.statusCode, 200, response.body)
  const after = await getConfig(app)
  t.equal(after.routes.length, 1, 'the routes given stay')
  t.same(after.filters, [], 'filters, left out, are deleted')
  t.equal((await httpRequest(`${url}/a`)).body, 'one')
})

t.test('the document carries no JWT secret, and a route that stays keeps its stored one', async (t) => {
  const app = await buildTestApp(t)
  const secret = 'a-jwt-shared-secret-of-32-chars!!'
  await createRoute(app, { name: 'signed', path: '/signed', targets: [target], auth: { type: 'jwt', secret, jwksUrl: null, consumerClaim: 'sub' } })
  const exported = await getConfig(app)
  t.equal(exported.routes[0].auth.secret, null, 'exported as null')
  t.notMatch(JSON.stringify(exported), secret, 'the secret appears nowhere in the document')

  const roundTrip = await putConfig(app, exported)
  t.equal(roundTrip.statusCode, 200, roundTrip.body)
  t.equal(exported.routes[0].auth.secretSet, true, 'the export says a secret is stored')
  const stored = await findRoute(app.db, 'signed')
  t.equal(stored?.auth.type === 'jwt' ? stored.auth.secret : undefined, secret, 'the stored secret is kept')

  const renamed = await putConfig(app, { ...exported, routes: [{ ...exported.routes[0], name: 'other', id: undefined }] })
  t.equal(renamed.statusCode, 400, 'a new route needs its own secret')
  t.equal(renamed.json().message, 'body/routes/0/auth must set exactly one of secret or jwksUrl (no stored secret to keep)')
  t.equal((await app.inject({ method: 'GET', url: '/admin/routes/signed', headers: adminHeaders })).statusCode, 200, 'and nothing changed')
})

t.test('a document with one bad item changes nothing', async (t) => {
  const app = await buildTestApp(t)
  await createRoute(app, { name: 'a', path: '/a', targets: [target] })
  await createRoute(app, { name: 'b', path: '/b', targets: [target] })
  const before = await getConfig(app)
  const version = app.configChanges.version
  const good = { name: 'c', path: '/c', targets: [target] }
  const cases: Array<[string, unknown, string]> = [
    ['bad field in the last item', documentFor(app, { routes: [good, { ...good, name: 'd', targets: [] }] }), 'body/routes/1/targets must have at least 1 item'],
    ['wrong type deep inside', documentFor(app, { routes: [{ ...good, rateLimit: { max: '5' } }] }), 'body/routes/0/rateLimit/max must be an integer'],
    ['jwt with both keys', documentFor(app, { routes: [{ ...good, auth: { type: 'jwt', secret: 's'.repeat(32), jwksUrl: 'https://x/jwks' } }] }), 'body/routes/0/auth must set exactly one of secret or jwksUrl'],
    ['duplicate name', documentFor(app, { routes: [good, good] }), 'body/routes/1/name "c" is already used by routes/0'],
    ['duplicate id', documentFor(app, { routes: [{ ...good, id: 'x' }, { ...good, name: 'd', id: 'x' }] }), 'body/routes/1/id "x" is already used by routes/0'],
    ['unknown section', { ...documentFor(app, {}), services: [] }, 'body/services is not a known field'],
    ['section not an array', documentFor(app, { routes: {} as never }), 'body/routes must be an array'],
    ['not an object', [], 'body must be an object']
  ]
  for (const [what, document, message] of cases) {
    const response = await putConfig(app, document)
    t.equal(response.statusCode, 400, what)
    t.equal(response.json().message, message, what)
  }
  for (const section of app.configSections.all.filter((s) => s.name !== 'routes')) {
    const response = await putConfig(app, documentFor(app, { routes: [good], [section.name]: [{ nonsense: true }] }))
    t.equal(response.statusCode, 400, `a bad ${section.name} item`)
    t.match(response.json().message, new RegExp(`^body/${section.name}/0`), `names the ${section.name} item`)
  }
  // Caught only inside the transaction, after "b" was already deleted: all of it rolls back.
  const { id: keptId, ...keptWithoutId } = before.routes[0]
  const late = await putConfig(app, documentFor(app, { routes: [keptWithoutId, { ...good, id: keptId }] }))
  t.equal(late.statusCode, 400)
  t.equal(late.json().message, `body/routes/1/id "${keptId}" belongs to another route that stays`)

  t.same(await getConfig(app), before, 'stored state unchanged')
  t.equal(app.configChanges.version, version, 'no config version bump')
  t.same(app.routeTable.routes.map((route) => route.name), ['a', 'b'], 'running table unchanged')
  t.same((await adminRows(app)).filter((row) => row.resource === 'config'), [], 'nothing audited')
})

t.test('PUT /admin/config with every section empty deletes everything', async (t) => {
  const app = await buildTestApp(t)
  await createRoute(app, { name: 'a', path: '/a', targets: [target] })
  const response = await putConfig(app, documentFor(app, {}))
  t.equal(response.statusCode, 200)
  t.same(response.json().routes, [])
  t.same(app.routeTable.routes, [])
})
