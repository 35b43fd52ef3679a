import { writeFileSync } from 'node:fs'
import path from 'node:path'
import t from 'tap'
import { ADMIN_TOKEN, adminHeaders, httpRequest, spawnGateway, tempDir } from './helper.js'

t.test('invalid settings stop start-up with exit 1 and a message naming the variable', async (t) => {
  const cases: Array<[Record<string, string>, RegExp]> = [
    [{ PORT: 'abc' }, /^gatehouse: invalid setting PORT: must be a whole number, got "abc"$/],
    [{ TRUST_PROXY: '300.1.1.1/99' }, /^gatehouse: invalid setting TRUST_PROXY: .*"300\.1\.1\.1\/99"/],
    [{ DATABASE_URL: 'mysql://x' }, /^gatehouse: invalid setting DATABASE_URL: .*"mysql:\/\/x"/],
    [{ HEADERS_TIMEOUT_MS: '5000', REQUEST_TIMEOUT_MS: '1000' }, /^gatehouse: invalid setting HEADERS_TIMEOUT_MS: must not exceed REQUEST_TIMEOUT_MS/]
  ]
  await Promise.all(cases.map(async ([env, message]) => {
    const gateway = await spawnGateway(t, env, { waitForHealth: false })
    t.equal(await gateway.exited, 1, `${Object.keys(env).join(', ')} → exit 1`)
    t.match(gateway.stderr.join('\n'), message)
  }))
})

t.test('a .env file in the working directory fills unset variables; the real environment wins', async (t) => {
  const dir = tempDir(t)
  writeFileSync(path.join(dir, '.env'), [
    '# comments and quotes as dotenv reads them',
    'ADMIN_TOKEN="dotenv-admin-token-0123456789"',
    'PORT=1',
    'HOST=203.0.113.1'
  ].join('\n'))
  const gateway = await spawnGateway(t, { ADMIN_TOKEN: undefined }, { cwd: dir })
  // PORT and HOST come from the real environment (the gateway answers there), the token from .env.
  const withDotenvToken = await httpRequest(`${gateway.url}/admin/routes`, { headers: { authorization: 'Bearer dotenv-admin-token-0123456789' } })
  t.equal(withDotenvToken.statusCode, 200)
  const withTestToken = await httpRequest(`${gateway.url}/admin/routes`, { headers: adminHeaders })
  t.equal(withTestToken.statusCode, 401)
  t.equal(await gateway.stop(), 0)
})

t.test('without ADMIN_TOKEN a token is generated, logged once and kept across restarts', async (t) => {
  const databaseUrl = `sqlite:${path.join(tempDir(t), 'gatehouse.db')}`
  const first = await spawnGateway(t, { ADMIN_TOKEN: undefined, DATABASE_URL: databaseUrl })
  const line = await first.waitForLine(/generated admin token/)
  const token = /generated admin token \(shown only now\): (\S+)/.exec(line)?.[1]
  t.match(token, /^gha_[A-Za-z0-9_-]{43}$/)
  t.equal((await httpRequest(`${first.url}/admin/routes`, { headers: { authorization: `Bearer ${token}` } })).statusCode, 200)
  t.equal((await httpRequest(`${first.url}/admin/routes`, { headers: adminHeaders })).statusCode, 401)
  t.equal(await first.stop(), 0)

  const second = await spawnGateway(t, { ADMIN_TOKEN: undefined, DATABASE_URL: databaseUrl })
  t.equal((await httpRequest(`${second.url}/admin/routes`, { headers: { authorization: `Bearer ${token}` } })).statusCode, 200)
  t.equal(await second.stop(), 0)
  t.equal([...second.stdout, ...second.stderr].filter((l) => l.includes('admin token')).length, 0, 'not printed again')
  t.notOk(ADMIN_TOKEN === token)
})

t.test('a port already taken stops start-up with exit 1 naming the address', async (t) => {
  const running = await spawnGateway(t)
  const second = await spawnGateway(t, { PORT: String(running.port) }, { waitForHealth: false })
  t.equal(await second.exited, 1)
  t.match(second.stderr.join('\n'), new RegExp(`^gatehouse: cannot listen on 127\\.0\\.0\\.1:${running.port}: .*EADDRINUSE`))
})
