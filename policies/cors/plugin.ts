import fp from 'fastify-plugin'
import type { FastifyPluginAsync } from 'fastify'
import { compileCors, defaultCorsPolicy } from '../../lib/cors.js'
import { compileCorsStage, kAllowOrigin, kDecided } from './stage.js'

/**
 * CORS for proxied traffic, per route (docs/policies.md "CORS"): the route's
 * policy, else the CORS_ORIGINS default, else none — then the route has no CORS stage at
 * all: the request passes untouched and a preflight goes upstream like any OPTIONS. With a
 * policy, preflights are answered here and never forwarded. The logic is @fastify/cors's
 * (see lib/cors.ts); the plugin itself is not used because it is configured per Fastify
 * route and answers preflights through its own OPTIONS route, while here one catch-all
 * route serves every gateway route and the header values are precomputed per gateway route.
 *
 * Proxied traffic only: the admin API's CORS is its own (docs/admin-api.md "CORS").
 */

const corsPlugin: FastifyPluginAsync = async (app) => {
  app.decorateRequest(kAllowOrigin, null)
  app.decorateRequest(kDecided, false)
  const fallback = app.config.corsOrigins === null ? null : compileCors(defaultCorsPolicy(app.config.corsOrigins))
  app.routeTable.addStage('cors', (route) => compileCorsStage(route, fallback))
}

export default fp(corsPlugin, { name: 'cors', dependencies: ['route-table'] })
