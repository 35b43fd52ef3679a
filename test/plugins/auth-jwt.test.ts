import { createServer } from 'node:http'
import t from 'tap'
import { exportJWK, exportSPKI, generateKeyPair, SignJWT, type JWTPayload } from 'jose'
import {
  createConsumer, createRoute, httpRequest, startGateway, startUpstream, type TestAppOptions, type TestContext, failOnUnhandledRejections
} from '../helper.js'

failOnUnhandledRejections(t)

const SECRET = 'an-hs256-secret-of-at-least-32-characters!'
const now = (): number => Math.floor(Date.now() / 1000)

async function hs256 (payload: JWTPayload, secret = SECRET, header: Record<string, unknown> = {}): Promise<string> {
  return await new SignJWT(payload).setProtectedHeader({ alg: 'HS256', ...header }).sign(new TextEncoder().encode(secret))
}

function b64 (value: unknown): string {
  return Buffer.from(JSON.stringify(value)).toString('base64url')
}

async function setup (t: TestContext, auth: Record<string, unknown>, options: TestAppOptions = {}) {
  const upstream = await startUpstream(t)
  const gateway = await startGateway(t, options)
  await createRoute(gateway.app, { name: 'api', path: '/api', targets: [{ url: upstream.url, weight: 1 }], auth: auth as any })
  const alice = await createConsumer(gateway.app, 'alice', { max: 5, windowMs: 1000 })
  const get = (token?: string, headers: Record<string, string> = {}) =>
    httpRequest(`${gateway.url}/api/x`, { headers: token === undefined ? headers : { authorization: `Bearer ${token}`, ...headers } })
  return { upstream, ...gateway, alice, get }
}

/** A JWKS endpoint on node:http whose key set the test can change; counts fetches. */
async function startJwks (t: TestContext, keys: object[]) {
  const state = { keys, fetches: 0 }
  const server = createServer((_req, res) => {
    state.fetches++
    const body = JSON.stringify({ keys: state.keys })
    res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) })
    res.end(body)
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  t.teardown(() => new Promise<void>((resolve) => { server.closeAllConnections(); server.close(() => resolve()) }))
  return { state, url: `http://127.0.0.1:${(server.address() as { port: number }).port}/.well-known/jwks.json` }
}

async function keyPair (alg: 'RS256' | 'ES256', kid: string) {
  const { publicKey, privateKey } = await generateKeyPair(alg, { extractable: true })
  const jwk = { ...await exportJWK(publicKey), kid, alg, use: 'sig' }
  const sign = async (payload: JWTPayload, header: Record<string, unknown> = {}) =>
    await new SignJWT(payload).setProtectedHeader({ alg, kid, ...header }).sign(privateKey)
  return { publicKey, jwk, sign, kid }
}

t.test('HS256: a valid token maps sub to a registered consumer; Authorization is not forwarded', async (t) => {
  const { get, upstream, alice } = await setup(t, { type: 'jwt', secret: SECRET })
  const response = await get(await hs256({ sub: 'alice', exp: now() + 60 }))
  t.equal(response.statusCode, 200)
  t.equal(upstream.requests[0].headers['x-consumer-id'], alice.id)
  t.equal(upstream.requests[0].headers['x-consumer-name'], 'alice')
  t.equal(upstream.requests[0].headers.authorization, undefined)
})

t.test('HS256: a claim naming no consumer is admitted with X-Consumer-Name only; spoofed copies dropped', async (t) => {
  const { get, upstream } = await setup(t, { type: 'jwt', secret: SECRET, consumerClaim: 'client_id' })
  const response = await get(await hs256({ sub: 'alice', client_id: 'mobile-app', exp: now() + 60 }), { 'x-consumer-id': 'forged', 'x-consumer-name': 'forged' })
  t.equal(response.statusCode, 200)
  t.equal(upstream.requests[0].headers['x-consumer-id'], undefined)
  t.equal(upstream.requests[0].headers['x-consumer-name'], 'mobile-app')
})

