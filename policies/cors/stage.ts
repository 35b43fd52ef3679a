import { allowedOrigin, type CompiledCors, compileCors, finishCorsHeaders, preflightMethod } from '../../lib/cors.js'
import type { GatewayContext } from '../../lib/gateway-context.js'
import type { RouteStage } from '../../lib/pipeline.js'
import type { Route } from '../../schemas/route.js'

/** Per-request: the Access-Control-Allow-Origin to enforce on the response (null: none). */
export const kAllowOrigin = Symbol('gatehouse.cors.allowOrigin')
/** Per-request: the request had an Origin and the CORS stage decided on it. */
export const kDecided = Symbol('gatehouse.cors.decided')

declare module 'fastify' {
  interface FastifyRequest {
    [kAllowOrigin]: string | null
    [kDecided]: boolean
  }
}

/**
 * The route's CORS stage: its own policy, else `fallback` (CORS_ORIGINS compiled), else none.
 * Header values are computed here, once per route.
 */
export function compileCorsStage (route: Route, fallback: CompiledCors | null): RouteStage | null {
  const cors = route.cors === null ? fallback : compileCors(route.cors)
  return cors === null ? null : corsStage(cors)
}

function corsStage (cors: CompiledCors): RouteStage {
  return {
    name: 'cors',
    answersPreflight: true,
    allowsOrigin: (origin) => allowedOrigin(cors, origin) !== null,

    onRequest (request, reply, done) {
      const headers = request.raw.headers
      const origin = headers.origin
      if (origin === undefined) return done()
      const context = request.gateway as GatewayContext
      const allowOrigin = allowedOrigin(cors, origin)
      request[kDecided] = true
      request[kAllowOrigin] = allowOrigin

      if (preflightMethod(request.method, headers) === null) {
        if (allowOrigin !== null) {
          reply.header('access-control-allow-origin', allowOrigin)
          if (cors.credentials) reply.header('access-control-allow-credentials', 'true')
          if (cors.exposeHeaders !== null) reply.header('access-control-expose-headers', cors.exposeHeaders)
        }
        reply.header('vary', 'Origin')
        return done()
      }

      context.detail = allowOrigin === null ? 'CORS preflight refused: origin not allowed' : 'CORS preflight answered by the gateway'
      reply.header('vary', 'Origin')
      if (allowOrigin !== null) {
        reply.header('access-control-allow-origin', allowOrigin)
        reply.header('access-control-allow-methods', cors.allowMethods)
        const requestedHeaders = headers['access-control-request-headers']
        const allowHeaders = cors.allowHeaders ?? (typeof requestedHeaders === 'string' && requestedHeaders !== '' ? requestedHeaders : null)
        if (allowHeaders !== null) reply.header('access-control-allow-headers', allowHeaders)
        if (cors.allowHeaders === null) reply.header('vary', 'Origin, Access-Control-Request-Headers')
        if (cors.credentials) reply.header('access-control-allow-credentials', 'true')
        reply.header('access-control-max-age', cors.maxAge)
      }
      reply.code(204).send()
    },

    // The gateway's CORS headers win over the upstream's (and over a stage's 4xx); Vary gets Origin.
    onResponseHead (request, head) {
      if (request[kDecided]) finishCorsHeaders(head, cors, request[kAllowOrigin])
    }
  }
}
