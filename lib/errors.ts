import { STATUS_CODES } from 'node:http'

/**
 * The error kinds the gateway answers itself. Every one becomes
 * `{"statusCode","error","message","requestId"}` (contract section 3).
 */
export class GatewayError extends Error {
  constructor (
    readonly statusCode: number,
    readonly code: string,
    message: string,
    readonly headers: Readonly<Record<string, string>> = {}
  ) {
    super(message)
    this.name = 'GatewayError'
  }
}

export const gatewayErrors = {
  badRequest: (message: string) => new GatewayError(400, 'GW_BAD_REQUEST', message),
  notFound: (message = 'no route matches this request') => new GatewayError(404, 'GW_NO_ROUTE', message),
  tooLarge: (limit: number) => new GatewayError(413, 'GW_BODY_TOO_LARGE', `request body exceeds the limit of ${limit} bytes`),
  upstreamUnreachable: (detail: string) => new GatewayError(502, 'GW_UPSTREAM_UNREACHABLE', `upstream connection failed: ${detail}`),
  upstreamBadStatus: (status: number) => new GatewayError(502, 'GW_UPSTREAM_BAD_STATUS', `upstream answered with status ${status}, outside 100–599`),
  noHealthyTarget: (retryAfterSeconds: number) => new GatewayError(503, 'GW_NO_HEALTHY_TARGET', 'no healthy upstream target', { 'retry-after': String(retryAfterSeconds) }),
  upstreamTimeout: (timeoutMs: number) => new GatewayError(504, 'GW_UPSTREAM_TIMEOUT', `upstream did not answer within ${timeoutMs} ms`),
  upstreamConnectTimeout: () => new GatewayError(504, 'GW_UPSTREAM_CONNECT_TIMEOUT', 'upstream connection timed out')
}

/**
 * Set on an error that is not a GatewayError but whose answer the gateway decided (an upstream
 * body that fails before any byte reached the client): the error handler sends this message
 * instead of hiding it as "internal error".
 */
export const kPublicMessage = Symbol('gatehouse.publicMessage')
export type PublicError = Error & { statusCode?: number, [kPublicMessage]?: string }

export interface ErrorBody {
  statusCode: number
  error: string
  message: string
  requestId: string
}

export function errorBody (statusCode: number, message: string, requestId: string): ErrorBody {
  return { statusCode, error: STATUS_CODES[statusCode] ?? 'Error', message, requestId }
}