t.test('HS256: every bad token gets the same 401 with an invalid_token Bearer challenge', async (t) => {
  const { app, get, upstream } = await setup(t, { type: 'jwt', secret: SECRET, issuer: 'https://idp.example', audience: 'gatehouse' })
  const good = { sub: 'alice', iss: 'https://idp.example', aud: 'gatehouse' }
  const valid = await hs256({ ...good, exp: now() + 60 })
  t.equal((await get(valid)).statusCode, 200, 'the baseline token passes')
  t.equal((await get(await hs256({ ...good, exp: now() - 10 }))).statusCode, 200, 'expired 10 s ago is within the clock tolerance')

  const [header, payload, signature] = valid.split('.')
  const cases: Record<string, string> = {
    expired: await hs256({ ...good, exp: now() - 120 }),
    'not yet valid': await hs256({ ...good, exp: now() + 600, nbf: now() + 300 }),
    'wrong audience': await hs256({ ...good, aud: 'someone-else', exp: now() + 60 }),
    'wrong issuer': await hs256({ ...good, iss: 'https://evil.example', exp: now() + 60 }),
    'no exp': await hs256(good),
    'wrong secret': await hs256({ ...good, exp: now() + 60 }, 'another-secret-of-at-least-32-characters!!'),
    'tampered payload': `${header}.${b64({ ...good, sub: 'admin', exp: now() + 60 })}.${signature}`,
    'alg none with a signature': `${b64({ alg: 'none', typ: 'JWT' })}.${payload}.${signature}`,
    'alg none unsigned': `${b64({ alg: 'none' })}.${payload}.`,
    HS512: await new SignJWT({ ...good, exp: now() + 60 }).setProtectedHeader({ alg: 'HS512' }).sign(new TextEncoder().encode(SECRET)),
    'sub missing': await hs256({ iss: good.iss, aud: good.aud, exp: now() + 60 }),
    'sub not a string': await hs256({ ...good, sub: 42 as unknown as string, exp: now() + 60 }),
    'sub with control characters': await hs256({ ...good, sub: 'ali\u0001ce', exp: now() + 60 }),
    garbage: 'not-a-jwt',
    'two parts': `${header}.${payload}`
  }
  const requestIds: Record<string, string> = {}
  for (const [name, token] of Object.entries(cases)) {
    const response = await get(token)
    requestIds[name] = response.headers['x-request-id'] as string
    t.equal(response.statusCode, 401, name)
    t.equal(response.headers['www-authenticate'], 'Bearer realm="gatehouse", error="invalid_token"', name)
    t.same(response.json(), { statusCode: 401, error: 'Unauthorized', message: 'invalid credentials', requestId: response.headers['x-request-id'] }, name)
  }
  const missing = await get(undefined)
  t.equal(missing.statusCode, 401)
  t.equal(missing.headers['www-authenticate'], 'Bearer realm="gatehouse"')
  t.equal(missing.json().message, 'missing credentials')
  t.equal((await get(undefined, { authorization: `Basic ${valid}` })).statusCode, 401, 'not a Bearer credential')
  t.equal(upstream.requests.length, 2)

  // The client hears "invalid credentials" every time; the audit log keeps the reason.
  await app.audit.flush()
  const rows = await app.db.selectFrom('audit_log').select(['request_id', 'detail']).where('event_type', '=', 'request').execute()
  const detail = Object.fromEntries(rows.map((row) => [row.request_id, row.detail]))
  const reasons = Object.fromEntries(Object.entries(requestIds).map(([name, id]) => [name, detail[id]]))
  t.same(reasons, {
    expired: 'invalid jwt: ERR_JWT_EXPIRED (exp)',
    'not yet valid': 'invalid jwt: ERR_JWT_CLAIM_VALIDATION_FAILED (nbf)',
    'wrong audience': 'invalid jwt: ERR_JWT_CLAIM_VALIDATION_FAILED (aud)',
    'wrong issuer': 'invalid jwt: ERR_JWT_CLAIM_VALIDATION_FAILED (iss)',
    'no exp': 'invalid jwt: ERR_JWT_CLAIM_VALIDATION_FAILED (exp)',
    'wrong secret': 'invalid jwt: ERR_JWS_SIGNATURE_VERIFICATION_FAILED',
    'tampered payload': 'invalid jwt: ERR_JWS_SIGNATURE_VERIFICATION_FAILED',
    'alg none with a signature': 'invalid jwt: ERR_JOSE_ALG_NOT_ALLOWED',
    'alg none unsigned': 'malformed bearer token',
    HS512: 'invalid jwt: ERR_JOSE_ALG_NOT_ALLOWED',
    'sub missing': 'claim sub missing or not a plain string',
    'sub not a string': 'claim sub missing or not a plain string',
    'sub with control characters': 'claim sub missing or not a plain string',
    garbage: 'malformed bearer token',
    'two parts': 'malformed bearer token'
  })
})

