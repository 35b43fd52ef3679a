import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import { EventEmitter } from 'node:events'
import { Readable } from 'node:stream'
import type { Dispatcher } from 'undici'
import { BodyTooLargeError, hasRequestBody, limitedRequestBody } from './body-limit.js'
import { type GatewayError, gatewayErrors, kPublicMessage, type PublicError } from './errors.js'
import type { GatewayContext } from './gateway-context.js'
import { reject, rejectWith } from './gateway-reply.js'
import { clientResponseHeaders, connectionNamedHeaders, upstreamRequestHeaders, VIA } from './proxy-headers.js'
import { unmapIPv4 } from './ip.js'
import { routePrefixOf } from './route-matcher.js'
import type { Target, Upstreams } from '../plugins/upstreams.js'

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
      // Like forwardedProto: a trusted proxy's X-Forwarded-Host (TRUST_PROXY), else the client's Host.
      forwardedHost: request.host,
      via: raw.headers.via,
      host: route.preserveHost ? raw.headers.host : undefined,
      consumerId: context.consumer?.id ?? null,
      consumerName: context.consumer?.name ?? null
    })
    const timeoutMs = route.timeoutMs
    const idempotent = IDEMPOTENT.has(request.method)
    const upstreams = app.upstreams
    const clientGone = new ClientGone(reply)
    let tried: Set<Target> | undefined
    let lastFailure: GatewayError | null = null
    // Between and after attempts nobody else listens: a client abort then must not be an
    // unhandled 'error' (the body limiter re-emits it).
    body?.on('error', ignore)

    for (;;) {
      const target = upstreams.select(route, tried)
      if (target === null) {
        if (body !== null) discard(body)
        return rejectWith(reply, context, lastFailure ?? gatewayErrors.noHealthyTarget(upstreams.retryAfterSeconds(route)), 'upstream_error')
      }
      context.target = target.url
      const attemptBody = body === null ? null : new AttemptBody(body)
      target.inFlight++
      let response: Dispatcher.ResponseData
      try {
        response = await target.pool.request({
          method: request.method as Dispatcher.HttpMethod,
          path: upstreamPath(target.basePath, path) + context.query,
          headers,
          body: attemptBody,
          headersTimeout: timeoutMs,
          bodyTimeout: timeoutMs,
          signal: clientGone
        })
      } catch (err) {
        target.inFlight--
        if (err instanceof BodyTooLargeError) {
          upstreams.report(target, 'aborted')
          // The rest of an over-limit body is not worth reading: close, as for a declared one.
          return rejectWith(reply.header('connection', 'close'), context, gatewayErrors.tooLarge(err.limit), 'too_large')
        }
        if (clientGone.aborted || raw.socket.destroyed) {
          // Nobody is left to answer; the status is for the audit log (nginx's 499).
          upstreams.report(target, 'aborted')
          return reject(reply, context, 499, 'upstream_error', 'client closed the connection before the upstream answered')
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
        return rejectWith(reply, context, failure.error, 'upstream_error')
      }
      upstreams.report(target, response.statusCode >= 500 ? 'failure' : 'success')
      relayBody(upstreams, target, response.body, reply, context, clientGone, timeoutMs)
      reply.code(response.statusCode)
      reply.headers(clientResponseHeaders(response.headers, VIA, reply))
      return reply.send(response.body)
    }
  }
}

/**
 * Aborts the upstream request when the client goes away before its response is complete,
 * so a client that gives up does not leave a request (and a connection) held upstream.
 * undici takes any EventEmitter with `aborted` as a signal: per request this costs far less
 * than an AbortController, whose EventTarget showed in profiles of the hot path.
 */
class ClientGone extends EventEmitter {
  aborted = false

  constructor (reply: FastifyReply) {
    super()
    const res = reply.raw
    // The request's socket, not the response's: a pipelined request's response is given its
    // socket only once the previous response has finished (res.socket is null until then).
    if (reply.request.raw.socket.destroyed) {
      this.aborted = true
      return
    }
    res.once('close', () => {
      if (res.writableFinished) return
      this.aborted = true
      this.emit('abort')
    })
  }
}

/**
 * Watches the upstream body while it streams to the client: in-flight ends when it closes
 * however it ends, and an upstream that fails mid-response counts against the target.
 * Fastify then ends the client response: destroyed (truncated, never hung) once headers
 * went out, or an error answer before — given the upstream status here (502, 504 on the
 * body timeout) rather than a 500.
 */
function relayBody (
  upstreams: Upstreams,
  target: Target,
  upstreamBody: Readable,
  reply: FastifyReply,
  context: GatewayContext,
  clientGone: ClientGone,
  timeoutMs: number
): void {
  upstreamBody.once('error', (err: PublicError & { code?: string }) => {
    if (clientGone.aborted) return
    upstreams.report(target, 'failure')
    context.outcome = 'upstream_error'
    context.detail = `upstream failed mid-response: ${err.code ?? err.message}`
    if (!reply.raw.headersSent) {
      // Nothing reached the client yet: the error handler answers instead, without the
      // upstream's headers (already copied to the raw response by Fastify's stream send).
      for (const name of reply.raw.getHeaderNames()) reply.raw.removeHeader(name)
      for (const name of Object.keys(reply.getHeaders())) if (name !== 'x-request-id') reply.removeHeader(name)
      const { error } = upstreamFailure(err, timeoutMs)
      err.statusCode = error.statusCode
      err[kPublicMessage] = error.message
    }
  })
  upstreamBody.once('close', () => { target.inFlight-- })
}

interface UpstreamFailure {
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
 * Upstream failure → the gateway's answer (traps.md #3): refused/reset → 502, connect
 * timeout and response timeout → 504. A response timeout is not retried: the client has
 * already waited timeoutMs, and the upstream may be acting on the request.
 */
function upstreamFailure (err: unknown, timeoutMs: number): UpstreamFailure {
  const code = (err as { code?: string }).code ?? 'unknown'
  if (code === 'UND_ERR_CONNECT_TIMEOUT') return { error: gatewayErrors.upstreamConnectTimeout(), retryable: true, targetFault: true }
  if (code === 'UND_ERR_HEADERS_TIMEOUT' || code === 'UND_ERR_BODY_TIMEOUT') {
    return { error: gatewayErrors.upstreamTimeout(timeoutMs), retryable: false, targetFault: true }
  }
  const connection = CONNECTION_FAILURES.has(code)
  return { error: gatewayErrors.upstreamUnreachable(code), retryable: connection, targetFault: connection }
}

function ignore (): void {}

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
