import t from 'tap'
import { SignJWT } from 'jose'
import { findRoute } from '../../repositories/routes.js'
import { adminHeaders, httpRequest, startGateway, startUpstream } from '../helper.js'

const SECRET = 'the-first-hs256-secret-of-32-chars!!'
const NEW_SECRET = 'a-second-hs256-secret-of-32-chars!!!'

async function token (secret: string): Promise<string> {
  return await new SignJWT({ sub: 'alice' }).setProtectedHeader({ alg: 'HS256' }).setExpirationTime('1m').sign(new TextEncoder().encode(secret))
}

t.test('a JWT route\'s HS256 secret is write-only: no answer carries it, PUT/PATCH without one keep it', async (t) => {
  const upstream = await startUpstream(t)
  const { app, url } = await startGateway(t)
  const admin = async (method: string, path: string, body?: unknown) => {
    const response = await httpRequest(`${url}${path}`, {
      method: method as 'GET',
      headers: { ...adminHeaders, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
      body: body === undefined ? undefined : JSON.stringify(body)
    })
    t.notMatch(response.body, 'hs256-secret', `${method} ${path}: no secret in the answer`)
    return response
  }
  const proxied = async (secret: string) => (await httpRequest(`${url}/signed/x`, { headers: { authorization: `Bearer ${await token(secret)}` } })).statusCode
  const storedSecret = async () => {
    const route = await findRoute(app.db, 'signed')
    return route?.auth.type === 'jwt' ? route.auth.secret : undefined
  }
  const shown = { type: 'jwt', secret: null, secretSet: true, jwksUrl: null, consumerClaim: 'sub' }

  const created = await admin('POST', '/admin/routes', { name: 'signed', path: '/signed', targets: [{ url: upstream.url }], auth: { type: 'jwt', secret: SECRET } })
  t.equal(created.statusCode, 201)
  t.same(created.json().auth, shown)
  t.equal(await proxied(SECRET), 200, 'the secret is in force')
  t.same((await admin('GET', '/admin/routes/signed')).json().auth, shown)
  t.same((await admin('GET', '/admin/routes')).json().items[0].auth, shown)
  t.same((await admin('GET', '/admin/config')).json().routes[0].auth, shown)

  const patched = await admin('PATCH', '/admin/routes/signed', { retries: 2 })
  t.equal(patched.statusCode, 200)
  t.same(patched.json().auth, shown)
  t.equal(await storedSecret(), SECRET, 'PATCH without auth keeps the secret')

  const reauthed = await admin('PATCH', '/admin/routes/signed', { auth: { type: 'jwt', audience: 'api' } })
  t.equal(reauthed.statusCode, 200, 'a jwt auth with neither secret nor jwksUrl keeps the stored secret')
  t.same(reauthed.json().auth, { ...shown, audience: 'api' })
  t.equal(await storedSecret(), SECRET)

  const { id: _id, createdAt: _c, updatedAt: _u, ...answer } = (await admin('GET', '/admin/routes/signed')).json()
  const replaced = await admin('PUT', '/admin/routes/signed', { ...answer, auth: { ...answer.auth, audience: undefined } })
  t.equal(replaced.statusCode, 200, 'the GET answer can be PUT back as it is (secret null, secretSet)')
  t.same(replaced.json().auth, shown)
  t.equal(await storedSecret(), SECRET, 'PUT without a secret keeps the stored one')
  t.equal(await proxied(SECRET), 200)

  const rotated = await admin('PATCH', '/admin/routes/signed', { auth: { type: 'jwt', secret: NEW_SECRET } })
  t.same(rotated.json().auth, shown, 'a new secret is not echoed either')
  t.equal(await storedSecret(), NEW_SECRET)
  t.equal(await proxied(SECRET), 401, 'the old secret no longer verifies')
  t.equal(await proxied(NEW_SECRET), 200)

  const jwks = await admin('PATCH', '/admin/routes/signed', { auth: { type: 'jwt', jwksUrl: 'https://id.example.com/jwks' } })
  t.same(jwks.json().auth, { type: 'jwt', secret: null, secretSet: false, jwksUrl: 'https://id.example.com/jwks', consumerClaim: 'sub' })
  t.equal(await storedSecret(), null, 'switching to JWKS drops the secret')
  const none = await admin('PATCH', '/admin/routes/signed', { auth: { type: 'jwt' } })
  t.equal(none.statusCode, 400, 'with no stored secret to keep, neither is an error')
  t.equal(none.json().message, 'body/auth must set exactly one of secret or jwksUrl')
  t.equal(upstream.requests.length, 3)
})
