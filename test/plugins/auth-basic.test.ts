import t from 'tap'
import {
  adminHeaders, createConsumer, createRoute, httpRequest, startGateway, startUpstream, type TestAppOptions, type TestContext, failOnUnhandledRejections
} from '../helper.js'
import { parseBasicAuthorization } from '../../lib/auth/basic.js'
import { BusyError, ConcurrencyLimiter, hashPassword, parsePasswordHash, verifyPassword } from '../../lib/auth/password.js'

failOnUnhandledRejections(t)

const basic = (username: string, password: string): string => `Basic ${Buffer.from(`${username}:${password}`, 'utf8').toString('base64')}`

async function setup (t: TestContext, options: TestAppOptions = {}, realm = 'shop') {
  const upstream = await startUpstream(t)
  const gateway = await startGateway(t, options)
  const targets = [{ url: upstream.url, weight: 1 }]
  await createRoute(gateway.app, { name: 'shop', path: '/shop', targets, auth: { type: 'basic', realm } })
  const consumer = await createConsumer(gateway.app, 'bob')
  const put = await gateway.app.inject({ method: 'PUT', url: '/admin/consumers/bob/basic', headers: adminHeaders, payload: { username: 'bob', password: 'correct horse' } })
  if (put.statusCode !== 200) throw new Error(put.body)
  return { upstream, ...gateway, consumer }
}

t.test('admits the right username and password; upstream gets the consumer and not Authorization', async (t) => {
  const { url, upstream, consumer } = await setup(t)
  const response = await httpRequest(`${url}/shop/cart`, { headers: { authorization: basic('bob', 'correct horse') } })
  t.equal(response.statusCode, 200)
  t.equal(upstream.requests[0].headers['x-consumer-id'], consumer.id)
  t.equal(upstream.requests[0].headers['x-consumer-name'], 'bob')
  t.equal(upstream.requests[0].headers.authorization, undefined)
})

t.test('missing credentials get 401 with the route\'s Basic realm challenge', async (t) => {
  const { url, upstream } = await setup(t)
  const response = await httpRequest(`${url}/shop`)
  t.equal(response.statusCode, 401)
  t.equal(response.headers['www-authenticate'], 'Basic realm="shop", charset="UTF-8"')
  t.same(response.json(), { statusCode: 401, error: 'Unauthorized', message: 'missing credentials', requestId: response.headers['x-request-id'] })
  t.equal(upstream.requests.length, 0)
})

t.test('wrong password, unknown user, malformed and other schemes all get the same 401', async (t) => {
  const { url, upstream } = await setup(t)
  for (const authorization of [
    basic('bob', 'wrong horse'),
    basic('bob', ''),
    basic('alice', 'correct horse'),
    basic('BOB', 'correct horse'),
    'Basic !!!notbase64',
    `Basic ${Buffer.from('bob-without-colon').toString('base64')}`,
    `Basic ${Buffer.from(':correct horse').toString('base64')}`,
    'Bearer abc.def.ghi',
    'Basic'
  ]) {
    const response = await httpRequest(`${url}/shop`, { headers: { authorization } })
    t.equal(response.statusCode, 401, authorization)
    t.equal(response.headers['www-authenticate'], 'Basic realm="shop", charset="UTF-8"')
    t.equal(response.json().message, 'invalid credentials')
  }
  t.equal(upstream.requests.length, 0)
})

t.test('passwords with colons and non-ASCII characters work (split at the first colon, UTF-8)', async (t) => {
  const { app, url } = await setup(t)
  const put = await app.inject({ method: 'PUT', url: '/admin/consumers/bob/basic', headers: adminHeaders, payload: { username: 'bøb', password: 'pä:ss:wörd€' } })
  t.equal(put.statusCode, 200)
  t.equal((await httpRequest(`${url}/shop`, { headers: { authorization: basic('bøb', 'pä:ss:wörd€') } })).statusCode, 200)
  t.equal((await httpRequest(`${url}/shop`, { headers: { authorization: basic('bøb', 'pä') } })).statusCode, 401)
})

t.test('a verified password is cached: repeated requests skip scrypt; failures are not cached', async (t) => {
  const { app, url } = await setup(t)
  t.equal(app.auth.basicCacheSize, 0)
  t.equal((await httpRequest(`${url}/shop`, { headers: { authorization: basic('bob', 'nope') } })).statusCode, 401)
  t.equal(app.auth.basicCacheSize, 0)
  const first = performance.now()
  t.equal((await httpRequest(`${url}/shop`, { headers: { authorization: basic('bob', 'correct horse') } })).statusCode, 200)
  const uncached = performance.now() - first
  t.equal(app.auth.basicCacheSize, 1)
  const second = performance.now()
  for (let i = 0; i < 20; i++) {
    t.equal((await httpRequest(`${url}/shop`, { headers: { authorization: basic('bob', 'correct horse') } })).statusCode, 200)
  }
  const cachedEach = (performance.now() - second) / 20
  t.equal(app.auth.basicCacheSize, 1)
  t.ok(cachedEach < uncached, `cached ${cachedEach.toFixed(1)} ms per request < first ${uncached.toFixed(1)} ms`)
})

