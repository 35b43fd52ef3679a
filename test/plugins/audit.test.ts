import { connect, type Socket } from 'node:net'
import path from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import SQLite from 'better-sqlite3'
import t from 'tap'
import type { FastifyInstance } from 'fastify'
import { buildApp } from '../../app.js'
import { loadConfig } from '../../plugins/config.js'
import { REDACTED } from '../../plugins/audit.js'
import { insertAuditRows } from '../../repositories/audit.js'
import type { AuditLogRow, NewAuditLogRow } from '../../repositories/database.js'
import {
  ADMIN_TOKEN, adminHeaders, buildTestApp, createRoute, failOnUnhandledRejections, freePort, httpRequest,
  rawHttp, rawStatus, startGateway, startUpstream, tempDir
} from '../helper.js'

async function requestRows (app: FastifyInstance): Promise<AuditLogRow[]> {
  await app.audit.flush()
  return await app.db.selectFrom('audit_log').selectAll().where('event_type', '=', 'request').orderBy('id').execute()
}

async function adminRows (app: FastifyInstance): Promise<AuditLogRow[]> {
  await app.audit.flush()
  return await app.db.selectFrom('audit_log').selectAll().where('event_type', '=', 'admin').orderBy('id').execute()
}

async function until<T> (what: string, probe: () => Promise<T | undefined>, timeoutMs = 5000): Promise<T> {
  const deadline = Date.now() + timeoutMs
  while (Date.now() < deadline) {
    const value = await probe()
    if (value !== undefined) return value
    await sleep(20)
  }
  throw new Error(`timed out waiting for ${what}`)
}

function openSocket (port: number): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, '127.0.0.1', () => resolve(socket))
    socket.on('error', reject)
  })
}

