import { randomUUID } from 'node:crypto'
import { STATUS_CODES } from 'node:http'
import type { Socket } from 'node:net'
import type { FastifyInstance } from 'fastify'
import type { Outcome } from './gateway-context.js'

/**
 * What Node's parser and its timers reject before Fastify sees a request: headers or body too
 * slow (slowloris/RUDY), headers over 16 KiB, malformed HTTP. Node (and Fastify's
 * default handler) would write a bare answer; every answer of the gateway is
 * `{"statusCode","error","message","requestId"}`, and the connection closed afterwards.
 */
export interface ClientErrorAnswer { statusCode: number, message: string, outcome: Outcome }

const ANSWERS: Record<string, ClientErrorAnswer> = {
  ERR_HTTP_REQUEST_TIMEOUT: { statusCode: 408, message: 'request not received in time', outcome: 'blocked' },
  HPE_HEADER_OVERFLOW: { statusCode: 431, message: 'request headers exceed 16384 bytes', outcome: 'too_large' }
}
const MALFORMED: ClientErrorAnswer = { statusCode: 400, message: 'malformed HTTP request', outcome: 'blocked' }

export function clientErrorAnswer (code: string | undefined): ClientErrorAnswer {
  return (code !== undefined ? ANSWERS[code] : undefined) ?? MALFORMED
}

const kRequestId = Symbol('gatehouse.clientErrorRequestId')

/** One id per refused request, shared by the answer and its audit row (plugins/access-log.ts). */
export function clientErrorRequestId (err: Error & { [kRequestId]?: string }): string {
  err[kRequestId] ??= randomUUID()
  return err[kRequestId]
}

export function clientErrorHandler (this: FastifyInstance, err: NodeJS.ErrnoException, socket: Socket): void {
  // A reset or already closed connection has nobody left to answer.
  if (err.code === 'ECONNRESET' || socket.destroyed) return
  const { statusCode, message } = clientErrorAnswer(err.code)
  const requestId = clientErrorRequestId(err)
  this.log.debug({ err, requestId, statusCode }, 'client error')

  // As Node does: never write into a response whose head is already on the wire.
  const inFlight = (socket as Socket & { _httpMessage?: { headersSent: boolean } })._httpMessage
  if (socket.writable && (inFlight === undefined || inFlight === null || !inFlight.headersSent)) {
    answerAndClose(socket, statusCode, message, requestId)
    return
  }
  socket.destroy()
}

/** The methods the proxy routes (plugins/proxy.ts), for Allow. */
export const ROUTED_METHODS = 'DELETE, GET, HEAD, OPTIONS, PATCH, POST, PUT'

export const CONNECT_ANSWER: ClientErrorAnswer = {
  statusCode: 405,
  message: 'CONNECT is not supported here: this listener is not a forward proxy',
  outcome: 'no_route'
}

/**
 * Node hands a CONNECT request to the server's 'connect' listeners with the raw socket, and
 * destroys the socket without a word when there are none (docs/routing.md "Matching": answered and
 * audited, never silently dropped). The audit row is written by plugins/access-log.ts.
 */
export function answerConnect (socket: Socket, requestId: string): void {
  socket.on('error', ignore)
  answerAndClose(socket, CONNECT_ANSWER.statusCode, CONNECT_ANSWER.message, requestId, `Allow: ${ROUTED_METHODS}\r\n`)
}

/** The gateway's JSON answer written straight to a socket Node's HTTP layer no longer serves; then closed. */
function answerAndClose (socket: Socket, statusCode: number, message: string, requestId: string, extraHeaders = ''): void {
  const error = STATUS_CODES[statusCode] ?? 'Error'
  const body = JSON.stringify({ statusCode, error, message, requestId })
  socket.end(`HTTP/1.1 ${statusCode} ${error}\r\n` +
    'Content-Type: application/json; charset=utf-8\r\n' +
    `Content-Length: ${Buffer.byteLength(body)}\r\n` +
    `X-Request-Id: ${requestId}\r\n` + extraHeaders +
    'Connection: close\r\n\r\n' + body)
  socket.destroySoon()
}

function ignore (): void {}
