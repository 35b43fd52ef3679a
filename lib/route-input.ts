import { randomUUID } from 'node:crypto'
import type { Config } from '../plugins/config.js'
import type { Route, RouteInput } from '../schemas/route.js'

/** A client's route fields → a full stored route, with the environment's defaults filled in. */
export function buildRoute (input: RouteInput, config: Pick<Config, 'upstreamTimeoutMs' | 'bodyLimit'>, existing?: Pick<Route, 'id' | 'createdAt'>): Route {
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
  if (route.path.includes('//')) return `${prefix}/path must not contain "//"`
  if (/(^|\/)\.\.?(\/|$)/.test(route.path)) return `${prefix}/path must not contain "." or ".." segments`
  if (route.path.includes('%')) return `${prefix}/path must not contain percent-escapes`
  return null
}
