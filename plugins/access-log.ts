import { randomUUID } from 'node:crypto'
import type { IncomingMessage } from 'node:http'
import type { Socket } from 'node:net'
import fp from 'fastify-plugin'
import type { FastifyPluginAsync, FastifyReply, FastifyRequest, HookHandlerDoneFunction } from 'fastify'
import { unmapIPv4 } from '../lib/ip.js'
import { IsoClock } from '../lib/iso-clock.js'
import { answerConnect, clientErrorAnswer, clientErrorRequestId, CONNECT_ANSWER } from '../lib/client-errors.js'
import type { Outcome } from '../lib/gateway-context.js'
import type { NewAuditLogRow } from '../repositories/database.js'

/**
 * The end of every request, seen once: one access-log line (pino, info), the request
 * metrics and the dashboard's traffic buckets (plugins/instances.ts), and — for proxied traffic — one audit row. Hooks are on the root so they also
 * see what never reaches the proxied scope's own hooks:
 *  - requests Node's HTTP parser or its timers refuse (400/408/431: server 'clientError');
 *  - requests whose client goes away before the answer is complete (no onResponse then:
 *    the socket's 'close' finds them still in flight);
 *  - requests with a method the proxy does not route (Fastify's 404 handler).
 * Each request is recorded exactly once: it is tracked on its socket from onRequest until
 * onResponse or the socket's close, whichever comes first, and only the first records it.
 */

const kActive = Symbol('gatehouse.activeReplies')
const kTimedOut = Symbol('gatehouse.clientTimedOut')

interface TrackedSocket extends Socket {
  /** The reply in flight on this connection (a Set only when a client pipelines). */
  [kActive]?: FastifyReply | Set<FastifyReply> | null
  /** Node's request timer fired while a request was in flight (Fastify then answers 408). */
  [kTimedOut]?: boolean
}

const REQUEST_LINE = /^([A-Z]{1,20}) ([^\s]{1,2048}) HTTP\/1\.[01]\r?\n/

const round = (ms: number): number => Math.round(ms * 1000) / 1000

export interface AccessLog {
  /**
   * A request Fastify's router refused before any hook ran (frameworkErrors: a path it cannot
   * percent-decode), after its answer was sent: recorded like a request the parser refused.
   */
  routerRefused: (request: FastifyRequest, reply: FastifyReply, detail: string) => void
  /** A proxied answer streamed through a hijacked reply (no onResponse hook then) reached the client whole. */
  hijackedReplyCompleted: (reply: FastifyReply) => void
  /** A WebSocket tunnel opened on this reply: its connection closing later is the tunnel's end, not an aborted request. */
  tunnelOpened: (reply: FastifyReply) => void
  /** The tunnel closed: its one audit row (status 101, bytes both ways, duration). */
  tunnelClosed: (reply: FastifyReply) => void
  /** A connection of another listener (HTTPS): its requests are recorded however the connection ends, as on the main one. */
  trackConnection: (socket: Socket) => void
}

declare module 'fastify' {
  interface FastifyInstance {
    accessLog: AccessLog
  }
}

