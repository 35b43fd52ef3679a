import { setTimeout as sleep } from 'node:timers/promises'
import t, { type Test } from 'tap'
import { spawnGateway, startUpstream, tempDir } from '../helper.js'
import { call, startLoad, waitFor } from './load.js'
import { startPrivatePostgres, type PrivatePostgres } from './private-postgres.js'

// docs/faults.md "What you see": a PostgreSQL stopped, restarted
// and with its sessions killed under load must not crash the gateway (it did on the third
// round: an unhandled 'error' of a checked-out pg client), proxying goes on, /ready and the
// admin API say 503 while it is away and recover by themselves, and every audit row is
// written exactly once.

interface AuditCount { rows: number, distinct: number, ids: Set<string> }

async function loadRows (postgres: PrivatePostgres): Promise<AuditCount> {
  const { rows } = await postgres.query<{ request_id: string }>('select request_id from audit_log where request_id like \'load-%\'')
    .catch(async () => await postgres.query<{ request_id: string }>('select 1 where false'))
  return { rows: rows.length, distinct: new Set(rows.map((row) => row.request_id)).size, ids: new Set(rows.map((row) => row.request_id)) }
}

async function drill (t: Test, workers: number): Promise<void> {
  const postgres = await startPrivatePostgres(t)
  if (typeof postgres === 'string') {
    t.skip(`private PostgreSQL unavailable: ${postgres}`, () => {})
    return
  }
  // The audit rows are read from a database of its own (the gateway's is cut below).
  await postgres.query('create database gatehouse')
  const auditDb: PrivatePostgres = { ...postgres, query: async (text, values) => await queryOn(postgres.url('gatehouse'), text, values) }
  const upstream = await startUpstream(t)
  const gateway = await spawnGateway(t, { DATABASE_URL: postgres.url('gatehouse'), WORKERS: String(workers) }, { cwd: tempDir(t) })
  t.ok(await waitFor(async () => (await call(gateway.url, 'GET', '/ready')).status === 200, 20_000), 'ready')
  const created = await call(gateway.url, 'POST', '/admin/routes', { name: 'svc', path: '/svc', targets: [{ url: upstream.url }] })
  t.equal(created.status, 201, 'route created')
  // Every worker has the route (each polls within 250 ms).
  t.ok(await waitFor(async () => {
    const answers = await Promise.all([1, 2, 3, 4].map(async () => (await call(gateway.url, 'GET', '/svc/warm')).status))
    return answers.every((status) => status === 200)
  }, 5000), 'route live on every worker')

  const load = startLoad(gateway.url, '/svc/x', { connections: 4, maxMs: 45_000 })
  await sleep(300)

  // Round 1: every session killed every 0.2 s for 2 s.
  let terminated = 0
  for (let i = 0; i < 10; i++) {
    terminated += await postgres.terminateBackends('gatehouse')
    await sleep(200)
  }
  t.ok(terminated > 0, `sessions terminated: ${terminated}`)

  // Round 2: stopped for a while.
  await postgres.stop()
  t.ok(await waitFor(async () => (await call(gateway.url, 'GET', '/ready')).status === 503, 5000), '/ready answers 503 while the database is stopped')
  const ready = await call(gateway.url, 'GET', '/ready')
  t.match(ready.body.message, /^database un/, `/ready names the database: ${ready.body.message}`)
  const admin = await call(gateway.url, 'GET', '/admin/routes')
  t.equal(admin.status, 503, 'admin call: 503, not 500')
  t.equal(admin.headers['retry-after'], '5', 'with Retry-After')
  t.match(admin.body, { statusCode: 503, error: 'Service Unavailable', message: /^database un(reachable|available)/ }, `names the problem: ${admin.body.message}`)
  const write = await call(gateway.url, 'POST', '/admin/routes', { name: 'other', path: '/other', targets: [{ url: upstream.url }] })
  t.equal(write.status, 503, 'admin write: 503')
  const servedBefore = load.served.length
  await sleep(1500)
  const duringOutage = load.served.slice(servedBefore)
  t.ok(duringOutage.length > 20, `proxying went on while the database was stopped (${duringOutage.length} answers in 1.5 s)`)
  t.equal(duringOutage.filter((answer) => answer.status !== 200).length, 0, 'all of them 200')
  const stats = await call(gateway.url, 'GET', '/admin/audit/stats')
  t.equal(stats.status, 503, 'stats cannot be read: 503 rather than stale numbers')

  await postgres.start()
  t.ok(await waitFor(async () => (await call(gateway.url, 'GET', '/ready')).status === 200, 15_000), '/ready 200 again by itself')
  t.equal((await call(gateway.url, 'GET', '/admin/routes')).status, 200, 'admin 200 again')

  // Round 3: a restart (stop and start at once), then more kills.
  await postgres.stop()
  await postgres.start()
  for (let i = 0; i < 5; i++) {
    await postgres.terminateBackends('gatehouse')
    await sleep(200)
  }
  await sleep(500)
  await load.stop()

  t.same(load.failed.slice(0, 5), [], 'no request failed')
  t.equal(load.served.filter((answer) => answer.status !== 200).length, 0, `all ${load.served.length} answers 200`)
  t.equal(gateway.process.exitCode, null, 'the gateway is still running')
  t.notOk(gateway.stdout.concat(gateway.stderr).some((line) => /worker died|uncaught|Unhandled 'error'/i.test(line)), 'no process or worker died')

  const servedIds = new Set(load.served.map((answer) => answer.requestId))
  t.ok(await waitFor(async () => (await loadRows(auditDb)).rows >= servedIds.size, 20_000), 'queued audit rows written once the database was back')
  await sleep(500)
  const count = await loadRows(auditDb)
  t.equal(count.rows, servedIds.size, `audit rows = requests served (${servedIds.size})`)
  t.equal(count.distinct, servedIds.size, 'each exactly once')
  t.equal([...servedIds].filter((id) => !count.ids.has(id)).length, 0, 'every served request has its row')
  const dropped = await call(gateway.url, 'GET', '/metrics')
  t.match(dropped.body, /gatehouse_audit_dropped_rows_total 0/, 'nothing dropped')

  t.equal(await gateway.stop('SIGTERM'), 0, 'SIGTERM exits 0')
}

async function queryOn (url: string, text: string, values?: unknown[]): Promise<any> {
  const { default: pg } = await import('pg')
  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 3000 })
  client.on('error', () => {})
  await client.connect()
  try {
    return await client.query(text, values)
  } finally {
    await client.end().catch(() => {})
  }
}

t.test('PostgreSQL killed, stopped and restarted under load: one process stays up, recovers, writes every audit row once', async (t) => {
  await drill(t, 1)
})

t.test('the same with WORKERS=2: no worker dies, the primary never gives up', async (t) => {
  await drill(t, 2)
})
