import t from 'tap'
import { SignJWT } from 'jose'
import { RevisionCodec } from '../../lib/revision-codec.js'
import { adminHeaders, httpRequest, postgresDatabase, startGateway, startUpstream, tempDir, type TestContext } from '../helper.js'

const JWT_SECRET = 'the-first-hs256-secret-of-32-chars!!'
const OTHER_SECRET = 'a-second-hs256-secret-of-32-chars!!!'

async function jwt (secret: string): Promise<string> {
  return await new SignJWT({ sub: 'alice' }).setProtectedHeader({ alg: 'HS256' }).setExpirationTime('1m').sign(new TextEncoder().encode(secret))
}

type Tap = TestContext & Pick<typeof t, 'test' | 'equal' | 'not' | 'same' | 'match' | 'notMatch' | 'ok'>

async function gateway (t: Tap, databaseUrl: string | undefined, env: Record<string, string> = {}) {
  const { app, url } = await startGateway(t, { databaseUrl, env })
  const admin = async (method: string, path: string, body?: unknown, headers: Record<string, string> = {}) => {
    const response = await httpRequest(`${url}${path}`, {
      method: method as 'GET',
      headers: { ...adminHeaders, ...(body === undefined ? {} : { 'content-type': 'application/json' }), ...headers },
      body: body === undefined ? undefined : JSON.stringify(body)
    })
    return response
  }
  return { app, url, admin }
}

/** Every test of this file, once on SQLite and once on PostgreSQL. */
function onBothDatabases (name: string, fn: (t: Tap, databaseUrl: string | undefined) => Promise<void>): void {
  t.test(`${name} (SQLite)`, async (t) => { await fn(t as unknown as Tap, undefined) })
  t.test(`${name} (PostgreSQL)`, async (t) => {
    const databaseUrl = await postgresDatabase(t)
    if (databaseUrl === null) return void t.plan(0, 'PostgreSQL unreachable at 127.0.0.1:5432 (set GATEHOUSE_REQUIRE_SERVICES=1 to fail instead)')
    await fn(t as unknown as Tap, databaseUrl)
  })
}

onBothDatabases('every change is a revision: listed newest first, paginated, each with its document; diffs between them', async (t, databaseUrl) => {
  const upstream = await startUpstream(t)
  const { admin } = await gateway(t, databaseUrl)
  t.equal((await admin('GET', '/admin/status')).json().configRevision, 0, 'no revision before the first change')

  t.equal((await admin('POST', '/admin/routes', { name: 'orders', path: '/orders', targets: [{ url: upstream.url }], timeoutMs: 5000 })).statusCode, 201)
  t.equal((await admin('PATCH', '/admin/routes/orders', { timeoutMs: 8000 })).statusCode, 200)
  t.equal((await admin('POST', '/admin/consumers', { name: 'alice' })).statusCode, 201)
  const key = (await admin('POST', '/admin/consumers/alice/keys')).json()
  t.equal((await admin('POST', '/admin/filters', { action: 'deny', ip: '203.0.113.7' })).statusCode, 201)
  t.equal((await admin('DELETE', '/admin/routes/orders')).statusCode, 204)

  const list = await admin('GET', '/admin/config/revisions')
  t.equal(list.statusCode, 200)
  t.equal(list.json().total, 6)
  t.same(list.json().items.map((item: { revision: number }) => item.revision), [6, 5, 4, 3, 2, 1], 'newest first')
  t.same(list.json().items.map((item: { summary: unknown }) => item.summary), [
    { created: 0, updated: 0, deleted: 1 },
    { created: 1, updated: 0, deleted: 0 },
    { created: 0, updated: 1, deleted: 0 },
    { created: 1, updated: 0, deleted: 0 },
    { created: 0, updated: 1, deleted: 0 },
    { created: 1, updated: 0, deleted: 0 }
  ])
  for (const item of list.json().items) {
    t.equal(item.source, 'admin-api')
    t.equal(item.actor, 'admin-token')
    t.match(item.ts, /^\d{4}-\d\d-\d\dT/)
  }
  const page = await admin('GET', '/admin/config/revisions?limit=2&offset=1')
  t.same(page.json().items.map((item: { revision: number }) => item.revision), [5, 4])
  t.equal(page.json().total, 6)
  t.equal((await admin('GET', '/admin/config/revisions?limit=0')).statusCode, 400)

  const second = await admin('GET', '/admin/config/revisions/2')
  t.equal(second.statusCode, 200)
  t.equal(second.json().revision, 2)
  t.equal(second.json().routes[0].timeoutMs, 8000, 'the document as it was at revision 2')
  t.same(second.json().consumers, [])
  const fourth = await admin('GET', '/admin/config/revisions/4')
  t.equal(fourth.json().consumers[0].keys[0].prefix, key.prefix, 'keys by reference')
  t.notMatch(fourth.body, key.key, 'never the key')
  t.notMatch(fourth.body, /keyHash|key_hash|passwordHash/, 'never a hash')
  t.equal((await admin('GET', '/admin/config/revisions/99')).statusCode, 404)
  t.equal((await admin('GET', '/admin/config/revisions/abc')).statusCode, 400)

  const diff = await admin('GET', '/admin/config/diff?from=1&to=2')
  t.equal(diff.statusCode, 200)
  t.same(diff.json().summary, { creating: 0, updating: 1, deleting: 0 })
  t.same(diff.json().changes.updating.map((entry: { kind: string, name: string, old: { timeoutMs: number }, new: { timeoutMs: number } }) =>
    [entry.kind, entry.name, entry.old.timeoutMs, entry.new.timeoutMs]), [['route', 'orders', 5000, 8000]])
  const toNewest = await admin('GET', '/admin/config/diff?from=2')
  t.same(toNewest.json().summary, { creating: 2, updating: 0, deleting: 1 }, '`to` defaults to the newest revision')
  t.same(toNewest.json().changes.creating.map((entry: { kind: string, name: string }) => `${entry.kind} ${entry.name}`), ['filter deny 203.0.113.7 any-path', 'consumer alice'])
  t.same(toNewest.json().changes.deleting.map((entry: { kind: string, name: string }) => `${entry.kind} ${entry.name}`), ['route orders'])
  t.same((await admin('GET', '/admin/config/diff?from=0&to=1')).json().summary, { creating: 1, updating: 0, deleting: 0 }, 'from=0: the empty configuration')
  t.equal((await admin('GET', '/admin/config/diff?from=77')).statusCode, 404)
  t.equal((await admin('GET', '/admin/config/diff')).statusCode, 400, 'from is required')

  t.equal((await admin('GET', '/admin/status')).json().configRevision, 6)
  t.equal((await admin('POST', '/admin/reload')).json().configRevision, 6)
})

