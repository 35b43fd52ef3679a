import { Type } from '@sinclair/typebox'
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import type { FastifyRequest } from 'fastify'
import { applyConfigChange } from './apply-change.js'
import { ifMatchEntity } from './preconditions.js'
import { entityEtag } from '../../lib/etag.js'
import { GatewayError } from '../../lib/errors.js'
import { buildRoute, cacheStoreProblem, routeProblem } from '../../lib/route-input.js'
import { publicRoute, withStoredSecret } from '../../lib/route-secret.js'
import { deleteRoute, findRoute, insertRoute, listRoutes, routeNameTaken, updateRoute } from '../../repositories/routes.js'
import { fillBodyDefaults } from '../../schemas/defaults.js'
import { ErrorSchema, IdParamsSchema, ListQuerySchema, listOf } from '../../schemas/common.js'
import { type Route, type RouteInput, RouteInputSchema, RoutePatchSchema, RouteSchema } from '../../schemas/route.js'

const tags = ['routes']
const security = [{ bearerAuth: [] }]
const errors = { 400: ErrorSchema, 401: ErrorSchema, 404: ErrorSchema, 409: ErrorSchema, 412: ErrorSchema }

/** /admin/routes — docs/admin-api.md "Routes". */
const routesAdmin: FastifyPluginAsyncTypebox = async (app) => {
  const notFound = (id: string): GatewayError => new GatewayError(404, 'GW_NOT_FOUND', `route ${id} not found`)
  // If-Match (docs/config-history.md "ETag and If-Match"): the route as GET answers it, read inside the change.
  const unchanged = (request: FastifyRequest, before: Route) =>
    ({ precondition: ifMatchEntity(request, `route ${before.name}`, async (trx) => { const now = await findRoute(trx, before.id); return now === undefined ? undefined : publicRoute(now) }) })

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
    const answer = publicRoute(route)
    return reply.code(201).header('location', `/admin/routes/${route.id}`).header('etag', entityEtag(answer)).send(answer)
  })

  app.get('/:id', {
    schema: { tags, security, summary: 'Get a route by id or name', params: IdParamsSchema, response: { 200: RouteSchema, 401: ErrorSchema, 404: ErrorSchema } }
  }, async (request, reply) => {
    const route = publicRoute(await load(request.params.id))
    return reply.header('etag', entityEtag(route)).send(route)
  })

  app.put('/:id', {
    schema: { tags, security, summary: 'Replace a route', params: IdParamsSchema, body: RouteInputSchema, response: { 200: RouteSchema, ...errors } },
    preValidation: fillBodyDefaults(RouteInputSchema)
  }, async (request, reply) => {
    const before = await load(request.params.id)
    const after = buildRoute(checked(withStoredSecret(request.body, before)), app.config, before)
    await ensureNameFree(after.name, before.id)
    await applyConfigChange(app, request, { action: 'replace', resource: 'route', resourceId: before.id, before, after },
      (trx) => updateRoute(trx, after), unchanged(request, before))
    const answer = publicRoute(after)
    return reply.header('etag', entityEtag(answer)).send(answer)
  })

  app.patch('/:id', {
    schema: { tags, security, summary: 'Merge fields into a route', params: IdParamsSchema, body: RoutePatchSchema, response: { 200: RouteSchema, ...errors } },
    preValidation: fillBodyDefaults(RoutePatchSchema)
  }, async (request, reply) => {
    const before = await load(request.params.id)
    const { id: _id, createdAt: _c, updatedAt: _u, ...current } = before
    const after = buildRoute(checked(withStoredSecret({ ...current, ...request.body }, before)), app.config, before)
    await ensureNameFree(after.name, before.id)
    await applyConfigChange(app, request, { action: 'update', resource: 'route', resourceId: before.id, before, after },
      (trx) => updateRoute(trx, after), unchanged(request, before))
    const answer = publicRoute(after)
    return reply.header('etag', entityEtag(answer)).send(answer)
  })

  app.delete('/:id', {
    schema: { tags, security, summary: 'Delete a route', params: IdParamsSchema, response: { 204: Type.Null(), 401: ErrorSchema, 404: ErrorSchema, 412: ErrorSchema } }
  }, async (request, reply) => {
    const before = await load(request.params.id)
    await applyConfigChange(app, request, { action: 'delete', resource: 'route', resourceId: before.id, before, after: null },
      async (trx) => { if (!await deleteRoute(trx, before.id)) throw notFound(request.params.id) }, unchanged(request, before))
    return reply.code(204).send(null)
  })
}

export default routesAdmin
