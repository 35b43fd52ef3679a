import path from 'node:path'
import t from 'tap'
import { ADMIN_TOKEN, adminHeaders, buildTestApp, tempDir } from '../helper.js'
import { fingerprintOf, makeCertificate, servedCertificate, startTlsGateway } from '../tls-helper.js'

/** The admin API of /admin/certificates and the certificate each handshake gets (docs/tls.md). */

t.test('POST answers the derived fields and never the key; GET by id and by name; list', async (t) => {
  const { app } = await startTlsGateway(t)
  const api = makeCertificate(t, { cn: 'api.example.com' })
  const created = await app.inject({ method: 'POST', url: '/admin/certificates', headers: adminHeaders, payload: { name: 'api', cert: api.cert, key: api.key, snis: ['API.example.com', '*.example.org'] } })
  t.equal(created.statusCode, 201, created.body)
  const body = created.json()
  t.equal(created.headers.location, `/admin/certificates/${body.id as string}`)
  t.same(body.snis, ['api.example.com', '*.example.org'], 'SNIs are stored lower-case')
  t.equal(body.subject, 'CN=api.example.com')
  t.equal(body.fingerprint, fingerprintOf(api.cert))
  t.ok(Date.parse(body.notAfter) > Date.now() + 29 * 86_400_000, 'notAfter read from the certificate')
  t.ok(Date.parse(body.notBefore) <= Date.now())
  t.notOk('key' in body, 'no key in the answer')
  t.notMatch(created.body, /PRIVATE KEY/)

  for (const url of [`/admin/certificates/${body.id as string}`, '/admin/certificates/api']) {
    const one = await app.inject({ url, headers: adminHeaders })
    t.equal(one.statusCode, 200)
    t.notMatch(one.body, /PRIVATE KEY/)
    t.equal(one.json().fingerprint, body.fingerprint)
  }
  const list = await app.inject({ url: '/admin/certificates', headers: adminHeaders })
  t.equal(list.json().total, 1)
  t.notMatch(list.body, /PRIVATE KEY/)
  t.equal((await app.inject({ url: '/admin/certificates/nope', headers: adminHeaders })).statusCode, 404)
  t.equal((await app.inject({ url: '/admin/certificates', headers: { authorization: 'Bearer wrong-token-0123456789' } })).statusCode, 401)
})

t.test('bad certificates are 400 naming the field; taken names and SNIs are 409', async (t) => {
  const app = await buildTestApp(t)
  const a = makeCertificate(t, { cn: 'a.example.com' })
  const b = makeCertificate(t, { cn: 'b.example.com', type: 'rsa' })
  const post = (payload: object) => app.inject({ method: 'POST', url: '/admin/certificates', headers: adminHeaders, payload })
  const cases: Array<[string, object, RegExp]> = [
    ['PEM that is no certificate', { name: 'x', cert: 'hello', key: a.key }, /body\/cert: is not a PEM certificate/],
    ['broken PEM body', { name: 'x', cert: '-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n', key: a.key }, /body\/cert: does not parse/],
    ['key that is not PEM', { name: 'x', cert: a.cert, key: 'nope' }, /body\/key: is not a PEM private key/],
    ['key of another certificate', { name: 'x', cert: a.cert, key: b.key }, /body\/key: does not match the certificate/],
    ['two-label wildcard', { name: 'x', cert: a.cert, key: a.key, snis: ['*.*.example.com'] }, /body\/snis\/0/],
    ['wildcard in the middle', { name: 'x', cert: a.cert, key: a.key, snis: ['a.*.example.com'] }, /body\/snis\/0/],
    ['bare wildcard', { name: 'x', cert: a.cert, key: a.key, snis: ['*'] }, /body\/snis\/0/],
    ['IP address', { name: 'x', cert: a.cert, key: a.key, snis: ['127.0.0.1'] }, /body\/snis\/0/],
    ['port', { name: 'x', cert: a.cert, key: a.key, snis: ['a.example.com:443'] }, /body\/snis\/0/],
    ['missing key', { name: 'x', cert: a.cert }, /key/],
    ['bad name', { name: 'Bad Name', cert: a.cert, key: a.key }, /name/]
  ]
  for (const [what, payload, message] of cases) {
    const response = await post(payload)
    t.equal(response.statusCode, 400, `${what}: ${response.body}`)
    t.match(response.json().message, message, what)
  }
  t.equal((await post({ name: 'a', cert: a.cert, key: a.key, snis: ['a.example.com', '*.example.net'] })).statusCode, 201)
  const takenSni = await post({ name: 'b', cert: b.cert, key: b.key, snis: ['A.example.com'] })
  t.equal(takenSni.statusCode, 409)
  t.match(takenSni.json().message, /SNI "a.example.com" is already taken by certificate "a"/)
  t.equal((await post({ name: 'b', cert: b.cert, key: b.key, snis: ['*.example.net'] })).statusCode, 409, 'a wildcard is taken too')
  t.equal((await post({ name: 'a', cert: b.cert, key: b.key })).statusCode, 409, 'name taken')
  t.equal((await post({ name: 'b', cert: b.cert, key: b.key, snis: ['b.example.com'] })).statusCode, 201, 'an RSA certificate')
  // PUT may keep its own SNIs, not take another's.
  const put = await app.inject({ method: 'PUT', url: '/admin/certificates/b', headers: adminHeaders, payload: { name: 'b', cert: b.cert, key: b.key, snis: ['b.example.com', 'a.example.com'] } })
  t.equal(put.statusCode, 409)
  const keep = await app.inject({ method: 'PUT', url: '/admin/certificates/b', headers: adminHeaders, payload: { name: 'b', cert: b.cert, key: b.key, snis: ['b.example.com'] } })
  t.equal(keep.statusCode, 200, keep.body)
  t.equal((await app.inject({ method: 'DELETE', url: '/admin/certificates/b', headers: adminHeaders })).statusCode, 204)
  t.equal((await app.inject({ method: 'DELETE', url: '/admin/certificates/b', headers: adminHeaders })).statusCode, 404)
  t.equal((await post({ name: 'c', cert: b.cert, key: b.key, snis: ['b.example.com'] })).statusCode, 201, 'a deleted certificate frees its SNIs')
})

