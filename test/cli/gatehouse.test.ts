import t from 'tap'
import { execFile } from 'node:child_process'
import { existsSync, readFileSync, writeFileSync } from 'node:fs'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { parse as parseYaml, stringify as toYaml } from 'yaml'
import { ADMIN_TOKEN, adminHeaders, freePort, httpRequest, startGateway, startUpstream, tempDir } from '../helper.js'

// The CLI as users run it: the built package (npm run build; npm ci runs it through "prepare").
const CLI = fileURLToPath(new URL('../../dist/cli/gatehouse.js', import.meta.url))

interface Run { code: number, stdout: string, stderr: string }

async function gatehouse (args: string[], env: Record<string, string> = {}): Promise<Run> {
  return await new Promise((resolve) => {
    const childEnv: NodeJS.ProcessEnv = { ...process.env, ...env }
    if (env.GATEHOUSE_TOKEN === undefined) delete childEnv.GATEHOUSE_TOKEN
    if (env.GATEHOUSE_URL === undefined) delete childEnv.GATEHOUSE_URL
    execFile(process.execPath, [CLI, ...args], { env: childEnv, timeout: 20_000 }, (error, stdout, stderr) => {
      resolve({ code: error === null ? 0 : Number((error as { code?: number }).code ?? -1), stdout, stderr })
    })
  })
}

t.before(() => {
  if (!existsSync(CLI)) throw new Error(`${CLI} is missing: run npm run build first`)
})

t.test('dump → edit → diff → apply → diff shows nothing, against a running gateway', async (t) => {
  const upstream = await startUpstream(t)
  const { app, url } = await startGateway(t)
  const admin = async (method: string, url2: string, payload?: unknown) => {
    const response = await app.inject({ method: method as 'GET', url: url2, headers: adminHeaders, payload: payload as object })
    return response
  }
  await admin('POST', '/admin/routes', { name: 'orders', path: '/orders', targets: [{ url: upstream.url }], timeoutMs: 5000, auth: { type: 'api-key' } })
  await admin('POST', '/admin/filters', { action: 'deny', ip: '203.0.113.7' })
  await admin('POST', '/admin/consumers', { name: 'alice' })
  const key = (await admin('POST', '/admin/consumers/alice/keys')).json().key as string
  const dir = tempDir(t)
  const file = path.join(dir, 'gatehouse.yaml')
  const flags = ['--url', url, '--token', ADMIN_TOKEN]

  const dumped = await gatehouse(['config', 'dump', file, ...flags])
  t.equal(dumped.code, 0, dumped.stderr)
  const document = parseYaml(readFileSync(file, 'utf8'))
  t.same(document.routes.map((route: { name: string }) => route.name), ['orders'])
  t.equal(document.routes[0].timeoutMs, 5000)
  t.notOk('id' in document.routes[0], 'no ids or timestamps: a dump stays stable under git')
  t.notOk('updatedAt' in document.consumers[0])

  const unchanged = await gatehouse(['config', 'diff', file, '--exit-code'], { GATEHOUSE_URL: url, GATEHOUSE_TOKEN: ADMIN_TOKEN })
  t.equal(unchanged.code, 0, 'a fresh dump has no changes (GATEHOUSE_URL / GATEHOUSE_TOKEN)')
  t.equal(unchanged.stdout, 'Summary: created 0, updated 0, deleted 0\n')

  document.routes[0].timeoutMs = 8000
  document.routes.push({ name: 'users', path: '/users', targets: [{ url: upstream.url }] })
  document.filters = []
  writeFileSync(file, toYaml(document))

  const diff = await gatehouse(['config', 'diff', file, ...flags])
  t.equal(diff.code, 0, 'changes without --exit-code: 0')
  t.equal(diff.stdout, [
    'creating route users',
    'updating route orders: timeoutMs 5000 → 8000',
    'deleting filter deny 203.0.113.7 any-path',
    'Summary: created 1, updated 1, deleted 1',
    ''
  ].join('\n'))
  t.equal((await gatehouse(['config', 'diff', file, '--exit-code', ...flags])).code, 2, '--exit-code: 2 when there are changes')
  t.equal((await admin('GET', '/admin/routes/orders')).json().timeoutMs, 5000, 'a diff changes nothing')

  const applied = await gatehouse(['config', 'apply', file, ...flags])
  t.equal(applied.code, 0, applied.stderr)
  t.match(applied.stdout, /^creating route users\n.*\nSummary: created 1, updated 1, deleted 1\napplied: configuration revision \d+\n$/s)
  t.equal((await admin('GET', '/admin/routes/orders')).json().timeoutMs, 8000)
  t.equal((await httpRequest(`${url}/users`)).statusCode, 200, 'the new route serves traffic')
  t.equal((await httpRequest(`${url}/orders`, { headers: { 'x-api-key': key } })).statusCode, 200, 'credentials stay')
  const newest = (await admin('GET', '/admin/config/revisions?limit=1')).json().items[0]
  t.equal(newest.source, 'config-import')

  const after = await gatehouse(['config', 'diff', file, '--exit-code', ...flags])
  t.equal(after.code, 0)
  t.equal(after.stdout, 'Summary: created 0, updated 0, deleted 0\n', 'applied: the diff shows nothing')
  const again = await gatehouse(['config', 'apply', file, '--exit-code', ...flags])
  t.equal(again.code, 0, 'nothing to apply')
  t.equal((await admin('GET', '/admin/config/revisions')).json().total, newest.revision, 'and no revision written')

  const json = path.join(dir, 'gatehouse.json')
  t.equal((await gatehouse(['config', 'dump', json, ...flags])).code, 0)
  t.same(JSON.parse(readFileSync(json, 'utf8')).routes.map((route: { name: string }) => route.name), ['orders', 'users'], 'JSON by extension')
  t.equal((await gatehouse(['config', 'diff', json, '--exit-code', ...flags])).code, 0)
  const stdout = await gatehouse(['config', 'dump', ...flags])
  t.same(parseYaml(stdout.stdout).routes.length, 2, 'dump without FILE: YAML on stdout')
})

