import type { IncomingHttpHeaders } from 'node:http'
import { performance } from 'node:perf_hooks'
import { pipeline as pipeStreams, Readable, type Writable } from 'node:stream'
import type { FastifyReply, FastifyRequest } from 'fastify'
import type { Dispatcher } from 'undici'
import { BodyTooLargeError, hasRequestBody, limitedRequestBody } from './body-limit.js'
import { type GatewayError, gatewayErrors } from './errors.js'
import type { GatewayContext } from './gateway-context.js'
import { reject, rejectWith } from './gateway-reply.js'
import { addUpstreamResponseHeaders, connectionNamedHeaders, type ResponseHead, upstreamRequestHeaders } from './proxy-headers.js'
import { unmapIPv4 } from './ip.js'
import type { UpstreamRequest } from './pipeline.js'
import { routePrefixOf } from './route-matcher.js'
import { addServerTiming, upstreamAnswered } from './server-timing.js'
import { type SendTimeoutError, UpstreamExchange, UpstreamStatusError } from './upstream-exchange.js'
import type { Route } from '../schemas/route.js'
import type { Tracer } from './tracer.js'
import type { AttemptResult, Target } from './upstream-target.js'
import { isUpstreamTlsFailure } from './upstream-tls.js'

const IDEMPOTENT = new Set(['GET', 'HEAD', 'OPTIONS', 'PUT', 'DELETE'])

export type ForwardHandler = (request: FastifyRequest, reply: FastifyReply) => Promise<void>

/** What forwarding needs from the rest of the gateway; plugins/proxy.ts passes it in. */
export interface ForwardDependencies {
  /** Target choice, passive health and retry counting (app.upstreams). */
  upstreams: {
    select: (route: Route, exclude?: ReadonlySet<Target>) => Target | null
    report: (target: Target, result: AttemptResult) => void
    retryAfterSeconds: (route: Route) => number
    countRetry: () => void
  }
  tracer: Tracer
  /** A proxied answer streamed through the hijacked reply reached the client whole: record it (app.accessLog). */
  completed: (reply: FastifyReply) => void
  /** SEND_TIMEOUT_MS. */
  sendTimeoutMs: number
  /** SERVER_TIMING. */
  serverTiming: boolean
}

/**
 * The one function that sends a routed request upstream, so the transport can be swapped
 * behind it (README "Why proxied traffic goes through undici directly"): undici
 * Pool.dispatch straight from the raw request, one pass over headers, target choice and
 * retries through `upstreams`, failures mapped to 502/503/504.
 * Settles once the reply is answered or handed to the exchange streaming the upstream's
 * answer (lib/upstream-exchange.ts), which hijacks it from Fastify: the route handler must
 * not return this promise to Fastify.
 */
