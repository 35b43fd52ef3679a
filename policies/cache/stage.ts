import type { IncomingHttpHeaders } from 'node:http'
import { Transform, type TransformCallback } from 'node:stream'
import type { FastifyBaseLogger, FastifyReply, FastifyRequest, HookHandlerDoneFunction } from 'fastify'
import { type Freshness, requestCacheMode, type StoragePolicy, storability, varyNames } from '../../lib/cache/cache-control.js'
import { ageSeconds, type CacheEntry, type CacheKey, NOT_MODIFIED_HEADERS, notModified, storedHeaders, variantKey } from '../../lib/cache/entry.js'
import type { Flight, Flights } from '../../lib/cache/flights.js'
import type { CacheStore } from '../../lib/cache/store.js'
import type { GatewayContext } from '../../lib/gateway-context.js'
import type { RouteStage } from '../../lib/pipeline.js'
import { addUpstreamResponseHeaders, type ResponseHead } from '../../lib/proxy-headers.js'
import type { Route } from '../../schemas/route.js'
import { type Fetched, prepareFetch, type UpstreamFetch, type Validators } from './fetch.js'

/** X-Cache-Status values (docs/cache.md "X-Cache-Status"). */
export const CACHE_STATUSES = ['HIT', 'MISS', 'BYPASS', 'STALE', 'REVALIDATED'] as const
export type CacheStatus = typeof CACHE_STATUSES[number]
export type StatusCounters = Record<CacheStatus, number>

/** What a collapsed flight brings its waiters: the entry stored and the variant it was stored for. */
export interface Landed {
  entry: CacheEntry
  variant: string
}

export interface CacheStageDeps {
  storeFor: (route: Route) => CacheStore
  flights: Flights<Landed>
  counters: (routeName: string) => StatusCounters
  fetch: UpstreamFetch
  log: FastifyBaseLogger
}

/** Per-request state, on the request under a symbol of this module. */
interface CacheRequestState {
  status: CacheStatus
  /** Where the upstream's answer is stored; null: it is not. */
  key: CacheKey | null
  /** The collapsed flight this request leads. */
  flight: Flight<Landed> | null
  /** An unsafe request: the URL whose entries a success invalidates. */
  invalidates: string | null
}

const kCache = Symbol('gatehouse.cache')
type CachedRequest = FastifyRequest & { [kCache]?: CacheRequestState }

const UNSAFE = new Set(['POST', 'PUT', 'PATCH', 'DELETE'])
const VIA = '1.1 gatehouse'

/**
 * The route's response cache (docs/cache.md), or none when `cache` is null. Lookup runs after
 * auth, rate limit and body limit (the consumer is known); a hit is answered here, through
 * Fastify, so the route's response-side stages (CORS, transforms, compression) still apply to it.
 * A miss goes upstream as usual and its answer is copied into the store as it streams
 * (onResponseBody), up to maxBodyBytes.
 */