t.test('JWKS: RS256 and ES256 tokens verify against keys served by the JWKS endpoint', async (t) => {
  const rsa = await keyPair('RS256', 'rsa-1')
  const ec = await keyPair('ES256', 'ec-1')
  const jwks = await startJwks(t, [rsa.jwk, ec.jwk])
  const { get, upstream, alice } = await setup(t, { type: 'jwt', jwksUrl: jwks.url, audience: 'gatehouse' })
  t.equal((await get(await rsa.sign({ sub: 'alice', aud: 'gatehouse', exp: now() + 60 }))).statusCode, 200)
  t.equal((await get(await ec.sign({ sub: 'service-b', aud: 'gatehouse', exp: now() + 60 }))).statusCode, 200)
  t.equal(upstream.requests[0].headers['x-consumer-id'], alice.id)
  t.equal(upstream.requests[1].headers['x-consumer-name'], 'service-b')
  t.equal((await get(await rsa.sign({ sub: 'alice', aud: 'other', exp: now() + 60 }))).statusCode, 401, 'wrong audience')
  t.equal((await get(await rsa.sign({ sub: 'alice', aud: 'gatehouse', exp: now() - 300 }))).statusCode, 401, 'expired')
  t.equal(jwks.state.fetches, 1, 'the key set is fetched once and cached')
})

t.test('JWKS: HS/RS confusion fails — an HS256 token signed with the RSA public key is refused', async (t) => {
  const rsa = await keyPair('RS256', 'rsa-1')
  const jwks = await startJwks(t, [rsa.jwk])
  const { get, upstream } = await setup(t, { type: 'jwt', jwksUrl: jwks.url })
  const claims = { sub: 'alice', exp: now() + 60 }
  t.equal((await get(await rsa.sign(claims))).statusCode, 200)
  const pem = await exportSPKI(rsa.publicKey)
  for (const secret of [pem, JSON.stringify(rsa.jwk), rsa.jwk.n as string]) {
    const forged = await new SignJWT(claims).setProtectedHeader({ alg: 'HS256', kid: 'rsa-1' }).sign(new TextEncoder().encode(secret))
    t.equal((await get(forged)).statusCode, 401)
  }
  const [, payload] = (await rsa.sign(claims)).split('.')
  t.equal((await get(`${b64({ alg: 'none', kid: 'rsa-1' })}.${payload}.x`)).statusCode, 401, 'alg none')
  t.equal(upstream.requests.length, 1)
})

t.test('JWKS: a token signed by a key the issuer does not publish is refused', async (t) => {
  const published = await keyPair('RS256', 'published')
  const stranger = await keyPair('RS256', 'stranger')
  const sameKid = await keyPair('RS256', 'published')
  const jwks = await startJwks(t, [published.jwk])
  const { get } = await setup(t, { type: 'jwt', jwksUrl: jwks.url }, { build: { auth: { jwksCooldownMs: 0 } } })
  t.equal((await get(await stranger.sign({ sub: 'x', exp: now() + 60 }))).statusCode, 401, 'unknown kid')
  t.equal((await get(await sameKid.sign({ sub: 'x', exp: now() + 60 }))).statusCode, 401, 'known kid, other key: bad signature')
})

