import t from 'tap'
import { adminHeaders, buildTestApp, createRoute, httpRequest, startGateway, startUpstream } from '../helper.js'

/** Every reserved endpoint (docs/admin-api.md, docs/observability.md), as OpenAPI paths. */
const CONTRACT: Array<[method: string, path: string]> = [
  ['get', '/health'], ['get', '/ready'], ['get', '/metrics'],
  ['get', '/admin/routes'], ['post', '/admin/routes'], ['get', '/admin/routes/{id}'], ['put', '/admin/routes/{id}'],
  ['patch', '/admin/routes/{id}'], ['delete', '/admin/routes/{id}'],
  ['get', '/admin/filters'], ['post', '/admin/filters'], ['delete', '/admin/filters/{id}'],
  ['get', '/admin/rate-limits/{ip}'], ['delete', '/admin/rate-limits/{ip}'],
  ['get', '/admin/consumers'], ['post', '/admin/consumers'], ['get', '/admin/consumers/{id}'], ['delete', '/admin/consumers/{id}'],
  ['post', '/admin/consumers/{id}/keys'], ['get', '/admin/consumers/{id}/keys'], ['delete', '/admin/consumers/{id}/keys/{keyId}'],
  ['put', '/admin/consumers/{id}/basic'],
  ['get', '/admin/audit/logs'], ['get', '/admin/audit/stats'],
  ['get', '/admin/status'], ['post', '/admin/reload'], ['get', '/admin/config'], ['put', '/admin/config']
]
/** Built by this part of the project: must be documented whatever else exists. */
const ALWAYS = new Set(['/health', '/ready', '/admin/routes', '/admin/routes/{id}', '/admin/reload', '/admin/config'])

function fastifyUrl (openapiPath: string): string {
  return openapiPath.replace(/\{(\w+)\}/g, ':$1')
}

t.test('/docs serves Swagger UI', async (t) => {
  const { url } = await startGateway(t)
  for (const path of ['/docs', '/docs/']) {
    const response = await httpRequest(`${url}${path}`)
    t.equal(response.statusCode, 200, path)
    t.equal(response.headers['content-type'], 'text/html; charset=utf-8')
    t.match(response.body, /swagger-ui/)
  }
  const script = await httpRequest(`${url}/docs/static/swagger-ui-bundle.js`)
  t.equal(script.statusCode, 200, 'its assets are served too')
})

t.test('/docs/json documents every reserved endpoint present, with schemas and the bearer scheme', async (t) => {
  const app = await buildTestApp(t)
  const response = await app.inject({ url: '/docs/json' })
  t.equal(response.statusCode, 200)
  const doc = response.json()
  t.equal(doc.openapi, '3.0.3')
  t.equal(doc.info.title, 'Gatehouse')
  t.same(doc.components.securitySchemes.bearerAuth, { type: 'http', scheme: 'bearer', description: 'ADMIN_TOKEN' })

  let checked = 0
  for (const [method, path] of CONTRACT) {
    const present = app.hasRoute({ method: method.toUpperCase() as 'GET', url: fastifyUrl(path) }) ||
      app.hasRoute({ method: method.toUpperCase() as 'GET', url: `${fastifyUrl(path)}/` })
    if (!present) {
      t.notOk(ALWAYS.has(path), `${method.toUpperCase()} ${path} is implemented`)
      t.comment(`not implemented yet, not checked: ${method.toUpperCase()} ${path}`)
      continue
    }
    checked++
    const operation = doc.paths[path]?.[method]
    t.ok(operation !== undefined, `${method.toUpperCase()} ${path} is documented`)
    if (operation === undefined) continue
    const admin = path.startsWith('/admin') || path === '/metrics'
    t.same(operation.security, admin ? [{ bearerAuth: [] }] : [], `${method.toUpperCase()} ${path}: security`)
    const success = Object.keys(operation.responses).filter((code) => code.startsWith('2'))
    t.equal(success.length, 1, `${method.toUpperCase()} ${path}: one success response`)
    if (success[0] !== '204' && path !== '/metrics') {
      t.ok(operation.responses[success[0]].content?.['application/json']?.schema !== undefined, `${method.toUpperCase()} ${path}: response schema`)
    }
    if (admin) t.ok(operation.responses['401'] !== undefined, `${method.toUpperCase()} ${path}: documents 401`)
    if (['post', 'put', 'patch'].includes(method) && !path.endsWith('/keys') && path !== '/admin/reload') {
      t.ok(operation.requestBody?.content?.['application/json']?.schema !== undefined, `${method.toUpperCase()} ${path}: request schema`)
    }
  }
  t.ok(checked >= 10, `${checked} reserved endpoints checked`)

  const paths = Object.keys(doc.paths)
  t.same(paths.filter((path) => path.includes('*')), [], 'no catch-all (proxied or admin 404) is documented')
  t.same(paths.filter((path) => path.startsWith('/docs') || path.startsWith('/redoc')), ['/docs', '/docs/json', '/redoc'], 'the docs pages a user opens, not their assets')
  t.same(paths.filter((path) => path.length > 1 && path.endsWith('/')), [], 'paths are written as users type them')
})

