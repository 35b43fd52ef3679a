import t, { type Test } from 'tap'
import { adminHeaders, createApiKey, createConsumer, createRoute, httpRequest, postgresDatabase, startGateway, startUpstream } from '../helper.js'
import { makeCertificate } from '../tls-helper.js'

const MAX_OFFSET = 1_000_000_000

/** Every list endpoint, found from the OpenAPI document (a GET with a `limit` parameter), as a URL to call. */
async function listEndpoints (url: string): Promise<string[]> {
  const doc = (await httpRequest(`${url}/docs/json`)).json()
  const lists: string[] = []
  for (const [path, operations] of Object.entries(doc.paths as Record<string, Record<string, { parameters?: Array<{ name: string }> }>>)) {
    if (operations.get?.parameters?.some((parameter) => parameter.name === 'limit') === true) lists.push(path.replace('{id}', 'alice'))
  }
  return lists.sort()
}

async function checkLists (t: Test, databaseUrl?: string): Promise<void> {
  const upstream = await startUpstream(t)
  const { app, url } = await startGateway(t, databaseUrl === undefined ? {} : { databaseUrl })
  await createRoute(app, { name: 'one', path: '/one', targets: [{ url: upstream.url, weight: 1 }] })
  await createConsumer(app, 'alice')
  await createApiKey(app, 'alice')
  await app.inject({ method: 'POST', url: '/admin/filters', headers: adminHeaders, payload: { action: 'deny', ip: '203.0.113.7' } })
  const certificate = makeCertificate(t, { cn: 'one.example.com' })
  await app.inject({ method: 'POST', url: '/admin/certificates', headers: adminHeaders, payload: { name: 'one', cert: certificate.cert, key: certificate.key } })
  await app.inject({ method: 'POST', url: '/admin/egress-rules', headers: adminHeaders, payload: { action: 'deny', host: 'example.com' } })

  // Six admin changes: their audit rows are written in batches, within about 50 ms.
  for (let i = 0; i < 100 && (await app.inject({ url: '/admin/audit/logs', headers: adminHeaders })).json().total < 6; i++) {
    await new Promise((resolve) => setTimeout(resolve, 20))
  }

  const lists = await listEndpoints(url)
  t.same(lists, ['/admin/audit/logs', '/admin/certificates', '/admin/config/revisions', '/admin/consumers', '/admin/consumers/alice/keys', '/admin/egress-rules', '/admin/filters', '/admin/routes'], 'every list endpoint')
  for (const list of lists) {
    for (const offset of ['9223372036854775807', String(MAX_OFFSET + 1), '1e300']) {
      const tooDeep = await httpRequest(`${url}${list}?offset=${offset}`, { headers: adminHeaders })
      t.equal(tooDeep.statusCode, 400, `${list}?offset=${offset}`)
      t.same(tooDeep.json(), { statusCode: 400, error: 'Bad Request', message: `querystring/offset must be <= ${MAX_OFFSET}`, requestId: tooDeep.headers['x-request-id'] })
    }
    const deepest = await httpRequest(`${url}${list}?offset=${MAX_OFFSET}&limit=1000`, { headers: adminHeaders })
    t.equal(deepest.statusCode, 200, `${list}: the deepest offset is an empty page`)
    t.same(deepest.json().items, [])
    // Six admin changes: six audit rows and six configuration revisions.
    t.equal(deepest.json().total, ['/admin/audit/logs', '/admin/config/revisions'].includes(list) ? 6 : 1, `${list}: total still counts everything`)
    const first = await httpRequest(`${url}${list}?limit=1`, { headers: adminHeaders })
    t.equal(first.json().items.length, 1, `${list}: limit applies`)
    const unknown = await httpRequest(`${url}${list}?sort=name`, { headers: adminHeaders })
    t.equal(unknown.statusCode, 400)
    t.equal(unknown.json().message, 'querystring/sort is not a known query parameter', `${list}: names the unknown parameter`)
  }
}

t.test('every list bounds offset (400 naming it, never a 500) and names an unknown query parameter: SQLite', async (t) => {
  await checkLists(t)
})

t.test('the same on PostgreSQL', async (t) => {
  const databaseUrl = await postgresDatabase(t)
  if (databaseUrl === null) return void t.plan(0, 'PostgreSQL unreachable at 127.0.0.1:5432 (set GATEHOUSE_REQUIRE_SERVICES=1 to fail instead)')
  await checkLists(t, databaseUrl)
})