t.test('the handshake picks the exact SNI, then a one-label wildcard, then the default (also without SNI)', async (t) => {
  const { app, tlsPort, defaultCertificate } = await startTlsGateway(t)
  const exact = makeCertificate(t, { cn: 'api.example.com' })
  const wildcard = makeCertificate(t, { cn: '*.example.com' })
  const post = async (payload: object): Promise<void> => {
    const response = await app.inject({ method: 'POST', url: '/admin/certificates', headers: adminHeaders, payload })
    t.equal(response.statusCode, 201, response.body)
  }
  await post({ name: 'exact', cert: exact.cert, key: exact.key, snis: ['api.example.com'] })
  await post({ name: 'wild', cert: wildcard.cert, key: wildcard.key, snis: ['*.example.com'] })
  const served = async (servername?: string): Promise<string> => (await servedCertificate(tlsPort, servername)).fingerprint256
  t.equal(await served('api.example.com'), fingerprintOf(exact.cert), 'exact beats wildcard')
  t.equal(await served('API.Example.COM'), fingerprintOf(exact.cert), 'SNI compared without case')
  t.equal(await served('www.example.com'), fingerprintOf(wildcard.cert), 'one-label wildcard')
  t.equal(await served('a.b.example.com'), fingerprintOf(defaultCertificate.cert), 'a wildcard covers one label only')
  t.equal(await served('example.com'), fingerprintOf(defaultCertificate.cert), 'nor the bare domain')
  t.equal(await served('other.test'), fingerprintOf(defaultCertificate.cert), 'unknown name: default')
  t.equal(await served(undefined), fingerprintOf(defaultCertificate.cert), 'no SNI: default')

  // Thousands of random names build nothing and cache nothing.
  const table = app.certificates.sniTable as NonNullable<typeof app.certificates.sniTable>
  const built = table.contextsBuilt
  for (let i = 0; i < 2000; i++) table.select(`random-${i}.nowhere.test`)
  await app.configChanges.refresh()
  await app.inject({ method: 'POST', url: '/admin/reload', headers: adminHeaders })
  t.equal(table.contextsBuilt, built, 'no SecureContext built per handshake or for an unchanged certificate')

  // Rotation: the next handshake gets the new certificate, without a restart.
  const rotated = makeCertificate(t, { cn: 'api.example.com' })
  const put = await app.inject({ method: 'PUT', url: '/admin/certificates/exact', headers: adminHeaders, payload: { name: 'exact', cert: rotated.cert, key: rotated.key, snis: ['api.example.com'] } })
  t.equal(put.statusCode, 200, put.body)
  t.equal(await served('api.example.com'), fingerprintOf(rotated.cert))
  t.equal(table.contextsBuilt, built + 1, 'one context built for the new version')
  t.equal((await app.inject({ method: 'DELETE', url: '/admin/certificates/exact', headers: adminHeaders })).statusCode, 204)
  t.equal(await served('api.example.com'), fingerprintOf(wildcard.cert), 'deleted: the wildcard takes over')
})