onBothDatabases('a change that changes nothing, or fails, writes no revision', async (t, databaseUrl) => {
  const upstream = await startUpstream(t)
  const { admin } = await gateway(t, databaseUrl)
  t.equal((await admin('POST', '/admin/routes', { name: 'users', path: '/users', targets: [{ url: upstream.url }] })).statusCode, 201)
  const count = async () => (await admin('GET', '/admin/config/revisions')).json().total
  t.equal(await count(), 1)

  t.equal((await admin('POST', '/admin/routes', { name: 'users', path: '/other', targets: [{ url: upstream.url }] })).statusCode, 409)
  // Fails inside the transaction, after the other sections were replaced: the whole change rolls back.
  const failing = await admin('PUT', '/admin/config', { routes: [{ name: 'signed', path: '/s', targets: [{ url: upstream.url }], auth: { type: 'jwt' } }], consumers: [{ name: 'bob' }] })
  t.equal(failing.statusCode, 400)
  t.equal(await count(), 1, 'no revision for changes that failed')
  t.same((await admin('GET', '/admin/consumers')).json().total, 0, 'and nothing of them stored')

  const document = (await admin('GET', '/admin/config')).json()
  t.equal((await admin('PUT', '/admin/config', document)).statusCode, 200)
  t.equal(await count(), 1, 'the same document again: nothing changed, no revision')
})

