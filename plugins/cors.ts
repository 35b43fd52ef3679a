import fp from 'fastify-plugin'
import type { FastifyPluginAsync, FastifyReply, FastifyRequest, HookHandlerDoneFunction } from 'fastify'
import { allowedOrigin, type CompiledCors, compileCors, CORS_RESPONSE_HEADERS, defaultCorsPolicy, finishCorsHeaders, preflightMethod } from '../lib/cors.js'
import type { GatewayContext } from '../lib/gateway-context.js'
import type { ResponseHead } from '../lib/proxy-headers.js'
import { reject } from '../lib/gateway-reply.js'
import type { Route } from '../schemas/route.js'

/**
 * CORS for proxied traffic, per route (contract section 4, route `cors`): the route's
 * policy, else the CORS_ORIGINS default, else none (the request passes untouched and a
 * preflight goes upstream like any OPTIONS). With a policy, preflights are answered here
 * and never forwarded. The logic is @fastify/cors's (see lib/cors.ts); the plugin itself is
 * not used because it is configured per Fastify route and answers preflights through its
 * own OPTIONS route, while here one catch-all route serves every gateway route and the
 * header values are precomputed per gateway route.
 *
 * The /admin scope registers nothing of this, so the admin API never answers a preflight
 * permissively (contract section 2).
 */
export interface Cors {
  /** onRequest hook of the proxied scope, right after route matching. */
  onRequest: (request: FastifyRequest, reply: FastifyReply, done: HookHandlerDoneFunction) => void
  /** onSend hook of the proxied scope: the same last word on CORS headers for answers sent through Fastify. */
  onSend: (request: FastifyRequest, reply: FastifyReply, payload: unknown, done: (err: null, payload: unknown) => void) => void
  /**
   * For streamed (hijacked) answers, on the header object about to be written: the gateway's
   * CORS headers win over the upstream's; Vary gets Origin.
   */
  finishHeadersOf: (request: FastifyRequest, head: ResponseHead) => void
}

declare module 'fastify' {
  interface FastifyInstance {
    cors: Cors
  }
}

/** Per-request: the Access-Control-Allow-Origin to enforce on the response (null: none). */
const kAllowOrigin = Symbol('gatehouse.cors.allowOrigin')
const kCompiled = Symbol('gatehouse.cors.compiled')

declare module 'fastify' {
  interface FastifyRequest {
    [kAllowOrigin]: string | null
    [kCompiled]: CompiledCors | null
  }
}

const corsPlugin: FastifyPluginAsync = async (app) => {
  const fallback = app.config.corsOrigins === null ? null : compileCors(defaultCorsPolicy(app.config.corsOrigins))
  const compiled = new WeakMap<Route, CompiledCors | null>()
  function corsOf (route: Route): CompiledCors | null {
    let cors = compiled.get(route)
    if (cors === undefined) {
      cors = route.cors === null ? fallback : compileCors(route.cors)
      compiled.set(route, cors)
    }
    return cors
  }
  app.routeTable.onSwap((routes) => { for (const route of routes) corsOf(route) })

  app.decorateRequest(kAllowOrigin, null)
  app.decorateRequest(kCompiled, null)

  function onRequest (request: FastifyRequest, reply: FastifyReply, done: HookHandlerDoneFunction): void {
    const context = request.gateway as GatewayContext
    const route = context.route as Route
    const cors = corsOf(route)
    const headers = request.raw.headers
    const preflight = preflightMethod(request.method, headers) !== null

    if (cors === null) {
      // Matching let this preflight in by the method it asks about; without a policy it is a
      // plain OPTIONS request, which the route must accept to be forwarded.
      if (preflight && route.methods.length > 0 && !route.methods.includes('OPTIONS')) {
        return void reject(reply, context, 404, 'no_route', 'no route matches this request')
      }
      return done()
    }

    const origin = headers.origin
    if (origin === undefined) return done()
    const allowOrigin = allowedOrigin(cors, origin)
    request[kCompiled] = cors
    request[kAllowOrigin] = allowOrigin

    if (!preflight) {
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
  }

  /** Answers sent through Fastify (errors, 4xx of later stages). */
  function onSend (request: FastifyRequest, reply: FastifyReply, payload: unknown, done: (err: null, payload: unknown) => void): void {
    const cors = request[kCompiled]
    if (cors !== null) {
      const head = reply.getHeaders()
      finishCorsHeaders(head, cors, request[kAllowOrigin])
      for (const name of CORS_RESPONSE_HEADERS) {
        const value = head[name]
        if (value === undefined) reply.removeHeader(name)
        else reply.header(name, value)
      }
    }
    done(null, payload)
  }

  function finishHeadersOf (request: FastifyRequest, head: ResponseHead): void {
    const cors = request[kCompiled]
    if (cors !== null) finishCorsHeaders(head, cors, request[kAllowOrigin])
  }

  app.decorate('cors', { onRequest, onSend, finishHeadersOf } satisfies Cors)
}

export default fp(corsPlugin, { name: 'cors', dependencies: ['route-table'] })
