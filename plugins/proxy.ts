import { performance } from 'node:perf_hooks'
import { type Readable, Transform, type TransformCallback } from 'node:stream'
import type { FastifyInstance, FastifyReply, FastifyRequest, HookHandlerDoneFunction } from 'fastify'
import type { Dispatcher } from 'undici'
import { errorBody, GatewayError, gatewayErrors } from '../lib/errors.js'
import type { GatewayContext, Outcome } from '../lib/gateway-context.js'
import { normalizePath } from '../lib/normalize-path.js'
import { clientResponseHeaders, connectionNamedHeaders, upstreamRequestHeaders } from '../lib/proxy-headers.js'
import { hostName } from '../lib/route-matcher.js'
import type { Target } from './upstreams.js'

const VIA = '1.1 gatehouse'
const IDEMPOTENT = new Set(['GET', 'HEAD', 'OPTIONS', 'PUT', 'DELETE'])
/** Request headers whose duplicates are refused (traps.md #5): Node silently keeps the first. */
const SINGLE_VALUED = new Set(['host', 'authorization', 'proxy-authorization', 'x-api-key', 'x-request-id', 'content-length', 'transfer-encoding'])

/**
 * Proxied traffic: every path that is not a reserved endpoint. Registered without fp so its
 * hooks and its pass-through content-type parser stay inside this scope. The hooks run in
 * the contract's order of policy (section 3):
 *   request context → filters (403) → route match (404) → CORS → auth → rate limit → body limit → forward → audit
 */
export default async function proxy (app: FastifyInstance): Promise<void> {
  // Proxied bodies are never parsed: the raw stream goes to the upstream untouched.
  app.removeAllContentTypeParsers()
  app.addContentTypeParser('*', (_request, _payload, done) => { done(null) })

  app.addHook('onRequest', startGatewayContext)
  // filters (issue 3)
  app.addHook('onRequest', matchRoute)
  // CORS (issue 3), auth (issue 4), rate limit (issue 3)
  app.addHook('onRequest', checkDeclaredBodySize)
  app.addHook('onResponse', app.audit.recordRequest)

  app.route({
    method: ['DELETE', 'GET', 'HEAD', 'PATCH', 'POST', 'PUT', 'OPTIONS'],
    url: '/*',
    exposeHeadRoute: false,
    schema: { hide: true },
    handler: forward
  })

  function startGatewayContext (request: FastifyRequest, reply: FastifyReply, done: HookHandlerDoneFunction): void {
    const url = request.raw.url ?? '/'
    const queryAt = url.indexOf('?')
    const rawPath = queryAt === -1 ? url : url.slice(0, queryAt)
    const normalized = normalizePath(rawPath)
    const socket = request.raw.socket
    const context: GatewayContext = {
      startedAt: performance.now(),
      clientIp: unmapIPv4(request.ip),
      path: normalized.ok ? normalized.path : rawPath,
      query: queryAt === -1 ? '' : url.slice(queryAt),
      host: hostName(request.headers.host),
      route: null,
      consumer: null,
      strippedHeaders: null,
      outcome: 'proxied',
      target: null,
      detail: null,
      bytesIn: 0,
      socket,
      socketBytesWrittenAtStart: socket.bytesWritten
    }
    request.gateway = context
    reply.header('x-request-id', request.id)

    const duplicate = duplicateSingleValuedHeader(request.raw.rawHeaders)
    if (!normalized.ok) return reject(reply, context, 400, 'blocked', normalized.reason)
    if (duplicate !== null) return reject(reply, context, 400, 'blocked', `duplicate ${duplicate} header`)
    done()
  }

  function matchRoute (request: FastifyRequest, reply: FastifyReply, done: HookHandlerDoneFunction): void {
    const context = request.gateway as GatewayContext
    const route = app.routeTable.matcher.match(request.method, context.host, context.path)
    if (route === null) return reject(reply, context, 404, 'no_route', 'no route matches this request')
    context.route = route
    done()
  }

  function checkDeclaredBodySize (request: FastifyRequest, reply: FastifyReply, done: HookHandlerDoneFunction): void {
    const context = request.gateway as GatewayContext
    const declared = request.headers['content-length']
    if (declared !== undefined) {
      const limit = routeBodyLimit(context)
      const size = Number(declared)
      if (size > limit) return reject(reply, context, 413, 'too_large', `request body exceeds the limit of ${limit} bytes`)
      context.bytesIn = size
    }
    done()
  }

  function routeBodyLimit (context: GatewayContext): number {
    return context.route?.bodyLimit ?? app.config.bodyLimit
  }

  async function forward (request: FastifyRequest, reply: FastifyReply): Promise<FastifyReply> {
    const context = request.gateway as GatewayContext
    const route = context.route as NonNullable<GatewayContext['route']>
    const raw = request.raw
    const hasBody = raw.headers['content-length'] !== undefined ? raw.headers['content-length'] !== '0' : raw.headers['transfer-encoding'] !== undefined
    const body = hasBody ? bodyStream(request, context) : null
    const path = route.stripPath ? stripPrefix(context.path, route.path) : context.path
    const socket = raw.socket
    const headers = upstreamRequestHeaders({
      rawHeaders: raw.rawHeaders,
      connectionNamed: connectionNamedHeaders(raw.headers.connection),
      stripped: context.strippedHeaders,
      requestId: request.id,
      forwardedFor: appendForwardedFor(raw.headers['x-forwarded-for'] as string | undefined, socket.remoteAddress),
      forwardedProto: request.protocol,
      forwardedHost: raw.headers.host,
      host: route.preserveHost ? raw.headers.host : undefined,
      consumerId: context.consumer?.id ?? null,
      consumerName: context.consumer?.name ?? null
    })
    const timeoutMs = route.timeoutMs ?? app.config.upstreamTimeoutMs
    const canRetry = IDEMPOTENT.has(request.method) && body === null
    const tried = new Set<Target>()
    let lastFailure: GatewayError | null = null

    for (;;) {
      const target = app.upstreams.select(route, tried)
      if (target === null) {
        if (lastFailure !== null) return sendError(reply, context, lastFailure, 'upstream_error')
        return sendError(reply, context, gatewayErrors.noHealthyTarget(10), 'upstream_error')
      }
      tried.add(target)
      context.target = target.url
      target.inFlight++
      let response: Dispatcher.ResponseData
      try {
        response = await target.pool.request({
          method: request.method as Dispatcher.HttpMethod,
          path: target.basePath + path + context.query,
          headers,
          body,
          headersTimeout: timeoutMs,
          bodyTimeout: timeoutMs
        })
      } catch (err) {
        target.inFlight--
        const failure = upstreamFailure(err, timeoutMs, routeBodyLimit(context))
        if (failure.statusCode !== 413) app.upstreams.report(target, 'failure')
        lastFailure = failure
        if (canRetry && failure.statusCode === 502 && tried.size <= route.retries) continue
        return sendError(reply, context, failure, failure.statusCode === 413 ? 'too_large' : 'upstream_error')
      }
      const release = (): void => { target.inFlight-- }
      response.body.once('close', release)
      app.upstreams.report(target, response.statusCode >= 500 ? 'failure' : 'success')
      reply.code(response.statusCode)
      reply.headers(clientResponseHeaders(response.headers, VIA))
      return reply.send(response.body)
    }
  }
}