onBothDatabases('PUT /admin/config records one config-import revision; dryRun answers the diff and changes nothing', async (t, databaseUrl) => {
  const upstream = await startUpstream(t)
  const { admin } = await gateway(t, databaseUrl)
  t.equal((await admin('POST', '/admin/routes', { name: 'orders', path: '/orders', targets: [{ url: upstream.url }], timeoutMs: 5000 })).statusCode, 201)
  t.equal((await admin('POST', '/admin/routes', { name: 'legacy', path: '/legacy', targets: [{ url: upstream.url }] })).statusCode, 201)
  const document = {
    routes: [
      { name: 'orders', path: '/orders', targets: [{ url: upstream.url }], timeoutMs: 8000 },
      { name: 'users', path: '/users', targets: [{ url: upstream.url }] }
    ],
    filters: [{ action: 'deny', path: '/private' }]
  }
  const dry = await admin('PUT', '/admin/config?dryRun=true', document)
  t.equal(dry.statusCode, 200)
  t.same(dry.json().summary, { creating: 2, updating: 1, deleting: 1 })
  t.same(dry.json().changes.updating[0].old.timeoutMs, 5000)
  t.same(dry.json().changes.updating[0].new.timeoutMs, 8000)
  t.equal(dry.headers.etag, '"config-2"', 'the ETag the diff was computed against')
  t.equal((await admin('GET', '/admin/routes')).json().total, 2, 'nothing changed')
  t.equal((await admin('GET', '/admin/config/revisions')).json().total, 2, 'no revision')
  t.equal((await admin('PUT', '/admin/config?dryRun=maybe', document)).statusCode, 400)
  t.equal((await admin('PUT', '/admin/config?dryRun=true', { routes: [{ name: 'x' }] })).statusCode, 400, 'a dry run validates too')

  const applied = await admin('PUT', '/admin/config', document)
  t.equal(applied.statusCode, 200)
  t.equal(applied.headers.etag, '"config-3"')
  const newest = (await admin('GET', '/admin/config/revisions')).json().items[0]
  t.same(newest.summary, { created: 2, updated: 1, deleted: 1 })
  t.equal(newest.source, 'config-import')
  t.same((await admin('PUT', '/admin/config?dryRun=true', document)).json().summary, { creating: 0, updating: 0, deleting: 0 }, 'applied: nothing left to change')
})

onBothDatabases('rollback restores routes, consumers, keys, basic credentials and JWT secrets, which serve traffic again', async (t, databaseUrl) => {
  const upstream = await startUpstream(t)
  const { admin, url } = await gateway(t, databaseUrl)
  const proxied = async (path: string, headers: Record<string, string> = {}) => (await httpRequest(`${url}${path}`, { headers })).statusCode
  t.equal((await admin('POST', '/admin/routes', { name: 'keyed', path: '/keyed', targets: [{ url: upstream.url }], auth: { type: 'api-key' } })).statusCode, 201)
  t.equal((await admin('POST', '/admin/routes', { name: 'basic', path: '/basic', targets: [{ url: upstream.url }], auth: { type: 'basic' } })).statusCode, 201)
  t.equal((await admin('POST', '/admin/routes', { name: 'signed', path: '/signed', targets: [{ url: upstream.url }], auth: { type: 'jwt', secret: JWT_SECRET } })).statusCode, 201)
  t.equal((await admin('POST', '/admin/consumers', { name: 'alice' })).statusCode, 201)
  const key = (await admin('POST', '/admin/consumers/alice/keys')).json().key as string
  t.equal((await admin('PUT', '/admin/consumers/alice/basic', { username: 'alice', password: 'correct horse' })).statusCode, 200)
  const basicAuth = { authorization: `Basic ${Buffer.from('alice:correct horse').toString('base64')}` }
  const revision = (await admin('GET', '/admin/status')).json().configRevision
  t.equal(revision, 6)
  t.equal(await proxied('/keyed', { 'x-api-key': key }), 200)
  t.equal(await proxied('/basic', basicAuth), 200)
  t.equal(await proxied('/signed', { authorization: `Bearer ${await jwt(JWT_SECRET)}` }), 200)

  // Everything goes: the consumer with its credentials, a route, the JWT secret rotated; a new key appears.
  t.equal((await admin('DELETE', '/admin/consumers/alice')).statusCode, 204)
  t.equal((await admin('DELETE', '/admin/routes/keyed')).statusCode, 204)
  t.equal((await admin('PATCH', '/admin/routes/signed', { auth: { type: 'jwt', secret: OTHER_SECRET } })).statusCode, 200)
  t.equal((await admin('POST', '/admin/consumers', { name: 'mallory' })).statusCode, 201)
  const laterKey = (await admin('POST', '/admin/consumers/mallory/keys')).json().key as string
  t.equal(await proxied('/keyed', { 'x-api-key': key }), 404)
  t.equal(await proxied('/basic', basicAuth), 401)
  t.equal(await proxied('/signed', { authorization: `Bearer ${await jwt(JWT_SECRET)}` }), 401)
  const secretOnly = (await admin('GET', '/admin/config/revisions?limit=3')).json().items[2]
  t.same(secretOnly.summary, { created: 0, updated: 1, deleted: 0 }, 'a new JWT secret alone is an update')

  const rolled = await admin('POST', '/admin/config/rollback', { revision })
  t.equal(rolled.statusCode, 200)
  t.same(rolled.json(), { revision: 12, rolledBackTo: revision, summary: { created: 2, updated: 1, deleted: 1 } })
  const newest = (await admin('GET', '/admin/config/revisions?limit=1')).json().items[0]
  t.equal(newest.source, 'rollback')
  t.equal(newest.revision, 12)

  t.equal(await proxied('/keyed', { 'x-api-key': key }), 200, 'the route and the key that existed at the revision work again')
  t.equal(await proxied('/basic', basicAuth), 200, 'the basic password works again')
  t.equal(await proxied('/signed', { authorization: `Bearer ${await jwt(JWT_SECRET)}` }), 200, 'the JWT secret of then is back')
  t.equal(await proxied('/signed', { authorization: `Bearer ${await jwt(OTHER_SECRET)}` }), 401)
  t.equal(await proxied('/keyed', { 'x-api-key': laterKey }), 401, 'a key made after the revision is gone with its consumer')
  t.same((await admin('GET', '/admin/config/diff?from=6&to=12')).json().summary, { creating: 0, updating: 0, deleting: 0 }, 'the state of then, exactly')

  t.equal((await admin('POST', '/admin/config/rollback', { revision: 999 })).statusCode, 404)
  t.equal((await admin('POST', '/admin/config/rollback', { revision: 'one' })).statusCode, 400)
  t.equal((await admin('POST', '/admin/config/rollback', {})).statusCode, 400)
})