t.test('clear errors and exit codes: unreachable gateway, refused token, invalid file, usage', async (t) => {
  const { url } = await startGateway(t)
  const dir = tempDir(t)
  const good = path.join(dir, 'good.yaml')
  writeFileSync(good, 'routes: []\n')

  const unreachable = await gatehouse(['config', 'diff', good, '--url', `http://127.0.0.1:${await freePort()}`, '--token', ADMIN_TOKEN])
  t.equal(unreachable.code, 1)
  t.match(unreachable.stderr, /^gatehouse: cannot reach the gateway at http:\/\/127\.0\.0\.1:\d+: ECONNREFUSED/)

  const refused = await gatehouse(['config', 'dump', '--url', url, '--token', 'wrong-token-0123456789'])
  t.equal(refused.code, 1)
  t.match(refused.stderr, 'refused the admin token (401): check --token or GATEHOUSE_TOKEN')

  const noToken = await gatehouse(['config', 'dump', '--url', url])
  t.equal(noToken.code, 1)
  t.match(noToken.stderr, 'no admin token')

  const bad = path.join(dir, 'bad.yaml')
  writeFileSync(bad, 'routes:\n  - name: users\n    path: users\n    targets: [{url: "http://127.0.0.1:1"}]\n')
  const invalid = await gatehouse(['config', 'apply', bad, '--url', url, '--token', ADMIN_TOKEN])
  t.equal(invalid.code, 1)
  t.match(invalid.stderr, `gatehouse: ${bad} is invalid: routes/0/path`, 'the path of the bad field')

  const broken = path.join(dir, 'broken.yaml')
  writeFileSync(broken, 'routes: [\n')
  const syntax = await gatehouse(['config', 'diff', broken, '--url', url, '--token', ADMIN_TOKEN])
  t.equal(syntax.code, 1)
  t.match(syntax.stderr, `${broken} is not valid YAML`)

  const missing = await gatehouse(['config', 'diff', path.join(dir, 'none.yaml'), '--url', url, '--token', ADMIN_TOKEN])
  t.equal(missing.code, 1)
  t.match(missing.stderr, 'cannot be read')

  const usage = await gatehouse(['routes', 'list'])
  t.equal(usage.code, 1)
  t.match(usage.stderr, 'Usage: gatehouse config dump')
  t.equal((await gatehouse(['config', 'apply', '--url', url, '--token', ADMIN_TOKEN])).code, 1, 'apply needs a FILE')
  t.equal((await gatehouse(['--help'])).code, 0)
})
