import { execFile } from 'node:child_process'
import { closeSync, openSync, rmSync, writeSync } from 'node:fs'
import path from 'node:path'
import { promisify } from 'node:util'
import SQLite from 'better-sqlite3'
import t from 'tap'
import { spawnGateway, startUpstream, tempDir } from '../helper.js'
import { call, startLoad, waitFor } from './load.js'

const run = promisify(execFile)

// docs/faults.md "What you see": the SQLite file's disk fills up. Admin writes
// answer 503 naming the full disk (they logged "cannot rollback - no transaction is active"
// and answered 500), proxying is unaffected, /admin/audit/stats says rows are unwritten, and
// once space is freed the queued rows are written and the database is intact.

t.test('SQLite on a full disk: admin 503 naming it, proxying unaffected, rows written once space returns', async (t) => {
  const dir = tempDir(t)
  try {
    await run('mount', ['-t', 'tmpfs', '-o', 'size=6m', 'tmpfs', dir])
  } catch (err) {
    const reason = `cannot mount a tmpfs (needs root): ${(err as Error).message.split('\n')[0]}`
    if (process.env.GATEHOUSE_REQUIRE_SERVICES === '1') throw new Error(reason)
    return void t.skip(reason, () => {})
  }
  t.teardown(async () => { await run('umount', ['-l', dir]) })
  const file = path.join(dir, 'gatehouse.db')
  const upstream = await startUpstream(t)
  const gateway = await spawnGateway(t, { DATABASE_URL: `sqlite:${file}` })
  t.equal((await call(gateway.url, 'POST', '/admin/routes', { name: 'svc', path: '/svc', targets: [{ url: upstream.url }] })).status, 201)
  t.ok(await waitFor(async () => (await call(gateway.url, 'GET', '/svc/warm')).status === 200, 5000))

  // Fill the disk to the last byte.
  const filler = path.join(dir, 'filler')
  const fd = openSync(filler, 'w')
  const chunk = Buffer.alloc(64 * 1024, 1)
  try {
    for (let size = chunk.length; size >= 1; size = Math.floor(size / 2)) {
      while (true) {
        try { writeSync(fd, chunk, 0, size) } catch { break }
      }
    }
  } finally {
    closeSync(fd)
  }

  const load = startLoad(gateway.url, '/svc/x', { connections: 4, maxMs: 40_000 })
  let stats = await call(gateway.url, 'GET', '/admin/audit/stats')
  t.ok(await waitFor(async () => {
    stats = await call(gateway.url, 'GET', '/admin/audit/stats')
    return stats.body.unwritten?.writeError !== null
  }, 15_000), 'audit writes start failing')
  t.match(stats.body.unwritten, { writeError: /^database disk is full \(SQLITE_FULL\)/ }, `stats say why their numbers are stale: ${stats.body.unwritten.writeError}`)
  t.ok(stats.body.unwritten.queuedRows > 0, `and how many rows wait (${stats.body.unwritten.queuedRows})`)

  const write = await call(gateway.url, 'POST', '/admin/routes', { name: 'other', path: '/other', targets: [{ url: upstream.url }] })
  t.equal(write.status, 503, 'admin write: 503, not 500')
  t.equal(write.headers['retry-after'], '5')
  t.match(write.body, { statusCode: 503, error: 'Service Unavailable', message: /^database disk is full \(SQLITE_FULL\)/ }, write.body.message)
  t.notOk(gateway.stdout.concat(gateway.stderr).some((line) => /cannot rollback/.test(line)), 'the real error is kept, not "cannot rollback"')
  const before = load.served.length
  await new Promise((resolve) => setTimeout(resolve, 1000))
  const during = load.served.slice(before)
  t.ok(during.length > 20, `proxying goes on (${during.length} answers in 1 s on a full disk)`)
  t.equal(during.filter((answer) => answer.status !== 200).length, 0, 'all 200')

  rmSync(filler)
  t.ok(await waitFor(async () => (await call(gateway.url, 'POST', '/admin/routes', { name: 'other', path: '/other', targets: [{ url: upstream.url }] })).status === 201, 10_000), 'admin writes work again once space is freed')
  await load.stop()
  t.same(load.failed, [])
  t.equal(load.served.filter((answer) => answer.status !== 200).length, 0, `all ${load.served.length} answers 200`)
  t.ok(await waitFor(async () => (await call(gateway.url, 'GET', '/admin/audit/stats')).body.unwritten.queuedRows === 0, 15_000), 'the queue drains')
  const after = await call(gateway.url, 'GET', '/admin/audit/stats')
  t.equal(after.body.unwritten.writeError, null, 'and stats no longer warn')
  t.equal(await gateway.stop(), 0)

  const db = new SQLite(file, { readonly: true })
  t.teardown(() => db.close())
  t.equal(db.pragma('integrity_check', { simple: true }), 'ok', 'PRAGMA integrity_check ok')
  const rows = db.prepare("select count(*) as n, count(distinct request_id) as d from audit_log where request_id like 'load-%'").get() as { n: number, d: number }
  t.equal(rows.n, load.served.length, `every served request has its row (${load.served.length})`)
  t.equal(rows.d, load.served.length, 'each once')
})
