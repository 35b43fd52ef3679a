import { performance } from 'node:perf_hooks'
import type { FastifyInstance, FastifyReply, FastifyRequest, HookHandlerDoneFunction, RequestPayload } from 'fastify'
import { preflightMethod } from '../lib/cors.js'
import { createForward } from '../lib/forward.js'
import { unmapIPv4 } from '../lib/ip.js'
import type { GatewayContext } from '../lib/gateway-context.js'
import { reject } from '../lib/gateway-reply.js'
import { normalizePath } from '../lib/normalize-path.js'
import { sendContinue } from '../lib/expect-continue.js'
import { chainStages } from '../lib/stage-chain.js'
import { hostName } from '../lib/route-matcher.js'

/**
 * Paths of the reserved endpoints (contract section 2). A spelling like "/x/../admin/routes"
 * or an unknown "/admin/…" path reaches this scope's catch-all; it must never be proxied.
 */
const RESERVED_PATH = /^\/(?:admin|docs|health|ready|metrics)(?:\/|$)/

/** Sent with 413: the rest of an oversized body is not worth reading (nginx closes too). */
const CLOSE = { connection: 'close' }

/** Request headers whose duplicates are refused (traps.md #5): Node silently keeps the first. */
const SINGLE_VALUED = new Set(['host', 'authorization', 'proxy-authorization', 'x-api-key', 'x-request-id', 'content-length', 'transfer-encoding'])
/** Their name lengths: most headers are skipped without lower-casing their names. */
const SINGLE_VALUED_LENGTHS = new Set([...SINGLE_VALUED].map((name) => name.length))

/**
 * Proxied traffic: every path that is not a reserved endpoint. Registered without fp so its
 * hooks and its pass-through content-type parser stay inside this scope. The onRequest stages
 * run in the contract's order of policy (section 3):
 *   request context → filters (403) → route match (404) → CORS → auth → rate limit → body limit → forward → audit
 */
export default async function proxy (app: FastifyInstance): Promise<void> {
  // Proxied bodies are never parsed: the raw stream goes to the upstream untouched.
  app.removeAllContentTypeParsers()
  app.addContentTypeParser('*', (_request, _payload, done) => { done(null) })

  app.addHook('onRequest', chainStages([
    startGatewayContext,
    app.filters.onRequest,
    matchRoute,
    app.cors.onRequest,
    app.auth.onRequest,
    app.rateLimits.onRequest,
    checkDeclaredBodySize
  ]))
  app.addHook('onSend', app.cors.onSend)
  app.addHook('preParsing', passBodyThrough)
  // The audit row, metrics and access-log line of each request: plugins/access-log.ts (root hooks,
  // so requests refused before this scope and clients that go away are recorded too).

  const forward = createForward(app)
  app.route({
    method: ['DELETE', 'GET', 'HEAD', 'PATCH', 'POST', 'PUT', 'OPTIONS'],
    url: '/*',
    exposeHeadRoute: false,
    schema: { hide: true },
    handler (request, reply) {
      // Not returned to Fastify: forward answers itself, or hands the reply to the exchange
      // streaming the upstream's answer, which hijacks it (lib/upstream-exchange.ts).
      forward(request, reply).catch((err: Error) => { if (!reply.sent) reply.send(err) })
    }
  })

  function matchRoute (request: FastifyRequest, reply: FastifyReply, done: HookHandlerDoneFunction): void {
    const context = request.gateway as GatewayContext
    // A CORS preflight is matched by the method it asks about (plugins/cors.ts answers it).
    const method = preflightMethod(request.method, request.raw.headers) ?? request.method
    const route = RESERVED_PATH.test(context.path) ? null : app.routeTable.matcher.match(method, context.host, context.path)
    if (route === null) return void reject(reply, context, 404, 'no_route', 'no route matches this request')
    context.route = route
    done()
  }
}

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
    host: hostName(request.raw.headers.host),
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

  if (!normalized.ok) return void reject(reply, context, 400, 'blocked', normalized.reason)
  const duplicate = duplicateSingleValuedHeader(request.raw.rawHeaders)
  if (duplicate !== null) return void reject(reply, context, 400, 'blocked', `duplicate ${duplicate} header`)
  done()
}

function checkDeclaredBodySize (request: FastifyRequest, reply: FastifyReply, done: HookHandlerDoneFunction): void {
  const context = request.gateway as GatewayContext
  const declared = request.raw.headers['content-length']
  if (declared !== undefined) {
    const limit = (context.route as NonNullable<GatewayContext['route']>).bodyLimit
    const size = Number(declared)
    if (size > limit) return void reject(reply, context, 413, 'too_large', `request body exceeds the limit of ${limit} bytes`, CLOSE)
    context.bytesIn = size
  }
  // Every stage passed: the body is wanted now (app.ts defers Node's automatic 100 Continue).
  sendContinue(request.raw, reply.raw)
  done()
}

/**
 * Fastify answers 415 for a Content-Type it cannot parse ("a;;;", "text") before any
 * parser runs; a gateway must pass every body through untouched. Hiding the parsed header
 * from Fastify sends every body to the pass-through '*' parser; the upstream still gets
 * the client's Content-Type, because forwarding copies rawHeaders.
 */
function passBodyThrough (request: FastifyRequest, _reply: FastifyReply, payload: RequestPayload, done: (err: null, payload: RequestPayload) => void): void {
  // Assigning undefined rather than delete keeps the headers object's shape (no dictionary mode).
  request.raw.headers['content-type'] = undefined
  done(null, payload)
}

function duplicateSingleValuedHeader (rawHeaders: readonly string[]): string | null {
  let seen: string[] | null = null
  for (let i = 0; i < rawHeaders.length; i += 2) {
    if (!SINGLE_VALUED_LENGTHS.has(rawHeaders[i].length)) continue
    const lower = rawHeaders[i].toLowerCase()
    if (!SINGLE_VALUED.has(lower)) continue
    seen ??= []
    if (seen.includes(lower)) return lower
    seen.push(lower)
  }
  return null
}
