import type { IncomingHttpHeaders } from 'node:http'
import { requestCacheMode, type StoragePolicy, storability, varyNames } from '../cache/cache-control.js'
import { type CacheEntry, type CacheKey, ageSeconds, storedHeaders } from '../cache/entry.js'
import type { MemoryCacheStore } from '../cache/memory-store.js'
import type { AbsoluteTarget } from './destination.js'

/**
 * EGRESS_CACHE=true (docs/egress.md "Caching"): plain-HTTP GET/HEAD answers kept in the
 * response cache's memory store under the response cache's rules, as a shared forward-proxy
 * cache does it — keyed by the absolute URL (and the Vary-named request headers), whoever the
 * consumer; requests carrying Authorization neither read nor fill it.
 */

/** The store's route id for egress entries: a purge of everything forgets them too. */
export const EGRESS_CACHE_ROUTE_ID = 'egress'

/** The response cache's defaults (docs/cache.md): larger answers stream through uncached. */
export const EGRESS_CACHE_MAX_BODY_BYTES = 1_048_576
const POLICY: StoragePolicy = {
  statuses: new Set([200, 203, 204, 301, 404, 410]),
  ttlSeconds: 60,
  staleWhileRevalidateSeconds: 0,
  staleIfErrorSeconds: 0
}

export type EgressLookup =
  /** The cache is not consulted nor filled (X-Cache-Status: BYPASS). */
  | { kind: 'bypass' }
  | { kind: 'hit', entry: CacheEntry, ageSeconds: number }
  /** `fill`: a GET whose answer may be stored; `label`: BYPASS for a no-cache request (not looked up, refreshes the entry). */
  | { kind: 'miss', key: CacheKey, fill: boolean, label: 'MISS' | 'BYPASS' }

/** Collects one answer's body while it streams to the client; stores it when complete and small enough. */
export interface BodyRecorder {
  chunk: (data: Buffer) => void
  done: () => void
}

export class EgressCache {
  constructor (private readonly store: MemoryCacheStore, private readonly maxBodyBytes = EGRESS_CACHE_MAX_BODY_BYTES) {}

  lookup (method: string, headers: IncomingHttpHeaders, target: AbsoluteTarget, now: number): EgressLookup {
    if (method !== 'GET' && method !== 'HEAD') return { kind: 'bypass' }
    // A shared cache never answers one user with what the origin told another (RFC 9111 §3.5).
    if (headers.authorization !== undefined) return { kind: 'bypass' }
    const mode = requestCacheMode(headers)
    if (mode === 'no-store') return { kind: 'bypass' }
    const key = keyOf(target)
    if (mode === 'normal') {
      const entry = this.store.get(key, headers, now)
      if (entry !== null && entry.freshUntil > now) return { kind: 'hit', entry, ageSeconds: ageSeconds(entry, now) }
    }
    return { kind: 'miss', key, fill: method === 'GET', label: mode === 'normal' ? 'MISS' : 'BYPASS' }
  }

  /** A recorder for an answer to a `fill` miss, or null when the answer may not be stored. */
  recorder (key: CacheKey, request: IncomingHttpHeaders, status: number, answer: IncomingHttpHeaders, now: number): BodyRecorder | null {
    const length = answer['content-length']
    if (length !== undefined && Number(length) > this.maxBodyBytes) return null
    const freshness = storability(status, answer, POLICY, now)
    // Only answers that can be served fresh are kept: there is no revalidation here.
    if (typeof freshness === 'string' || freshness.freshMs <= 0) return null
    const headers = storedHeaders(answer)
    const vary = varyNames(answer.vary)
    const varyValues: IncomingHttpHeaders = {}
    for (const name of vary) varyValues[name] = request[name]
    let chunks: Buffer[] | null = []
    let size = 0
    return {
      chunk: (data) => {
        if (chunks === null) return
        size += data.length
        // Past the bound the chunks are let go: a large answer is never held whole.
        if (size > this.maxBodyBytes) chunks = null
        else chunks.push(data)
      },
      done: () => {
        if (chunks === null) return
        const freshUntil = now + freshness.freshMs
        this.store.set(key, varyValues, {
          status,
          headers,
          body: Buffer.concat(chunks, size),
          receivedAt: now,
          freshUntil,
          staleWhileRevalidateUntil: freshUntil,
          staleIfErrorUntil: freshUntil,
          keepUntil: freshUntil,
          initialAgeSeconds: freshness.initialAgeSeconds,
          varyNames: vary
        })
        chunks = null
      }
    }
  }

  /** An unsafe request that succeeded makes what is stored for its URL stale (RFC 9111 §4.4). */
  invalidate (target: AbsoluteTarget): void {
    this.store.invalidateUrl(EGRESS_CACHE_ROUTE_ID, keyOf(target).url)
  }
}

/** The absolute URL with an explicit port: `http://example.com/` and `http://example.com:80/` are one entry. */
function keyOf (target: AbsoluteTarget): CacheKey {
  const host = target.isIp && target.host.includes(':') ? `[${target.host}]` : target.host
  const url = `http://${host}:${target.port}${target.path}`
  const query = url.indexOf('?', 7)
  return { routeId: EGRESS_CACHE_ROUTE_ID, path: query === -1 ? url : url.slice(0, query), url, primary: `${EGRESS_CACHE_ROUTE_ID}\u0000${url}` }
}