t.test('changing the password refuses the old one at once, even when it was cached', async (t) => {
  const { app, url } = await setup(t)
  t.equal((await httpRequest(`${url}/shop`, { headers: { authorization: basic('bob', 'correct horse') } })).statusCode, 200)
  const put = await app.inject({ method: 'PUT', url: '/admin/consumers/bob/basic', headers: adminHeaders, payload: { username: 'bob', password: 'battery staple' } })
  t.equal(put.statusCode, 200)
  t.equal((await httpRequest(`${url}/shop`, { headers: { authorization: basic('bob', 'correct horse') } })).statusCode, 401)
  t.equal((await httpRequest(`${url}/shop`, { headers: { authorization: basic('bob', 'battery staple') } })).statusCode, 200)
})

t.test('removing the basic credentials or the consumer refuses it at once', async (t) => {
  const { app, url } = await setup(t)
  const ok = { headers: { authorization: basic('bob', 'correct horse') } }
  t.equal((await httpRequest(`${url}/shop`, ok)).statusCode, 200)
  t.equal((await app.inject({ method: 'DELETE', url: '/admin/consumers/bob/basic', headers: adminHeaders })).statusCode, 204)
  t.equal((await httpRequest(`${url}/shop`, ok)).statusCode, 401)

  await app.inject({ method: 'PUT', url: '/admin/consumers/bob/basic', headers: adminHeaders, payload: { username: 'bob', password: 'correct horse' } })
  t.equal((await httpRequest(`${url}/shop`, ok)).statusCode, 200)
  t.equal((await app.inject({ method: 'DELETE', url: '/admin/consumers/bob', headers: adminHeaders })).statusCode, 204)
  t.equal((await httpRequest(`${url}/shop`, ok)).statusCode, 401)
})

t.test('a realm with characters a header cannot carry is sent with them replaced', async (t) => {
  const { url } = await setup(t, {}, 'Zoë 🦄 shop')
  const response = await httpRequest(`${url}/shop`)
  t.equal(response.statusCode, 401)
  t.equal(response.headers['www-authenticate'], 'Basic realm="Zo? ?? shop", charset="UTF-8"')
})

t.test('a flood of wrong passwords is capped: excess answered 503 at once, cached clients still pass', async (t) => {
  const { url } = await setup(t, { build: { auth: { scryptConcurrency: 1, scryptMaxQueued: 2 } } })
  const good = { headers: { authorization: basic('bob', 'correct horse') } }
  t.equal((await httpRequest(`${url}/shop`, good)).statusCode, 200, 'verified once, now cached')
  const flood = Array.from({ length: 12 }, (_, i) => httpRequest(`${url}/shop`, { headers: { authorization: basic('bob', `guess-${i}`) } }))
  const during = await httpRequest(`${url}/shop`, good)
  t.equal(during.statusCode, 200, 'a cached credential does not wait behind the flood')
  const answers = await Promise.all(flood)
  const statuses = answers.map((response) => response.statusCode)
  // One running + two queued are verified; the rest refused. Requests reach the gateway a few
  // ms apart, so on a loaded machine a slot may free up before the last ones arrive.
  const refused = statuses.filter((status) => status === 503).length
  t.equal(statuses.filter((status) => status === 401).length + refused, 12, 'only 401 and 503')
  t.ok(refused >= 6 && refused <= 9, `${refused} of 12 refused at once`)
  const busy = answers.find((response) => response.statusCode === 503)
  t.equal(busy?.headers['retry-after'], '1')
  t.equal(busy?.json().message, 'authentication is busy, retry shortly')
})

t.test('parseBasicAuthorization accepts RFC 7617 credentials only', async (t) => {
  t.same(parseBasicAuthorization(basic('a', 'b:c')), { username: 'a', password: 'b:c' })
  t.same(parseBasicAuthorization(`basic ${Buffer.from('a:').toString('base64')}`), { username: 'a', password: '' })
  t.equal(parseBasicAuthorization('Basic YQ'), null, 'unpadded')
  t.equal(parseBasicAuthorization('Basic ' + Buffer.from('nocolon').toString('base64')), null)
  t.equal(parseBasicAuthorization('Basic ' + 'A'.repeat(5000)), null, 'too long')
  t.equal(parseBasicAuthorization('Digest abc'), null)
})

t.test('scrypt hashes are salted per password and verify only the right password', async (t) => {
  const one = await hashPassword('same password')
  const two = await hashPassword('same password')
  t.not(one, two)
  t.match(one, /^scrypt\$32768\$8\$1\$[A-Za-z0-9_-]{22}\$[A-Za-z0-9_-]{43}$/)
  const parsed = parsePasswordHash(one)
  if (parsed === null) throw new Error('unparsable')
  t.equal(await verifyPassword('same password', parsed), true)
  t.equal(await verifyPassword('same passworD', parsed), false)
  t.equal(parsePasswordHash('bcrypt$...'), null)
})

t.test('ConcurrencyLimiter runs at most N tasks and refuses beyond the queue', async (t) => {
  const limiter = new ConcurrencyLimiter(2, 1)
  let running = 0
  let peak = 0
  const task = async (): Promise<void> => {
    running++
    peak = Math.max(peak, running)
    await new Promise((resolve) => setTimeout(resolve, 20))
    running--
  }
  const results = await Promise.allSettled([limiter.run(task), limiter.run(task), limiter.run(task), limiter.run(task)])
  t.same(results.map((result) => result.status), ['fulfilled', 'fulfilled', 'fulfilled', 'rejected'])
  t.ok((results[3] as PromiseRejectedResult).reason instanceof BusyError)
  t.equal(peak, 2)
  t.equal(limiter.pending, 0)
  await limiter.run(task)
  t.equal(peak, 2, 'slots are released')
})
