import t from 'tap'
import {
  adminHeaders, buildTestApp, createApiKey, createConsumer, createRoute, httpRequest, rawHttp, rawStatus,
  startGateway, startUpstream, tempDir, type TestContext, failOnUnhandledRejections
} from '../helper.js'
import path from 'node:path'
import type { FastifyInstance } from 'fastify'

failOnUnhandledRejections(t)

async function setup (t: TestContext, auth: Record<string, unknown> = { type: 'api-key' }) {
  const upstream = await startUpstream(t)
  const gateway = await startGateway(t)
  const targets = [{ url: upstream.url, weight: 1 }]
  await createRoute(gateway.app, { name: 'private', path: '/private', targets, auth: auth as any })
  await createRoute(gateway.app, { name: 'public', path: '/public', targets })
  const consumer = await createConsumer(gateway.app, 'alice')
  const { key } = await createApiKey(gateway.app, 'alice')
  return { upstream, ...gateway, consumer, key }
}

function errorShape (response: { body: string, headers: Record<string, unknown> }, status: number, message: string) {
  return { statusCode: status, error: status === 401 ? 'Unauthorized' : 'Bad Request', message, requestId: response.headers['x-request-id'] }
}

t.test('admits a valid key from X-Api-Key: upstream gets X-Consumer-Id/-Name and never the key', async (t) => {
  const { url, upstream, consumer, key } = await setup(t)
  const response = await httpRequest(`${url}/private/data`, { headers: { 'x-api-key': key } })
  t.equal(response.statusCode, 200)
  t.equal(upstream.requests.length, 1)
  const headers = upstream.requests[0].headers
  t.equal(headers['x-consumer-id'], consumer.id)
  t.equal(headers['x-consumer-name'], 'alice')
  t.equal(headers['x-api-key'], undefined)
  t.notOk(upstream.requests[0].rawHeaders.join('\n').includes(key), 'the key appears nowhere upstream')
})

t.test('admits the key as Authorization: Bearer and does not forward Authorization', async (t) => {
  const { url, upstream, consumer, key } = await setup(t)
  const response = await httpRequest(`${url}/private`, { headers: { authorization: `Bearer ${key}` } })
  t.equal(response.statusCode, 200)
  t.equal(upstream.requests[0].headers['x-consumer-id'], consumer.id)
  t.equal(upstream.requests[0].headers.authorization, undefined)
})

t.test('a request without a key gets 401, a Bearer challenge and the JSON error with requestId', async (t) => {
  const { url, upstream } = await setup(t)
  const response = await httpRequest(`${url}/private`)
  t.equal(response.statusCode, 401)
  t.equal(response.headers['www-authenticate'], 'Bearer realm="gatehouse"')
  t.equal(response.headers['content-type'], 'application/json; charset=utf-8')
  t.same(response.json(), errorShape(response, 401, 'missing credentials'))
  t.equal(upstream.requests.length, 0)
})

t.test('malformed, unknown and wrong-scheme keys all get the same 401 answer', async (t) => {
  const { url, upstream, key } = await setup(t)
  const wrongKey = 'gh_' + 'A'.repeat(43)
  const attempts: Array<Record<string, string>> = [
    { 'x-api-key': 'not-a-key' },
    { 'x-api-key': '' },
    { 'x-api-key': wrongKey },
    { 'x-api-key': key.slice(0, -1) },
    { 'x-api-key': key + 'x' },
    { 'x-api-key': key.toUpperCase() },
    { authorization: `Bearer ${wrongKey}` },
    { authorization: `Basic ${Buffer.from(`alice:${key}`).toString('base64')}` },
    { authorization: 'Bearer' }
  ]
  for (const headers of attempts) {
    const response = await httpRequest(`${url}/private`, { headers })
    t.equal(response.statusCode, 401, JSON.stringify(headers))
    t.equal(response.headers['www-authenticate'], 'Bearer realm="gatehouse", error="invalid_token"')
    t.same(response.json(), errorShape(response, 401, 'invalid credentials'))
  }
  t.equal(upstream.requests.length, 0)
})

