import path from 'node:path'
import { Writable } from 'node:stream'
import t from 'tap'
import { sha256 } from '../../lib/admin-token.js'
import { buildTestApp, tempDir } from '../helper.js'

/** A pino destination that keeps every log line. */
function logCapture (): { stream: Writable, lines: Array<Record<string, unknown>> } {
  const lines: Array<Record<string, unknown>> = []
  const stream = new Writable({
    write (chunk: Buffer, _encoding, callback) {
      for (const line of chunk.toString('utf8').split('\n')) if (line !== '') lines.push(JSON.parse(line))
      callback()
    }
  })
  return { stream, lines }
}

const GENERATED = /generated admin token \(shown only now\): (gha_[A-Za-z0-9_-]{43}) {2}— set ADMIN_TOKEN to use your own/

t.test('without ADMIN_TOKEN a token is generated once, printed once, and only its hash stored', async (t) => {
  const databaseUrl = `sqlite:${path.join(tempDir(t), 'token.db')}`
  const first = logCapture()
  const app = await buildTestApp(t, { databaseUrl, env: { ADMIN_TOKEN: '' }, build: { logger: { level: 'info', stream: first.stream } } })
  const printed = first.lines.filter((line) => GENERATED.test(String(line.msg)))
  t.equal(printed.length, 1, 'printed exactly once')
  t.equal(printed[0].level, 40, 'as a warning, so LOG_LEVEL=warn still shows it')
  const token = (GENERATED.exec(String(printed[0].msg)) as RegExpExecArray)[1]

  const settings = await app.db.selectFrom('settings').selectAll().execute()
  t.same(settings, [{ key: 'admin_token_sha256', value: sha256(token).toString('hex') }], 'only the hash is stored')

  t.equal((await app.inject({ url: '/admin/routes', headers: { authorization: `Bearer ${token}` } })).statusCode, 200, 'the printed token works')
  t.equal((await app.inject({ url: '/admin/routes', headers: { authorization: `Bearer ${token}x` } })).statusCode, 401)
  await app.close()

  const second = logCapture()
  const again = await buildTestApp(t, { databaseUrl, env: { ADMIN_TOKEN: '' }, build: { logger: { level: 'info', stream: second.stream } } })
  t.same(second.lines.filter((line) => String(line.msg).includes('admin token')), [], 'a second start prints nothing')
  t.same(second.lines.filter((line) => JSON.stringify(line).includes(token)), [], 'and never the token')
  t.equal((await again.inject({ url: '/admin/routes', headers: { authorization: `Bearer ${token}` } })).statusCode, 200, 'the same token still works')
  await again.close()

  const configured = await buildTestApp(t, { databaseUrl, env: { ADMIN_TOKEN: 'my-own-token-0123456789' } })
  t.equal((await configured.inject({ url: '/admin/routes', headers: { authorization: 'Bearer my-own-token-0123456789' } })).statusCode, 200, 'ADMIN_TOKEN wins')
  t.equal((await configured.inject({ url: '/admin/routes', headers: { authorization: `Bearer ${token}` } })).statusCode, 401, 'over the generated one')
})

t.test('two instances starting at once on a fresh database agree on one token', async (t) => {
  const databaseUrl = `sqlite:${path.join(tempDir(t), 'race.db')}`
  const a = logCapture()
  const b = logCapture()
  // Migrate first so both race only on the token.
  await (await buildTestApp(t, { databaseUrl })).close()
  const [one, two] = await Promise.all([
    buildTestApp(t, { databaseUrl, env: { ADMIN_TOKEN: '' }, build: { logger: { level: 'info', stream: a.stream } } }),
    buildTestApp(t, { databaseUrl, env: { ADMIN_TOKEN: '' }, build: { logger: { level: 'info', stream: b.stream } } })
  ])
  const printed = [...a.lines, ...b.lines].filter((line) => GENERATED.test(String(line.msg)))
  t.equal(printed.length, 1, 'only the winner prints')
  const token = (GENERATED.exec(String(printed[0].msg)) as RegExpExecArray)[1]
  for (const app of [one, two]) {
    t.equal((await app.inject({ url: '/admin/routes', headers: { authorization: `Bearer ${token}` } })).statusCode, 200)
  }
})