t.test('one row per proxied request with exact fields, for every outcome', async (t) => {
  failOnUnhandledRejections(t)
  const upstream = await startUpstream(t)
  const deadPort = await freePort()
  const { app, url, port } = await startGateway(t, { env: { TRUST_PROXY: 'false' } })
  const open = await createRoute(app, { name: 'open', path: '/open', targets: [{ url: upstream.url, weight: 1 }] })
  const keyed = await createRoute(app, { name: 'keyed', path: '/keyed', targets: [{ url: upstream.url, weight: 1 }], auth: { type: 'api-key', header: 'x-api-key' } as never })
  const limited = await createRoute(app, { name: 'limited', path: '/limited', targets: [{ url: upstream.url, weight: 1 }], rateLimit: { max: 1, windowMs: 60_000, by: 'ip' } })
  const small = await createRoute(app, { name: 'small', path: '/small', targets: [{ url: upstream.url, weight: 1 }], bodyLimit: 10 })
  const down = await createRoute(app, { name: 'down', path: '/down', targets: [{ url: `http://127.0.0.1:${deadPort}`, weight: 1 }], retries: 0 })
  const filter = await app.inject({ method: 'POST', url: '/admin/filters', headers: adminHeaders, payload: { action: 'deny', path: '/open/denied', reason: 'test' } })
  t.equal(filter.statusCode, 201, filter.body)

  const sent: Array<{ id: string, method: string, path: string, routeId: string | null, status: number, outcome: string, bytesIn: number, detail: string | null }> = []
  async function send (method: string, target: string, expected: Omit<(typeof sent)[number], 'id' | 'method'>, body?: string): Promise<void> {
    const id = `audit-${sent.length}`
    const response = await httpRequest(url + target, { method: method as never, body, headers: { 'user-agent': 'audit-test/1', 'x-request-id': id } })
    t.equal(response.statusCode, expected.status, `${method} ${target}`)
    sent.push({ id, method, ...expected })
  }

  await send('GET', '/open/a?q=1', { path: '/open/a', routeId: open.id, status: 200, outcome: 'proxied', bytesIn: 0, detail: null })
  await send('POST', '/open/b', { path: '/open/b', routeId: open.id, status: 200, outcome: 'proxied', bytesIn: 5, detail: null }, 'hello')
  await send('GET', '/nothing/here', { path: '/nothing/here', routeId: null, status: 404, outcome: 'no_route', bytesIn: 0, detail: 'no route matches this request' })
  await send('GET', '/open/denied/x', { path: '/open/denied/x', routeId: null, status: 403, outcome: 'blocked', bytesIn: 0, detail: null })
  await send('GET', '/keyed/x', { path: '/keyed/x', routeId: keyed.id, status: 401, outcome: 'unauthorized', bytesIn: 0, detail: null })
  await send('GET', '/limited/1', { path: '/limited/1', routeId: limited.id, status: 200, outcome: 'proxied', bytesIn: 0, detail: null })
  await send('GET', '/limited/2', { path: '/limited/2', routeId: limited.id, status: 429, outcome: 'rate_limited', bytesIn: 0, detail: null })
  await send('POST', '/small/x', { path: '/small/x', routeId: small.id, status: 413, outcome: 'too_large', bytesIn: 0, detail: 'request body exceeds the limit of 10 bytes' }, 'x'.repeat(20))
  await send('GET', '/down/x', { path: '/down/x', routeId: down.id, status: 502, outcome: 'upstream_error', bytesIn: 0, detail: 'upstream connection failed: ECONNREFUSED' })
  await send('PROPFIND', '/open/x', { path: '/open/x', routeId: null, status: 404, outcome: 'no_route', bytesIn: 0, detail: 'no route for method PROPFIND' })
  await send('GET', '/open/%zz', { path: '/open/%zz', routeId: null, status: 400, outcome: 'blocked', bytesIn: 0, detail: null })

  const rows = await requestRows(app)
  t.equal(rows.length, sent.length, 'exactly one row per request')
  for (const expected of sent) {
    const row = rows.find((r) => r.request_id === expected.id)
    if (row === undefined) {
      t.fail(`no row for ${expected.method} ${expected.path}`)
      continue
    }
    t.match(row, {
      event_type: 'request',
      client_ip: '127.0.0.1',
      method: expected.method,
      path: expected.path,
      route_id: expected.routeId,
      consumer_id: null,
      status: expected.status,
      outcome: expected.outcome,
      bytes_in: ['/open/%zz', '/open/x'].includes(expected.path) ? null : expected.bytesIn,
      user_agent: 'audit-test/1'
    }, `${expected.method} ${expected.path}`)
    if (expected.detail !== null) t.equal(row.detail, expected.detail, `detail of ${expected.path}`)
    if (expected.path === '/open/%zz') {
      // Refused by Fastify's router before any hook: no timing, no per-request byte count.
      t.match(row, { duration_ms: null, bytes_in: null, bytes_out: null })
    } else if (expected.method === 'PROPFIND') {
      // Fastify's 404 handler, outside the proxied scope: timed, bytes not counted.
      t.match(row, { bytes_in: null, bytes_out: null })
      t.ok(typeof row.duration_ms === 'number' && row.duration_ms >= 0, 'timed')
    } else {
      t.ok(typeof row.duration_ms === 'number' && row.duration_ms >= 0 && row.duration_ms < 5000, `duration of ${expected.path}: ${row.duration_ms}`)
      t.ok(Number(row.bytes_out) > 0, `bytes out of ${expected.path}`)
    }
    t.match(row.ts, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/)
  }
  t.equal(rows.find((r) => r.request_id === sent[6].id)?.detail === null, false, 'the 429 says why')

  // bytes_out is what went over the socket: the whole raw response, headers included.
  const raw = await rawHttp(port, 'GET /open/raw HTTP/1.1\r\nHost: a\r\nConnection: close\r\nX-Request-Id: raw-1\r\n\r\n')
  t.equal(rawStatus(raw), 200)
  const rawRow = (await requestRows(app)).find((r) => r.request_id === 'raw-1')
  t.equal(Number(rawRow?.bytes_out), Buffer.byteLength(raw, 'latin1'))
})

