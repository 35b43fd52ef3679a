import { compressionProblem } from './compression.js'
import { headerRulesProblem } from './header-rules.js'
import { randomUUID, X509Certificate } from 'node:crypto'
import { normalizePath } from './normalize-path.js'
import { rewriteProblem } from './path-rewrite.js'
import type { Route, RouteInput } from '../schemas/route.js'

/** The gateway-wide defaults a route without its own value takes (UPSTREAM_TIMEOUT_MS, BODY_LIMIT). */
export interface RouteDefaults {
  upstreamTimeoutMs: number
  bodyLimit: number
}

/** A client's route fields → a full stored route, with the environment's defaults filled in. */
export function buildRoute (input: RouteInput, config: RouteDefaults, existing?: Pick<Route, 'id' | 'createdAt'>): Route {
  const now = new Date().toISOString()
  return {
    ...input,
    id: existing?.id ?? randomUUID(),
    timeoutMs: input.timeoutMs ?? config.upstreamTimeoutMs,
    bodyLimit: input.bodyLimit ?? config.bodyLimit,
    createdAt: existing?.createdAt ?? now,
    updatedAt: now
  }
}

/**
 * Rules a JSON schema cannot say. Returns a message naming the field, or null.
 * `prefix` is how the field is named to the client, e.g. "body".
 */
export function routeProblem (route: RouteInput, prefix = 'body'): string | null {
  if (route.auth.type === 'jwt' && (route.auth.secret === null) === (route.auth.jwksUrl === null)) {
    return `${prefix}/auth must set exactly one of secret or jwksUrl`
  }
  const urls = route.targets.map((target) => target.url)
  if (new Set(urls).size !== urls.length) return `${prefix}/targets must not list the same url twice`
  for (const [index, url] of urls.entries()) {
    try {
      const parsed = new URL(url)
      if (parsed.username !== '' || parsed.password !== '') return `${prefix}/targets/${index}/url must not contain credentials`
    } catch {
      return `${prefix}/targets/${index}/url is not a valid URL`
    }
  }
  const ca = route.upstreamTls?.ca
  if (typeof ca === 'string') {
    const blocks = ca.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? []
    try {
      if (blocks.length === 0) throw new Error('no PEM certificate found')
      for (const block of blocks) void new X509Certificate(block)
    } catch (err) {
      return `${prefix}/upstreamTls/ca is not a PEM certificate: ${(err as Error).message}`
    }
  }
  if (route.path.includes('//')) return `${prefix}/path must not contain "//"`
  if (/(^|\/)\.\.?(\/|$)/.test(route.path)) return `${prefix}/path must not contain "." or ".." segments`
  return pathProblem(route.path, `${prefix}/path`) ?? transformsProblem(route, prefix)
}

/** The transform fields (docs/transforms.md), which their compile steps would otherwise refuse per request. */
function transformsProblem (route: RouteInput, prefix: string): string | null {
  const { requestHeaders, responseHeaders, rewrite, compression } = route
  return (requestHeaders == null ? null : headerRulesProblem(requestHeaders, `${prefix}/requestHeaders`)) ??
    (responseHeaders == null ? null : headerRulesProblem(responseHeaders, `${prefix}/responseHeaders`)) ??
    (rewrite == null ? null : rewriteProblem(rewrite, `${prefix}/rewrite`)) ??
    (compression == null ? null : compressionProblem(compression, `${prefix}/compression`))
}

/** RFC 3986 path characters; anything else (spaces, non-ASCII, quotes …) travels percent-encoded. */
const PATH_CHARS = /^[A-Za-z0-9\-._~!$&'()*+,;=:@/%]*$/

/**
 * A route path is stored as requests are matched: in normalised form (lib/normalize-path.ts),
 * so "/caf%C3%A9" routes what clients send for "/café", and a spelling that normalises to
 * something else ("/api/%41", "/caf%c3%a9") is refused with the form to write instead.
 */
function pathProblem (path: string, field: string): string | null {
  if (!PATH_CHARS.test(path)) return `${field} must percent-encode characters outside RFC 3986 paths: write ${encodePath(path)}`
  const normalized = normalizePath(path)
  if (!normalized.ok) return `${field} is refused: ${normalized.reason}`
  if (normalized.path !== path) return `${field} must be written in normalised form: ${normalized.path}`
  return null
}

function encodePath (path: string): string {
  return path.replace(/[^A-Za-z0-9\-._~!$&'()*+,;=:@/%]/gu, (char) => encodeURIComponent(char))
}

/** `cache.store: "redis"` needs REDIS_URL (docs/cache.md "Stores"); a message naming the field, or null. */
export function cacheStoreProblem (route: Pick<RouteInput, 'cache'>, redisConfigured: boolean, prefix = 'body'): string | null {
  if (route.cache?.store === 'redis' && !redisConfigured) return `${prefix}/cache/store "redis" needs REDIS_URL, which is not set`
  return null
}