export function compileCacheStage (route: Route, deps: CacheStageDeps): RouteStage | null {
  const settings = route.cache ?? null
  if (settings === null) return null
  const store = deps.storeFor(route)
  const { flights, fetch, log } = deps
  const policy: StoragePolicy = {
    statuses: new Set(settings.statuses),
    ttlSeconds: settings.ttlSeconds,
    staleWhileRevalidateSeconds: settings.staleWhileRevalidateSeconds,
    staleIfErrorSeconds: settings.staleIfErrorSeconds
  }
  const maxBodyBytes = settings.maxBodyBytes
  const authenticates = route.auth.type !== 'none'
  const byHost = route.hosts.length > 0
  const routeVary = [...new Set(settings.vary.map((name) => name.toLowerCase()))].sort()
  const counters = deps.counters(route.name)

  function keyOf (request: FastifyRequest, context: GatewayContext): CacheKey {
    const url = context.path + context.query
    const consumer = !authenticates || context.consumer === null ? '' : context.consumer.id ?? `name:${context.consumer.name}`
    // JSON of the parts: no two different keys can read the same (no separator to smuggle in).
    const parts: Array<string | null> = [route.id, 'GET', byHost ? context.host : '', url, consumer]
    for (const name of routeVary) {
      const value = request.headers[name]
      parts.push(value === undefined ? null : Array.isArray(value) ? value.join(', ') : value)
    }
    return { routeId: route.id, path: context.path, url, primary: JSON.stringify(parts) }
  }

  function setState (request: FastifyRequest, status: CacheStatus, key: CacheKey | null, flight: CacheRequestState['flight'] = null, invalidates: string | null = null): void {
    (request as CachedRequest)[kCache] = { status, key, flight, invalidates }
  }

  function buildEntry (status: number, headers: IncomingHttpHeaders, body: Buffer, freshness: Freshness, now: number): CacheEntry {
    const freshUntil = now + freshness.freshMs
    const staleWhileRevalidateUntil = freshUntil + freshness.staleWhileRevalidateMs
    const staleIfErrorUntil = freshUntil + freshness.staleIfErrorMs
    let keepUntil = Math.max(freshUntil, staleWhileRevalidateUntil, staleIfErrorUntil)
    // An answer with a validator is kept ttlSeconds past its expiry, to be revalidated with a 304.
    if (headers.etag !== undefined || headers['last-modified'] !== undefined) keepUntil = Math.max(keepUntil, Math.max(freshUntil, now) + Math.max(policy.ttlSeconds, 1) * 1000)
    return {
      status,
      headers: storedHeaders(headers),
      body,
      receivedAt: now,
      freshUntil,
      staleWhileRevalidateUntil,
      staleIfErrorUntil,
      keepUntil,
      initialAgeSeconds: freshness.initialAgeSeconds,
      varyNames: varyNames(headers.vary)
    }
  }

  /** Stores an answer the cache fetched itself when it may be; the entry, or null. */
  function storeFetched (key: CacheKey, request: IncomingHttpHeaders, fetched: Fetched, now: number): CacheEntry | null {
    if (fetched.body === null) return null
    const freshness = storability(fetched.status, fetched.headers, policy, now)
    if (typeof freshness === 'string') return null
    const entry = buildEntry(fetched.status, fetched.headers, fetched.body, freshness, now)
    quietly(store.set(key, request, entry))
    return entry
  }

  /** A stored entry after a 304: its headers updated with the 304's, its freshness recomputed (RFC 9111 §4.3.4). */
  function revalidated (entry: CacheEntry, notModified: IncomingHttpHeaders, now: number): CacheEntry | null {
    const merged: IncomingHttpHeaders = { ...entry.headers, ...storedHeaders(notModified) }
    const freshness = storability(entry.status, merged, policy, now)
    if (typeof freshness === 'string') return null
    return buildEntry(entry.status, merged, entry.body, freshness, now)
  }

  function serve (request: FastifyRequest, reply: FastifyReply, entry: CacheEntry, status: CacheStatus, now: number): void {
    const context = request.gateway as GatewayContext
    context.outcome = 'cached'
    context.detail = `X-Cache-Status: ${status}`
    setState(request, status, null)
    const age = String(ageSeconds(entry, now))
    if (notModified(request.headers, entry)) {
      for (const name of NOT_MODIFIED_HEADERS) {
        const value = entry.headers[name]
        if (value !== undefined) reply.header(name, value)
      }
      reply.code(304).header('age', age).header('via', VIA).send()
      return
    }
    // The stored headers are the upstream's, already without hop-by-hop ones: those the gateway
    // set for this request win (as addUpstreamResponseHeaders does), Vary is the stored one.
    const headers = entry.headers
    for (const name in headers) {
      if (name === 'via' || (name !== 'vary' && reply.hasHeader(name))) continue
      reply.header(name, headers[name])
    }
    const via = headers.via
    reply.header('via', via === undefined ? VIA : `${Array.isArray(via) ? via.join(', ') : via}, ${VIA}`)
    reply.header('age', age).code(entry.status).send(entry.body)
  }

  function sendAnswer (reply: FastifyReply, status: number, headers: IncomingHttpHeaders, body: Buffer | Fetched['stream']): void {
    const before = reply.getHeaders()
    const head = addUpstreamResponseHeaders({ ...before } as ResponseHead, headers)
    for (const name in head) {
      const value = head[name]
      if (value !== undefined && value !== before[name]) reply.header(name, value)
    }
    reply.code(status).send(body)
  }

  function miss (request: FastifyRequest, reply: FastifyReply, done: HookHandlerDoneFunction, key: CacheKey): void {
    // A HEAD cannot fill the cache (no body); it is answered from a stored GET when there is one.
    if (request.method === 'HEAD') {
      setState(request, 'MISS', null)
      return done()
    }
    const flight = flights.lead(key.primary)
    if (flight !== null) {
      setState(request, 'MISS', key, flight)
      // However this request ends without storing (not storable, failed, client gone), the waiters go on.
      reply.raw.once('close', () => flight.finish(null))
      return done()
    }
    awaitFlight(request, reply, key).then((served) => {
      if (served) return
      setState(request, 'MISS', key)
      done()
    }, done)
  }

  /** Waits for the flight running for `key` and answers from what it stored; false when it stored nothing for this request. */
  async function awaitFlight (request: FastifyRequest, reply: FastifyReply, key: CacheKey): Promise<boolean> {
    const landed = await flights.wait(key.primary, route.timeoutMs)
    if (landed === null || landed === undefined || variantKey(key.primary, landed.entry.varyNames, request.headers) !== landed.variant) return false
    serve(request, reply, landed.entry, 'HIT', Date.now())
    return true
  }

  /** A stale entry outside stale-while-revalidate: asks the upstream (conditionally when it can). */
  function revalidate (request: FastifyRequest, reply: FastifyReply, done: HookHandlerDoneFunction, key: CacheKey, entry: CacheEntry): void {
    const flight = flights.lead(key.primary)
    const forwardItself = (): void => {
      setState(request, 'MISS', key)
      done()
    }
    if (flight === null) {
      awaitFlight(request, reply, key).then((served) => { if (!served) forwardItself() }, done)
      return
    }
    const prepared = prepareFetch(request, request.gateway as GatewayContext, route, validatorsOf(entry))
    if (prepared === null) {
      flight.finish(null)
      return forwardItself()
    }
    const requestHeaders = request.headers
    fetch(prepared, maxBodyBytes, true).then((fetched) => {
      const now = Date.now()
      if (fetched.status === 304) {
        const updated = revalidated(entry, fetched.headers, now)
        if (updated === null) {
          quietly(store.remove(key))
          flight.finish(null)
          return serve(request, reply, entry, 'REVALIDATED', now)
        }
        quietly(store.set(key, requestHeaders, updated))
        flight.finish({ entry: updated, variant: variantKey(key.primary, updated.varyNames, requestHeaders) })
        return serve(request, reply, updated, 'REVALIDATED', now)
      }
      if (fetched.status >= 500 && now < entry.staleIfErrorUntil) {
        fetched.stream?.destroy()
        flight.finish(null)
        return serve(request, reply, entry, 'STALE', now)
      }
      const stored = storeFetched(key, requestHeaders, fetched, now)
      if (stored === null && fetched.status < 500) quietly(store.remove(key))
      flight.finish(stored === null ? null : { entry: stored, variant: variantKey(key.primary, stored.varyNames, requestHeaders) })
      setState(request, 'MISS', null)
      sendAnswer(reply, fetched.status, fetched.headers, fetched.body ?? fetched.stream)
    }, (err: Error) => {
      flight.finish(null)
      log.debug({ err: err.message, route: route.name }, 'cache revalidation failed')
      if (Date.now() < entry.staleIfErrorUntil) return serve(request, reply, entry, 'STALE', Date.now())
      // Forwarded as any miss: the client gets the gateway's own 502/504 after its retries.
      forwardItself()
    }).catch(done)
  }

  /** stale-while-revalidate: one refresh per key in the background while clients get the stale entry. */
  function refreshInBackground (request: FastifyRequest, key: CacheKey, entry: CacheEntry): void {
    const flight = flights.lead(key.primary)
    if (flight === null) return
    const prepared = prepareFetch(request, request.gateway as GatewayContext, route, validatorsOf(entry))
    if (prepared === null) return flight.finish(null)
    const requestHeaders = { ...request.headers }
    fetch(prepared, maxBodyBytes, false).then((fetched) => {
      const now = Date.now()
      if (fetched.status === 304) {
        const updated = revalidated(entry, fetched.headers, now)
        if (updated !== null) quietly(store.set(key, requestHeaders, updated))
        return flight.finish(updated === null ? null : { entry: updated, variant: variantKey(key.primary, updated.varyNames, requestHeaders) })
      }
      // An upstream error keeps the stale entry; anything else replaces it, or removes it when it may not be stored.
      if (fetched.status >= 500) return flight.finish(null)
      const stored = storeFetched(key, requestHeaders, fetched, now)
      if (stored === null) quietly(store.remove(key))
      flight.finish(stored === null ? null : { entry: stored, variant: variantKey(key.primary, stored.varyNames, requestHeaders) })
    }, (err: Error) => {
      log.debug({ err: err.message, route: route.name }, 'cache background refresh failed')
      flight.finish(null)
    })
  }

  function decide (request: FastifyRequest, reply: FastifyReply, done: HookHandlerDoneFunction, key: CacheKey, entry: CacheEntry | null): void {
    if (entry === null) return miss(request, reply, done, key)
    const now = Date.now()
    if (now < entry.freshUntil) return serve(request, reply, entry, 'HIT', now)
    if (now < entry.staleWhileRevalidateUntil) {
      refreshInBackground(request, key, entry)
      return serve(request, reply, entry, 'STALE', now)
    }
    revalidate(request, reply, done, key, entry)
  }

  return {
    name: 'cache',
    onRequest (request, reply, done) {
      const method = request.method
      if (method !== 'GET' && method !== 'HEAD') {
        const context = request.gateway as GatewayContext
        setState(request, 'BYPASS', null, null, UNSAFE.has(method) ? context.path + context.query : null)
        return done()
      }
      // Credentials the gateway did not check make an answer personal: a shared cache keeps out of it.
      if (!authenticates && request.headers.authorization !== undefined) {
        setState(request, 'BYPASS', null)
        return done()
      }
      const key = keyOf(request, request.gateway as GatewayContext)
      const mode = requestCacheMode(request.headers)
      if (mode !== 'normal') {
        // no-cache: the answer replaces the entry; no-store: nothing of it is stored (RFC 9111 §5.2.1.5), the entry is dropped.
        if (mode === 'no-store') quietly(store.remove(key))
        setState(request, 'BYPASS', mode === 'no-cache' && method === 'GET' ? key : null)
        return done()
      }
      const found = store.get(key, request.headers, Date.now())
      if (found instanceof Promise) {
        found.then((entry) => decide(request, reply, done, key, entry)).catch(done)
        return
      }
      decide(request, reply, done, key, found)
    },
    onResponseHead (request, head) {
      const status = (request as CachedRequest)[kCache]?.status ?? 'BYPASS'
      head['x-cache-status'] = status
      counters[status]++
    },
    onResponseBody (request, statusCode, _head, upstream) {
      const state = (request as CachedRequest)[kCache]
      if (state === undefined) return null
      if (state.invalidates !== null) {
        // RFC 9111 §4.4: a successful unsafe request invalidates what is stored for its URL.
        if (statusCode < 400) quietly(store.invalidateUrl(route.id, state.invalidates))
        return null
      }
      const { key, flight } = state
      if (key === null) return null
      const now = Date.now()
      const freshness = storability(statusCode, upstream, policy, now)
      const declared = upstream['content-length']
      if (typeof freshness === 'string' || (declared !== undefined && Number(declared) > maxBodyBytes)) {
        flight?.finish(null)
        return null
      }
      const requestHeaders = request.headers
      return new StoreBody(maxBodyBytes, (body) => {
        const entry = buildEntry(statusCode, upstream, body, freshness, now)
        quietly(store.set(key, requestHeaders, entry))
        flight?.finish({ entry, variant: variantKey(key.primary, entry.varyNames, requestHeaders) })
      }, () => flight?.finish(null))
    }
  }
}