t.test('the documented route schemas are the ones enforced', async (t) => {
  const app = await buildTestApp(t)
  const doc = (await app.inject({ url: '/docs/json' })).json()
  const create = doc.paths['/admin/routes'].post
  const schema = create.requestBody.content['application/json'].schema
  t.same(schema.required.sort(), ['name', 'path', 'targets'])
  t.equal(schema.additionalProperties, false)
  t.equal(schema.properties.name.pattern, '^[a-z0-9][a-z0-9_-]*$')
  t.equal(schema.properties.targets.minItems, 1)
  t.ok(create.responses['201'] !== undefined && create.responses['409'] !== undefined && create.responses['400'] !== undefined)
  const config = doc.paths['/admin/config'].put.requestBody.content['application/json'].schema
  const sections = app.configSections.all.map((section) => section.name).sort()
  t.same(Object.keys(config.properties).sort(), sections, 'the config document lists every section')
  t.equal(config.required, undefined, 'no section is required: one left out is emptied')
  t.equal(config.properties.routes.items.properties.name.pattern, '^[a-z0-9][a-z0-9_-]*$')
})

t.test('unknown /docs paths answer 404 JSON and are never proxied', async (t) => {
  const upstream = await startUpstream(t)
  const { app, url } = await startGateway(t)
  await createRoute(app, { name: 'everything', path: '/', targets: [{ url: upstream.url, weight: 1 }] })
  for (const path of ['/docs/nope', '/docs/json/extra', '/docs/static/nope.js', '/redoc/nope', '/redoc/redoc.standalone.js/x']) {
    const response = await httpRequest(`${url}${path}`)
    t.equal(response.statusCode, 404, path)
    t.equal(response.json().statusCode, 404)
  }
  t.equal(upstream.requests.length, 0)
})

type JsonSchema = { properties?: Record<string, JsonSchema>, required?: unknown, default?: unknown, [key: string]: unknown }

/** Every required property that has a default, at any depth: "where/field". */
function requiredWithDefaults (schema: unknown, where: string): string[] {
  if (schema === null || typeof schema !== 'object') return []
  if (Array.isArray(schema)) return schema.flatMap((item, i) => requiredWithDefaults(item, `${where}/${i}`))
  const s = schema as JsonSchema
  const found = (Array.isArray(s.required) ? s.required as string[] : []).filter((key) => s.properties?.[key]?.default !== undefined).map((key) => `${where}/${key}`)
  return [...found, ...Object.entries(s).flatMap(([key, value]) => requiredWithDefaults(value, `${where}/${key}`))]
}

