import t from 'tap'
import {
  adminHeaders, buildTestApp, createApiKey, createConsumer, createRoute, failOnUnhandledRejections, httpRequest,
  postgresDatabase, startGateway, startUpstream
} from '../helper.js'

failOnUnhandledRejections(t)

const basic = (username: string, password: string): string => `Basic ${Buffer.from(`${username}:${password}`).toString('base64')}`

t.test('on PostgreSQL: consumers, keys and basic credentials work and propagate to another instance within 1 s', async (t) => {
  const databaseUrl = await postgresDatabase(t)
  if (databaseUrl === null) return void t.plan(0, 'PostgreSQL unreachable at 127.0.0.1:5432 (set GATEHOUSE_REQUIRE_SERVICES=1 to fail instead)')
  const upstream = await startUpstream(t)
  const a = await buildTestApp(t, { databaseUrl })
  const b = await startGateway(t, { databaseUrl, build: { migrate: false } })
  const targets = [{ url: upstream.url, weight: 1 }]
  await createRoute(a, { name: 'keyed', path: '/keyed', targets, auth: { type: 'api-key', header: 'x-api-key' } })
  await createRoute(a, { name: 'login', path: '/login', targets, auth: { type: 'basic', realm: 'pg' } })
  const alice = await createConsumer(a, 'alice', { max: 3, windowMs: 1000 })
  const key = await createApiKey(a, 'alice')
  t.equal((await a.inject({ method: 'PUT', url: '/admin/consumers/alice/basic', headers: adminHeaders, payload: { username: 'alice', password: 'correct horse' } })).statusCode, 200)

  const until = async (check: () => Promise<boolean>): Promise<number> => {
    const started = Date.now()
    while (Date.now() - started < 1000) {
      if (await check()) return Date.now() - started
      await new Promise((resolve) => setTimeout(resolve, 20))
    }
    return Infinity
  }
  const keyed = async () => (await httpRequest(`${b.url}/keyed`, { headers: { 'x-api-key': key.key } })).statusCode
  t.ok(await until(async () => await keyed() === 200) < 1000, 'the key works on the other instance')
  t.equal(upstream.requests.at(-1)?.headers['x-consumer-id'], alice.id)
  // The key may have reached b in the reload before the basic credentials did; scrypt itself
  // can take hundreds of ms on a loaded machine, so propagation is timed on the store.
  t.ok(await until(async () => b.app.auth.store.byUsername.has('alice')) < 1000, 'basic credentials reach the other instance')
  const login = async (password: string) => (await httpRequest(`${b.url}/login`, { headers: { authorization: basic('alice', password) } })).statusCode
  t.equal(await login('correct horse'), 200)
  t.equal(await login('wrong horse'), 401)

  t.equal((await a.inject({ method: 'DELETE', url: '/admin/consumers/alice', headers: adminHeaders })).statusCode, 204)
  t.ok(await until(async () => await keyed() === 401) < 1000, 'deleting the consumer refuses its key on the other instance within 1 s')
  t.equal((await httpRequest(`${b.url}/login`, { headers: { authorization: basic('alice', 'correct horse') } })).statusCode, 401, 'and its cached basic credentials')

  const document = (await a.inject({ method: 'GET', url: '/admin/config', headers: adminHeaders })).json()
  t.same(document.consumers, [])
})
