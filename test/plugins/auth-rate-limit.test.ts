import t from 'tap'
import { SignJWT } from 'jose'
import { createApiKey, createConsumer, createRoute, failOnUnhandledRejections, httpRequest, startGateway, startUpstream } from '../helper.js'

failOnUnhandledRejections(t)

const SECRET = 'an-hs256-secret-of-at-least-32-characters!'

async function setup (t: Parameters<typeof startGateway>[0]) {
  const upstream = await startUpstream(t)
  const gateway = await startGateway(t)
  const targets = [{ url: upstream.url, weight: 1 }]
  const rateLimit = { max: 2, windowMs: 60_000, by: 'consumer' as const }
  await createRoute(gateway.app, { name: 'keyed', path: '/keyed', targets, auth: { type: 'api-key', header: 'x-api-key' }, rateLimit })
  await createRoute(gateway.app, { name: 'tokens', path: '/tokens', targets, auth: { type: 'jwt', secret: SECRET, jwksUrl: null, consumerClaim: 'sub' }, rateLimit })
  await createRoute(gateway.app, { name: 'open', path: '/open', targets, rateLimit })
  const statuses = async (path: string, headers: Record<string, string>, count: number): Promise<number[]> => {
    const out: number[] = []
    for (let i = 0; i < count; i++) out.push((await httpRequest(`${gateway.url}${path}`, { headers })).statusCode)
    return out
  }
  return { ...gateway, statuses }
}

t.test('by consumer: each consumer has its own counter on the route, whatever its IP', async (t) => {
  const { app, statuses } = await setup(t)
  await createConsumer(app, 'alice')
  await createConsumer(app, 'bob')
  const alice = await createApiKey(app, 'alice')
  const bob = await createApiKey(app, 'bob')
  t.same(await statuses('/keyed', { 'x-api-key': alice.key }, 3), [200, 200, 429])
  t.same(await statuses('/keyed', { 'x-api-key': bob.key }, 3), [200, 200, 429], 'same client IP, separate counter')
})

t.test('by consumer: two keys of one consumer share its counter', async (t) => {
  const { app, statuses } = await setup(t)
  await createConsumer(app, 'alice')
  const one = await createApiKey(app, 'alice')
  const two = await createApiKey(app, 'alice')
  t.same(await statuses('/keyed', { 'x-api-key': one.key }, 2), [200, 200])
  t.same(await statuses('/keyed', { 'x-api-key': two.key }, 1), [429])
})

t.test('a consumer\'s own rateLimit replaces the route\'s', async (t) => {
  const { app, url, statuses } = await setup(t)
  await createConsumer(app, 'carol', { max: 4, windowMs: 60_000 })
  const carol = await createApiKey(app, 'carol')
  const first = await httpRequest(`${url}/keyed`, { headers: { 'x-api-key': carol.key } })
  t.equal(first.headers['x-ratelimit-limit'], '4')
  t.equal(first.headers['x-ratelimit-remaining'], '3')
  t.same(await statuses('/keyed', { 'x-api-key': carol.key }, 4), [200, 200, 200, 429])
})

t.test('changing a consumer\'s rateLimit applies to the next request', async (t) => {
  const { app, url } = await setup(t)
  await createConsumer(app, 'dave')
  const dave = await createApiKey(app, 'dave')
  t.equal((await httpRequest(`${url}/keyed`, { headers: { 'x-api-key': dave.key } })).headers['x-ratelimit-limit'], '2')
  await app.inject({ method: 'PATCH', url: '/admin/consumers/dave', headers: { authorization: 'Bearer test-admin-token-0123456789' }, payload: { rateLimit: { max: 9, windowMs: 60_000 } } })
  t.equal((await httpRequest(`${url}/keyed`, { headers: { 'x-api-key': dave.key } })).headers['x-ratelimit-limit'], '9')
})

t.test('JWT subjects without a registered consumer are counted per name', async (t) => {
  const { statuses } = await setup(t)
  const token = async (sub: string) => await new SignJWT({ sub, exp: Math.floor(Date.now() / 1000) + 60 })
    .setProtectedHeader({ alg: 'HS256' }).sign(new TextEncoder().encode(SECRET))
  t.same(await statuses('/tokens', { authorization: `Bearer ${await token('svc-a')}` }, 3), [200, 200, 429])
  t.same(await statuses('/tokens', { authorization: `Bearer ${await token('svc-b')}` }, 3), [200, 200, 429])
})

t.test('failed authentication is answered before the limit and does not use up the consumer\'s allowance', async (t) => {
  const { app, statuses } = await setup(t)
  await createConsumer(app, 'erin')
  const erin = await createApiKey(app, 'erin')
  t.same(await statuses('/keyed', { 'x-api-key': 'gh_' + 'Z'.repeat(43) }, 3), [401, 401, 401])
  t.same(await statuses('/keyed', {}, 1), [401])
  t.same(await statuses('/keyed', { 'x-api-key': erin.key }, 3), [200, 200, 429])
})

t.test('by consumer on a route without auth counts by client IP', async (t) => {
  const { statuses } = await setup(t)
  t.same(await statuses('/open', {}, 3), [200, 200, 429])
})