const accessLogPlugin: FastifyPluginAsync = async (app) => {
  const { metrics, audit, timeseries, logShipping, tracing } = app
  const exportSpans = tracing.exporter !== null
  // LOG_LEVEL is fixed for the process: below info, proxied requests skip building the line.
  const logRequests = ['trace', 'debug', 'info'].includes(app.log.level)
  const clock = new IsoClock()

  app.decorate('accessLog', {
    routerRefused (request: FastifyRequest, reply: FastifyReply, detail: string) {
      const status = reply.statusCode
      const path = request.url.split('?')[0]
      metrics.recordRequest(null, request.method, status, -1, 'blocked', 0, 0)
      timeseries.record(null, status, -1, 0, 0, 'blocked')
      const fields = { route: null, method: request.method, path, status, outcome: 'blocked', detail }
      request.log.info(fields, 'request completed')
      if (logShipping.enabled) logShipping.access({ reqId: request.id, ...fields })
      audit.recordRequest(requestRow(request.id, unmapIPv4(request.ip), request.method, path, status, 'blocked', null, request.headers['user-agent'] ?? null, detail))
    },
    hijackedReplyCompleted (reply: FastifyReply) {
      if (untrack(reply.request.raw.socket as TrackedSocket, reply)) finish(reply.request, reply, reply.raw.statusCode)
    },
    tunnelOpened (reply: FastifyReply) {
      untrack(reply.request.raw.socket as TrackedSocket, reply)
    },
    tunnelClosed (reply: FastifyReply) {
      finish(reply.request, reply, 101)
    },
    trackConnection: (socket: Socket) => { trackConnection(socket) }
  })

  app.routeTable.onSwap((routes) => { metrics.retainRoutes(routes.map((route) => route.name)) })

  function trackConnection (socket: TrackedSocket): void {
    socket[kActive] = null
    socket[kTimedOut] = false
    metrics.connectionOpened()
    socket.once('close', onSocketClose)
  }
  app.server.on('connection', trackConnection)
  // Before Fastify's clientErrorHandler, which destroys the socket.
  app.server.prependListener('clientError', onClientError)
  app.server.on('connect', onConnectMethod)

  app.addHook('onRequest', function trackRequest (request: FastifyRequest, reply: FastifyReply, done: HookHandlerDoneFunction) {
    metrics.requestStarted()
    const socket = request.raw.socket as TrackedSocket
    const active = socket[kActive]
    if (active === null || active === undefined) socket[kActive] = reply
    else if (active instanceof Set) active.add(reply)
    else socket[kActive] = new Set([active, reply])
    done()
  })

  app.addHook('onResponse', function requestCompleted (request: FastifyRequest, reply: FastifyReply, done: HookHandlerDoneFunction) {
    if (untrack(request.raw.socket as TrackedSocket, reply)) finish(request, reply, reply.statusCode)
    done()
  })

  function untrack (socket: TrackedSocket, reply: FastifyReply): boolean {
    const active = socket[kActive]
    if (active === reply) {
      socket[kActive] = null
      return true
    }
    if (active instanceof Set && active.delete(reply)) {
      if (active.size === 0) socket[kActive] = null
      return true
    }
    return false
  }

  function onSocketClose (this: TrackedSocket): void {
    metrics.connectionClosed()
    const active = this[kActive]
    if (active === null || active === undefined) return
    this[kActive] = null
    if (active instanceof Set) for (const reply of active) aborted(reply, this[kTimedOut] === true)
    else aborted(active, this[kTimedOut] === true)
  }

  /** The connection closed before the answer was complete: the client went away, or Node's request timer cut it. */
  function aborted (reply: FastifyReply, timedOut: boolean): void {
    const raw = reply.raw
    // Complete, but the connection closed before the hijacked reply's own 'close' told us.
    if (raw.writableFinished) return finish(reply.request, reply, raw.statusCode)
    const status = raw.headersSent ? raw.statusCode : timedOut ? 408 : 499
    const context = reply.request.gateway
    if (context !== null) {
      if (status === 408) {
        context.outcome = 'blocked'
        context.detail = 'request not received in time'
      } else if (context.detail === null) {
        context.detail = 'client closed the connection before the response was complete'
      }
    }
    finish(reply.request, reply, status)
  }

  function finish (request: FastifyRequest, reply: FastifyReply, status: number): void {
    metrics.requestEnded()
    const durationMs = round(reply.elapsedTime)
    const context = request.gateway
    if (context !== null) {
      const routeName = context.route === null ? null : context.route.name
      const bytesOut = context.socket.bytesWritten - context.socketBytesWrittenAtStart
      metrics.recordRequest(routeName, request.method, status, durationMs, context.outcome, context.bytesIn, bytesOut)
      timeseries.record(context.route === null ? null : context.route.id, status, durationMs, context.bytesIn, bytesOut, context.outcome)
      const traceId = context.trace === null ? null : context.trace.traceId
      if (logRequests || logShipping.enabled) {
        const fields = {
          route: routeName,
          method: request.method,
          path: context.path,
          status,
          durationMs,
          outcome: context.outcome,
          traceId,
          consumer: context.consumer === null ? null : context.consumer.name,
          bytesIn: context.bytesIn,
          bytesOut
        }
        if (logRequests) request.log.info(fields, 'request completed')
        if (logShipping.enabled) logShipping.access({ reqId: request.id, ...fields })
      }
      if (exportSpans && context.trace !== null) {
        tracing.serverSpanEnded(context.trace, { method: request.method, route: routeName, path: context.path, status, outcome: context.outcome, target: context.target, startedAt: context.startedAt })
      }
      audit.recordRequest({
        ts: clock.now(),
        event_type: 'request',
        request_id: request.id,
        client_ip: context.clientIp,
        method: request.method,
        path: context.path,
        route_id: context.route === null ? null : context.route.id,
        consumer_id: context.consumer === null ? null : context.consumer.id,
        status,
        outcome: context.outcome,
        duration_ms: durationMs,
        bytes_in: context.bytesIn,
        bytes_out: bytesOut,
        user_agent: request.headers['user-agent'] ?? null,
        detail: context.detail,
        trace_id: traceId
      })
      return
    }
    const path = request.url.split('?')[0]
    if (request.is404) {
      // A method the proxy does not route: proxied traffic that matched no route (docs/routing.md "Matching").
      const detail = `no route for method ${request.method}`
      metrics.recordRequest(null, request.method, status, durationMs, 'no_route', 0, 0)
      timeseries.record(null, status, durationMs, 0, 0, 'no_route')
      const fields = { route: null, method: request.method, path, status, durationMs, outcome: 'no_route' }
      request.log.info(fields, 'request completed')
      if (logShipping.enabled) logShipping.access({ reqId: request.id, ...fields })
      audit.recordRequest(requestRow(request.id, unmapIPv4(request.ip), request.method, path, status, 'no_route', durationMs, request.headers['user-agent'] ?? null, detail))
      return
    }
    // Reserved endpoints (/health, /admin/*, /metrics, /docs): logged, not counted as traffic.
    const fields = { route: null, method: request.method, path, status, durationMs }
    request.log.info(fields, 'request completed')
    if (logShipping.enabled) logShipping.access({ reqId: request.id, ...fields })
  }

  function onClientError (err: NodeJS.ErrnoException & { rawPacket?: Buffer }, socket: TrackedSocket): void {
    if (err.code === 'ECONNRESET' || socket.destroyed) return
    if (socket[kActive] !== null && socket[kActive] !== undefined) {
      // A request is in flight on this connection: it is recorded when the socket closes.
      if (err.code === 'ERR_HTTP_REQUEST_TIMEOUT') socket[kTimedOut] = true
      return
    }
    // Nothing is answered on a connection that cannot be written to: no request to record.
    if (!socket.writable) return
    const { statusCode: status, outcome, message } = clientErrorAnswer(err.code)
    const detail = status === 400 ? `${message} (${err.code ?? 'unknown'})` : message
    const line = err.rawPacket === undefined ? null : REQUEST_LINE.exec(err.rawPacket.subarray(0, 2100).toString('latin1'))
    const method = line === null ? null : line[1]
    const path = line === null ? null : line[2].split('?')[0]
    const requestId = clientErrorRequestId(err)
    metrics.recordRequest(null, method ?? 'OTHER', status, -1, outcome, 0, 0)
    timeseries.record(null, status, -1, 0, 0, outcome)
    const fields = { reqId: requestId, route: null, method, path, status, outcome, detail }
    app.log.info(fields, 'request completed')
    if (logShipping.enabled) logShipping.access(fields)
    audit.recordRequest(requestRow(requestId, unmapIPv4(socket.remoteAddress ?? ''), method, path, status, outcome, null, null, detail))
  }

  /** A CONNECT on the main listener (Node's 'connect' event): answered 405 and recorded like a refused request. */
  function onConnectMethod (req: IncomingMessage, socket: Socket): void {
    const requestId = randomUUID()
    answerConnect(socket, requestId)
    const { statusCode: status, outcome, message } = CONNECT_ANSWER
    // The authority-form target ("host:443") is what a CONNECT asks for; it has no path.
    const target = (req.url ?? '').slice(0, 2048)
    metrics.recordRequest(null, 'CONNECT', status, -1, outcome, 0, 0)
    timeseries.record(null, status, -1, 0, 0, outcome)
    const fields = { reqId: requestId, route: null, method: 'CONNECT', path: target, status, outcome }
    app.log.info(fields, 'request completed')
    if (logShipping.enabled) logShipping.access(fields)
    audit.recordRequest(requestRow(requestId, unmapIPv4(socket.remoteAddress ?? ''), 'CONNECT', target, status, outcome, null, req.headers['user-agent'] ?? null, message))
  }
}

function requestRow (
  requestId: string, clientIp: string, method: string | null, path: string | null, status: number,
  outcome: Outcome, durationMs: number | null, userAgent: string | null, detail: string
): NewAuditLogRow {
  return {
    ts: new Date().toISOString(),
    event_type: 'request',
    request_id: requestId,
    client_ip: clientIp,
    method,
    path,
    route_id: null,
    consumer_id: null,
    status,
    outcome,
    duration_ms: durationMs,
    // Not measured: these never had a gateway context counting bytes.
    bytes_in: null,
    bytes_out: null,
    user_agent: userAgent,
    detail,
    trace_id: null
  }
}

export default fp(accessLogPlugin, { name: 'access-log', dependencies: ['metrics', 'instances', 'audit', 'route-table', 'log-shipping', 'tracing'] })
