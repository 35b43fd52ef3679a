import type { FastifyCorsOptions } from '@fastify/cors'

/** What the admin API offers cross-origin callers (docs/admin-api.md "CORS"). */
export const ADMIN_CORS_METHODS = ['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE']
export const ADMIN_CORS_HEADERS = ['Authorization', 'Content-Type']

/**
 * @fastify/cors options for the admin API: only the exact listed origins get CORS headers.
 * Any other origin (or none) gets nothing at all, and its preflight is not answered here: it
 * falls through to the admin-token check like any request without a token.
 */
export function adminCorsOptions (origins: readonly string[]): FastifyCorsOptions {
  const allowed = new Set(origins)
  return {
    origin: (origin, callback) => callback(null, origin !== undefined && allowed.has(origin) ? origin : false),
    methods: ADMIN_CORS_METHODS,
    allowedHeaders: ADMIN_CORS_HEADERS,
    // The dashboard reads these from answers; everything else stays hidden from scripts.
    exposedHeaders: ['Retry-After', 'WWW-Authenticate', 'X-Request-Id'],
    strictPreflight: true
  }
}
