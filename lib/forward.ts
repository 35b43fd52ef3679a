import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import type { Dispatcher } from 'undici'
import { BodyTooLargeError, hasRequestBody, limitedRequestBody } from './body-limit.js'
import { type GatewayError, gatewayErrors } from './errors.js'
import type { GatewayContext } from './gateway-context.js'
import { rejectWith } from './gateway-reply.js'
import { clientResponseHeaders, connectionNamedHeaders, upstreamRequestHeaders, VIA } from './proxy-headers.js'
import { routePrefixOf } from './route-matcher.js'
import type { Target } from '../plugins/upstreams.js'

const IDEMPOTENT = new Set(['GET', 'HEAD', 'OPTIONS', 'PUT', 'DELETE'])

export type ForwardHandler = (request: FastifyRequest, reply: FastifyReply) => Promise<FastifyReply>

/**
 * The one function that sends a routed request upstream (STYLE.md "keep it behind one
 * forward()"): undici Pool.request straight from the raw request, one pass over headers,
 * target choice and retries through app.upstreams, failures mapped to 502/503/504.
 */
export function createForward (app: FastifyInstance): ForwardHandler {
  return async function forward (request, reply) {
    const context = request.gateway as GatewayContext
    const route = context.route as NonNullable<GatewayContext['route']>
    const raw = request.raw
    const bodyLimit = route.bodyLimit
    const body = hasRequestBody(request) ? limitedRequestBody(request, context, bodyLimit) : null
    const path = route.stripPath ? stripPrefix(context.path, routePrefixOf(route)) : context.path
    const headers = upstreamRequestHeaders({
      rawHeaders: raw.rawHeaders,
      connectionNamed: connectionNamedHeaders(raw.headers.connection),
      stripped: context.strippedHeaders,
      requestId: request.id,
      forwardedFor: appendForwardedFor(raw.headers['x-forwarded-for'] as string | undefined, context.socket.remoteAddress),
      forwardedProto: request.protocol,
      forwardedHost: raw.headers.host,
      via: raw.headers.via,
      host: route.preserveHost ? raw.headers.host : undefined,
      consumerId: context.consumer?.id ?? null,
      consumerName: context.consumer?.name ?? null
    })
    const timeoutMs = route.timeoutMs
    const canRetry = IDEMPOTENT.has(request.method) && body === null
    const tried = new Set<Target>()
    let lastFailure: GatewayError | null = null

    for (;;) {
      const target = app.upstreams.select(route, tried)
      if (target === null) {
        return rejectWith(reply, context, lastFailure ?? gatewayErrors.noHealthyTarget(10), 'upstream_error')
      }
      tried.add(target)
      context.target = target.url
      target.inFlight++
      let response: Dispatcher.ResponseData
      try {
        response = await target.pool.request({
          method: request.method as Dispatcher.HttpMethod,
          path: upstreamPath(target.basePath, path) + context.query,
          headers,
          body,
          headersTimeout: timeoutMs,
          bodyTimeout: timeoutMs
        })
      } catch (err) {
        target.inFlight--
        if (err instanceof BodyTooLargeError) return rejectWith(reply, context, gatewayErrors.tooLarge(err.limit), 'too_large')
        const failure = upstreamFailure(err, timeoutMs)
        app.upstreams.report(target, 'failure')
        lastFailure = failure
        if (canRetry && failure.statusCode === 502 && tried.size <= route.retries) continue
        return rejectWith(reply, context, failure, 'upstream_error')
      }
      response.body.once('close', () => { target.inFlight-- })
      app.upstreams.report(target, response.statusCode >= 500 ? 'failure' : 'success')
      reply.code(response.statusCode)
      reply.headers(clientResponseHeaders(response.headers, VIA))
      return reply.send(response.body)
    }
  }
}

function upstreamFailure (err: unknown, timeoutMs: number): GatewayError {
  const code = (err as { code?: string }).code ?? 'unknown'
  if (code === 'UND_ERR_HEADERS_TIMEOUT' || code === 'UND_ERR_BODY_TIMEOUT' || code === 'UND_ERR_CONNECT_TIMEOUT') {
    return gatewayErrors.upstreamTimeout(timeoutMs)
  }
  return gatewayErrors.upstreamUnreachable(code)
}

/**
 * A normalised path without the route's (normalised) prefix it matched on a segment
 * boundary: "/api/x" − "/api" = "/x"; "/api" − "/api" = "" (upstreamPath makes it "/"
 * or the target's base path, as nginx's prefix replacement does).
 */
export function stripPrefix (path: string, prefix: string): string {
  return prefix === '/' ? path : path.slice(prefix.length)
}

/** Target base path ("" or "/v2") + forwarded path; never empty. */
export function upstreamPath (basePath: string, path: string): string {
  const joined = basePath + path
  return joined === '' ? '/' : joined
}

function appendForwardedFor (existing: string | undefined, peer: string | undefined): string {
  const address = unmapIPv4(peer ?? '')
  return existing === undefined || existing === '' ? address : `${existing}, ${address}`
}

/** "::ffff:10.1.2.3" → "10.1.2.3": IPv4 clients look the same on dual-stack listeners. */
export function unmapIPv4 (address: string): string {
  return address.startsWith('::ffff:') && address.includes('.') ? address.slice(7) : address
}
