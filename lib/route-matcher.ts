import type { Route } from '../schemas/route.js'

/**
 * An immutable index of enabled routes. Lookup walks the request path's own prefixes
 * (at most one Map lookup per path segment), so its cost does not grow with the number
 * of routes (contract section 3: segment-boundary prefix, longest wins, hosts beat none).
 */
export class RouteMatcher {
  /** Candidates by normalised route path, most specific host rule first. */
  private readonly byPrefix = new Map<string, CandidateRoute[]>()
  readonly size: number

  constructor (routes: readonly Route[]) {
    let size = 0
    for (const route of routes) {
      if (!route.enabled) continue
      const prefix = routePrefix(route.path)
      const list = this.byPrefix.get(prefix) ?? []
      list.push(new CandidateRoute(route))
      this.byPrefix.set(prefix, list)
      size++
    }
    for (const list of this.byPrefix.values()) list.sort((a, b) => a.hostRank - b.hostRank)
    this.size = size
  }

  /**
   * @param host lower-case host name without port ('' when the request had none)
   * @param path a normalised path (see normalizePath)
   */
  match (method: string, host: string, path: string): Route | null {
    let prefix = path.length > 1 && path.endsWith('/') ? path.slice(0, -1) : path
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

/** "/api/" and "/api" are the same prefix; "/" stays "/". */
export function routePrefix (path: string): string {
  let prefix = path
  while (prefix.length > 1 && prefix.endsWith('/')) prefix = prefix.slice(0, -1)
  return prefix
}

class CandidateRoute {
  private readonly exactHosts: Set<string> | null
  private readonly wildcardSuffixes: string[]
  private readonly methods: Set<string> | null
  /** 0: has exact hosts, 1: only wildcard hosts, 2: any host. */
  readonly hostRank: number

  constructor (readonly route: Route) {
    const exact = route.hosts.filter((host) => !host.startsWith('*.')).map((host) => host.toLowerCase())
    this.exactHosts = exact.length > 0 ? new Set(exact) : null
    this.wildcardSuffixes = route.hosts.filter((host) => host.startsWith('*.')).map((host) => host.slice(1).toLowerCase())
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

/** Host header → lower-case name without port; IPv6 literals keep their brackets. */
export function hostName (hostHeader: string | undefined): string {
  if (hostHeader === undefined) return ''
  const host = hostHeader.toLowerCase()
  if (host.startsWith('[')) {
    const end = host.indexOf(']')
    return end === -1 ? host : host.slice(0, end + 1)
  }
  const colon = host.indexOf(':')
  return colon === -1 ? host : host.slice(0, colon)
}
