import t from 'tap'
import { ADMIN_TOKEN, httpRequest, startGateway } from '../helper.js'

const RIGHT = `Bearer ${ADMIN_TOKEN}`
const WRONG = 'Bearer not-the-admin-token-at-all'

/** One admin request from `ip` (the gateway trusts 127.0.0.1 as a proxy, so X-Forwarded-For is the client). */
async function fromIp (url: string, ip: string, authorization?: string, path = '/admin/routes'): Promise<Awaited<ReturnType<typeof httpRequest>>> {
  const headers: Record<string, string> = { 'x-forwarded-for': ip }
  if (authorization !== undefined) headers.authorization = authorization
  return await httpRequest(url + path, { headers })
}

t.test('more than ADMIN_AUTH_MAX_FAILURES wrong tokens from one IP → 429 with Retry-After, even with the right token; other IPs unaffected', async (t) => {
  const { url } = await startGateway(t, { env: { ADMIN_AUTH_MAX_FAILURES: '3', TRUST_PROXY: '127.0.0.1' } })
  const attacker = '203.0.113.7'
  for (let attempt = 1; attempt <= 4; attempt++) {
    const response = await fromIp(url, attacker, WRONG)
    t.equal(response.statusCode, 401, `wrong token #${attempt} is a 401`)
  }

  const limited = await fromIp(url, attacker, RIGHT)
  t.equal(limited.statusCode, 429, 'the right token is refused once the IP has 4 (> 3) failures')
  const retryAfter = Number(limited.headers['retry-after'])
  t.ok(retryAfter >= 59 && retryAfter <= 60, `Retry-After is the rest of the minute (got ${retryAfter})`)
  t.same(limited.json(), {
    statusCode: 429,
    error: 'Too Many Requests',
    message: `more than 3 failed admin token attempts from ${attacker} within a minute; retry in ${retryAfter} s`,
    requestId: limited.headers['x-request-id']
  })
  t.equal(limited.headers['x-ratelimit-limit'], undefined, 'no rate-limit headers beyond Retry-After')
  t.equal((await fromIp(url, attacker, WRONG)).statusCode, 429, 'a wrong token too')
  t.equal((await fromIp(url, attacker, RIGHT, '/metrics')).statusCode, 429, '/metrics is behind the same guard')

  t.equal((await fromIp(url, '198.51.100.20', RIGHT)).statusCode, 200, 'another IP with the right token is served')
  t.equal((await fromIp(url, '198.51.100.20', WRONG)).statusCode, 401, 'another IP with a wrong token gets its own 401')
  t.equal((await fromIp(url, '2001:db8::1', RIGHT)).statusCode, 200, 'an IPv6 client too')
})

t.test('requests without a token and requests with the right one are not failed attempts', async (t) => {
  const { url } = await startGateway(t, { env: { ADMIN_AUTH_MAX_FAILURES: '2', TRUST_PROXY: '127.0.0.1' } })
  const client = '192.0.2.44'
  for (let i = 0; i < 6; i++) t.equal((await fromIp(url, client)).statusCode, 401, `no token #${i + 1}: 401`)
  for (let i = 0; i < 6; i++) t.equal((await fromIp(url, client, RIGHT)).statusCode, 200, `right token #${i + 1}: 200`)
  for (let i = 0; i < 3; i++) t.equal((await fromIp(url, client, WRONG)).statusCode, 401, `wrong token #${i + 1}: 401`)
  t.equal((await fromIp(url, client, RIGHT)).statusCode, 429, 'three wrong tokens (> 2) limit the IP')
})

t.test('the default allows 30 failed attempts a minute; the 31st wrong token limits the IP', async (t) => {
  const { url } = await startGateway(t, { env: { TRUST_PROXY: '127.0.0.1' } })
  const statuses: number[] = []
  for (let i = 0; i < 31; i++) statuses.push((await fromIp(url, '203.0.113.99', WRONG)).statusCode)
  t.same(statuses, Array(31).fill(401))
  t.equal((await fromIp(url, '203.0.113.99', RIGHT)).statusCode, 429)
})

