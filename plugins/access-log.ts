import { randomUUID } from 'node:crypto'
import type { IncomingMessage } from 'node:http'
import type { Socket } from 'node:net'
import fp from 'fastify-plugin'
import type { FastifyBaseLogger, FastifyPluginAsync, FastifyReply, FastifyRequest, HookHandlerDoneFunction } from 'fastify'
import { unmapIPv4 } from '../lib/ip.js'
import { IsoClock } from '../lib/iso-clock.js'
import { answerConnect, clientErrorAnswer, clientErrorRequestId, CONNECT_ANSWER } from '../lib/client-errors.js'
import type { Outcome } from '../lib/gateway-context.js'
import { addInFlight, hasInFlight, initInFlight, markTimedOut, removeInFlight, takeInFlight, timedOut } from '../lib/in-flight.js'
import { accessLogLine, auditRow, type RequestRecord, roundMs } from '../lib/request-record.js'

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

const REQUEST_LINE = /^([A-Z]{1,20}) ([^\s]{1,2048}) HTTP\/1\.[01]\r?\n/

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
      record(refusedRecord(request.id, unmapIPv4(request.ip), request.method, pathOf(request.url), reply.statusCode, 'blocked', request.headers['user-agent'] ?? null, detail), request.log)
    },
    hijackedReplyCompleted (reply: FastifyReply) {
      if (removeInFlight(reply.request.raw.socket, reply)) finish(reply.request, reply, reply.raw.statusCode)
    },
    tunnelOpened (reply: FastifyReply) {
      removeInFlight(reply.request.raw.socket, reply)
    },
    tunnelClosed (reply: FastifyReply) {
      finish(reply.request, reply, 101)
    },
    trackConnection: (socket: Socket) => { trackConnection(socket) }
  })

  app.routeTable.onSwap((routes) => { metrics.retainRoutes(routes.map((route) => route.name)) })

  function trackConnection (socket: Socket): void {
    initInFlight(socket)
    metrics.connectionOpened()
    socket.once('close', onSocketClose)
  }
  app.server.on('connection', trackConnection)
  // Before Fastify's clientErrorHandler, which destroys the socket.
  app.server.prependListener('clientError', onClientError)
  app.server.on('connect', onConnectMethod)

  app.addHook('onRequest', function trackRequest (request: FastifyRequest, reply: FastifyReply, done: HookHandlerDoneFunction) {
    metrics.requestStarted()
    addInFlight(request.raw.socket, reply)
    done()
  })

  app.addHook('onResponse', function requestCompleted (request: FastifyRequest, reply: FastifyReply, done: HookHandlerDoneFunction) {
    if (removeInFlight(request.raw.socket, reply)) finish(request, reply, reply.statusCode)
    done()
  })

  function onSocketClose (this: Socket): void {
    metrics.connectionClosed()
    for (const reply of takeInFlight<FastifyReply>(this)) aborted(reply, timedOut(this))
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

  /** The one place an ended request is counted, logged, shipped and written to the audit log. */
  function record (ended: RequestRecord, log: FastifyBaseLogger): void {
    const routeName = ended.route === null ? null : ended.route.name
    const durationMs = ended.durationMs ?? -1
    const bytesIn = ended.bytesIn ?? 0
    const bytesOut = ended.bytesOut ?? 0
    metrics.recordRequest(routeName, ended.method ?? 'OTHER', ended.status, durationMs, ended.outcome, bytesIn, bytesOut)
    timeseries.record(ended.route === null ? null : ended.route.id, ended.status, durationMs, bytesIn, bytesOut, ended.outcome)
    if (logRequests || logShipping.enabled) {
      const line = accessLogLine(ended)
      if (logRequests) log.info(line, 'request completed')
      if (logShipping.enabled) logShipping.access({ reqId: ended.requestId, ...line })
    }
    audit.recordRequest(auditRow(ended, clock.now()))
  }

  function finish (request: FastifyRequest, reply: FastifyReply, status: number): void {
    metrics.requestEnded()
    const durationMs = roundMs(reply.elapsedTime)
    const context = request.gateway
    if (context !== null) {
      const ended: RequestRecord = {
        eventType: 'request',
        requestId: request.id,
        clientIp: context.clientIp,
        method: request.method,
        path: context.path,
        route: context.route,
        consumer: context.consumer,
        status,
        outcome: context.outcome,
        durationMs,
        bytesIn: context.bytesIn,
        bytesOut: context.socket.bytesWritten - context.socketBytesWrittenAtStart,
        userAgent: request.headers['user-agent'] ?? null,
        detail: context.detail,
        traceId: context.trace === null ? null : context.trace.traceId
      }
      record(ended, request.log)
      if (exportSpans && context.trace !== null) {
        tracing.serverSpanEnded(context.trace, { method: request.method, route: ended.route === null ? null : ended.route.name, path: context.path, status, outcome: context.outcome, target: context.target, startedAt: context.startedAt })
      }
      return
    }
    const path = pathOf(request.url)
    if (request.is404) {
      // A method the proxy does not route: proxied traffic that matched no route (docs/routing.md "Matching").
      const ended = refusedRecord(request.id, unmapIPv4(request.ip), request.method, path, status, 'no_route', request.headers['user-agent'] ?? null, `no route for method ${request.method}`)
      ended.durationMs = durationMs
      return record(ended, request.log)
    }
    // Reserved endpoints (/health, /admin/*, /metrics, /docs): logged, not counted as traffic.
    const fields = { route: null, method: request.method, path, status, durationMs }
    request.log.info(fields, 'request completed')
    if (logShipping.enabled) logShipping.access({ reqId: request.id, ...fields })
  }

  function onClientError (err: NodeJS.ErrnoException & { rawPacket?: Buffer }, socket: Socket): void {
    if (err.code === 'ECONNRESET' || socket.destroyed) return
    if (hasInFlight(socket)) {
      // A request is in flight on this connection: it is recorded when the socket closes.
      if (err.code === 'ERR_HTTP_REQUEST_TIMEOUT') markTimedOut(socket)
      return
    }
    // Nothing is answered on a connection that cannot be written to: no request to record.
    if (!socket.writable) return
    const { statusCode: status, outcome, message } = clientErrorAnswer(err.code)
    const detail = status === 400 ? `${message} (${err.code ?? 'unknown'})` : message
    const line = err.rawPacket === undefined ? null : REQUEST_LINE.exec(err.rawPacket.subarray(0, 2100).toString('latin1'))
    const requestId = clientErrorRequestId(err)
    const ended = refusedRecord(requestId, unmapIPv4(socket.remoteAddress ?? ''), line === null ? null : line[1], line === null ? null : pathOf(line[2]), status, outcome, null, detail)
    record(ended, app.log.child({ reqId: requestId }))
  }

  /** A CONNECT on the main listener (Node's 'connect' event): answered 405 and recorded like a refused request. */
  function onConnectMethod (req: IncomingMessage, socket: Socket): void {
    const requestId = randomUUID()
    answerConnect(socket, requestId)
    const { statusCode: status, outcome, message } = CONNECT_ANSWER
    // The authority-form target ("host:443") is what a CONNECT asks for; it has no path.
    const target = (req.url ?? '').slice(0, 2048)
    record(refusedRecord(requestId, unmapIPv4(socket.remoteAddress ?? ''), 'CONNECT', target, status, outcome, req.headers['user-agent'] ?? null, message), app.log.child({ reqId: requestId }))
  }
}

const pathOf = (url: string): string => url.split('?')[0]

/** A request answered before any gateway context counted its bytes or timed it. */
function refusedRecord (
  requestId: string, clientIp: string, method: string | null, path: string | null, status: number,
  outcome: Outcome, userAgent: string | null, detail: string
): RequestRecord {
  return {
    eventType: 'request', requestId, clientIp, method, path, route: null, consumer: null, status, outcome,
    durationMs: null, bytesIn: null, bytesOut: null, userAgent, detail, traceId: null
  }
}

export default fp(accessLogPlugin, { name: 'access-log', dependencies: ['metrics', 'instances', 'audit', 'route-table', 'log-shipping', 'tracing'] })
