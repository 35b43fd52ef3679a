import t from 'tap'
import { randomBytes } from 'node:crypto'
import { Redis } from 'ioredis'
import { request } from 'undici'
import {
  adminHeaders, createRoute, httpRequest, redisKeyPrefix, startGateway, startPrivateRedis, startUpstream, TEST_REDIS_URL, type TestContext
} from '../helper.js'

const SKIP = 'Redis unreachable at 127.0.0.1:6379 (set GATEHOUSE_REQUIRE_SERVICES=1 to fail instead)'

/** Two gateway instances on one database and one Redis key prefix, a route cached in Redis, an upstream counting its requests. */
async function twoInstances (t: TestContext, prefix: string, cache: Record<string, unknown> = {}, redisUrl = TEST_REDIS_URL) {
  let count = 0
  const binary = randomBytes(300_000)
  const upstream = await startUpstream(t, (req, res) => {
    count++
    if (req.url?.startsWith('/api/binary') === true) {
      res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': binary.length, 'cache-control': 'max-age=60' })
      return void res.end(binary)
    }
    const body = `body-${count}`
    res.writeHead(200, { 'content-type': 'text/plain', 'content-length': body.length, vary: 'Accept-Language', 'cache-control': 'max-age=30' })
    res.end(body)
  })
  const env = { REDIS_URL: redisUrl }
  const first = await startGateway(t, { env, build: { redisKeyPrefix: prefix } })
  const second = await startGateway(t, { env, databaseUrl: first.app.config.databaseUrl, build: { redisKeyPrefix: prefix, migrate: false } })
  await createRoute(first.app, { name: 'api', path: '/api', targets: [{ url: upstream.url, weight: 1 }], cache: { store: 'redis', ...cache } } as never)
  await second.app.configChanges.refresh()
  return { first, second, binary, get count () { return count } }
}

t.test('two instances share one Redis store: stored by one, served by the other, byte-exact', async (t) => {
  const prefix = await redisKeyPrefix(t)
  if (prefix === null) return void t.plan(0, SKIP)
  const setup = await twoInstances(t, prefix, { staleIfErrorSeconds: 100 })
  const { first, second } = setup
  const miss = await httpRequest(`${first.url}/api/page`, { headers: { 'accept-language': 'en' } })
  t.equal(miss.headers['x-cache-status'], 'MISS')
  await new Promise((resolve) => setTimeout(resolve, 50))
  const hit = await httpRequest(`${second.url}/api/page`, { headers: { 'accept-language': 'en' } })
  t.equal(hit.headers['x-cache-status'], 'HIT', 'the other instance answers from Redis')
  t.equal(hit.body, 'body-1')
  t.equal(hit.headers.vary, 'Accept-Language')
  const otherLanguage = await httpRequest(`${second.url}/api/page`, { headers: { 'accept-language': 'fr' } })
  t.equal(otherLanguage.headers['x-cache-status'], 'MISS', 'Vary works across instances')
  const head = await httpRequest(`${first.url}/api/page`, { method: 'HEAD', headers: { 'accept-language': 'en' } })
  t.equal(head.headers['x-cache-status'], 'HIT')

  await httpRequest(`${first.url}/api/binary`)
  await new Promise((resolve) => setTimeout(resolve, 50))
  const response = await request(`${second.url}/api/binary`)
  const body = Buffer.from(await response.body.arrayBuffer())
  t.equal(response.headers['x-cache-status'], 'HIT')
  t.ok(body.equals(setup.binary), 'binary body byte-exact through Redis')
  t.equal(setup.count, 3)

  // TTL = fresh + stale windows: max-age=60 and staleIfErrorSeconds=100.
  const client = new Redis(TEST_REDIS_URL)
  t.teardown(() => client.disconnect())
  const keys = await client.keys(`${prefix}cache:e:*`)
  t.equal(keys.length, 3)
  const ttls = await Promise.all(keys.map(async (key) => await client.pttl(key)))
  t.ok(ttls.some((ttl) => ttl > 155_000 && ttl <= 160_000), `binary entry kept 160 s: ${ttls.join(', ')}`)
  t.ok(ttls.some((ttl) => ttl > 125_000 && ttl <= 130_000), `text entry kept 130 s: ${ttls.join(', ')}`)
})

t.test('a purge or an unsafe request on one instance clears the shared entries for both', async (t) => {
  const prefix = await redisKeyPrefix(t)
  if (prefix === null) return void t.plan(0, SKIP)
  const { first, second } = await twoInstances(t, prefix)
  const lang = { headers: { 'accept-language': 'en' } }
  await httpRequest(`${first.url}/api/a/1`, lang)
  await httpRequest(`${first.url}/api/a/2`, lang)
  await httpRequest(`${first.url}/api/b`, lang)
  await new Promise((resolve) => setTimeout(resolve, 50))
  const purged = await second.app.inject({ method: 'DELETE', url: '/admin/cache?route=api&path=/api/a', headers: adminHeaders })
  t.same(purged.json(), { purged: 2 })
  t.equal((await httpRequest(`${first.url}/api/a/1`, lang)).headers['x-cache-status'], 'MISS')
  t.equal((await httpRequest(`${first.url}/api/b`, lang)).headers['x-cache-status'], 'HIT')

  const post = await httpRequest(`${second.url}/api/b`, { method: 'POST', body: 'x' })
  t.equal(post.statusCode, 200)
  await new Promise((resolve) => setTimeout(resolve, 50))
  t.equal((await httpRequest(`${first.url}/api/b`, lang)).headers['x-cache-status'], 'MISS', 'invalidated through the other instance')

  await new Promise((resolve) => setTimeout(resolve, 50))
  const all = await first.app.inject({ method: 'DELETE', url: '/admin/cache', headers: adminHeaders })
  t.same(all.json(), { purged: 2 }, 'a/1 and b were stored again')
  t.equal((await httpRequest(`${second.url}/api/a/1`, lang)).headers['x-cache-status'], 'MISS')
})

t.test('a Redis outage is a MISS and a forwarded request, never an error', async (t) => {
  const redis = await startPrivateRedis(t)
  if (redis === null) return void t.plan(0, 'redis-server not installed')
  const { first } = await twoInstances(t, 'gatehouse-test-outage:', {}, redis.url)
  const lang = { headers: { 'accept-language': 'en' } }
  await httpRequest(`${first.url}/api/x`, lang)
  await new Promise((resolve) => setTimeout(resolve, 50))
  t.equal((await httpRequest(`${first.url}/api/x`, lang)).headers['x-cache-status'], 'HIT')
  await redis.stop()
  for (let i = 0; i < 5; i++) {
    const response = await httpRequest(`${first.url}/api/x`, lang)
    t.equal(response.statusCode, 200)
    t.equal(response.headers['x-cache-status'], 'MISS')
  }
  const status = await first.app.inject({ method: 'GET', url: '/admin/status', headers: adminHeaders })
  t.equal(status.json().redis.up, false)
})

t.test('cache.store "redis" is accepted when REDIS_URL is set', async (t) => {
  const prefix = await redisKeyPrefix(t)
  if (prefix === null) return void t.plan(0, SKIP)
  const { first } = await twoInstances(t, prefix)
  const route = await first.app.inject({ method: 'GET', url: '/admin/routes/api', headers: adminHeaders })
  t.equal(route.json().cache.store, 'redis')
})