t.test('requests the HTTP parser and its timers refuse are recorded too (431, 400, 408)', async (t) => {
  const { app, port } = await startGateway(t, { env: { HEADERS_TIMEOUT_MS: '300', REQUEST_TIMEOUT_MS: '600' } })
  const answers = [
    await rawHttp(port, `GET /big?x=1 HTTP/1.1\r\nHost: a\r\nX-Big: ${'a'.repeat(20_000)}\r\n\r\n`),
    await rawHttp(port, 'NOT HTTP AT ALL\r\n\r\n'),
    await rawHttp(port, 'GET /slow HTTP/1.1\r\nHost: a\r\n', 5000)
  ]
  t.same(answers.map(rawStatus), [431, 400, 408])

  const rows = await requestRows(app)
  t.equal(rows.length, 3)
  t.match(rows.map((r) => [r.method, r.path, r.status, r.outcome, r.client_ip, r.route_id]), [
    ['GET', '/big', 431, 'too_large', '127.0.0.1', null],
    [null, null, 400, 'blocked', '127.0.0.1', null],
    [null, null, 408, 'blocked', '127.0.0.1', null]
  ])
  t.equal(rows[1].detail, 'malformed HTTP request (HPE_INVALID_METHOD)')
  t.equal(rows[2].detail, 'request not received in time')
  for (const [index, row] of rows.entries()) {
    t.match(row.request_id, /^[0-9a-f-]{36}$/)
    t.equal(/\r\nX-Request-Id: ([^\r]+)\r\n/i.exec(answers[index])?.[1], row.request_id, 'the client is told the id the audit row carries')
    t.equal(JSON.parse(answers[index].split('\r\n\r\n')[1]).requestId, row.request_id)
  }
})

t.test('a client that goes away before the answer is recorded once, as 499', async (t) => {
  failOnUnhandledRejections(t)
  let release: (() => void) | null = null
  const upstream = await startUpstream(t, (_req, res) => {
    release = () => { res.writeHead(200, { 'content-type': 'text/plain' }).end('late') }
  })
  const { app, port } = await startGateway(t)
  const route = await createRoute(app, { name: 'hold', path: '/hold', targets: [{ url: upstream.url, weight: 1 }] })

  const socket = await openSocket(port)
  socket.write('GET /hold/x HTTP/1.1\r\nHost: a\r\nX-Request-Id: gone-1\r\n\r\n')
  await until('the upstream to receive it', async () => upstream.requests.length === 1 ? true : undefined)
  socket.destroy()

  const row = await until('the aborted row', async () => (await requestRows(app)).find((r) => r.request_id === 'gone-1'))
  t.match(row, { status: 499, outcome: 'proxied', route_id: route.id, path: '/hold/x', detail: 'client closed the connection before the response was complete' })
  // The upstream answering afterwards must not add a second row.
  ;(release as unknown as () => void)()
  await sleep(200)
  t.equal((await requestRows(app)).filter((r) => r.request_id === 'gone-1').length, 1)
  t.equal(app.metrics.traffic.inFlight, 0, 'nothing left in flight')
})

t.test('a body that does not arrive within REQUEST_TIMEOUT_MS is recorded once, as 408 blocked', async (t) => {
  const upstream = await startUpstream(t)
  const { app, port } = await startGateway(t, { env: { HEADERS_TIMEOUT_MS: '300', REQUEST_TIMEOUT_MS: '600' } })
  await createRoute(app, { name: 'slow', path: '/slow', targets: [{ url: upstream.url, weight: 1 }] })
  const answer = await rawHttp(port, 'POST /slow/x HTTP/1.1\r\nHost: a\r\nX-Request-Id: slow-1\r\nContent-Length: 100\r\n\r\nonly ten b', 5000)
  t.equal(rawStatus(answer), 408)
  const row = await until('the timed out row', async () => (await requestRows(app)).find((r) => r.request_id === 'slow-1'))
  t.match(row, { status: 408, outcome: 'blocked', path: '/slow/x', detail: 'request not received in time' })
  t.equal((await requestRows(app)).length, 1)
})

