import { Type } from '@sinclair/typebox'
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { applyConfigChange } from './apply-change.js'
import { GatewayError } from '../../lib/errors.js'
import { buildRoute, cacheStoreProblem, routeProblem } from '../../lib/route-input.js'
import { keepsStoredSecret, publicRoute, withStoredSecret } from '../../lib/route-secret.js'
import { deleteRoute, findRoute, insertRoute, listAllRoutes, listRoutes, routeNameTaken, updateRoute } from '../../repositories/routes.js'
import { fillBodyDefaults } from '../../schemas/defaults.js'
import { ErrorSchema, IdParamsSchema, ListQuerySchema, listOf } from '../../schemas/common.js'
import { type Route, type RouteConfigItem, RouteConfigItemSchema, type RouteInput, RouteInputSchema, RoutePatchSchema, RouteSchema } from '../../schemas/route.js'
import type { ConfigSection } from '../../plugins/config-sections.js'
import type { Config } from '../../plugins/config.js'

const tags = ['routes']
const security = [{ bearerAuth: [] }]
const errors = { 400: ErrorSchema, 401: ErrorSchema, 404: ErrorSchema, 409: ErrorSchema }

/** /admin/routes — docs/admin-api.md "Routes". */
const routesAdmin: FastifyPluginAsyncTypebox = async (app) => {
  app.configSections.add(routesSection(app.config))
  const notFound = (id: string): GatewayError => new GatewayError(404, 'GW_NOT_FOUND', `route ${id} not found`)

  async function load (id: string): Promise<Route> {
    const route = await findRoute(app.db, id)
    if (route === undefined) throw notFound(id)
    return route
  }

  function checked (input: RouteInput): RouteInput {
    const problem = routeProblem(input) ?? cacheStoreProblem(input, app.config.redisUrl !== null)
    if (problem !== null) throw new GatewayError(400, 'GW_VALIDATION', problem)
    return input
  }

  async function ensureNameFree (name: string, exceptId?: string): Promise<void> {
    if (await routeNameTaken(app.db, name, exceptId)) throw new GatewayError(409, 'GW_CONFLICT', `route name "${name}" is already taken`)
  }

  app.get('/', {
    schema: { tags, security, summary: 'List routes', querystring: ListQuerySchema, response: { 200: listOf(RouteSchema), 401: ErrorSchema } }
  }, async (request) => {
    const page = await listRoutes(app.db, request.query)
    return { ...page, items: page.items.map(publicRoute) }
  })

  app.post('/', {
    schema: { tags, security, summary: 'Create a route', body: RouteInputSchema, response: { 201: RouteSchema, ...errors } },
    preValidation: fillBodyDefaults(RouteInputSchema)
  }, async (request, reply) => {
    const route = buildRoute(checked(withStoredSecret(request.body, undefined)), app.config)
    await ensureNameFree(route.name)
    await applyConfigChange(app, request, { action: 'create', resource: 'route', resourceId: route.id, before: null, after: route },
      (trx) => insertRoute(trx, route))
    return reply.code(201).header('location', `/admin/routes/${route.id}`).send(publicRoute(route))
  })

  app.get('/:id', {
    schema: { tags, security, summary: 'Get a route by id or name', params: IdParamsSchema, response: { 200: RouteSchema, 401: ErrorSchema, 404: ErrorSchema } }
  }, async (request) => publicRoute(await load(request.params.id)))

  app.put('/:id', {
    schema: { tags, security, summary: 'Replace a route', params: IdParamsSchema, body: RouteInputSchema, response: { 200: RouteSchema, ...errors } },
    preValidation: fillBodyDefaults(RouteInputSchema)
  }, async (request) => {
    const before = await load(request.params.id)
    const after = buildRoute(checked(withStoredSecret(request.body, before)), app.config, before)
    await ensureNameFree(after.name, before.id)
    await applyConfigChange(app, request, { action: 'replace', resource: 'route', resourceId: before.id, before, after },
      (trx) => updateRoute(trx, after))
    return publicRoute(after)
  })

  app.patch('/:id', {
    schema: { tags, security, summary: 'Merge fields into a route', params: IdParamsSchema, body: RoutePatchSchema, response: { 200: RouteSchema, ...errors } },
    preValidation: fillBodyDefaults(RoutePatchSchema)
  }, async (request) => {
    const before = await load(request.params.id)
    const { id: _id, createdAt: _c, updatedAt: _u, ...current } = before
    const after = buildRoute(checked(withStoredSecret({ ...current, ...request.body }, before)), app.config, before)
    await ensureNameFree(after.name, before.id)
    await applyConfigChange(app, request, { action: 'update', resource: 'route', resourceId: before.id, before, after },
      (trx) => updateRoute(trx, after))
    return publicRoute(after)
  })

  app.delete('/:id', {
    schema: { tags, security, summary: 'Delete a route', params: IdParamsSchema, response: { 204: Type.Null(), 401: ErrorSchema, 404: ErrorSchema } }
  }, async (request, reply) => {
    const before = await load(request.params.id)
    await applyConfigChange(app, request, { action: 'delete', resource: 'route', resourceId: before.id, before, after: null },
      async (trx) => { if (!await deleteRoute(trx, before.id)) throw notFound(request.params.id) })
    return reply.code(204).send(null)
  })
}

