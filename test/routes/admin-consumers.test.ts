import { createHash } from 'node:crypto'
import t from 'tap'
import type { FastifyInstance } from 'fastify'
import { adminHeaders, buildTestApp, createApiKey, createConsumer, createRoute, httpRequest, startGateway, startUpstream } from '../helper.js'

type Method = 'GET' | 'POST' | 'PUT' | 'PATCH' | 'DELETE'
const call = (app: FastifyInstance, method: Method, url: string, payload?: unknown) =>
  app.inject({ method, url, headers: adminHeaders, ...(payload === undefined ? {} : { payload: payload as object }) })

const ISO = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/

t.test('POST creates a consumer: 201, Location, the stored shape; GET by id and by name', async (t) => {
  const app = await buildTestApp(t)
  const created = await call(app, 'POST', '/admin/consumers', { name: 'alice', rateLimit: { max: 10 } })
  t.equal(created.statusCode, 201)
  const body = created.json()
  t.equal(created.headers.location, `/admin/consumers/${body.id as string}`)
  t.same(Object.keys(body).sort(), ['createdAt', 'id', 'name', 'rateLimit', 'updatedAt'])
  t.equal(body.name, 'alice')
  t.same(body.rateLimit, { max: 10, windowMs: 60000 }, 'windowMs defaults to 60000')
  t.match(body.createdAt, ISO)
  t.same((await call(app, 'GET', `/admin/consumers/${body.id as string}`)).json(), body)
  t.same((await call(app, 'GET', '/admin/consumers/alice')).json(), body)
  const plain = (await call(app, 'POST', '/admin/consumers', { name: 'bob' })).json()
  t.equal(plain.rateLimit, null)
})

t.test('the list answers items and total, with limit and offset', async (t) => {
  const app = await buildTestApp(t)
  for (const name of ['a1', 'a2', 'a3']) await createConsumer(app, name)
  const all = (await call(app, 'GET', '/admin/consumers')).json()
  t.equal(all.total, 3)
  t.same(all.items.map((item: { name: string }) => item.name), ['a1', 'a2', 'a3'])
  const page = (await call(app, 'GET', '/admin/consumers?limit=1&offset=1')).json()
  t.same(page.items.map((item: { name: string }) => item.name), ['a2'])
  t.equal(page.total, 3)
  t.equal((await call(app, 'GET', '/admin/consumers?limit=1001')).statusCode, 400)
})

t.test('invalid consumer bodies get 400 naming the field', async (t) => {
  const app = await buildTestApp(t)
  const cases: Array<[unknown, RegExp]> = [
    [{}, /^body\/name is required/],
    [{ name: 'Alice' }, /^body\/name must match pattern/],
    [{ name: '' }, /^body\/name /],
    [{ name: 'x'.repeat(101) }, /^body\/name must be at most 100/],
    [{ name: 'a', rateLimit: { max: 0 } }, /^body\/rateLimit\/max must be >= 1/],
    [{ name: 'a', rateLimit: { max: 1, windowMs: 10 } }, /^body\/rateLimit\/windowMs must be >= 100/],
    [{ name: 'a', rateLimit: { max: 1, by: 'ip' } }, /^body\/rateLimit\/by is not a known field/],
    [{ name: 'a', rateLimit: 5 }, /^body\/rateLimit /],
    [{ name: 'a', apiKey: 'x' }, /^body\/apiKey is not a known field/],
    [{ name: 7 }, /^body\/name must be a string/]
  ]
  for (const [payload, message] of cases) {
    const response = await call(app, 'POST', '/admin/consumers', payload)
    t.equal(response.statusCode, 400, JSON.stringify(payload))
    t.match(response.json().message, message, JSON.stringify(payload))
  }
  t.equal((await call(app, 'GET', '/admin/consumers')).json().total, 0)
})

t.test('a taken name is 409 on create, replace and patch; unknown ids are 404', async (t) => {
  const app = await buildTestApp(t)
  await createConsumer(app, 'alice')
  await createConsumer(app, 'bob')
  t.equal((await call(app, 'POST', '/admin/consumers', { name: 'alice' })).statusCode, 409)
  t.equal((await call(app, 'PUT', '/admin/consumers/bob', { name: 'alice' })).statusCode, 409)
  const patch = await call(app, 'PATCH', '/admin/consumers/bob', { name: 'alice' })
  t.equal(patch.statusCode, 409)
  t.equal(patch.json().message, 'consumer name "alice" is already taken')
  for (const [method, url, payload] of [
    ['GET', '/admin/consumers/nobody'], ['PUT', '/admin/consumers/nobody', { name: 'x' }], ['PATCH', '/admin/consumers/nobody', {}],
    ['DELETE', '/admin/consumers/nobody'], ['POST', '/admin/consumers/nobody/keys'], ['GET', '/admin/consumers/nobody/keys'],
    ['PUT', '/admin/consumers/nobody/basic', { username: 'u', password: 'long enough' }], ['GET', '/admin/consumers/alice/basic'],
    ['DELETE', '/admin/consumers/alice/keys/nokey']
  ] as Array<[Method, string, unknown?]>) {
    const response = await call(app, method, url, payload)
    t.equal(response.statusCode, 404, `${method} ${url}`)
    t.equal(response.json().statusCode, 404)
  }
})

