import t from 'tap'
import type { FastifyInstance } from 'fastify'
import { adminHeaders, createRoute, httpRequest, startGateway, startUpstream, type TestContext } from '../helper.js'

/**
 * TRUST_PROXY decides which X-Forwarded-For hops are believed (docs/policies.md "Client IP"). The
 * client IP a gateway settled on is observed through a deny filter and the rate-limit
 * counters, the two policies an attacker would want to dodge.
 */
async function gateway (t: TestContext, trustProxy: string): Promise<{ app: FastifyInstance, url: string }> {
  const upstream = await startUpstream(t)
  const { app, url } = await startGateway(t, { env: { TRUST_PROXY: trustProxy } })
  await createRoute(app, { name: 'api', path: '/api', targets: [{ url: upstream.url, weight: 1 }], rateLimit: { max: 100, windowMs: 60_000, by: 'ip' } })
  return { app, url }
}

/** The client IP the gateway counted a request under. */
async function countedAs (app: FastifyInstance, url: string, xff: string | undefined, candidates: string[]): Promise<string | null> {
  await httpRequest(`${url}/api/x`, xff === undefined ? {} : { headers: { 'x-forwarded-for': xff } })
  for (const ip of candidates) {
    const counters = await app.inject({ method: 'GET', url: `/admin/rate-limits/${ip}`, headers: adminHeaders })
    if (counters.json().items[0].current > 0) {
      await app.inject({ method: 'DELETE', url: `/admin/rate-limits/${ip}`, headers: adminHeaders })
      return ip
    }
  }
  return null
}

const candidates = ['127.0.0.1', '203.0.113.9', '198.51.100.1', '192.0.2.5']

t.test('TRUST_PROXY=false: the socket address, whatever X-Forwarded-For says', async (t) => {
  const { app, url } = await gateway(t, 'false')
  t.equal(await countedAs(app, url, '203.0.113.9', candidates), '127.0.0.1')
  t.equal(await countedAs(app, url, '203.0.113.9, 198.51.100.1', candidates), '127.0.0.1')
  await app.inject({ method: 'POST', url: '/admin/filters', headers: adminHeaders, payload: { action: 'deny', ip: '127.0.0.1' } })
  const forged = await httpRequest(`${url}/api/x`, { headers: { 'x-forwarded-for': '192.0.2.5' } })
  t.equal(forged.statusCode, 403, 'a forged X-Forwarded-For does not bypass a deny filter')
})

t.test('TRUST_PROXY=1: one proxy (the peer) is trusted, its right-most entry is the client', async (t) => {
  const { app, url } = await gateway(t, '1')
  t.equal(await countedAs(app, url, '203.0.113.9', candidates), '203.0.113.9')
  t.equal(await countedAs(app, url, '203.0.113.9, 198.51.100.1', candidates), '198.51.100.1', 'the forged left-most entry is ignored')
  t.equal(await countedAs(app, url, undefined, candidates), '127.0.0.1')
})

t.test('TRUST_PROXY=2: two hops are trusted', async (t) => {
  const { app, url } = await gateway(t, '2')
  t.equal(await countedAs(app, url, '192.0.2.5, 203.0.113.9, 198.51.100.1', candidates), '203.0.113.9')
})

t.test('TRUST_PROXY as a CIDR list: hops inside the list are skipped from the right', async (t) => {
  const loopbackOnly = await gateway(t, '127.0.0.0/8')
  t.equal(await countedAs(loopbackOnly.app, loopbackOnly.url, '203.0.113.9, 198.51.100.1', candidates), '198.51.100.1')
  const twoProxies = await gateway(t, '127.0.0.1, 198.51.100.0/24')
  t.equal(await countedAs(twoProxies.app, twoProxies.url, '203.0.113.9, 198.51.100.1', candidates), '203.0.113.9')
  t.equal(await countedAs(twoProxies.app, twoProxies.url, '192.0.2.5, 203.0.113.9, 198.51.100.1', candidates), '203.0.113.9', 'an untrusted hop stops the walk')
})

t.test('TRUST_PROXY list not containing the peer: X-Forwarded-For is ignored', async (t) => {
  const { app, url } = await gateway(t, '10.0.0.0/8')
  t.equal(await countedAs(app, url, '203.0.113.9', candidates), '127.0.0.1')
})