t.test('the OpenAPI document: no default-bearing input required, operationIds, 400/415/429 documented, servers, open health', async (t) => {
  const app = await buildTestApp(t)
  const doc = (await app.inject({ url: '/docs/json' })).json()
  t.same(doc.servers, [{ url: '/', description: 'this gateway' }])
  t.equal(doc.info.license.name, 'MIT')
  const ids = new Set<string>()
  let operations = 0
  for (const [path, methods] of Object.entries(doc.paths as Record<string, Record<string, Record<string, any>>>)) {
    for (const [method, operation] of Object.entries(methods)) {
      const name = `${method.toUpperCase()} ${path}`
      operations++
      t.match(operation.operationId, /^[a-z][A-Za-z0-9]+$/, `${name}: operationId`)
      t.notOk(ids.has(operation.operationId), `${name}: operationId is unique`)
      ids.add(operation.operationId)
      for (const parameter of operation.parameters ?? []) {
        if (parameter.schema?.default !== undefined) t.equal(parameter.required, false, `${name}: ${parameter.name} has a default, so it is optional`)
      }
      t.same(requiredWithDefaults(operation.requestBody, `${name} body`), [], `${name}: no body field with a default is required`)
      const validates = (operation.parameters ?? []).length > 0 || operation.requestBody !== undefined
      if (validates) t.ok(operation.responses['400']?.content?.['application/json']?.schema !== undefined, `${name}: documents 400`)
      if (operation.requestBody !== undefined) t.ok(operation.responses['415'] !== undefined, `${name}: documents 415`)
      if (operation.security.length > 0) t.ok(operation.responses['429'] !== undefined, `${name}: documents the admin lockout 429`)
    }
  }
  t.ok(operations >= 30, `${operations} operations checked`)
  t.same(doc.paths['/health'].get.security, [])
  t.same(doc.paths['/ready'].get.security, [])
  t.equal(doc.paths['/admin/routes/{id}'].get.operationId, 'getAdminRoutesById')
  const limit = doc.paths['/admin/routes'].get.parameters.find((parameter: { name: string }) => parameter.name === 'limit')
  t.same(limit, { schema: { minimum: 1, maximum: 1000, default: 100, type: 'integer' }, in: 'query', name: 'limit', required: false, description: 'items per page' })
  const top = doc.paths['/admin/audit/stats'].get.parameters.find((parameter: { name: string }) => parameter.name === 'top')
  t.equal(top.required, false)
  const filter = doc.paths['/admin/filters'].post.requestBody.content['application/json'].schema
  t.same(filter.required, ['action'])
  const consumer = doc.paths['/admin/consumers'].post.requestBody.content['application/json'].schema
  t.same(consumer.required, ['name'])
  t.same(consumer.properties.rateLimit.required, ['max'])
})

t.test('the documented 415 is what a non-JSON admin body gets', async (t) => {
  const app = await buildTestApp(t)
  const response = await app.inject({ method: 'POST', url: '/admin/consumers', headers: { ...adminHeaders, 'content-type': 'text/plain' }, payload: 'name=alice' })
  t.equal(response.statusCode, 415)
  t.equal(response.json().statusCode, 415)
})

t.test('/redoc renders /docs/json with ReDoc, every asset from the gateway, under a strict CSP', async (t) => {
  const { url } = await startGateway(t)
  for (const path of ['/redoc', '/redoc/']) {
    const page = await httpRequest(`${url}${path}`)
    t.equal(page.statusCode, 200, path)
    t.equal(page.headers['content-type'], 'text/html; charset=utf-8')
    const csp = String(page.headers['content-security-policy'])
    t.match(csp, /^default-src 'none'; script-src 'self'; /, 'scripts only from the gateway')
    t.notMatch(csp, /https?:|\*/, 'no external source is allowed')
    t.match(page.body, '<redoc spec-url="/docs/json"></redoc>', 'the same document as /docs/json')
    t.notMatch(page.body, /https?:\/\//, 'the page references nothing external')
    const scripts = [...page.body.matchAll(/<script[^>]*\ssrc="([^"]+)"/g)].map((match) => match[1])
    t.same(scripts, ['/redoc/redoc.standalone.js'], 'one script, served by the gateway')
    t.same([...page.body.matchAll(/<(?:link|img|iframe)\b/g)], [], 'no stylesheets, images or frames to fetch')
    for (const script of scripts) {
      const asset = await httpRequest(`${url}${script}`)
      t.equal(asset.statusCode, 200, script)
      t.equal(asset.headers['content-type'], 'application/javascript; charset=utf-8')
      t.ok(asset.body.length > 500_000, `${script}: the ReDoc bundle (${asset.body.length} bytes)`)
      t.match(asset.body, 'redoc', 'it is ReDoc')
      t.notMatch(asset.body, /fonts\.(googleapis|gstatic)\.com/, 'no external fonts')
    }
  }
  const spec = await httpRequest(`${url}/docs/json`)
  t.equal(spec.statusCode, 200)
  t.equal(spec.json().openapi, '3.0.3')
})