t.test('admin changes: actor, action, target, before/after; secrets never written', async (t) => {
  const upstream = await startUpstream(t)
  const { app, url } = await startGateway(t)
  const secret = 'hs256-secret-that-must-not-leak-0123456789'
  const route = await createRoute(app, {
    name: 'jwt', path: '/jwt', targets: [{ url: upstream.url, weight: 1 }],
    auth: { type: 'jwt', secret, jwksUrl: null, consumerClaim: 'sub' } as never
  })
  const patched = await httpRequest(`${url}/admin/routes/jwt`, {
    method: 'PATCH', headers: { ...adminHeaders, 'content-type': 'application/json', 'user-agent': 'ops/2' }, body: JSON.stringify({ path: '/jwt2' })
  })
  t.equal(patched.statusCode, 200, patched.body)
  const deleted = await httpRequest(`${url}/admin/routes/${route.id}`, { method: 'DELETE', headers: adminHeaders })
  t.equal(deleted.statusCode, 204)
  const consumer = await app.inject({ method: 'POST', url: '/admin/consumers', headers: adminHeaders, payload: { name: 'alice' } })
  t.equal(consumer.statusCode, 201)
  const key = await app.inject({ method: 'POST', url: '/admin/consumers/alice/keys', headers: adminHeaders })
  t.equal(key.statusCode, 201)
  const basic = await app.inject({ method: 'PUT', url: '/admin/consumers/alice/basic', headers: adminHeaders, payload: { username: 'alice', password: 'pa55word-secret' } })
  t.ok([200, 204].includes(basic.statusCode), basic.body)

  const rows = await adminRows(app)
  const details = rows.map((row) => JSON.parse(row.detail as string))
  t.match(details.slice(0, 3).map((d) => [d.actor, d.action, d.resource, d.id]), [
    ['admin-token', 'create', 'route', route.id],
    ['admin-token', 'update', 'route', route.id],
    ['admin-token', 'delete', 'route', route.id]
  ])
  t.equal(details[0].before, null)
  t.equal(details[0].after.name, 'jwt')
  t.equal(details[0].after.auth.secret, REDACTED, 'the jwt secret is redacted')
  t.equal(details[1].before.path, '/jwt')
  t.equal(details[1].after.path, '/jwt2')
  t.equal(details[2].after, null)
  t.equal(details[2].before.path, '/jwt2')
  t.match(rows[1], { event_type: 'admin', outcome: 'admin', method: 'PATCH', path: '/admin/routes/jwt', route_id: route.id, client_ip: '127.0.0.1', user_agent: 'ops/2', status: null })
  t.equal(rows[1].request_id, patched.headers['x-request-id'])

  const all = JSON.stringify(await app.db.selectFrom('audit_log').selectAll().execute())
  t.notOk(all.includes(secret), 'the jwt secret appears nowhere in the audit log')
  t.notOk(all.includes(key.json().key), 'the API key appears nowhere in the audit log')
  t.notOk(all.includes('pa55word-secret'), 'the basic password appears nowhere in the audit log')
  t.ok(details.some((d) => d.resource === 'consumer' && d.action === 'create'), 'consumer creation is audited')
})

t.test('close writes every queued row before the database closes (onClose order)', async (t) => {
  const dir = tempDir(t)
  const databaseUrl = `sqlite:${path.join(dir, 'gatehouse.db')}`
  const config = loadConfig({ DATABASE_URL: databaseUrl, ADMIN_TOKEN, LOG_LEVEL: 'silent' })
  // A long interval and a big batch: nothing is written before close unless close writes it.
  const app = await buildApp(config, { audit: { flushIntervalMs: 60_000, batchSize: 100_000 } })
  await app.ready()
  for (let i = 0; i < 1234; i++) {
    const response = await app.inject({ method: 'GET', url: `/none/${i}` })
    if (response.statusCode !== 404) t.fail(`request ${i}: ${response.statusCode}`)
  }
  t.equal(app.audit.queueDepth, 1234, 'all queued, none written yet')
  await app.close()

  const sqlite = new SQLite(path.join(dir, 'gatehouse.db'), { readonly: true })
  t.teardown(() => sqlite.close())
  const { count } = sqlite.prepare("select count(*) as count from audit_log where event_type = 'request'").get() as { count: number }
  t.equal(count, 1234)
})

