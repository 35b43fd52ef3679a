import { performance } from 'node:perf_hooks'
import type { FastifyInstance, FastifyReply, FastifyRequest, RequestPayload } from 'fastify'
import { preflightMethod } from '../lib/cors.js'
import { createForward } from '../lib/forward.js'
import { unmapIPv4 } from '../lib/ip.js'
import type { GatewayContext } from '../lib/gateway-context.js'
import { reject } from '../lib/gateway-reply.js'
import { normalizePath } from '../lib/normalize-path.js'
import { sendContinue } from '../lib/expect-continue.js'
import type { RoutePipeline } from '../lib/pipeline.js'
import type { ResponseHead } from '../lib/proxy-headers.js'
import { hostName } from '../lib/route-matcher.js'
import { addServerTiming } from '../lib/server-timing.js'
import { declaresBody, handshakeProblem, isUpgrade, isWebSocketUpgrade } from '../lib/websocket-handshake.js'
import type { Route } from '../schemas/route.js'

/**
 * Paths of the reserved endpoints (README "Reserved endpoints"). A spelling like "/x/../admin/routes"
 * or an unknown "/admin/…" path reaches this scope's catch-all; it must never be proxied.
 */
const RESERVED_PATH = /^\/(?:admin|docs|health|ready|metrics)(?:\/|$)/

/** Request headers whose duplicates are refused (docs/routing.md "Refused before routing"): Node silently keeps the first. */
const SINGLE_VALUED = new Set(['host', 'authorization', 'proxy-authorization', 'x-api-key', 'x-request-id', 'content-length', 'transfer-encoding'])
/** Their name lengths: most headers are skipped without lower-casing their names. */
const SINGLE_VALUED_LENGTHS = new Set([...SINGLE_VALUED].map((name) => name.length))

/**
 * Proxied traffic: every path that is not a reserved endpoint. Registered without fp so its
 * hooks and its pass-through content-type parser stay inside this scope. One onRequest hook
 * runs the order of policy (docs/policies.md, top): the request context (request id), filters
 * (403) and route match (404) for every request, then the matched route's own pipeline —
 * only the stages its fields enable, compiled when the route table swapped (lib/pipeline.ts,
 * docs/architecture.md) — then forward, then the audit (plugins/access-log.ts).
 */
export default async function proxy (app: FastifyInstance): Promise<void> {
  // Proxied bodies are never parsed: the raw stream goes to the upstream untouched.
  app.removeAllContentTypeParsers()
  app.addContentTypeParser('*', (_request, _payload, done) => { done(null) })

  const { filters, routeTable } = app
  app.addHook('onRequest', function runGatewayStages (request, reply, done) {
    const context = startGatewayContext(request, reply)
    if (context === null || filters.refused(reply, context)) return
    const pipeline = matchRoute(request, reply, context)
    if (pipeline !== null) pipeline.onRequest(request, reply, done)
  })
  app.addHook('onSend', finishResponseHeads(app.config.serverTiming))
  app.addHook('preParsing', passBodyThrough)
  // The audit row, metrics and access-log line of each request: plugins/access-log.ts (root hooks,
  // so requests refused before this scope and clients that go away are recorded too).

  const forward = createForward({
    upstreams: app.upstreams,
    tracer: app.tracing,
    completed: (reply) => { app.accessLog.hijackedReplyCompleted(reply) },
    sendTimeoutMs: app.config.sendTimeoutMs,
    serverTiming: app.config.serverTiming
  })
  const websockets = app.websockets
  app.route({
    method: ['DELETE', 'GET', 'HEAD', 'PATCH', 'POST', 'PUT', 'OPTIONS'],
    url: '/*',
    exposeHeadRoute: false,
    schema: { hide: true },
    handler (request, reply) {
      // A checked WebSocket handshake (upgradeRefused let it through): tunnelled, not forwarded.
      if (isWebSocketUpgrade(request.raw)) return void websockets.open(request, reply)
      // Every stage passed: the body is wanted now (app.ts defers Node's automatic 100 Continue).
      sendContinue(request.raw, reply.raw)
      // Not returned to Fastify: forward answers itself, or hands the reply to the exchange
      // streaming the upstream's answer, which hijacks it (lib/upstream-exchange.ts).
      forward(request, reply).catch((err: Error) => { if (!reply.sent) reply.send(err) })
    }
  })

  /** The matched route's pipeline, or null when the request was answered 404. */
  function matchRoute (request: FastifyRequest, reply: FastifyReply, context: GatewayContext): RoutePipeline | null {
    // A CORS preflight is matched by the method it asks about (its CORS stage answers it: policies/cors/).
    const preflight = preflightMethod(request.method, request.raw.headers)
    const route = RESERVED_PATH.test(context.path) ? null : routeTable.matcher.match(preflight ?? request.method, context.host, context.path)
    if (route === null) return notFound(reply, context)
    const pipeline = routeTable.pipelineOf(route)
    context.route = route
    context.pipeline = pipeline
    // Requests with Upgrade reach here only through the listeners' 'upgrade' event (plugins/websocket.ts).
    if (isUpgrade(request.raw) && upgradeRefused(request, reply, context, route, pipeline)) return null
    // Without a CORS stage a preflight is a plain OPTIONS request, which the route must accept.
    if (preflight !== null && !pipeline.answersPreflight && route.methods.length > 0 && !route.methods.includes('OPTIONS')) {
      return notFound(reply, context)
    }
    return pipeline
  }
}