t.test('a revoked key stops working at once; the consumer\'s other keys keep working', async (t) => {
  const { app, url, key } = await setup(t)
  const second = await createApiKey(app, 'alice')
  const keys = (await app.inject({ method: 'GET', url: '/admin/consumers/alice/keys', headers: adminHeaders })).json()
  const first = keys.items.find((item: { prefix: string }) => key.startsWith(item.prefix))
  t.equal((await httpRequest(`${url}/private`, { headers: { 'x-api-key': key } })).statusCode, 200)
  const revoke = await app.inject({ method: 'DELETE', url: `/admin/consumers/alice/keys/${first.id as string}`, headers: adminHeaders })
  t.equal(revoke.statusCode, 204)
  t.equal((await httpRequest(`${url}/private`, { headers: { 'x-api-key': key } })).statusCode, 401)
  t.equal((await httpRequest(`${url}/private`, { headers: { 'x-api-key': second.key } })).statusCode, 200)
})

t.test('deleting the consumer stops all its keys at once', async (t) => {
  const { app, url, key } = await setup(t)
  t.equal((await httpRequest(`${url}/private`, { headers: { 'x-api-key': key } })).statusCode, 200)
  t.equal((await app.inject({ method: 'DELETE', url: '/admin/consumers/alice', headers: adminHeaders })).statusCode, 204)
  const response = await httpRequest(`${url}/private`, { headers: { 'x-api-key': key } })
  t.equal(response.statusCode, 401)
  t.equal(response.json().message, 'invalid credentials')
})

t.test('a route with its own key header reads that header, strips it, and ignores X-Api-Key', async (t) => {
  const { url, upstream, consumer, key } = await setup(t, { type: 'api-key', header: 'X-Gateway-Key' })
  const ok = await httpRequest(`${url}/private`, { headers: { 'x-gateway-key': key, 'x-api-key': 'passed-through' } })
  t.equal(ok.statusCode, 200)
  t.equal(upstream.requests[0].headers['x-gateway-key'], undefined)
  t.equal(upstream.requests[0].headers['x-api-key'], 'passed-through', 'not this route\'s credential header')
  t.equal(upstream.requests[0].headers['x-consumer-id'], consumer.id)
  t.equal((await httpRequest(`${url}/private`, { headers: { 'x-api-key': key } })).statusCode, 401)
  t.equal((await httpRequest(`${url}/private`, { headers: { authorization: `Bearer ${key}` } })).statusCode, 200)
})

t.test('duplicate key headers are refused with 400, also a custom header Node would join as "a, b"', async (t) => {
  const { port, upstream, key } = await setup(t, { type: 'api-key', header: 'x-gateway-key' })
  const custom = await rawHttp(port, `GET /private HTTP/1.1\r\nHost: x\r\nX-Gateway-Key: ${key}\r\nX-Gateway-Key: ${key}\r\nConnection: close\r\n\r\n`)
  t.equal(rawStatus(custom), 400)
  t.match(custom, /"message":"duplicate x-gateway-key header"/)
  const standard = await rawHttp(port, `GET /private HTTP/1.1\r\nHost: x\r\nX-Api-Key: ${key}\r\nx-api-key: other\r\nConnection: close\r\n\r\n`)
  t.equal(rawStatus(standard), 400)
  const bearer = await rawHttp(port, `GET /private HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${key}\r\nAuthorization: Bearer x\r\nConnection: close\r\n\r\n`)
  t.equal(rawStatus(bearer), 400)
  t.equal(upstream.requests.length, 0)
})

t.test('an underscore spelling of the key header is not a credential and is not forwarded', async (t) => {
  const { port, upstream, key } = await setup(t)
  const response = await rawHttp(port, `GET /private HTTP/1.1\r\nHost: x\r\nX_Api_Key: ${key}\r\nConnection: close\r\n\r\n`)
  t.equal(rawStatus(response), 401)
  t.equal(upstream.requests.length, 0)
})