/**
 * Passes the upstream's body on untouched while copying it, up to `max` bytes; beyond that it
 * stops copying (the answer is not stored) and only passes on. Stores when the body ended whole.
 */
class StoreBody extends Transform {
  private chunks: Buffer[] = []
  private size = 0
  private gaveUp = false

  constructor (private readonly max: number, private readonly complete: (body: Buffer) => void, private readonly tooLarge: () => void) {
    super()
  }

  override _transform (chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    if (!this.gaveUp) {
      this.size += chunk.length
      if (this.size > this.max) {
        this.gaveUp = true
        this.chunks = []
        this.tooLarge()
      } else {
        this.chunks.push(chunk)
      }
    }
    callback(null, chunk)
  }

  override _flush (callback: TransformCallback): void {
    if (!this.gaveUp) this.complete(Buffer.concat(this.chunks, this.size))
    this.chunks = []
    callback()
  }
}

function validatorsOf (entry: CacheEntry): Validators | null {
  const etag = typeof entry.headers.etag === 'string' ? entry.headers.etag : null
  const lastModified = typeof entry.headers['last-modified'] === 'string' ? entry.headers['last-modified'] : null
  return etag === null && lastModified === null ? null : { etag, lastModified }
}

function quietly (result: void | number | Promise<unknown>): void {
  if (result instanceof Promise) result.catch(() => {})
}