t.test('PUT replaces and PATCH merges name and rateLimit; DELETE answers 204 then 404', async (t) => {
  const app = await buildTestApp(t)
  const alice = await createConsumer(app, 'alice', { max: 5, windowMs: 1000 })
  const patched = (await call(app, 'PATCH', '/admin/consumers/alice', { name: 'alice2' })).json()
  t.same(patched.rateLimit, { max: 5, windowMs: 1000 })
  t.equal(patched.id, alice.id)
  const replaced = (await call(app, 'PUT', `/admin/consumers/${alice.id}`, { name: 'alice3' })).json()
  t.equal(replaced.rateLimit, null)
  t.equal(replaced.name, 'alice3')
  t.equal((await call(app, 'DELETE', '/admin/consumers/alice3')).statusCode, 204)
  t.equal((await call(app, 'DELETE', '/admin/consumers/alice3')).statusCode, 404)
})

t.test('API keys: created once with the key shown, listed without secrets, stored only as SHA-256, revoked', async (t) => {
  const app = await buildTestApp(t)
  const alice = await createConsumer(app, 'alice')
  const response = await call(app, 'POST', '/admin/consumers/alice/keys')
  t.equal(response.statusCode, 201)
  t.equal(response.headers['cache-control'], 'no-store')
  const created = response.json()
  t.same(Object.keys(created).sort(), ['consumerId', 'createdAt', 'id', 'key', 'prefix'])
  t.match(created.key, /^gh_[A-Za-z0-9_-]{43}$/)
  t.equal(created.prefix, created.key.slice(0, 9))
  t.equal(created.consumerId, alice.id)
  t.equal(response.headers.location, `/admin/consumers/${alice.id}/keys/${created.id as string}`)

  const other = await createApiKey(app, 'alice')
  t.not(other.key, created.key)

  const list = await call(app, 'GET', '/admin/consumers/alice/keys')
  t.equal(list.json().total, 2)
  t.same(list.json().items[0], { id: created.id, consumerId: alice.id, prefix: created.prefix, createdAt: created.createdAt })
  t.notOk(list.body.includes(created.key.slice(9)), 'no secret in the list')
  t.same((await call(app, 'GET', `/admin/consumers/alice/keys/${created.id as string}`)).json(), list.json().items[0])

  const rows = await app.db.selectFrom('api_keys').selectAll().where('id', '=', created.id).execute()
  t.same(rows, [{ id: created.id, consumer_id: alice.id, key_hash: createHash('sha256').update(created.key).digest('hex'), prefix: created.prefix, created_at: created.createdAt }])

  t.equal((await call(app, 'DELETE', `/admin/consumers/alice/keys/${created.id as string}`)).statusCode, 204)
  t.equal((await call(app, 'DELETE', `/admin/consumers/alice/keys/${created.id as string}`)).statusCode, 404)
  await createConsumer(app, 'bob')
  t.equal((await call(app, 'DELETE', `/admin/consumers/bob/keys/${other.id}`)).statusCode, 404, 'a key of another consumer')
  t.equal((await call(app, 'GET', '/admin/consumers/alice/keys')).json().total, 1)
})