/**
 * The "routes" part of GET/PUT /admin/config. The document carries no secrets
 * (docs/admin-api.md "Whole configuration"): a JWT route's HS256 secret is exported as null with secretSet, and on import a
 * JWT route with neither secret nor jwksUrl keeps the secret stored under its name — as
 * consumers keep their credentials.
 */
export function routesSection (config: Pick<Config, 'upstreamTimeoutMs' | 'bodyLimit'> & Partial<Pick<Config, 'redisUrl'>>): ConfigSection<RouteConfigItem> {
  return {
    name: 'routes',
    itemSchema: RouteConfigItemSchema,
    exportItems: async (db) => (await listAllRoutes(db)).map(publicRoute),
    problem (items) {
      const names = new Map<string, number>()
      const ids = new Map<string, number>()
      for (const [index, item] of items.entries()) {
        const { id, createdAt: _c, updatedAt: _u, ...input } = item
        // Other fields are checked now; whether a stored secret exists is checked in replaceAll.
        const problem = routeProblem(keepsStoredSecret(input.auth) ? { ...input, auth: { type: 'none' } } : input, `routes/${index}`) ??
          cacheStoreProblem(input, (config.redisUrl ?? null) !== null, `routes/${index}`)
        if (problem !== null) return problem
        if (names.has(item.name)) return `routes/${index}/name "${item.name}" is already used by routes/${names.get(item.name)}`
        names.set(item.name, index)
        if (id !== undefined) {
          if (ids.has(id)) return `routes/${index}/id "${id}" is already used by routes/${ids.get(id)}`
          ids.set(id, index)
        }
      }
      return null
    },
    async replaceAll (trx, items) {
      const existing = new Map((await listAllRoutes(trx)).map((route) => [route.name, route]))
      const kept = new Set(items.filter((item) => existing.has(item.name)).map((item) => (existing.get(item.name) as Route).id))
      for (const route of existing.values()) {
        if (!items.some((item) => item.name === route.name)) await deleteRoute(trx, route.id)
      }
      for (const [index, item] of items.entries()) {
        const { id, createdAt: _c, updatedAt: _u, ...sent } = item
        const before = existing.get(item.name)
        const input = withStoredSecret(sent, before)
        if (keepsStoredSecret(input.auth)) {
          throw new GatewayError(400, 'GW_VALIDATION', `body/routes/${index}/auth must set exactly one of secret or jwksUrl (no stored secret to keep)`)
        }
        if (before === undefined) {
          if (id !== undefined && kept.has(id)) {
            throw new GatewayError(400, 'GW_VALIDATION', `body/routes/${index}/id "${id}" belongs to another route that stays`)
          }
          const now = new Date().toISOString()
          await insertRoute(trx, buildRoute(input, config, id === undefined ? undefined : { id, createdAt: now }))
          continue
        }
        const after = buildRoute(input, config, before)
        if (sameRoute(before, after)) continue
        await updateRoute(trx, after)
      }
    }
  }
}

/** Equal in every field but updatedAt, whatever the order of keys (stored JSON keeps its own order). */
function sameRoute (a: Route, b: Route): boolean {
  return canonical({ ...a, updatedAt: '' }) === canonical({ ...b, updatedAt: '' })
}

function canonical (value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonical).join(',')}]`
  if (value !== null && typeof value === 'object') {
    return `{${Object.keys(value).sort().map((key) => `${JSON.stringify(key)}:${canonical((value as Record<string, unknown>)[key])}`).join(',')}}`
  }
  return JSON.stringify(value) ?? 'null'
}

export default routesAdmin
