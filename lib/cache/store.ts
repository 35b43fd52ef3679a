import type { IncomingHttpHeaders } from 'node:http'
import type { CacheEntry, CacheKey } from './entry.js'

/**
 * Where answers are kept: memory (per process, LRU within CACHE_MEMORY_BYTES) or Redis (shared
 * by every instance). Lookups of the memory store answer synchronously, so a hit costs no tick.
 */
export interface CacheStore {
  readonly kind: 'memory' | 'redis'
  /** The entry stored for this key and these request headers (the answer's Vary decides which matter), or null. */
  get: (key: CacheKey, request: IncomingHttpHeaders, now: number) => CacheEntry | null | Promise<CacheEntry | null>
  set: (key: CacheKey, request: IncomingHttpHeaders, entry: CacheEntry) => void | Promise<void>
  /** Forgets every variant stored under this key. */
  remove: (key: CacheKey) => void | Promise<void>
  /** Forgets everything stored for a URL of a route, whatever the consumer, host or variant (RFC 9111 §4.4). */
  invalidateUrl: (routeId: string, url: string) => number | Promise<number>
  /** Forgets what is stored: everything, one route's, or one route's under a path prefix. Resolves with how many entries. */
  purge: (routeId: string | null, pathPrefix: string | null) => Promise<number>
}

/** `path` is `prefix` or below it on a segment boundary ("/a" covers "/a" and "/a/b", not "/ab"). */
export function underPrefix (path: string, prefix: string | null): boolean {
  if (prefix === null || prefix === '/' || path === prefix) return true
  return path.startsWith(prefix.endsWith('/') ? prefix : `${prefix}/`)
}