export function createForward ({ upstreams, tracer, completed, sendTimeoutMs, serverTiming }: ForwardDependencies): ForwardHandler {
  /**
   * The upstream's status and headers, minus hop-by-hop ones, plus what the gateway's stages
   * set; answers where the body goes: the client's response, or the first of the route's body
   * filters (lib/pipeline.ts onResponseBody), which pass it on to the response.
   */
  function writeHead (reply: FastifyReply, statusCode: number, upstreamHeaders: IncomingHttpHeaders): Writable {
    const context = reply.request.gateway as GatewayContext
    if (serverTiming) upstreamAnswered(context, performance.now())
    const head = addUpstreamResponseHeaders(reply.getHeaders(), upstreamHeaders)
    const pipeline = context.pipeline
    const finish = pipeline?.onResponseHead ?? null
    const filterBody = pipeline?.onResponseBody ?? null
    if (finish !== null) finish(reply.request, head)
    const filters = filterBody === null ? null : filterBody(reply.request, statusCode, head, upstreamHeaders)
    if (serverTiming) addServerTiming(head, context, performance.now())
    // A stage removes a header by setting it to undefined, which writeHead would refuse.
    if (finish !== null || filterBody !== null) dropRemoved(head)
    const res = reply.raw
    res.writeHead(statusCode, head)
    if (filters === null || filters.length === 0) return res
    // A filter that fails cuts the answer (the head is out: a truncated answer, never a hung one).
    pipeStreams([...filters, res], (err) => { if (err !== undefined && err !== null && !res.destroyed) res.destroy() })
    return filters[0]
  }

  /** A slow reader cut off: the client's doing, never the target's (docs/upstreams.md "Slow readers: `SEND_TIMEOUT_MS`"). */
  function cutOff (reply: FastifyReply, err: SendTimeoutError): void {
    const context = reply.request.gateway as GatewayContext
    context.outcome = 'blocked'
    context.detail = err.message
  }

  return async function forward (request, reply) {
    const context = request.gateway as GatewayContext
    const route = context.route as NonNullable<GatewayContext['route']>
    const raw = request.raw
    const bodyLimit = route.bodyLimit
    const body = hasRequestBody(request) ? limitedRequestBody(request, context, bodyLimit) : null
    const upstreamRequest = buildUpstreamRequest(request, context, route)
    const changeUpstreamRequest = context.pipeline?.onUpstreamRequest
    if (changeUpstreamRequest !== undefined && changeUpstreamRequest !== null) {
      const refused = changeUpstreamRequest(request, upstreamRequest)
      if (refused !== null) {
        if (body !== null) discard(body)
        rejectWith(reply, context, refused, 'blocked')
        return
      }
    }
    // One traceparent per attempt, naming the attempt's client span (its value set below).
    const trace = context.trace
    const traceparentAt = trace === null ? -1 : upstreamRequest.headers.push('traceparent', '') - 1
    const timeoutMs = route.timeoutMs
    const idempotent = IDEMPOTENT.has(request.method)
    let tried: Set<Target> | undefined
    let lastFailure: GatewayError | null = null
    // Between and after attempts nobody else listens: a client abort then must not be an
    // unhandled 'error' (the body limiter re-emits it).
    body?.on('error', ignore)

    for (;;) {
      const target = upstreams.select(route, tried)
      if (target === null) {
        if (body !== null) discard(body)
        rejectWith(reply, context, lastFailure ?? gatewayErrors.noHealthyTarget(upstreams.retryAfterSeconds(route)), 'upstream_error')
        return
      }
      context.target = target.url
      const span = trace === null ? null : tracer.clientSpan(trace, request.method, target.url, tried?.size ?? 0)
      if (span !== null) upstreamRequest.headers[traceparentAt] = span.traceparent
      const attemptBody = body === null ? null : new AttemptBody(body)
      target.inFlight++
      const exchange = new UpstreamExchange(reply, {
        writeHead,
        failedAfterStart (err, canAnswer) {
          upstreams.report(target, 'failure')
          if (canAnswer) rejectWith(reply, context, upstreamFailure(err, timeoutMs).error, 'upstream_error')
          // The audit row says when it failed; the client's answer, what failed.
          context.outcome = 'upstream_error'
          context.detail = `upstream failed mid-response: ${(err as { code?: string }).code ?? err.message}`
        },
        completed,
        settled () {
          target.inFlight--
          span?.end()
        },
        cutOff,
        sendTimeoutMs
      })
      if (serverTiming) context.upstreamStartedAt = performance.now()
      target.pool.dispatch({
        method: request.method as Dispatcher.HttpMethod,
        path: upstreamPath(target.basePath, upstreamRequest.path) + context.query,
        headers: upstreamRequest.headers,
        body: attemptBody,
        headersTimeout: timeoutMs,
        bodyTimeout: timeoutMs
      }, exchange)
      let statusCode: number
      try {
        statusCode = await exchange.started
        if (span !== null) span.status = statusCode
      } catch (err) {
        if (span !== null) span.error = (err as { code?: string }).code ?? (err as Error).name
        if (serverTiming) upstreamAnswered(context, performance.now())
        if (err instanceof BodyTooLargeError) {
          upstreams.report(target, 'aborted')
          // The rest of an over-limit body is not worth reading: close, as for a declared one.
          rejectWith(reply.header('connection', 'close'), context, gatewayErrors.tooLarge(err.limit), 'too_large')
          return
        }
        if (exchange.clientGone || raw.socket.destroyed) {
          // Nobody is left to answer; the status is for the audit log (nginx's 499).
          upstreams.report(target, 'aborted')
          reject(reply, context, 499, 'proxied', 'client closed the connection before the upstream answered')
          return
        }
        const failure = upstreamFailure(err, timeoutMs)
        upstreams.report(target, failure.targetFault ? 'failure' : 'aborted')
        lastFailure = failure.error
        // Only a failed request needs the set of targets it tried (the next pick skips them).
        tried ??= new Set()
        tried.add(target)
        // Retried only when nothing reached the client and the upstream cannot have acted on
        // a half-sent body: a connection failure, an idempotent method, an unsent body.
        if (failure.retryable && idempotent && attemptBody?.consumed !== true && tried.size <= route.retries) {
          upstreams.countRetry()
          continue
        }
        if (body !== null) discard(body)
        rejectWith(reply, context, failure.error, 'upstream_error')
        return
      }
      upstreams.report(target, statusCode >= 500 ? 'failure' : 'success')
      return
    }
  }
}

/**
 * The request as it goes upstream, before the route's stages change it: the forwarded path
 * (after stripPath) and the headers in one pass (lib/proxy-headers.ts). Also used by the
 * response cache to revalidate an entry on its own (policies/cache/).
 */
