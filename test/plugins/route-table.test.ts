import Fastify from 'fastify'
import fp from 'fastify-plugin'
import t, { type Test } from 'tap'
import routeTable from '../../plugins/route-table.js'
import type { Route } from '../../schemas/route.js'

function route (name: string, path: string): Route {
  return {
    id: name, name, path, hosts: [], methods: [], stripPath: false, preserveHost: false,
    targets: [{ url: 'http://127.0.0.1:9', weight: 1 }], loadBalancing: 'round-robin', healthCheck: null,
    timeoutMs: 1000, retries: 0, bodyLimit: 1024, auth: { type: 'none' }, rateLimit: null, cors: null, cache: null,
    enabled: true, httpsRedirect: false, upstreamTls: null, websocket: false, createdAt: '2026-01-01T00:00:00.000Z', updatedAt: '2026-01-01T00:00:00.000Z'
  }
}

/** A route table over a loader the test controls: each load() waits for the test to resolve it. */
async function tableWithManualLoads (t: Test) {
  const pending: Array<(routes: Route[]) => void> = []
  const app = Fastify({ logger: false })
  await app.register(fp(async (app) => { app.decorate('db', {} as never) }, { name: 'db' }))
  await app.register(fp(async (app) => {
    app.decorate('configChanges', { onChange: async () => {}, track: async () => {} } as never)
  }, { name: 'config-changes' }))
  // The route table registers the routes section of GET/PUT /admin/config; not exercised here.
  await app.register(fp(async (app) => { app.decorate('configSections', { add () {} } as never) }, { name: 'config-sections' }))
  await app.register(routeTable, { load: async () => await new Promise<Route[]>((resolve) => pending.push(resolve)) })
  await app.ready()
  t.teardown(() => app.close())
  return { app, pending }
}

t.test('a reload that finishes after a later one has swapped in is dropped', async (t) => {
  const { app, pending } = await tableWithManualLoads(t)
  const older = app.routeTable.reload()
  const newer = app.routeTable.reload()
  pending[1]([route('new', '/new')])
  await newer
  pending[0]([route('old', '/old')])
  await older
  t.same(app.routeTable.routes.map((r) => r.name), ['new'])
  t.equal(app.routeTable.matcher.match('GET', '', '/new')?.name, 'new')
  t.equal(app.routeTable.matcher.match('GET', '', '/old'), null)
  t.equal(app.routeTable.generation, 1)
})

t.test('reloads finishing in order are all swapped in', async (t) => {
  const { app, pending } = await tableWithManualLoads(t)
  const first = app.routeTable.reload()
  const second = app.routeTable.reload()
  pending[0]([route('a', '/a')])
  await first
  t.same(app.routeTable.routes.map((r) => r.name), ['a'])
  pending[1]([route('b', '/b')])
  await second
  t.same(app.routeTable.routes.map((r) => r.name), ['b'])
  t.equal(app.routeTable.generation, 2)
})

t.test('a failing swap listener neither stops the others nor the reload', async (t) => {
  const { app, pending } = await tableWithManualLoads(t)
  const seen: string[][] = []
  let calls = 0
  app.routeTable.onSwap(() => { if (calls++ > 0) throw new Error('listener broke') })
  app.routeTable.onSwap((routes) => { seen.push(routes.map((r) => r.name)) })
  const reload = app.routeTable.reload()
  pending[0]([route('x', '/x')])
  await reload
  t.same(seen, [[], ['x']], 'called at registration with the current routes, then after the swap')
  t.equal(app.routeTable.matcher.match('GET', '', '/x/1')?.name, 'x')
  t.equal(calls, 2)
})