t.test('a second instance on the same database serves a rotation within 1 s', async (t) => {
  const databaseUrl = `sqlite:${path.join(tempDir(t), 'shared.db')}`
  const first = await startTlsGateway(t, { databaseUrl })
  const second = await startTlsGateway(t, { databaseUrl, defaultCertificate: first.defaultCertificate })
  const one = makeCertificate(t, { cn: 'svc.example.com' })
  const created = await first.app.inject({ method: 'POST', url: '/admin/certificates', headers: adminHeaders, payload: { name: 'svc', cert: one.cert, key: one.key, snis: ['svc.example.com'] } })
  t.equal(created.statusCode, 201)
  const waitFor = async (fingerprint: string): Promise<number> => {
    const started = Date.now()
    while ((await servedCertificate(second.tlsPort, 'svc.example.com')).fingerprint256 !== fingerprint) {
      if (Date.now() - started > 1000) throw new Error('second instance did not follow within 1 s')
      await new Promise((resolve) => setTimeout(resolve, 20))
    }
    return Date.now() - started
  }
  t.ok(await waitFor(fingerprintOf(one.cert)) <= 1000)
  const two = makeCertificate(t, { cn: 'svc.example.com' })
  await first.app.inject({ method: 'PUT', url: '/admin/certificates/svc', headers: adminHeaders, payload: { name: 'svc', cert: two.cert, key: two.key, snis: ['svc.example.com'] } })
  t.ok(await waitFor(fingerprintOf(two.cert)) <= 1000, 'rotation seen by the other instance')
})

t.test('keys are sealed with SECRET_KEY, in clear without it (and still served after SECRET_KEY is set)', async (t) => {
  const databaseUrl = `sqlite:${path.join(tempDir(t), 'keys.db')}`
  const cert = makeCertificate(t, { cn: 'k.example.com' })
  const sealed = await buildTestApp(t, { databaseUrl, env: { SECRET_KEY: 'a-secret-key-of-some-length' } })
  await sealed.inject({ method: 'POST', url: '/admin/certificates', headers: adminHeaders, payload: { name: 'sealed', cert: cert.cert, key: cert.key } })
  const row = await sealed.db.selectFrom('certificates').select('key').where('name', '=', 'sealed').executeTakeFirstOrThrow()
  t.match(row.key, /^v1\.[\w-]+\.[\w-]+\.[\w-]+$/, 'sealed format')
  t.notMatch(row.key, /PRIVATE KEY/)

  const other = makeCertificate(t, { cn: 'c.example.com' })
  const clear = await buildTestApp(t)
  await clear.inject({ method: 'POST', url: '/admin/certificates', headers: adminHeaders, payload: { name: 'clear', cert: other.cert, key: other.key } })
  const clearRow = await clear.db.selectFrom('certificates').select('key').where('name', '=', 'clear').executeTakeFirstOrThrow()
  t.match(clearRow.key, /PRIVATE KEY/, 'without SECRET_KEY the key is stored as given')
})

t.test('GET /admin/config exports certificates without keys; PUT keeps the key of a certificate that stays', async (t) => {
  const { app, tlsPort } = await startTlsGateway(t, { env: { SECRET_KEY: 'another-secret-key-0123' } })
  const a = makeCertificate(t, { cn: 'a.example.com' })
  await app.inject({ method: 'POST', url: '/admin/certificates', headers: adminHeaders, payload: { name: 'a', cert: a.cert, key: a.key, snis: ['a.example.com'] } })
  const exported = await app.inject({ url: '/admin/config', headers: adminHeaders })
  t.equal(exported.statusCode, 200)
  const document = exported.json()
  t.equal(document.certificates.length, 1)
  t.notOk('key' in document.certificates[0])
  t.notMatch(exported.body, /PRIVATE KEY/)

  // Round trip: the certificate stays, and keeps its key (it is still served).
  document.certificates[0].snis = ['a.example.com', 'alias.example.com']
  const imported = await app.inject({ method: 'PUT', url: '/admin/config', headers: adminHeaders, payload: document })
  t.equal(imported.statusCode, 200, imported.body)
  t.equal((await servedCertificate(tlsPort, 'alias.example.com')).fingerprint256, fingerprintOf(a.cert))

  const b = makeCertificate(t, { cn: 'b.example.com' })
  const withoutKey = await app.inject({ method: 'PUT', url: '/admin/config', headers: adminHeaders, payload: { ...document, certificates: [...document.certificates, { name: 'b', cert: b.cert, snis: [] }] } })
  t.equal(withoutKey.statusCode, 400)
  t.match(withoutKey.json().message, /certificates\/1\/key is required/)
  const duplicateSni = await app.inject({ method: 'PUT', url: '/admin/config', headers: adminHeaders, payload: { ...document, certificates: [...document.certificates, { name: 'b', cert: b.cert, key: b.key, snis: ['a.example.com'] }] } })
  t.equal(duplicateSni.statusCode, 400)
  t.match(duplicateSni.json().message, /certificates\/1\/snis "a.example.com" is already taken/)
  const mismatch = await app.inject({ method: 'PUT', url: '/admin/config', headers: adminHeaders, payload: { ...document, certificates: [{ ...document.certificates[0], cert: b.cert }] } })
  t.equal(mismatch.statusCode, 400, 'a new certificate under the old name must match the kept key')
  const withKey = await app.inject({ method: 'PUT', url: '/admin/config', headers: adminHeaders, payload: { ...document, certificates: [...document.certificates, { name: 'b', cert: b.cert, key: b.key, snis: ['b.example.com'] }] } })
  t.equal(withKey.statusCode, 200, withKey.body)
  t.equal((await servedCertificate(tlsPort, 'b.example.com')).fingerprint256, fingerprintOf(b.cert))
  t.equal((await app.inject({ method: 'PUT', url: '/admin/config', headers: adminHeaders, payload: { ...document, certificates: [] } })).statusCode, 200)
  t.equal((await app.inject({ url: '/admin/certificates', headers: adminHeaders })).json().total, 0, 'omitted: deleted')
})