onBothDatabases('a rollback whose document is invalid today is refused whole; nothing changes', async (t, postgresUrl) => {
  const upstream = await startUpstream(t)
  const databaseUrl = postgresUrl ?? `sqlite:${tempDir(t)}/shared.db`
  const { app, admin } = await gateway(t, databaseUrl)
  const other = await gateway(t, databaseUrl)
  t.equal((await admin('POST', '/admin/routes', { name: 'a', path: '/a', targets: [{ url: upstream.url }] })).statusCode, 201)
  t.equal((await admin('POST', '/admin/routes', { name: 'b', path: '/b', targets: [{ url: upstream.url }] })).statusCode, 201)
  t.equal((await admin('DELETE', '/admin/routes/a')).statusCode, 204)
  // Revision 2 as a stricter future release would see it: its route b no longer passes validation.
  const codec = new RevisionCodec(null, null)
  const { blob_id: blobId } = await app.db.selectFrom('config_revision_sections').select('blob_id').where('revision', '=', 2).where('section', '=', 'routes').executeTakeFirstOrThrow()
  const blob = await app.db.selectFrom('config_revision_blobs').select('document').where('id', '=', blobId).executeTakeFirstOrThrow()
  const section = codec.unpack(blob.document) as { items: Array<{ name: string, path: string }> }
  section.items[1].path = 'no-leading-slash'
  await app.db.updateTable('config_revision_blobs').set({ document: codec.pack(section) }).where('id', '=', blobId).execute()
  // Asked of the other instance, which has not read revision 2 yet (an instance keeps the revisions it read).

  const refused = await other.admin('POST', '/admin/config/rollback', { revision: 2 })
  t.equal(refused.statusCode, 400)
  t.match(refused.json().message, /^revision 2\/routes\/1\/path /, 'names the revision and the field')
  t.same((await admin('GET', '/admin/routes')).json().items.map((route: { name: string }) => route.name), ['b'], 'nothing changed')
  t.equal((await admin('GET', '/admin/config/revisions')).json().total, 3, 'no revision')
})

