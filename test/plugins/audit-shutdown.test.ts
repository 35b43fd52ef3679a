import path from 'node:path'
import SQLite from 'better-sqlite3'
import t from 'tap'
import { Pool } from 'undici'
import { adminHeaders, httpRequest, spawnGateway, startUpstream, tempDir } from '../helper.js'

/**
 * docs/observability.md "Audit log": none is lost on a clean shutdown. A real process (server.ts), real
 * sockets, a real SQLite file read after the process has exited.
 */
t.test('10,000 requests followed by SIGTERM leave exactly 10,000 request rows (and those in flight at the signal)', async (t) => {
  const upstream = await startUpstream(t, (req, res) => {
    const answer = (): void => { res.writeHead(200, { 'content-length': '2' }).end('ok') }
    if (req.url?.startsWith('/api/slow') === true) setTimeout(answer, 300)
    else answer()
  })
  const file = path.join(tempDir(t), 'gatehouse.db')
  const gateway = await spawnGateway(t, { DATABASE_URL: `sqlite:${file}` })
  const created = await httpRequest(`${gateway.url}/admin/routes`, {
    method: 'POST',
    headers: { ...adminHeaders, 'content-type': 'application/json' },
    body: JSON.stringify({ name: 'api', path: '/api', targets: [{ url: upstream.url, weight: 1 }] })
  })
  t.equal(created.statusCode, 201, 'route created')

  const total = 10_000
  const client = new Pool(gateway.url, { connections: 32 })
  t.teardown(() => client.close())
  const statuses = new Map<number, number>()
  let next = 0
  await Promise.all(Array.from({ length: 32 }, async () => {
    while (next < total) {
      const i = next++
      const response = await client.request({ method: 'GET', path: `/api/item/${i}`, headers: { 'x-request-id': `sigterm-${i}` } })
      await response.body.dump()
      statuses.set(response.statusCode, (statuses.get(response.statusCode) ?? 0) + 1)
    }
  }))
  t.same([...statuses], [[200, total]], 'every request answered 200')

  // 20 more held by the upstream while the signal arrives: they finish (the drain) and are recorded.
  const before = upstream.requests.length
  const inFlight = Array.from({ length: 20 }, async (_, i) => {
    const response = await client.request({ method: 'GET', path: `/api/slow/${i}`, headers: { 'x-request-id': `inflight-${i}` } })
    await response.body.dump()
    return response.statusCode
  })
  while (upstream.requests.length < before + 20) await new Promise((resolve) => setTimeout(resolve, 5))
  // At once: the last rows are still in the audit queue when the signal arrives.
  const exited = gateway.stop('SIGTERM')
  t.same(await Promise.all(inFlight), new Array(20).fill(200), 'requests in flight at SIGTERM are answered')
  t.equal(await exited, 0, 'exits 0')

  const sqlite = new SQLite(file, { readonly: true })
  t.teardown(() => sqlite.close())
  const rows = sqlite.prepare("select count(*) as count, count(distinct request_id) as ids, sum(status = 200) as ok from audit_log where event_type = 'request'").get() as { count: number, ids: number, ok: number }
  t.same(rows, { count: total + 20, ids: total + 20, ok: total + 20 }, 'exactly one row per request')
  const admin = sqlite.prepare("select count(*) as count from audit_log where event_type = 'admin'").get() as { count: number }
  t.equal(admin.count, 1, 'and the route creation')
})