/** Only chunked bodies need counting: Node enforces a declared Content-Length itself. */
function bodyStream (request: FastifyRequest, context: GatewayContext): Readable {
  if (request.headers['content-length'] !== undefined) return request.raw
  const limit = context.route?.bodyLimit ?? Number.POSITIVE_INFINITY
  const counter = new BodyLimiter(limit, context)
  request.raw.on('error', (err) => counter.destroy(err))
  return request.raw.pipe(counter)
}

class BodyTooLargeError extends Error {
  constructor (readonly limit: number) { super(`request body exceeds the limit of ${limit} bytes`) }
}

/** Counts a chunked body and cuts it as soon as it passes the route's limit (traps.md #2). */
class BodyLimiter extends Transform {
  constructor (private readonly limit: number, private readonly context: GatewayContext) { super() }

  override _transform (chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    this.context.bytesIn += chunk.length
    if (this.context.bytesIn > this.limit) return callback(new BodyTooLargeError(this.limit))
    callback(null, chunk)
  }
}

function upstreamFailure (err: unknown, timeoutMs: number, bodyLimit: number): GatewayError {
  if (err instanceof BodyTooLargeError) return gatewayErrors.tooLarge(bodyLimit)
  const code = (err as { code?: string }).code ?? 'unknown'
  if (code === 'UND_ERR_HEADERS_TIMEOUT' || code === 'UND_ERR_BODY_TIMEOUT' || code === 'UND_ERR_CONNECT_TIMEOUT') {
    return gatewayErrors.upstreamTimeout(timeoutMs)
  }
  return gatewayErrors.upstreamUnreachable(code)
}

function sendError (reply: FastifyReply, context: GatewayContext, error: GatewayError, outcome: Outcome): FastifyReply {
  context.outcome = outcome
  context.detail = error.code
  return reply.code(error.statusCode).headers(error.headers).send(errorBody(error.statusCode, error.message, reply.request.id))
}

function reject (reply: FastifyReply, context: GatewayContext, statusCode: number, outcome: Outcome, message: string): void {
  context.outcome = outcome
  context.detail = message
  reply.code(statusCode).send(errorBody(statusCode, message, reply.request.id))
}

function duplicateSingleValuedHeader (rawHeaders: readonly string[]): string | null {
  let seen: string[] | null = null
  for (let i = 0; i < rawHeaders.length; i += 2) {
    const lower = rawHeaders[i].toLowerCase()
    if (!SINGLE_VALUED.has(lower)) continue
    seen ??= []
    if (seen.includes(lower)) return lower
    seen.push(lower)
  }
  return null
}

function stripPrefix (path: string, routePath: string): string {
  const prefix = routePath.endsWith('/') && routePath.length > 1 ? routePath.slice(0, -1) : routePath
  if (prefix === '/') return path
  const rest = path.slice(prefix.length)
  return rest === '' ? '/' : rest
}

function appendForwardedFor (existing: string | undefined, peer: string | undefined): string {
  const address = unmapIPv4(peer ?? '')
  return existing === undefined || existing === '' ? address : `${existing}, ${address}`
}

export function unmapIPv4 (address: string): string {
  return address.startsWith('::ffff:') && address.includes('.') ? address.slice(7) : address
}
