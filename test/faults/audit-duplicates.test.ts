import t from 'tap'
import { postgresDatabase, startGateway, startUpstream } from '../helper.js'
import { startLoad } from './load.js'

// docs/faults.md "Audit rows": on PostgreSQL 1–2 % of audit rows were written twice under concurrent load
// (a batch was the live queue array: rows pushed while its transaction ran were inserted by it
// and again by the next batch).

t.test('PostgreSQL under concurrent load: audit rows = distinct request ids = requests served', async (t) => {
  const databaseUrl = await postgresDatabase(t)
  if (databaseUrl === null) return void t.skip('PostgreSQL unreachable', () => {})
  const upstream = await startUpstream(t)
  // Frequent small batches: many writes for rows to arrive during.
  const { app, url } = await startGateway(t, { databaseUrl, build: { audit: { flushIntervalMs: 2 } } })
  const created = await app.inject({ method: 'POST', url: '/admin/routes', headers: { authorization: 'Bearer test-admin-token-0123456789' }, payload: { name: 'svc', path: '/svc', targets: [{ url: upstream.url }] } })
  t.equal(created.statusCode, 201)

  const load = startLoad(url, '/svc/x', { connections: 16, maxMs: 4000 })
  await new Promise((resolve) => setTimeout(resolve, 4000))
  await load.stop()
  await app.audit.flush()

  const rows = await app.db.selectFrom('audit_log').select((eb) => [eb.fn.countAll<number>().as('rows'), eb.fn.count<number>('request_id').distinct().as('distinct')])
    .where('request_id', 'like', 'load-%').executeTakeFirstOrThrow()
  t.same(load.failed, [])
  t.ok(load.served.length > 500, `${load.served.length} requests served`)
  t.equal(Number(rows.distinct), load.served.length, 'one distinct request id per request served')
  t.equal(Number(rows.rows), load.served.length, 'and no row written twice')
})