t.test('client-sent X-Consumer-Id/-Name never reach the upstream, on public and on authenticated routes', async (t) => {
  const { port, upstream, consumer, key } = await setup(t)
  const spoof = 'X-Consumer-Id: 0000\r\nX-Consumer-Name: root\r\nx-consumer-name: admin\r\n'
  const open = await rawHttp(port, `GET /public HTTP/1.1\r\nHost: x\r\n${spoof}Connection: close\r\n\r\n`)
  t.equal(rawStatus(open), 200)
  const publicRaw = upstream.requests[0].rawHeaders.map((h) => h.toLowerCase())
  t.notOk(publicRaw.includes('x-consumer-id'))
  t.notOk(publicRaw.includes('x-consumer-name'))

  const authed = await rawHttp(port, `GET /private HTTP/1.1\r\nHost: x\r\nX-Api-Key: ${key}\r\n${spoof}Connection: close\r\n\r\n`)
  t.equal(rawStatus(authed), 200)
  const raw = upstream.requests[1].rawHeaders
  const values = (name: string) => raw.filter((_, i) => i % 2 === 1 && raw[i - 1].toLowerCase() === name)
  t.same(values('x-consumer-id'), [consumer.id])
  t.same(values('x-consumer-name'), ['alice'])
})

t.test('the audit row names the consumer on success and says unauthorized on failure', async (t) => {
  const { app, url, consumer, key } = await setup(t)
  const ok = await httpRequest(`${url}/private`, { headers: { 'x-api-key': key } })
  const denied = await httpRequest(`${url}/private`, { headers: { 'x-api-key': 'gh_' + 'B'.repeat(43) } })
  await new Promise((resolve) => setTimeout(resolve, 50))
  await app.audit.flush()
  const rows = await app.db.selectFrom('audit_log').select(['request_id', 'consumer_id', 'outcome', 'status', 'detail'])
    .where('event_type', '=', 'request').orderBy('id').execute()
  const okRow = rows.find((row) => row.request_id === ok.headers['x-request-id'])
  const deniedRow = rows.find((row) => row.request_id === denied.headers['x-request-id'])
  t.equal(okRow?.consumer_id, consumer.id)
  t.equal(okRow?.outcome, 'proxied')
  t.equal(deniedRow?.consumer_id, null)
  t.equal(deniedRow?.outcome, 'unauthorized')
  t.equal(deniedRow?.status, 401)
  t.equal(deniedRow?.detail, 'unknown or revoked api key')
})

t.test('another instance on the same database admits a new key and refuses a revoked one within 1 s', async (t) => {
  const databaseUrl = `sqlite:${path.join(tempDir(t), 'shared.db')}`
  const upstream = await startUpstream(t)
  const a: FastifyInstance = await buildTestApp(t, { databaseUrl })
  const b = await startGateway(t, { databaseUrl })
  await createRoute(a, { name: 'private', path: '/private', targets: [{ url: upstream.url, weight: 1 }], auth: { type: 'api-key', header: 'x-api-key' } })
  await createConsumer(a, 'alice')
  const { id, key } = await createApiKey(a, 'alice')

  const waitFor = async (status: number): Promise<number> => {
    const started = Date.now()
    while (Date.now() - started < 1000) {
      const response = await httpRequest(`${b.url}/private`, { headers: { 'x-api-key': key } })
      if (response.statusCode === status) return Date.now() - started
      await new Promise((resolve) => setTimeout(resolve, 20))
    }
    return Infinity
  }
  t.ok(await waitFor(200) < 1000, 'new key admitted by the other instance within 1 s')
  t.equal((await a.inject({ method: 'DELETE', url: `/admin/consumers/alice/keys/${id}`, headers: adminHeaders })).statusCode, 204)
  t.ok(await waitFor(401) < 1000, 'revoked key refused by the other instance within 1 s')
})