t.test('JWKS: key rotation — a token with a new kid makes the gateway refetch the key set', async (t) => {
  const oldKey = await keyPair('RS256', '2024-01')
  const newKey = await keyPair('ES256', '2024-02')
  const jwks = await startJwks(t, [oldKey.jwk])
  const { get } = await setup(t, { type: 'jwt', jwksUrl: jwks.url }, { build: { auth: { jwksCooldownMs: 0 } } })
  const oldToken = await oldKey.sign({ sub: 'alice', exp: now() + 60 })
  t.equal((await get(oldToken)).statusCode, 200)
  t.equal((await get(oldToken)).statusCode, 200, 'now remembered as verified')
  const fetchesBefore = jwks.state.fetches

  jwks.state.keys = [newKey.jwk]
  t.equal((await get(await newKey.sign({ sub: 'alice', exp: now() + 60 }))).statusCode, 200, 'new key accepted after a refetch')
  t.equal(jwks.state.fetches, fetchesBefore + 1)
  t.equal((await get(oldToken)).statusCode, 401, 'a remembered token of the retired key is refused after the refetch')
  t.equal((await get(await oldKey.sign({ sub: 'bob', exp: now() + 60 }))).statusCode, 401, 'the retired key no longer verifies')
})

t.test('JWKS: unknown kids do not make the gateway refetch more than once per cooldown', async (t) => {
  const key = await keyPair('RS256', 'k1')
  const jwks = await startJwks(t, [key.jwk])
  const { get } = await setup(t, { type: 'jwt', jwksUrl: jwks.url }, { build: { auth: { jwksCooldownMs: 60_000 } } })
  t.equal((await get(await key.sign({ sub: 'alice', exp: now() + 60 }))).statusCode, 200)
  for (let i = 0; i < 10; i++) {
    const stranger = await keyPair('ES256', `random-${i}`)
    t.equal((await get(await stranger.sign({ sub: 'alice', exp: now() + 60 }))).statusCode, 401)
  }
  t.equal(jwks.state.fetches, 1)
})

t.test('JWKS: an unreachable key set endpoint answers 401, not 500, and the gateway keeps serving', async (t) => {
  const key = await keyPair('RS256', 'k1')
  const jwks = await startJwks(t, [key.jwk])
  const deadUrl = jwks.url.replace(/:\d+\//, ':1/')
  const { get } = await setup(t, { type: 'jwt', jwksUrl: deadUrl })
  const response = await get(await key.sign({ sub: 'alice', exp: now() + 60 }))
  t.equal(response.statusCode, 401)
  t.equal(response.json().message, 'invalid credentials')
})

t.test('JWT routes refuse a route without exactly one of secret and jwksUrl, and short secrets', async (t) => {
  const { app } = await setup(t, { type: 'none' })
  for (const auth of [{ type: 'jwt' }, { type: 'jwt', secret: SECRET, jwksUrl: 'https://idp.example/jwks' }, { type: 'jwt', secret: 'short' }]) {
    const response = await app.inject({ method: 'POST', url: '/admin/routes', headers: { authorization: 'Bearer test-admin-token-0123456789' }, payload: { name: 'bad', path: '/bad', targets: [{ url: 'http://127.0.0.1:1' }], auth } })
    t.equal(response.statusCode, 400, JSON.stringify(auth))
    t.match(response.json().message, /auth/)
  }
})

t.test('a verified token is remembered per route, never past its exp, and forgotten when the route changes', async (t) => {
  const { app, get, upstream } = await setup(t, { type: 'jwt', secret: SECRET })
  const shortLived = await hs256({ sub: 'alice', exp: now() + 2 })
  t.equal((await get(shortLived)).statusCode, 200)
  t.equal((await get(shortLived)).statusCode, 200, 'from the cache')
  // Past exp + the 30 s tolerance is not reachable in a test; past exp the cache lets go, and
  // jose (with its tolerance) decides again — the audit detail shows it ran.
  await new Promise((resolve) => setTimeout(resolve, 2100))
  t.equal((await get(shortLived)).statusCode, 200, 'within the clock tolerance, verified again')

  const token = await hs256({ sub: 'alice', exp: now() + 600 })
  t.equal((await get(token)).statusCode, 200)
  const patch = await app.inject({ method: 'PATCH', url: '/admin/routes/api', headers: { authorization: 'Bearer test-admin-token-0123456789' }, payload: { auth: { type: 'jwt', secret: 'a-completely-different-secret-0123456789' } } })
  t.equal(patch.statusCode, 200)
  t.equal((await get(token)).statusCode, 401, 'a token remembered under the old secret is refused under the new one')
  t.equal(upstream.requests.length, 4)
})