onBothDatabases('ETag and If-Match on routes, consumers, filters and the whole configuration', async (t, databaseUrl) => {
  const upstream = await startUpstream(t)
  const { admin } = await gateway(t, databaseUrl)
  const created = await admin('POST', '/admin/routes', { name: 'orders', path: '/orders', targets: [{ url: upstream.url }] })
  const got = await admin('GET', '/admin/routes/orders')
  const etag = got.headers.etag as string
  t.match(etag, /^"[A-Za-z0-9_-]{27}"$/)
  t.equal(created.headers.etag, etag, 'the create answer carries the same tag')
  t.equal((await admin('GET', '/admin/routes/orders')).headers.etag, etag, 'stable while unchanged')

  const patched = await admin('PATCH', '/admin/routes/orders', { retries: 2 }, { 'if-match': etag })
  t.equal(patched.statusCode, 200)
  const current = patched.headers.etag as string
  t.not(current, etag)
  t.equal((await admin('GET', '/admin/routes/orders')).headers.etag, current)
  const stale = await admin('PUT', '/admin/routes/orders', { name: 'orders', path: '/x', targets: [{ url: upstream.url }] }, { 'if-match': etag })
  t.equal(stale.statusCode, 412)
  t.equal(stale.headers.etag, current, 'the 412 carries the current tag')
  t.match(stale.json(), { statusCode: 412, error: 'Precondition Failed' })
  t.equal((await admin('DELETE', '/admin/routes/orders', undefined, { 'if-match': etag })).statusCode, 412)
  t.equal((await admin('DELETE', '/admin/routes/orders', undefined, { 'if-match': `W/${current}` })).statusCode, 412, 'a weak tag never matches')
  t.equal((await admin('PATCH', '/admin/routes/orders', { retries: 3 })).statusCode, 200, 'without If-Match the last writer wins')
  t.equal((await admin('PATCH', '/admin/routes/orders', { retries: 1 }, { 'if-match': '*' })).statusCode, 200, '* matches what exists')
  const now = (await admin('GET', '/admin/routes/orders')).headers.etag as string
  t.equal((await admin('DELETE', '/admin/routes/orders', undefined, { 'if-match': `"nope", ${now}` })).statusCode, 204, 'any tag of a list')

  const consumer = await admin('POST', '/admin/consumers', { name: 'alice' })
  const consumerTag = (await admin('GET', '/admin/consumers/alice')).headers.etag as string
  t.equal(consumer.headers.etag, consumerTag)
  t.equal((await admin('PATCH', '/admin/consumers/alice', { rateLimit: { max: 5 } }, { 'if-match': consumerTag })).statusCode, 200)
  t.equal((await admin('PUT', '/admin/consumers/alice', { name: 'alice' }, { 'if-match': consumerTag })).statusCode, 412)
  t.equal((await admin('DELETE', '/admin/consumers/alice', undefined, { 'if-match': consumerTag })).statusCode, 412)

  const bob = (await admin('POST', '/admin/consumers', { name: 'bob' })).json()
  const key = (await admin('POST', '/admin/consumers/bob/keys')).json()
  const keyTag = (await admin('GET', `/admin/consumers/bob/keys/${key.id}`)).headers.etag as string
  t.match(keyTag, /^"[A-Za-z0-9_-]{27}"$/, 'an API key has an ETag')
  t.equal((await admin('DELETE', `/admin/consumers/bob/keys/${key.id}`, undefined, { 'if-match': '"other"' })).statusCode, 412)
  t.equal((await admin('DELETE', `/admin/consumers/${bob.id}/keys/${key.id}`, undefined, { 'if-match': keyTag })).statusCode, 204)
  const setBasic = await admin('PUT', '/admin/consumers/bob/basic', { username: 'bob', password: 'first password' })
  const basicTag = (await admin('GET', '/admin/consumers/bob/basic')).headers.etag as string
  t.equal(setBasic.headers.etag, basicTag)
  t.equal((await admin('PUT', '/admin/consumers/bob/basic', { username: 'bob', password: 'second password' }, { 'if-match': basicTag })).statusCode, 200)
  t.equal((await admin('DELETE', '/admin/consumers/bob/basic', undefined, { 'if-match': basicTag })).statusCode, 412, 'basic credentials changed since')

  const filter = (await admin('POST', '/admin/filters', { action: 'deny', ip: '192.0.2.1' })).json()
  const filterTag = (await admin('GET', `/admin/filters/${filter.id}`)).headers.etag as string
  t.equal((await admin('DELETE', `/admin/filters/${filter.id}`, undefined, { 'if-match': '"other"' })).statusCode, 412)
  t.equal((await admin('DELETE', `/admin/filters/${filter.id}`, undefined, { 'if-match': filterTag })).statusCode, 204)

  const config = await admin('GET', '/admin/config')
  const configTag = config.headers.etag as string
  t.match(configTag, /^"config-\d+"$/)
  const document = config.json()
  t.equal((await admin('PUT', '/admin/config', { ...document, filters: [{ action: 'deny', path: '/a' }] }, { 'if-match': configTag })).statusCode, 200)
  const staleConfig = await admin('PUT', '/admin/config', document, { 'if-match': configTag })
  t.equal(staleConfig.statusCode, 412)
  t.equal(staleConfig.headers.etag, (await admin('GET', '/admin/config')).headers.etag)
})