/**
 * Upgrade requests (docs/websocket.md): a WebSocket handshake to a route without `websocket`
 * → 404, an invalid one → 400, an Origin the route's CORS policy (its own, or CORS_ORIGINS) does not allow → 403. Another
 * upgrade (h2c) without a body is served as a plain request (the Upgrade header is never
 * forwarded); with a body it is refused 400. Answers true when it answered the request.
 */
function upgradeRefused (request: FastifyRequest, reply: FastifyReply, context: GatewayContext, route: Route, pipeline: RoutePipeline): boolean {
  const raw = request.raw
  if (!isWebSocketUpgrade(raw)) {
    if (!declaresBody(raw)) return false
    reject(reply, context, 400, 'blocked', 'only WebSocket upgrades are accepted; this upgrade request has a body')
    return true
  }
  if (route.websocket === false) {
    reject(reply, context, 404, 'no_route', 'this route does not accept WebSocket upgrades')
    return true
  }
  const problem = handshakeProblem(raw)
  if (problem !== null) {
    reject(reply, context, 400, 'blocked', problem)
    return true
  }
  const origin = raw.headers.origin
  if (origin !== undefined && pipeline.allowsOrigin !== null && !pipeline.allowsOrigin(origin)) {
    reject(reply, context, 403, 'blocked', `Origin ${origin} is not allowed to open a WebSocket on this route`)
    return true
  }
  return false
}

function notFound (reply: FastifyReply, context: GatewayContext): null {
  reject(reply, context, 404, 'no_route', 'no route matches this request')
  return null
}

type OnSendDone = (err: Error | null, payload?: unknown) => void

/**
 * Answers sent through Fastify (a stage's 4xx, an upstream failure, an answer from the cache):
 * the route's stages have the last word on their headers, as on streamed answers
 * (lib/forward.ts writeHead), and a Buffer body may be replaced by a stage (its compressed form).
 * Server-Timing goes on every answer of a matched route unless SERVER_TIMING=false.
 */
function finishResponseHeads (serverTiming: boolean) {
  return function finishResponseHead (request: FastifyRequest, reply: FastifyReply, payload: unknown, done: OnSendDone): void {
    const context = request.gateway
    if (context === null || context.route === null) return done(null, payload)
    const pipeline = context.pipeline
    const finish = pipeline?.onResponseHead ?? null
    const replaceBody = Buffer.isBuffer(payload) ? pipeline?.onGatewayPayload ?? null : null
    if (finish === null && replaceBody === null) {
      if (serverTiming) {
        const head: ResponseHead = { 'server-timing': reply.getHeader('server-timing') }
        addServerTiming(head, context, performance.now())
        reply.header('server-timing', head['server-timing'])
      }
      return done(null, payload)
    }
    const before = reply.getHeaders()
    const head: ResponseHead = { ...before }
    if (finish !== null) finish(request, head)
    const replaced = replaceBody === null ? null : replaceBody(request, reply.statusCode, head, payload as Buffer)
    const send = (body: unknown): void => {
      if (serverTiming) addServerTiming(head, context, performance.now())
      for (const name of Object.keys(before)) {
        if (head[name] === undefined) reply.removeHeader(name)
      }
      for (const [name, value] of Object.entries(head)) {
        if (value !== undefined && value !== before[name]) reply.header(name, value)
      }
      done(null, body)
    }
    if (replaced === null) return send(payload)
    if (Buffer.isBuffer(replaced)) return send(replaced)
    replaced.then(send, (err: Error) => {
      request.log.warn({ err }, 'a stage failed to replace an answer\'s body; sent as it is')
      send(payload)
    })
  }
}

/** The request's gateway context (request id, normalised path), or null when the request was refused (400). */
function startGatewayContext (request: FastifyRequest, reply: FastifyReply): GatewayContext | null {
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
    host: hostName(request.raw.headers.host ?? (request.raw.headers[':authority'] as string | undefined)),
    route: null,
    pipeline: null,
    consumer: null,
    strippedHeaders: null,
    outcome: 'proxied',
    target: null,
    detail: null,
    bytesIn: 0,
    upstreamStartedAt: -1,
    upstreamMs: 0,
    socket,
    socketBytesWrittenAtStart: socket.bytesWritten,
    // Node joins a repeated traceparent into one "a, b" value, which is invalid: a new trace starts.
    trace: request.server.tracing.start(request.raw.headers.traceparent as string | undefined)
  }
  request.gateway = context
  reply.header('x-request-id', request.id)

  if (!normalized.ok) {
    reject(reply, context, 400, 'blocked', normalized.reason)
    return null
  }
  const duplicate = duplicateSingleValuedHeader(request.raw.rawHeaders)
  if (duplicate !== null) {
    reject(reply, context, 400, 'blocked', `duplicate ${duplicate} header`)
    return null
  }
  // Node's parser refuses HTTP/1 headers over 16 KiB (431); its HTTP/2 server only advertises
  // the limit (docs/tls.md "The HTTPS listener"), so HTTP/2 requests are measured here.
  if (request.raw.httpVersionMajor === 2 && headerBytes(request.raw.rawHeaders) > MAX_HEADER_BYTES) {
    reject(reply, context, 431, 'blocked', `request headers exceed ${MAX_HEADER_BYTES} bytes`)
    return null
  }
  return context
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

/** The limit of the listeners (app.ts): 16 KiB of request headers. */
const MAX_HEADER_BYTES = 16 * 1024

function headerBytes (rawHeaders: readonly string[]): number {
  let bytes = 0
  for (const part of rawHeaders) bytes += part.length
  return bytes
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