t.test('without TRUST_PROXY the limit applies to the socket address, whatever X-Forwarded-For says', async (t) => {
  const { url } = await startGateway(t, { env: { ADMIN_AUTH_MAX_FAILURES: '1' } })
  t.equal((await fromIp(url, '203.0.113.1', WRONG)).statusCode, 401)
  t.equal((await fromIp(url, '203.0.113.2', WRONG)).statusCode, 401)
  t.equal((await fromIp(url, '203.0.113.3', RIGHT)).statusCode, 429, 'a forged X-Forwarded-For is not another client')
})

const LISTED = 'https://dash.example.com'

function corsHeaders (headers: Record<string, string | string[] | undefined>): Record<string, string | string[] | undefined> {
  return Object.fromEntries(Object.entries(headers).filter(([name]) => name.startsWith('access-control-')))
}

t.test('admin CORS answers only the exact origins of ADMIN_CORS_ORIGINS', async (t) => {
  const { url } = await startGateway(t, { env: { ADMIN_CORS_ORIGINS: `${LISTED}, http://localhost:5173` } })

  const listed = await httpRequest(`${url}/admin/routes`, { headers: { origin: LISTED, authorization: RIGHT } })
  t.equal(listed.statusCode, 200)
  t.same(corsHeaders(listed.headers), {
    'access-control-allow-origin': LISTED,
    'access-control-expose-headers': 'Retry-After, WWW-Authenticate, X-Request-Id'
  })
  t.match(listed.headers.vary, /Origin/, 'Vary: Origin, so caches keep answers per origin')

  const denied = await httpRequest(`${url}/admin/routes`, { headers: { origin: LISTED, authorization: WRONG } })
  t.equal(denied.statusCode, 401)
  t.equal(denied.headers['access-control-allow-origin'], LISTED, 'a listed dashboard can read its 401')

  for (const origin of ['https://dash.example.com.evil.test', 'http://dash.example.com', 'https://evil.test', 'null']) {
    const other = await httpRequest(`${url}/admin/routes`, { headers: { origin, authorization: RIGHT } })
    t.equal(other.statusCode, 200, `${origin}: still served (CORS is the browser's check)`)
    t.same(corsHeaders(other.headers), {}, `${origin}: no CORS headers`)
  }

  const preflight = await httpRequest(`${url}/admin/routes/abc`, {
    method: 'OPTIONS',
    headers: { origin: 'http://localhost:5173', 'access-control-request-method': 'DELETE', 'access-control-request-headers': 'authorization, content-type' }
  })
  t.equal(preflight.statusCode, 204, 'a listed origin\'s preflight needs no token')
  t.same(corsHeaders(preflight.headers), {
    'access-control-allow-origin': 'http://localhost:5173',
    'access-control-expose-headers': 'Retry-After, WWW-Authenticate, X-Request-Id',
    'access-control-allow-methods': 'GET, HEAD, POST, PUT, PATCH, DELETE',
    'access-control-allow-headers': 'Authorization, Content-Type'
  })

  const foreign = await httpRequest(`${url}/admin/routes/abc`, {
    method: 'OPTIONS',
    headers: { origin: 'https://evil.test', 'access-control-request-method': 'DELETE', 'access-control-request-headers': 'authorization' }
  })
  t.equal(foreign.statusCode, 401, 'another origin\'s preflight is not answered: it meets the token check')
  t.same(corsHeaders(foreign.headers), {})

  const withToken = await httpRequest(`${url}/admin/routes`, { method: 'OPTIONS', headers: { origin: 'https://evil.test', 'access-control-request-method': 'GET', authorization: RIGHT } })
  t.same(corsHeaders(withToken.headers), {}, 'even with the token, no CORS headers for another origin')
  t.equal(withToken.statusCode, 404, 'and OPTIONS is no admin endpoint')
})

t.test('without ADMIN_CORS_ORIGINS the admin API answers no CORS at all', async (t) => {
  const { url } = await startGateway(t, { env: { CORS_ORIGINS: '*' } })
  const preflight = await httpRequest(`${url}/admin/routes`, {
    method: 'OPTIONS',
    headers: { origin: LISTED, 'access-control-request-method': 'GET', 'access-control-request-headers': 'authorization' }
  })
  t.equal(preflight.statusCode, 401)
  t.same(corsHeaders(preflight.headers), {})
  const get = await httpRequest(`${url}/admin/routes`, { headers: { origin: LISTED, authorization: RIGHT } })
  t.equal(get.statusCode, 200)
  t.same(corsHeaders(get.headers), {}, 'CORS_ORIGINS for proxied routes does not reach /admin')
})
