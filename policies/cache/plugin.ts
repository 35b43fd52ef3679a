import fp from 'fastify-plugin'
import type { FastifyPluginAsync } from 'fastify'
import { Counter } from 'prom-client'
import { Flights } from '../../lib/cache/flights.js'
import { MemoryCacheStore } from '../../lib/cache/memory-store.js'
import { RedisCacheStore } from '../../lib/cache/redis-store.js'
import type { CacheStore } from '../../lib/cache/store.js'
import { lastCachePurgeId, listCachePurgesAfter } from '../../repositories/cache-purges.js'
import type { Route } from '../../schemas/route.js'
import { createUpstreamFetch } from './fetch.js'
import { CACHE_STATUSES, compileCacheStage, type Landed, type StatusCounters } from './stage.js'

/** The `cache` section of GET /admin/status: this process's memory store and answers by X-Cache-Status. */
export interface CacheStatusReport {
  entries: number
  bytes: number
  hits: number
  misses: number
  stale: number
  bypass: number
  revalidated: number
}

export interface ResponseCache {
  /** Forgets entries on this instance's stores (memory, and the shared Redis one): everything, a route's, or a route's under a path prefix. */
  purgeHere: (routeId: string | null, pathPrefix: string | null) => Promise<number>
  status: () => CacheStatusReport
  readonly memory: MemoryCacheStore
  /** Collapsed flights in the air. */
  readonly flightsInAir: number
}

declare module 'fastify' {
  interface FastifyInstance {
    cache: ResponseCache
  }
}

/**
 * Route `cache` (docs/cache.md): the stage, its stores, and what keeps them honest across
 * instances — a route changed or deleted forgets its entries on every instance (each one's
 * route-table swap), and purges reach every instance through cache_purges rows announced by
 * the configuration change broadcast (routes/admin/cache.ts).
 */
const cachePlugin: FastifyPluginAsync = async (app) => {
  const memory = new MemoryCacheStore(app.config.cacheMemoryBytes)
  const redis = app.redis.client === null ? null : new RedisCacheStore(app.redis, app.log)
  const flights = new Flights<Landed>()
  const byRoute = new Map<string, StatusCounters>()
  const counters = (routeName: string): StatusCounters => {
    let found = byRoute.get(routeName)
    if (found === undefined) byRoute.set(routeName, found = { HIT: 0, MISS: 0, BYPASS: 0, STALE: 0, REVALIDATED: 0 })
    return found
  }
  let warnedNoRedis = false
  const storeFor = (route: Route): CacheStore => {
    if (route.cache?.store !== 'redis') return memory
    if (redis !== null) return redis
    // Only a route stored before REDIS_URL was removed gets here (the admin API refuses it).
    if (!warnedNoRedis) app.log.warn({ route: route.name }, 'cache.store is "redis" but REDIS_URL is not set: using the memory store')
    warnedNoRedis = true
    return memory
  }
  const fetch = createUpstreamFetch(app)
  app.routeTable.addStage('cache', (route) => compileCacheStage(route, { storeFor, flights, counters, fetch, log: app.log }))

  async function purgeHere (routeId: string | null, pathPrefix: string | null): Promise<number> {
    const [inMemory, inRedis] = await Promise.all([memory.purge(routeId, pathPrefix), redis === null ? 0 : redis.purge(routeId, pathPrefix)])
    return inMemory + inRedis
  }

  // A route changed or deleted (here or on another instance) forgets what was stored for it.
  let versions = new Map<string, string>()
  app.routeTable.onSwap((routes) => {
    const next = new Map(routes.map((route) => [route.id, route.updatedAt]))
    for (const [id, updatedAt] of versions) {
      if (next.get(id) === updatedAt) continue
      purgeHere(id, null).catch((err: unknown) => app.log.warn({ err, routeId: id }, 'purging the cache of a changed route failed'))
    }
    versions = next
  })

  // Purges made on other instances (DELETE /admin/cache), read when the configuration version moves.
  let lastPurge: number | null = null
  await app.configChanges.onChange('cache-purges', async () => {
    if (lastPurge === null) {
      // At start: nothing is stored yet, so earlier purges do not matter. A database that is
      // down now makes this 0, and the first reload then replays the last hour's purges (harmless).
      lastPurge = await lastCachePurgeId(app.db).catch(() => 0)
      return
    }
    for (const purge of await listCachePurgesAfter(app.db, lastPurge)) {
      lastPurge = purge.id
      await memory.purge(purge.routeId, purge.pathPrefix)
    }
  })

  function totals (): StatusCounters {
    const sum: StatusCounters = { HIT: 0, MISS: 0, BYPASS: 0, STALE: 0, REVALIDATED: 0 }
    for (const route of byRoute.values()) for (const status of CACHE_STATUSES) sum[status] += route[status]
    return sum
  }

  app.decorate('cache', {
    purgeHere,
    memory,
    get flightsInAir () { return flights.size },
    status () {
      const sum = totals()
      return { entries: memory.entries, bytes: memory.bytes, hits: sum.HIT, misses: sum.MISS, stale: sum.STALE, bypass: sum.BYPASS, revalidated: sum.REVALIDATED }
    }
  } satisfies ResponseCache)

  // eslint-disable-next-line no-new
  new Counter({
    name: 'gatehouse_cache_requests_total',
    help: 'Answers of cached routes by route name and X-Cache-Status (HIT, MISS, BYPASS, STALE, REVALIDATED)',
    labelNames: ['route', 'status'],
    registers: [app.metrics.registry],
    collect () {
      this.reset()
      for (const [route, statuses] of byRoute) {
        for (const status of CACHE_STATUSES) if (statuses[status] > 0) this.inc({ route, status }, statuses[status])
      }
    }
  })
  app.metrics.gauge('gatehouse_cache_entries', 'Answers held by this process\'s memory cache store', () => memory.entries)
  app.metrics.gauge('gatehouse_cache_bytes', 'Bytes held by this process\'s memory cache store (bodies, headers, keys and per-entry overhead)', () => memory.bytes)
}

export default fp(cachePlugin, { name: 'cache', dependencies: ['route-table', 'redis', 'upstreams', 'config-changes', 'metrics', 'db'] })
