import { Type } from '@sinclair/typebox'
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { applyConfigChange } from './apply-change.js'
import { ifMatchEntity } from './preconditions.js'
import { entityEtag } from '../../lib/etag.js'
import { GatewayError } from '../../lib/errors.js'
import { filterProblem } from '../../lib/ip-filters.js'
import { buildFilter } from '../../plugins/filters.js'
import { deleteFilter, findFilter, insertFilters, listFilters } from '../../repositories/filters.js'
import { ErrorSchema, IdParamsSchema, ListQuerySchema, listOf } from '../../schemas/common.js'
import { fillBodyDefaults } from '../../schemas/defaults.js'
import { FilterInputSchema, FilterSchema } from '../../schemas/filter.js'

const tags = ['filters']
const security = [{ bearerAuth: [] }]

/** /admin/filters — docs/policies.md "Filters". */
const filtersAdmin: FastifyPluginAsyncTypebox = async (app) => {
  const notFound = (id: string): GatewayError => new GatewayError(404, 'GW_NOT_FOUND', `filter ${id} not found`)

  app.get('/', {
    schema: { tags, security, summary: 'List filters (expired ones included until deleted)', querystring: ListQuerySchema, response: { 200: listOf(FilterSchema), 401: ErrorSchema } }
  }, async (request) => listFilters(app.db, request.query))

  app.post('/', {
    schema: { tags, security, summary: 'Create an allow or deny rule', body: FilterInputSchema, response: { 201: FilterSchema, 400: ErrorSchema, 401: ErrorSchema } },
    preValidation: fillBodyDefaults(FilterInputSchema)
  }, async (request, reply) => {
    const problem = filterProblem(request.body)
    if (problem !== null) throw new GatewayError(400, 'GW_VALIDATION', problem)
    const filter = buildFilter(request.body)
    await applyConfigChange(app, request, { action: 'create', resource: 'filter', resourceId: filter.id, before: null, after: filter },
      (trx) => insertFilters(trx, [filter]))
    return reply.code(201).header('location', `/admin/filters/${filter.id}`).header('etag', entityEtag(filter)).send(filter)
  })

  app.get('/:id', {
    schema: { tags, security, summary: 'Get a filter', params: IdParamsSchema, response: { 200: FilterSchema, 401: ErrorSchema, 404: ErrorSchema } }
  }, async (request, reply) => {
    const filter = await findFilter(app.db, request.params.id)
    if (filter === undefined) throw notFound(request.params.id)
    return reply.header('etag', entityEtag(filter)).send(filter)
  })

  app.delete('/:id', {
    schema: { tags, security, summary: 'Delete a filter; it stops applying before the response', params: IdParamsSchema, response: { 204: Type.Null(), 401: ErrorSchema, 404: ErrorSchema, 412: ErrorSchema } }
  }, async (request, reply) => {
    const before = await findFilter(app.db, request.params.id)
    if (before === undefined) throw notFound(request.params.id)
    await applyConfigChange(app, request, { action: 'delete', resource: 'filter', resourceId: before.id, before, after: null },
      async (trx) => { if (!await deleteFilter(trx, before.id)) throw notFound(request.params.id) },
      { precondition: ifMatchEntity(request, `filter ${before.id}`, async (trx) => findFilter(trx, before.id)) })
    return reply.code(204).send(null)
  })
}

export default filtersAdmin
