import type { IncomingHttpHeaders } from 'node:http'
import type { RouteCors } from '../schemas/route.js'
import type { ResponseHead } from './proxy-headers.js'

/**
 * A route's CORS policy compiled once (per route object) into ready header values, with
 * the decisions @fastify/cors makes: exact origin echo (or "*" when any origin is allowed
 * without credentials — browsers refuse "*" with credentials, so then the origin is echoed),
 * `Vary: Origin` always, request headers reflected on a preflight when the policy lists
 * none, and no Access-Control-Allow-Origin at all for an origin the policy does not allow.
 */
export interface CompiledCors {
  readonly anyOrigin: boolean
  readonly origins: ReadonlySet<string>
  readonly credentials: boolean
  readonly allowMethods: string
  /** null: reflect Access-Control-Request-Headers. */
  readonly allowHeaders: string | null
  readonly exposeHeaders: string | null
  readonly maxAge: string
}

export const DEFAULT_CORS_METHODS: ReadonlyArray<RouteCors['methods'][number]> = ['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE']

/** The CORS_ORIGINS default, for routes that set no policy of their own. */
export function defaultCorsPolicy (origins: readonly string[]): RouteCors {
  return { origins: [...origins], methods: [...DEFAULT_CORS_METHODS], headers: [], exposedHeaders: [], credentials: false, maxAge: 600 }
}

export function compileCors (policy: RouteCors): CompiledCors {
  return {
    anyOrigin: policy.origins.includes('*'),
    origins: new Set(policy.origins.filter((origin) => origin !== '*').map((origin) => origin.toLowerCase())),
    credentials: policy.credentials,
    allowMethods: (policy.methods.length > 0 ? policy.methods : DEFAULT_CORS_METHODS).join(', '),
    allowHeaders: policy.headers.length > 0 ? policy.headers.join(', ') : null,
    exposeHeaders: (policy.exposedHeaders ?? []).length > 0 ? (policy.exposedHeaders ?? []).join(', ') : null,
    maxAge: String(policy.maxAge)
  }
}

/** The Access-Control-Allow-Origin value for `origin`, or null when it is not allowed. */
export function allowedOrigin (cors: CompiledCors, origin: string): string | null {
  if (cors.anyOrigin) return cors.credentials ? origin : '*'
  return cors.origins.has(origin.toLowerCase()) ? origin : null
}

/**
 * For a CORS preflight (OPTIONS with Origin and Access-Control-Request-Method), the method
 * it asks about; otherwise null. Route matching uses it, so a route that lists only GET and
 * POST still has its preflights answered.
 */
export function preflightMethod (method: string, headers: IncomingHttpHeaders): string | null {
  if (method !== 'OPTIONS' || headers.origin === undefined) return null
  const requested = headers['access-control-request-method']
  return typeof requested === 'string' && requested !== '' ? requested.toUpperCase() : null
}

/** Merges `Origin` into a Vary value the upstream may have set. */
function varyWithOrigin (existing: unknown): string {
  if (existing === undefined || existing === null || existing === '') return 'Origin'
  const value = Array.isArray(existing) ? existing.join(', ') : String(existing)
  if (value.trim() === '*') return value
  return /(^|,)\s*origin\s*(,|$)/i.test(value) ? value : `${value}, Origin`
}

/**
 * The last word on an answer's CORS headers, whatever the upstream sent: the policy's
 * Access-Control-Allow-Origin (none for an origin it does not allow) and credentials flag,
 * and Origin merged into Vary.
 */
export function finishCorsHeaders (head: ResponseHead, cors: CompiledCors, allowOrigin: string | null): void {
  if (allowOrigin === null) {
    delete head['access-control-allow-origin']
    delete head['access-control-allow-credentials']
  } else {
    head['access-control-allow-origin'] = allowOrigin
    if (cors.credentials) head['access-control-allow-credentials'] = 'true'
    else delete head['access-control-allow-credentials']
  }
  head.vary = varyWithOrigin(head.vary)
}