t.test('the queue is bounded while the database is locked; the rest is written once it is free', async (t) => {
  const dir = tempDir(t)
  const file = path.join(dir, 'gatehouse.db')
  const upstream = await startUpstream(t)
  const { app, url } = await startGateway(t, { databaseUrl: `sqlite:${file}`, build: { audit: { maxQueueRows: 20, batchSize: 5, flushIntervalMs: 10 } } })
  await createRoute(app, { name: 'api', path: '/api', targets: [{ url: upstream.url, weight: 1 }] })
  await app.audit.flush()
  const before = (await requestRows(app)).length

  // Another process holding the write lock: every audit write gets SQLITE_BUSY.
  const locker = new SQLite(file)
  t.teardown(() => { if (locker.open) locker.close() })
  locker.prepare('BEGIN IMMEDIATE').run()

  const statuses: number[] = []
  for (let i = 0; i < 30; i++) statuses.push((await httpRequest(`${url}/api/${i}`)).statusCode)
  t.same(statuses, new Array(30).fill(200), 'the gateway keeps serving')
  t.equal(app.audit.queueDepth, 20, 'the queue stops at maxQueueRows')
  t.equal(app.audit.dropped, 10, 'the rest is counted as dropped')

  const status = await httpRequest(`${url}/admin/status`, { headers: adminHeaders })
  t.same(status.json().audit, { queueDepth: 20, dropped: 10 })
  const metrics = await httpRequest(`${url}/metrics`, { headers: adminHeaders })
  t.match(metrics.body, /^gatehouse_audit_dropped_rows_total 10$/m)
  t.match(metrics.body, /^gatehouse_audit_queue_depth 20$/m)

  locker.prepare('ROLLBACK').run()
  locker.close()
  await until('the queue to drain', async () => app.audit.queueDepth === 0 ? true : undefined)
  t.equal((await requestRows(app)).length - before, 20, 'every queued row is written, none twice')
})

function oldRow (daysAgo: number, i: number): NewAuditLogRow {
  return {
    ts: new Date(Date.now() - daysAgo * 24 * 3600_000 - i * 1000).toISOString(),
    event_type: 'request', request_id: `r-${daysAgo}-${i}`, client_ip: '10.0.0.1', method: 'GET', path: '/x',
    route_id: null, consumer_id: null, status: 200, outcome: 'proxied', duration_ms: 1, bytes_in: 0, bytes_out: 10, user_agent: null, detail: null
  }
}

t.test('retention deletes exactly the rows older than AUDIT_RETENTION_DAYS, in small batches', async (t) => {
  const app = await buildTestApp(t, { env: { AUDIT_RETENTION_DAYS: '30' }, build: { audit: { retentionBatchSize: 7 } } })
  await app.ready()
  const rows = [
    ...Array.from({ length: 23 }, (_, i) => oldRow(31, i)),
    ...Array.from({ length: 5 }, (_, i) => oldRow(29.9, i)),
    ...Array.from({ length: 4 }, (_, i) => oldRow(0, i))
  ]
  await insertAuditRows(app.db, rows)
  t.equal(await app.audit.enforceRetention(), 23)
  const left = await app.db.selectFrom('audit_log').select('request_id').orderBy('id').execute()
  t.same(left.map((r) => r.request_id), [...rows.slice(23).map((r) => r.request_id)])
  t.equal(await app.audit.enforceRetention(), 0, 'nothing more to delete')
})

t.test('retention runs in the background on its own', async (t) => {
  const app = await buildTestApp(t, { env: { AUDIT_RETENTION_DAYS: '1' }, build: { audit: { retentionIntervalMs: 50 } } })
  await app.ready()
  await insertAuditRows(app.db, [oldRow(2, 0), oldRow(2, 1), oldRow(0, 0)])
  const left = await until('old rows to go', async () => {
    const rows = await app.db.selectFrom('audit_log').select('request_id').execute()
    return rows.length === 1 ? rows : undefined
  })
  t.same(left.map((r) => r.request_id), ['r-0-0'])
})

t.test('auditRequests: false (bench audit-off) writes no request rows, still admin rows and metrics', async (t) => {
  const upstream = await startUpstream(t)
  const { app, url } = await startGateway(t, { build: { auditRequests: false } })
  await createRoute(app, { name: 'api', path: '/api', targets: [{ url: upstream.url, weight: 1 }] })
  for (let i = 0; i < 3; i++) t.equal((await httpRequest(`${url}/api/x`)).statusCode, 200)
  t.equal((await requestRows(app)).length, 0)
  t.equal((await adminRows(app)).length, 1)
  t.equal(app.metrics.traffic.requests, 3)
})

t.test('plugin options are validated at registration', async (t) => {
  await t.rejects(buildTestApp(t, { build: { audit: { batchSize: 0 } } }), /audit option batchSize must be a positive number, got 0/)
})
