import path from 'node:path'
import SQLite from 'better-sqlite3'
import t from 'tap'
import { spawnGateway, startUpstream, tempDir } from '../helper.js'
import { call, startLoad, waitFor } from './load.js'

// docs/faults.md "Audit rows": SIGKILL under load loses at most the rows of one flush (the audit queue
// is written every 50 ms), never the database: it opens intact and the gateway starts again.

/** Rows wait up to 50 ms for their batch, and the batch's write takes some ms on a busy machine. */
const ONE_FLUSH_MS = 500

t.test('SIGKILL under load, then restart: loss bounded by one flush, database intact', async (t) => {
  const file = path.join(tempDir(t), 'gatehouse.db')
  const upstream = await startUpstream(t)
  const env = { DATABASE_URL: `sqlite:${file}` }
  const gateway = await spawnGateway(t, env)
  t.equal((await call(gateway.url, 'POST', '/admin/routes', { name: 'svc', path: '/svc', targets: [{ url: upstream.url }] })).status, 201)
  t.ok(await waitFor(async () => (await call(gateway.url, 'GET', '/svc/warm')).status === 200, 5000))

  const load = startLoad(gateway.url, '/svc/x', { connections: 8, maxMs: 20_000 })
  await new Promise((resolve) => setTimeout(resolve, 2000))
  const killedAt = Date.now()
  process.kill(gateway.process.pid as number, 'SIGKILL')
  t.equal(await gateway.exited, null, 'killed')
  await load.stop()
  const served = load.served.filter((answer) => answer.status === 200)
  t.ok(served.length > 100, `${served.length} requests served before the kill`)

  const again = await spawnGateway(t, { ...env, PORT: String(gateway.port) })
  t.ok(await waitFor(async () => (await call(again.url, 'GET', '/ready')).status === 200, 10_000), 'starts again and is ready')
  t.equal((await call(again.url, 'GET', '/svc/after')).status, 200, 'and serves the route')
  t.equal(await again.stop(), 0)

  const db = new SQLite(file, { readonly: true })
  t.teardown(() => db.close())
  t.equal(db.pragma('integrity_check', { simple: true }), 'ok', 'PRAGMA integrity_check ok')
  const written = new Set((db.prepare("select request_id from audit_log where request_id like 'load-%'").all() as Array<{ request_id: string }>).map((row) => row.request_id))
  const rows = (db.prepare("select count(*) as n from audit_log where request_id like 'load-%'").get() as { n: number }).n
  t.equal(rows, written.size, 'no row twice')
  const lostEarly = served.filter((answer) => answer.finishedAt < killedAt - ONE_FLUSH_MS && !written.has(answer.requestId))
  t.equal(lostEarly.length, 0, `every request answered more than ${ONE_FLUSH_MS} ms before the kill has its row`)
  const lost = served.filter((answer) => !written.has(answer.requestId)).length
  t.ok(lost <= served.filter((answer) => answer.finishedAt >= killedAt - ONE_FLUSH_MS).length, `lost ${lost} of ${served.length}, all from the last flush`)
})