t.test('basic credentials: PUT stores scrypt, answers the username only; validation and 409', async (t) => {
  const app = await buildTestApp(t)
  const alice = await createConsumer(app, 'alice')
  await createConsumer(app, 'bob')
  const put = await call(app, 'PUT', '/admin/consumers/alice/basic', { username: 'alice', password: 'correct horse' })
  t.equal(put.statusCode, 200)
  t.same(Object.keys(put.json()).sort(), ['consumerId', 'createdAt', 'updatedAt', 'username'])
  t.equal(put.json().consumerId, alice.id)
  const row = await app.db.selectFrom('basic_credentials').selectAll().executeTakeFirstOrThrow()
  t.match(row.password_hash, /^scrypt\$32768\$8\$1\$/)
  t.notOk(row.password_hash.includes('correct horse'))
  t.same((await call(app, 'GET', '/admin/consumers/alice/basic')).json(), put.json())

  const cases: Array<[unknown, RegExp]> = [
    [{ username: 'alice' }, /^body\/password is required/],
    [{ username: 'alice', password: 'short' }, /^body\/password must be at least 8/],
    [{ username: 'al:ice', password: 'long enough' }, /^body\/username must match pattern/],
    [{ username: '', password: 'long enough' }, /^body\/username /],
    [{ username: 'alice', password: 'long enough', realm: 'x' }, /^body\/realm is not a known field/]
  ]
  for (const [payload, message] of cases) {
    const response = await call(app, 'PUT', '/admin/consumers/alice/basic', payload)
    t.equal(response.statusCode, 400, JSON.stringify(payload))
    t.match(response.json().message, message)
  }
  const taken = await call(app, 'PUT', '/admin/consumers/bob/basic', { username: 'alice', password: 'long enough' })
  t.equal(taken.statusCode, 409)
  t.equal(taken.json().message, 'username "alice" is already taken')
  t.equal((await call(app, 'PUT', '/admin/consumers/alice/basic', { username: 'alice-2', password: 'another one' })).statusCode, 200, 'a consumer replaces its own')
  t.equal((await app.db.selectFrom('basic_credentials').selectAll().execute()).length, 1)
  t.equal((await call(app, 'DELETE', '/admin/consumers/alice/basic')).statusCode, 204)
  t.equal((await call(app, 'DELETE', '/admin/consumers/alice/basic')).statusCode, 404)
})

t.test('deleting a consumer deletes its keys and basic credentials', async (t) => {
  const app = await buildTestApp(t)
  await createConsumer(app, 'alice')
  await createApiKey(app, 'alice')
  await call(app, 'PUT', '/admin/consumers/alice/basic', { username: 'alice', password: 'correct horse' })
  t.equal((await call(app, 'DELETE', '/admin/consumers/alice')).statusCode, 204)
  t.equal((await app.db.selectFrom('api_keys').selectAll().execute()).length, 0)
  t.equal((await app.db.selectFrom('basic_credentials').selectAll().execute()).length, 0)
})

t.test('every consumer change is audited with before/after and never a key, hash or password', async (t) => {
  const app = await buildTestApp(t)
  const alice = await createConsumer(app, 'alice')
  const key = await createApiKey(app, 'alice')
  await call(app, 'PUT', '/admin/consumers/alice/basic', { username: 'alice', password: 'correct horse' })
  await call(app, 'PATCH', '/admin/consumers/alice', { rateLimit: { max: 3, windowMs: 1000 } })
  await call(app, 'DELETE', `/admin/consumers/alice/keys/${key.id}`)
  await call(app, 'DELETE', '/admin/consumers/alice')
  await app.audit.flush()
  const rows = await app.db.selectFrom('audit_log').select(['detail', 'outcome']).where('event_type', '=', 'admin').orderBy('id').execute()
  const details = rows.map((row) => JSON.parse(row.detail as string))
  t.same(details.map((d) => [d.action, d.resource]), [
    ['create', 'consumer'], ['create', 'api-key'], ['create', 'basic-credential'], ['update', 'consumer'], ['delete', 'api-key'], ['delete', 'consumer']
  ])
  t.same(details[1].after, { id: key.id, consumerId: alice.id, prefix: key.prefix, createdAt: details[1].after.createdAt })
  t.equal(details[2].after.username, 'alice')
  t.same(details[3].after.rateLimit, { max: 3, windowMs: 1000 })
  const everything = rows.map((row) => row.detail).join('\n')
  const hash = createHash('sha256').update(key.key).digest('hex')
  t.notOk(everything.includes(key.key.slice(9)), 'no key')
  t.notOk(everything.includes(hash), 'no key hash')
  t.notOk(everything.includes('correct horse'), 'no password')
  t.notOk(everything.includes('scrypt$'), 'no password hash')
})

t.test('the admin token guards /admin/consumers', async (t) => {
  const app = await buildTestApp(t)
  const response = await app.inject({ method: 'POST', url: '/admin/consumers', payload: { name: 'x' } })
  t.equal(response.statusCode, 401)
  t.equal(response.headers['www-authenticate'], 'Bearer realm="gatehouse-admin"')
  t.equal((await call(app, 'GET', '/admin/consumers')).json().total, 0)
})

t.test('/docs/json documents the consumer endpoints with the bearer scheme', async (t) => {
  const app = await buildTestApp(t)
  const paths = (await app.inject({ method: 'GET', url: '/docs/json' })).json().paths
  for (const path of ['/admin/consumers/', '/admin/consumers/{id}', '/admin/consumers/{id}/keys', '/admin/consumers/{id}/keys/{keyId}', '/admin/consumers/{id}/basic']) {
    t.ok(paths[path] !== undefined || paths[path.replace(/\/$/, '')] !== undefined, path)
  }
  t.same(paths['/admin/consumers/{id}/keys'].post.security, [{ bearerAuth: [] }])
})