onBothDatabases('two concurrent edits with the same If-Match: exactly one wins, the other gets 412', async (t, databaseUrl) => {
  const upstream = await startUpstream(t)
  const { admin } = await gateway(t, databaseUrl)
  await admin('POST', '/admin/routes', { name: 'orders', path: '/orders', targets: [{ url: upstream.url }] })
  for (let round = 0; round < 3; round++) {
    const etag = (await admin('GET', '/admin/routes/orders')).headers.etag as string
    const answers = await Promise.all([1, 2, 3, 4].map((retries) => admin('PATCH', '/admin/routes/orders', { retries }, { 'if-match': etag })))
    t.same(answers.map((answer) => answer.statusCode).sort(), [200, 412, 412, 412], `round ${round}: one winner`)
  }
  const configTag = (await admin('GET', '/admin/config')).headers.etag as string
  const documents = ['/a', '/b'].map((path) => ({ routes: [{ name: 'orders', path, targets: [{ url: upstream.url }] }] }))
  const answers = await Promise.all(documents.map((document) => admin('PUT', '/admin/config', document, { 'if-match': configTag })))
  t.same(answers.map((answer) => answer.statusCode).sort(), [200, 412], 'PUT /admin/config: one winner')
})

t.test('SECRET_KEY seals the secrets a revision keeps; a rollback needs the same key', async (t) => {
  const upstream = await startUpstream(t)
  const databaseUrl = `sqlite:${tempDir(t)}/shared.db`
  const { app, admin, url } = await gateway(t as unknown as Tap, databaseUrl, { SECRET_KEY: 'a-secret-key-of-enough-length' })
  await admin('POST', '/admin/routes', { name: 'keyed', path: '/keyed', targets: [{ url: upstream.url }], auth: { type: 'api-key' } })
  await admin('POST', '/admin/consumers', { name: 'alice' })
  const key = (await admin('POST', '/admin/consumers/alice/keys')).json().key as string
  const hash = (await app.db.selectFrom('api_keys').select('key_hash').executeTakeFirstOrThrow()).key_hash
  const blobs = await app.db.selectFrom('config_revision_blobs').select(['section', 'document', 'secrets']).execute()
  t.ok(blobs.length > 0)
  for (const blob of blobs) {
    t.match(blob.secrets, /^v1\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*$/, `${blob.section}: sealed`)
    t.notMatch(new RevisionCodec(null, null).unpack(blob.document) as object, { items: [{ keys: [{ keyHash: String }] }] })
  }
  t.notMatch(JSON.stringify(blobs), hash, 'no key hash in the clear')
  await admin('DELETE', '/admin/consumers/alice')
  const rolled = await admin('POST', '/admin/config/rollback', { revision: 3 })
  t.equal(rolled.statusCode, 200)
  t.equal((await httpRequest(`${url}/keyed`, { headers: { 'x-api-key': key } })).statusCode, 200, 'the key works again')

  const other = await gateway(t as unknown as Tap, databaseUrl, { SECRET_KEY: 'another-key-of-enough-length' })
  const refused = await other.admin('POST', '/admin/config/rollback', { revision: 2 })
  t.equal(refused.statusCode, 409)
  t.match(refused.json().message, /revision 2 cannot be restored: .*SECRET_KEY/)
})

t.test('CONFIG_REVISIONS_KEEP: only the newest revisions are kept, with the blobs they use', async (t) => {
  const upstream = await startUpstream(t)
  const { app, admin } = await gateway(t as unknown as Tap, undefined, { CONFIG_REVISIONS_KEEP: '3' })
  for (let i = 0; i < 6; i++) await admin('POST', '/admin/routes', { name: `r${i}`, path: `/r${i}`, targets: [{ url: upstream.url }] })
  const list = (await admin('GET', '/admin/config/revisions')).json()
  t.equal(list.total, 3)
  t.same(list.items.map((item: { revision: number }) => item.revision), [6, 5, 4])
  t.equal((await admin('GET', '/admin/config/revisions/3')).statusCode, 404)
  t.equal((await admin('POST', '/admin/config/rollback', { revision: 2 })).statusCode, 404)
  const used = await app.db.selectFrom('config_revision_sections').select('blob_id').distinct().execute()
  const stored = await app.db.selectFrom('config_revision_blobs').select('id').execute()
  t.equal(stored.length, used.length, 'no blob left that no revision uses')
  t.equal((await admin('POST', '/admin/config/rollback', { revision: 4 })).statusCode, 200)
  t.same((await admin('GET', '/admin/routes')).json().items.map((route: { name: string }) => route.name), ['r0', 'r1', 'r2', 'r3'])
})