export function buildUpstreamRequest (request: FastifyRequest, context: GatewayContext, route: NonNullable<GatewayContext['route']>): UpstreamRequest {
  const raw = request.raw
  const path = route.stripPath ? stripPrefix(context.path, routePrefixOf(route)) : context.path
  const headers = upstreamRequestHeaders({
    rawHeaders: raw.rawHeaders,
    connectionNamed: connectionNamedHeaders(raw.headers.connection),
    stripped: context.strippedHeaders,
    requestId: request.id,
    forwardedFor: appendForwardedFor(raw.headers['x-forwarded-for'] as string | undefined, context.socket.remoteAddress),
    forwardedProto: request.protocol,
    // Like forwardedProto: a trusted proxy's X-Forwarded-Host (TRUST_PROXY), else the client's Host.
    forwardedHost: request.host,
    via: raw.headers.via,
    httpVersion: raw.httpVersion,
    clientIp: context.clientIp,
    host: route.preserveHost ? raw.headers.host ?? (raw.headers[':authority'] as string | undefined) : undefined,
    consumerId: context.consumer?.id ?? null,
    consumerName: context.consumer?.name ?? null
  })
  return { path, headers }
}

export interface UpstreamFailure {
  error: GatewayError
  /** The connection failed before any response: safe to try another target. */
  retryable: boolean
  /** Says something about the target's health (counts toward ejection). */
  targetFault: boolean
}

/** Socket-level failures before a response: connection refused, reset, closed, unreachable. */
const CONNECTION_FAILURES = new Set([
  'ECONNREFUSED', 'ECONNRESET', 'EPIPE', 'ETIMEDOUT', 'EHOSTUNREACH', 'ENETUNREACH', 'EHOSTDOWN',
  'ENOTFOUND', 'EAI_AGAIN', 'UND_ERR_SOCKET', 'UND_ERR_CLOSED'
])

/**
 * Upstream failure → the gateway's answer (docs/upstreams.md "Failure answers"):
 * refused/reset → 502, connect timeout and response timeout → 504. A response timeout is not
 * retried: the client has already waited timeoutMs, and the upstream may be acting on the request.
 */
export function upstreamFailure (err: unknown, timeoutMs: number): UpstreamFailure {
  if (err instanceof UpstreamStatusError) return { error: gatewayErrors.upstreamBadStatus(err.status), retryable: false, targetFault: true }
  const code = (err as { code?: string }).code ?? 'unknown'
  if (code === 'UND_ERR_CONNECT_TIMEOUT') return { error: gatewayErrors.upstreamConnectTimeout(), retryable: true, targetFault: true }
  if (code === 'UND_ERR_HEADERS_TIMEOUT' || code === 'UND_ERR_BODY_TIMEOUT') {
    return { error: gatewayErrors.upstreamTimeout(timeoutMs), retryable: false, targetFault: true }
  }
  if (isUpstreamTlsFailure(code)) {
    return { error: gatewayErrors.upstreamTls(`${code} (${(err as Error).message})`), retryable: false, targetFault: true }
  }
  const connection = CONNECTION_FAILURES.has(code)
  return { error: gatewayErrors.upstreamUnreachable(code), retryable: connection, targetFault: connection }
}

function ignore (): void {}

function dropRemoved (head: ResponseHead): void {
  for (const name in head) {
    if (head[name] === undefined) delete head[name]
  }
}

/** Reads and drops what is left of a request body the upstream will never get, so the client connection stays usable. */
function discard (body: Readable): void {
  if (!body.destroyed && !body.readableEnded) body.resume()
}

/**
 * One attempt's view of the request body. undici destroys a body stream when an attempt
 * fails, and destroying the client's request would cut its connection before it gets the
 * 502; this wrapper is destroyed instead and only pauses the source. `consumed` tells
 * whether any byte left the source — if none did, another target can still get it whole.
 */
class AttemptBody extends Readable {
  consumed = false
  private attached = false

  constructor (private readonly source: Readable) {
    super()
    source.on('error', this.onError)
    // The source's error (a client that aborts or is cut by REQUEST_TIMEOUT_MS) is re-emitted
    // here. undici listens only once a connection takes the request; while the request waits
    // in the pool's queue nobody does, and an 'error' without a listener kills the process.
    // The attempt learns of the abort from the client's socket (UpstreamExchange.clientGone).
    this.on('error', ignore)
  }

  override _read (): void {
    if (!this.attached) {
      this.attached = true
      this.source.on('data', this.onData)
      this.source.once('end', this.onEnd)
    }
    this.source.resume()
  }

  override _destroy (err: Error | null, callback: (err?: Error | null) => void): void {
    this.detach()
    callback(err)
  }

  private readonly onData = (chunk: Buffer): void => {
    this.consumed = true
    if (!this.push(chunk)) this.source.pause()
  }

  private readonly onEnd = (): void => {
    this.detach()
    this.push(null)
  }

  private readonly onError = (err: Error): void => {
    if (!this.destroyed) this.destroy(err)
  }

  private detach (): void {
    this.source.off('error', this.onError)
    if (!this.attached) return
    this.attached = false
    this.source.off('data', this.onData)
    this.source.off('end', this.onEnd)
    if (!this.source.readableEnded) this.source.pause()
  }
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