t.test('admin changes are audited with the key redacted; expiry in /metrics', async (t) => {
  const app = await buildTestApp(t)
  const a = makeCertificate(t, { cn: 'a.example.com', days: 10 })
  await app.inject({ method: 'POST', url: '/admin/certificates', headers: adminHeaders, payload: { name: 'soon', cert: a.cert, key: a.key } })
  await app.inject({ method: 'DELETE', url: '/admin/certificates/soon', headers: adminHeaders })
  await app.audit.flush()
  const rows = await app.db.selectFrom('audit_log').select(['detail', 'path']).where('event_type', '=', 'admin').execute()
  const certificateRows = rows.filter((row) => row.path?.startsWith('/admin/certificates') === true)
  t.equal(certificateRows.length, 2)
  for (const row of certificateRows) {
    t.notMatch(row.detail, /PRIVATE KEY/)
    t.match(row.detail, /\[redacted\]/)
  }
  await app.inject({ method: 'POST', url: '/admin/certificates', headers: adminHeaders, payload: { name: 'soon', cert: a.cert, key: a.key } })
  const metrics = await app.inject({ url: '/metrics', headers: { authorization: `Bearer ${ADMIN_TOKEN}` } })
  const line = /gatehouse_certificate_expiry_seconds\{name="soon"\} (\d+)/.exec(metrics.body)
  t.ok(line !== null, 'gauge for the certificate')
  const seconds = Number(line?.[1])
  t.ok(seconds > 9 * 86_400 && seconds <= 10 * 86_400, `about 10 days left: ${seconds}`)
})

t.test('RSA-2048 certificates are served too (default and SNI of the same key type)', async (t) => {
  const defaultCertificate = makeCertificate(t, { cn: 'gatehouse.test', type: 'rsa' })
  const { app, tlsPort } = await startTlsGateway(t, { defaultCertificate })
  const rsa = makeCertificate(t, { cn: 'rsa.example.com', type: 'rsa' })
  await app.inject({ method: 'POST', url: '/admin/certificates', headers: adminHeaders, payload: { name: 'rsa', cert: rsa.cert, key: rsa.key, snis: ['rsa.example.com'] } })
  t.equal((await servedCertificate(tlsPort, 'rsa.example.com')).fingerprint256, fingerprintOf(rsa.cert))
  t.equal((await servedCertificate(tlsPort)).fingerprint256, fingerprintOf(defaultCertificate.cert))
})

t.test('the log warns when SECRET_KEY is unset and 14 days before a certificate expires', async (t) => {
  const lines: string[] = []
  const stream = { write: (line: string) => { lines.push(line) } }
  const app = await buildTestApp(t, { build: { logger: { level: 'warn', stream } } })
  t.match(lines.join('\n'), /SECRET_KEY is unset/)
  const soon = makeCertificate(t, { cn: 'soon.example.com', days: 10 })
  const later = makeCertificate(t, { cn: 'later.example.com', days: 30 })
  await app.inject({ method: 'POST', url: '/admin/certificates', headers: adminHeaders, payload: { name: 'soon', cert: soon.cert, key: soon.key } })
  await app.inject({ method: 'POST', url: '/admin/certificates', headers: adminHeaders, payload: { name: 'later', cert: later.cert, key: later.key } })
  const warnings = lines.filter((line) => line.includes('expires within 14 days'))
  t.equal(warnings.length, 1, 'one warning, for the certificate that expires soon')
  t.match(warnings[0], /"certificate":"soon"/)
  t.match(warnings[0], /"daysLeft":9/)

  const withKey = await buildTestApp(t, { env: { SECRET_KEY: 'a-secret-key-of-some-length' }, build: { logger: { level: 'warn', stream: { write: (line: string) => { lines.push(`second ${line}`) } } } } })
  t.ok(withKey)
  t.notOk(lines.some((line) => line.startsWith('second') && line.includes('SECRET_KEY is unset')), 'no warning with SECRET_KEY')
})
