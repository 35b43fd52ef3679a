import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { GatewayError } from '../../lib/errors.js'
import { normalizePath } from '../../lib/normalize-path.js'
import { insertCachePurge } from '../../repositories/cache-purges.js'
import { findRoute } from '../../repositories/routes.js'
import { CachePurgeQuerySchema, CachePurgeResultSchema } from '../../schemas/cache.js'
import { ErrorSchema } from '../../schemas/common.js'

/**
 * DELETE /admin/cache — docs/cache.md "Purging". This instance purges at once and answers how
 * many entries it removed (its memory store, and the shared Redis store); a cache_purges row,
 * announced by the config_version bump like any change, makes every other instance purge its
 * memory store within a second. Audited as an admin event.
 */
const cacheAdmin: FastifyPluginAsyncTypebox = async (app) => {
  app.delete('/cache', {
    schema: {
      tags: ['cache'],
      security: [{ bearerAuth: [] }],
      summary: 'Purge the response cache: everything, one route\'s entries, or one route\'s entries under a path prefix',
      querystring: CachePurgeQuerySchema,
      response: { 200: CachePurgeResultSchema, 400: ErrorSchema, 401: ErrorSchema, 404: ErrorSchema }
    }
  }, async (request) => {
    const { route: routeRef, path } = request.query
    if (path !== undefined && routeRef === undefined) throw new GatewayError(400, 'GW_VALIDATION', 'querystring/path needs querystring/route')
    let pathPrefix: string | null = null
    if (path !== undefined) {
      const normalized = normalizePath(path)
      if (!normalized.ok) throw new GatewayError(400, 'GW_VALIDATION', `querystring/path is refused: ${normalized.reason}`)
      pathPrefix = normalized.path
    }
    let routeId: string | null = null
    if (routeRef !== undefined) {
      const route = await findRoute(app.db, routeRef)
      if (route === undefined) throw new GatewayError(404, 'GW_NOT_FOUND', `route ${routeRef} not found`)
      routeId = route.id
    }
    const purged = await app.cache.purgeHere(routeId, pathPrefix)
    await app.db.transaction().execute(async (trx) => {
      await insertCachePurge(trx, routeId, pathPrefix)
      await app.configChanges.bump(trx)
    })
    await app.configChanges.refresh()
    app.audit.recordAdmin(request, { action: 'purge', resource: 'cache', resourceId: routeId, before: null, after: { route: routeId, path: pathPrefix, purged } })
    return { purged }
  })
}

export default cacheAdmin
