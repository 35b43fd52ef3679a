import type { Route } from '../schemas/route.js'
import { normalizePath } from './normalize-path.js'

/**
 * An immutable index of enabled routes. Lookup walks the request path's own prefixes
 * (at most one Map lookup per path segment), so its cost does not grow with the number
 * of routes (docs/routing.md "Matching": segment-boundary prefix, longest wins, hosts beat none).
 * A candidate that refuses the method or host does not end the walk: shorter prefixes
 * are tried next, and only when none accepts is the answer "no route" (404).
 */
export class RouteMatcher {
  /** Candidates by normalised route path, most specific host rule first. */
  private readonly byPrefix = new Map<string, CandidateRoute[]>()
  readonly size: number

  constructor (routes: readonly Route[]) {
    let size = 0
    for (const route of routes) {
      if (!route.enabled) continue
      const prefix = routePrefixOf(route)
      const list = this.byPrefix.get(prefix) ?? []
      list.push(new CandidateRoute(route))
      this.byPrefix.set(prefix, list)
      size++
    }
    // Stable sort: among equal paths and equal host rules, the older route wins.
    for (const list of this.byPrefix.values()) list.sort((a, b) => a.hostRank - b.hostRank)
    this.size = size
  }

  /**
   * @param host lower-case host name without port or trailing dot ('' when the request had none; see hostName)
   * @param path a normalised path (see normalizePath)
   */
  match (method: string, host: string, path: string): Route | null {
    let prefix = path.length > 1 && path.charCodeAt(path.length - 1) === 47 /* / */ ? path.slice(0, -1) : path
    for (;;) {
      const candidates = this.byPrefix.get(prefix)
      if (candidates !== undefined) {
        for (const candidate of candidates) {
          if (candidate.accepts(method, host)) return candidate.route
        }
      }
      if (prefix === '/') return null
      const cut = prefix.lastIndexOf('/')
      prefix = cut === 0 ? '/' : prefix.slice(0, cut)
    }
  }
}

const prefixes = new WeakMap<Route, string>()

/**
 * The route's path in the form request paths are matched in: normalised like a request
 * path ("/a/./b//c" → "/a/b/c", "%7E" → "~") and without trailing slash ("/api/" and
 * "/api" are the same prefix; "/" stays "/"). Route objects are immutable, so the result
 * is computed once per route and remembered (stripPath uses it on every request).
 */
export function routePrefixOf (route: Route): string {
  let prefix = prefixes.get(route)
  if (prefix === undefined) {
    prefix = routePrefix(route.path)
    prefixes.set(route, prefix)
  }
  return prefix
}

export function routePrefix (path: string): string {
  const normalized = normalizePath(path)
  // A route path no request path can normalise to (e.g. one containing %2F) is kept as
  // written: requests spelled that way are refused before matching, so it never matches.
  let prefix = normalized.ok ? normalized.path : path
  while (prefix.length > 1 && prefix.endsWith('/')) prefix = prefix.slice(0, -1)
  return prefix
}

class CandidateRoute {
  private readonly exactHosts: Set<string> | null
  /** ".example.com" for "*.example.com": matches any deeper name, never the bare domain. */
  private readonly wildcardSuffixes: string[]
  private readonly methods: Set<string> | null
  /** 0: has exact hosts, 1: only wildcard hosts, 2: any host. */
  readonly hostRank: number

  constructor (readonly route: Route) {
    const hosts = route.hosts.map(canonicalHost)
    const exact = hosts.filter((host) => !host.startsWith('*.'))
    this.exactHosts = exact.length > 0 ? new Set(exact) : null
    this.wildcardSuffixes = hosts.filter((host) => host.startsWith('*.')).map((host) => host.slice(1))
    this.methods = route.methods.length > 0 ? new Set(route.methods) : null
    this.hostRank = this.exactHosts !== null ? 0 : this.wildcardSuffixes.length > 0 ? 1 : 2
  }

  accepts (method: string, host: string): boolean {
    if (this.methods !== null && !this.methods.has(method)) return false
    if (this.hostRank === 2) return true
    if (this.exactHosts?.has(host) === true) return true
    for (const suffix of this.wildcardSuffixes) {
      if (host.length > suffix.length && host.endsWith(suffix)) return true
    }
    return false
  }
}

/** "API.Example.com." → "api.example.com": DNS names are case-insensitive and may end in a root dot. */
function canonicalHost (host: string): string {
  const lower = host.toLowerCase()
  return lower.endsWith('.') ? lower.slice(0, -1) : lower
}

/**
 * Host header → lower-case name without port or trailing dot; IPv6 literals keep their
 * brackets. "Example.COM.:8080" → "example.com".
 */
export function hostName (hostHeader: string | undefined): string {
  if (hostHeader === undefined) return ''
  let host = hostHeader.toLowerCase()
  if (host.charCodeAt(0) === 91 /* [ */) {
    const end = host.indexOf(']')
    return end === -1 ? host : host.slice(0, end + 1)
  }
  const colon = host.indexOf(':')
  if (colon !== -1) host = host.slice(0, colon)
  return host.endsWith('.') ? host.slice(0, -1) : host
}
