import type { IncomingHttpHeaders } from 'node:http'

/** Cache-Control directives by lower-case name; a directive without a value maps to ''. */
export type Directives = ReadonlyMap<string, string>

const NONE: Directives = new Map()

/** Parses Cache-Control (RFC 9111 §5.2): comma-separated tokens, optional `=value` (quoted or not). */
export function parseCacheControl (value: string | string[] | undefined): Directives {
  if (value === undefined) return NONE
  const text = Array.isArray(value) ? value.join(',') : value
  if (text === '') return NONE
  const directives = new Map<string, string>()
  for (const part of text.split(',')) {
    const at = part.indexOf('=')
    const name = (at === -1 ? part : part.slice(0, at)).trim().toLowerCase()
    if (name === '') continue
    let argument = at === -1 ? '' : part.slice(at + 1).trim()
    if (argument.length >= 2 && argument.startsWith('"') && argument.endsWith('"')) argument = argument.slice(1, -1)
    // The first occurrence wins (RFC 9111 §4.2.1: duplicates make the answer stale-ish; be conservative elsewhere).
    if (!directives.has(name)) directives.set(name, argument)
  }
  return directives
}

/** A delta-seconds argument, or null when absent or malformed. */
export function seconds (directives: Directives, name: string): number | null {
  const raw = directives.get(name)
  if (raw === undefined || !/^\d+$/.test(raw)) return null
  return Math.min(Number(raw), 2_147_483_647)
}

/** What the client's request asks of the cache. */
export type RequestCacheMode = 'normal' | 'no-cache' | 'no-store'

export function requestCacheMode (headers: IncomingHttpHeaders): RequestCacheMode {
  const directives = parseCacheControl(headers['cache-control'])
  if (directives.has('no-store')) return 'no-store'
  if (directives.has('no-cache')) return 'no-cache'
  // RFC 9111 §5.4: Pragma: no-cache only counts when there is no Cache-Control.
  if (headers['cache-control'] === undefined && typeof headers.pragma === 'string' && /(^|,)\s*no-cache\s*(,|$)/i.test(headers.pragma)) return 'no-cache'
  return 'normal'
}

/** Lower-case header names listed by a Vary header; ['*'] for Vary: *. */
export function varyNames (value: string | string[] | undefined): string[] {
  if (value === undefined) return []
  const names = new Set<string>()
  for (const name of (Array.isArray(value) ? value.join(',') : value).split(',')) {
    const trimmed = name.trim().toLowerCase()
    if (trimmed !== '') names.add(trimmed)
  }
  return [...names].sort()
}

export interface StoragePolicy {
  statuses: ReadonlySet<number>
  ttlSeconds: number
  staleWhileRevalidateSeconds: number
  staleIfErrorSeconds: number
}

export interface Freshness {
  /** How long the answer is fresh from when it was received, its Age already deducted (ms; ≤ 0: stale at once). */
  freshMs: number
  staleWhileRevalidateMs: number
  staleIfErrorMs: number
  /** Seconds the answer was already old when it arrived (its Age header). */
  initialAgeSeconds: number
}

/**
 * Whether an upstream answer to a GET may be stored (RFC 9111 §3, docs/cache.md "What is never
 * stored"), and for how long. A string says why not.
 */
export function storability (statusCode: number, headers: IncomingHttpHeaders, policy: StoragePolicy, now: number): Freshness | string {
  if (!policy.statuses.has(statusCode)) return `status ${statusCode} is not in cache.statuses`
  if (headers['set-cookie'] !== undefined) return 'the answer sets a cookie'
  const vary = varyNames(headers.vary)
  if (vary.includes('*')) return 'Vary: *'
  if (headers['content-range'] !== undefined) return 'a partial answer'
  const directives = parseCacheControl(headers['cache-control'])
  if (directives.has('no-store')) return 'Cache-Control: no-store'
  if (directives.has('private')) return 'Cache-Control: private'

  const age = ageOf(headers.age)
  let lifetimeSeconds: number
  const sMaxAge = seconds(directives, 's-maxage')
  const maxAge = seconds(directives, 'max-age')
  if (sMaxAge !== null) {
    lifetimeSeconds = sMaxAge
  } else if (maxAge !== null) {
    lifetimeSeconds = maxAge
  } else if (headers.expires !== undefined) {
    const expires = Date.parse(headers.expires)
    const date = typeof headers.date === 'string' ? Date.parse(headers.date) : NaN
    // An invalid Expires (e.g. "0") means already expired (RFC 9111 §5.3).
    lifetimeSeconds = Number.isNaN(expires) ? 0 : ((expires - (Number.isNaN(date) ? now : date)) / 1000)
  } else {
    lifetimeSeconds = policy.ttlSeconds
  }
  // no-cache (and must-revalidate once stale): stored, but never served without asking the upstream.
  const mustRevalidate = directives.has('no-cache') || directives.has('must-revalidate') || directives.has('proxy-revalidate')
  if (directives.has('no-cache')) lifetimeSeconds = 0
  const freshMs = Math.round((lifetimeSeconds - age) * 1000)
  const staleWhileRevalidateMs = mustRevalidate ? 0 : policy.staleWhileRevalidateSeconds * 1000
  const staleIfErrorMs = mustRevalidate ? 0 : policy.staleIfErrorSeconds * 1000
  const hasValidator = headers.etag !== undefined || headers['last-modified'] !== undefined
  // Worth keeping only when it can be served fresh, stale, or revalidated cheaply.
  if (freshMs <= 0 && staleWhileRevalidateMs === 0 && staleIfErrorMs === 0 && !hasValidator) return 'already stale'
  return { freshMs, staleWhileRevalidateMs, staleIfErrorMs, initialAgeSeconds: age }
}

function ageOf (value: string | undefined): number {
  if (value === undefined || !/^\d+$/.test(value.trim())) return 0
  return Number(value.trim())
}
