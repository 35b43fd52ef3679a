import path from 'node:path'
import t, { type Test } from 'tap'
import type { FastifyInstance } from 'fastify'
import { adminHeaders, buildTestApp, createRoute, httpRequest, postgresDatabase, startGateway, startUpstream, tempDir } from '../helper.js'

/** Polls `check` over real requests until it holds; the time it took in ms, or fails after `limitMs`. */
async function within (limitMs: number, check: () => Promise<boolean>): Promise<number> {
  const started = Date.now()
  for (;;) {
    if (await check()) return Date.now() - started
    if (Date.now() - started > limitMs) throw new Error(`not seen within ${limitMs} ms`)
    await new Promise((resolve) => setTimeout(resolve, 10))
  }
}

/**
 * Two gateways on one database: A takes admin changes, B proxies over a real socket and
 * must follow within 1 s (docs/admin-api.md "Common rules"), polling at the production interval.
 */
async function propagation (t: Test, databaseUrl: string): Promise<FastifyInstance> {
  const one = await startUpstream(t, (_req, res) => res.end('one'))
  const two = await startUpstream(t, (_req, res) => res.end('two'))
  const production = { configPollIntervalMs: undefined }
  const a = await buildTestApp(t, { databaseUrl, build: production })
  const b = await startGateway(t, { databaseUrl, build: production })
  const body = async (): Promise<string> => {
    const response = await httpRequest(`${b.url}/svc/x`)
    return response.statusCode === 200 ? response.body : String(response.statusCode)
  }
  t.equal(await body(), '404')

  const timings: Record<string, number> = {}
  await createRoute(a, { name: 'svc', path: '/svc', targets: [{ url: one.url, weight: 1 }] })
  timings.create = await within(1000, async () => await body() === 'one')
  const patch = await a.inject({ method: 'PATCH', url: '/admin/routes/svc', headers: adminHeaders, payload: { targets: [{ url: two.url }] } })
  t.equal(patch.statusCode, 200)
  timings.patch = await within(1000, async () => await body() === 'two')
  const removed = await a.inject({ method: 'DELETE', url: '/admin/routes/svc', headers: adminHeaders })
  t.equal(removed.statusCode, 204)
  timings.delete = await within(1000, async () => await body() === '404')

  const document = (await a.inject({ url: '/admin/config', headers: adminHeaders })).json()
  document.routes = [{ name: 'svc', path: '/svc', targets: [{ url: one.url }] }]
  t.equal((await a.inject({ method: 'PUT', url: '/admin/config', headers: adminHeaders, payload: document })).statusCode, 200)
  timings.import = await within(1000, async () => await body() === 'one')

  for (const [change, ms] of Object.entries(timings)) t.ok(ms < 1000, `${change} reached the other instance in ${ms} ms`)
  t.same(b.app.routeTable.routes.map((route) => route.name), ['svc'])
  return a
}

t.test('a change made on one instance reaches another on the same SQLite file within 1 s', async (t) => {
  await propagation(t, `sqlite:${path.join(tempDir(t), 'shared.db')}`)
})

t.test('a change made on one instance reaches another on the same PostgreSQL database within 1 s', async (t) => {
  const databaseUrl = await postgresDatabase(t)
  if (databaseUrl === null) return void t.plan(0, 'PostgreSQL unreachable at 127.0.0.1:5432 (set GATEHOUSE_REQUIRE_SERVICES=1 to fail instead)')
  const a = await propagation(t, databaseUrl)
  await a.audit.flush()
  const rows = await a.db.selectFrom('audit_log').select(['id', 'outcome']).where('event_type', '=', 'admin').orderBy('id').execute()
  t.same(rows.map((row) => row.outcome), ['admin', 'admin', 'admin', 'admin'], 'audit rows are written on PostgreSQL')
  t.same(rows.map((row) => typeof row.id), ['number', 'number', 'number', 'number'])
  const tables = await a.db.introspection.getTables()
  t.ok(tables.some((table) => table.name === 'audit_log' && table.columns.some((c) => c.name === 'id' && c.isAutoIncrementing)),
    'migrations gave audit_log an auto-incrementing id on PostgreSQL (bigserial)')
})

t.test('restart keeps routes', async (t) => {
  const upstream = await startUpstream(t, (_req, res) => res.end('still here'))
  const databaseUrl = `sqlite:${path.join(tempDir(t), 'restart.db')}`
  const first = await buildTestApp(t, { databaseUrl })
  const route = await createRoute(first, { name: 'svc', path: '/svc', targets: [{ url: upstream.url, weight: 1 }], retries: 2 })
  await first.close()

  const second = await startGateway(t, { databaseUrl })
  const stored = await second.app.inject({ url: '/admin/routes/svc', headers: adminHeaders })
  t.same(stored.json(), route, 'the route is stored as it was')
  t.equal((await httpRequest(`${second.url}/svc`)).body, 'still here', 'and served right after start')
})