t.test('/admin/config exports consumers with credential references only', async (t) => {
  const app = await buildTestApp(t)
  const alice = await createConsumer(app, 'alice', { max: 5, windowMs: 1000 })
  const key = await createApiKey(app, 'alice')
  await call(app, 'PUT', '/admin/consumers/alice/basic', { username: 'alice-login', password: 'correct horse' })
  await createConsumer(app, 'bob')
  const document = (await call(app, 'GET', '/admin/config')).json()
  t.same(document.consumers.map((c: Record<string, unknown>) => ({ ...c, createdAt: undefined, updatedAt: undefined })), [
    { id: alice.id, name: 'alice', rateLimit: { max: 5, windowMs: 1000 }, keys: [{ id: key.id, prefix: key.prefix, createdAt: document.consumers[0].keys[0].createdAt }], basic: { username: 'alice-login' }, createdAt: undefined, updatedAt: undefined },
    { id: (await call(app, 'GET', '/admin/consumers/bob')).json().id, name: 'bob', rateLimit: null, keys: [], basic: null, createdAt: undefined, updatedAt: undefined }
  ])
  const text = JSON.stringify(document)
  t.notOk(text.includes(key.key.slice(9)))
  t.notOk(text.includes('scrypt$'))
})

t.test('PUT /admin/config: consumers that stay keep their credentials, omitted ones are deleted, new ones need no secrets', async (t) => {
  const upstream = await startUpstream(t)
  const { app, url } = await startGateway(t)
  await createRoute(app, { name: 'api', path: '/api', targets: [{ url: upstream.url, weight: 1 }], auth: { type: 'api-key', header: 'x-api-key' } })
  const alice = await createConsumer(app, 'alice')
  const aliceKey = await createApiKey(app, 'alice')
  await call(app, 'PUT', '/admin/consumers/alice/basic', { username: 'alice', password: 'correct horse' })
  await createConsumer(app, 'bob')
  const bobKey = await createApiKey(app, 'bob')

  const document = (await call(app, 'GET', '/admin/config')).json()
  document.consumers = [
    { name: 'alice', rateLimit: { max: 7, windowMs: 2000 } },
    { name: 'carol', rateLimit: null, keys: [{ id: 'made-up', prefix: 'gh_xxxxxx' }], basic: { username: 'carol' } }
  ]
  const put = await call(app, 'PUT', '/admin/config', document)
  t.equal(put.statusCode, 200, put.body)

  const consumers = (await call(app, 'GET', '/admin/consumers')).json().items
  t.same(consumers.map((c: { name: string }) => c.name), ['alice', 'carol'])
  t.equal(consumers[0].id, alice.id, 'alice kept her id')
  t.same(consumers[0].rateLimit, { max: 7, windowMs: 2000 })
  t.equal((await call(app, 'GET', '/admin/consumers/alice/keys')).json().total, 1)
  t.equal((await call(app, 'GET', '/admin/consumers/alice/basic')).json().username, 'alice')
  t.equal((await call(app, 'GET', '/admin/consumers/carol/keys')).json().total, 0, 'references in the document create nothing')
  t.equal((await call(app, 'GET', '/admin/consumers/carol/basic')).statusCode, 404)

  t.equal((await httpRequest(`${url}/api`, { headers: { 'x-api-key': aliceKey.key } })).statusCode, 200, 'alice\'s key still works')
  t.equal((await httpRequest(`${url}/api`, { headers: { 'x-api-key': bobKey.key } })).statusCode, 401, 'bob was deleted with his key')
  t.equal((await app.db.selectFrom('api_keys').selectAll().execute()).length, 1)
})

t.test('PUT /admin/config with duplicate consumer names changes nothing and names the field', async (t) => {
  const app = await buildTestApp(t)
  await createConsumer(app, 'alice')
  const document = (await call(app, 'GET', '/admin/config')).json()
  document.consumers = [{ name: 'zed', rateLimit: null }, { name: 'zed', rateLimit: null }]
  const put = await call(app, 'PUT', '/admin/config', document)
  t.equal(put.statusCode, 400)
  t.equal(put.json().message, 'body/consumers/1/name "zed" appears more than once')
  const bad = await call(app, 'PUT', '/admin/config', { ...document, consumers: [{ name: 'x', rateLimit: null, key: 'gh_secret' }] })
  t.equal(bad.statusCode, 400)
  t.match(bad.json().message, /^body\/consumers\/0\/key is not a known field/)
  t.same((await call(app, 'GET', '/admin/consumers')).json().items.map((c: { name: string }) => c.name), ['alice'])
})
