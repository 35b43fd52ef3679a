import { STATUS_CODES } from 'node:http'

/**
 * The error kinds the gateway answers itself. Every one becomes
 * `{"statusCode","error","message","requestId"}` (docs/routing.md "Refused before routing").
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
  tooLarge: (limit: number) => new GatewayError(413, 'GW_BODY_TOO_LARGE', `request body exceeds the limit of ${limit} bytes`),
  upstreamUnreachable: (detail: string) => new GatewayError(502, 'GW_UPSTREAM_UNREACHABLE', `upstream connection failed: ${detail}`),
  upstreamTls: (detail: string) => new GatewayError(502, 'GW_UPSTREAM_TLS', `upstream TLS verification failed: ${detail}`),
  upstreamBadStatus: (status: number) => new GatewayError(502, 'GW_UPSTREAM_BAD_STATUS', `upstream answered with status ${status}, outside 100–599`),
  noHealthyTarget: (retryAfterSeconds: number) => new GatewayError(503, 'GW_NO_HEALTHY_TARGET', 'no healthy upstream target', { 'retry-after': String(retryAfterSeconds) }),
  upstreamTimeout: (timeoutMs: number) => new GatewayError(504, 'GW_UPSTREAM_TIMEOUT', `upstream did not answer within ${timeoutMs} ms`),
  upstreamConnectTimeout: () => new GatewayError(504, 'GW_UPSTREAM_CONNECT_TIMEOUT', 'upstream connection timed out')
}

export interface ErrorBody {
  statusCode: number
  error: string
  message: string
  requestId: string
}

export function errorBody (statusCode: number, message: string, requestId: string): ErrorBody {
  return { statusCode, error: STATUS_CODES[statusCode] ?? 'Error', message, requestId }
}
