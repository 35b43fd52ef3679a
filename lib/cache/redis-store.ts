import { createHash } from 'node:crypto'
import type { IncomingHttpHeaders } from 'node:http'
import type { FastifyBaseLogger } from 'fastify'
import type { Redis } from 'ioredis'
import { atMostEvery } from '../at-most-every.js'
import { type CacheEntry, type CacheKey, deserializeEntry, serializeEntry, variantKey } from './entry.js'
import { type CacheStore, underPrefix } from './store.js'

/** What the store needs of plugins/redis.ts: the client, the key prefix, and the breaker. */
export interface RedisAccess {
  readonly client: Redis | null
  readonly keyPrefix: string
  run: <T>(command: () => Promise<T>) => Promise<T>
}

/**
 * Stores an entry (KEYS[1]) and, for an answer with Vary, the record naming its headers
 * (KEYS[4]); indexes it under its URL (KEYS[2], a set) and the URL under its route (KEYS[3], a
 * hash URL-index → path), so unsafe requests and purges find what to delete without SCAN.
 */
const STORE_SCRIPT = `
local ttl = tonumber(ARGV[2])
redis.call('set', KEYS[1], ARGV[1], 'PX', ttl)
redis.call('sadd', KEYS[2], KEYS[1])
if #KEYS > 3 then
  local keep = math.max(ttl, redis.call('pttl', KEYS[4]))
  redis.call('set', KEYS[4], ARGV[4], 'PX', keep)
  redis.call('sadd', KEYS[2], KEYS[4])
end
redis.call('hset', KEYS[3], KEYS[2], ARGV[3])
for i = 2, 3 do
  if redis.call('pttl', KEYS[i]) < ttl then redis.call('pexpire', KEYS[i], ttl) end
end
return 1`

/** Deletes what a URL index lists, and the index; answers how many entries (not Vary records) were deleted. */
const INVALIDATE_SCRIPT = `
local deleted = 0
for _, key in ipairs(redis.call('smembers', KEYS[1])) do
  local gone = redis.call('del', key)
  if string.find(key, ARGV[1], 1, true) == 1 then deleted = deleted + gone end
end
redis.call('del', KEYS[1])
if ARGV[2] ~= '' then redis.call('hdel', ARGV[2], KEYS[1]) end
return deleted`

/**
 * The shared store (route `cache.store: "redis"`): every instance reads and writes the same
 * entries. Bodies are stored as bytes (lib/cache/entry.ts serializeEntry), with a TTL of the
 * entry's fresh and stale windows. Redis being slow or down is a MISS and a forwarded request,
 * never an error: commands go through the breaker of plugins/redis.ts (REDIS_TIMEOUT_MS, then
 * bypassed until a probe finds it back), and failures are counted and logged at most every 10 s.
 */
export class RedisCacheStore implements CacheStore {
  readonly kind = 'redis'
  /** Commands that failed or were bypassed (Redis down). */
  failures = 0
  private readonly client: Redis
  private readonly prefix: string
  private readonly mayWarn = atMostEvery(10_000)

  constructor (private readonly redis: RedisAccess, private readonly log: FastifyBaseLogger) {
    if (redis.client === null) throw new Error('the Redis cache store needs REDIS_URL')
    this.client = redis.client
    this.prefix = `${redis.keyPrefix}cache:`
  }

  async get (key: CacheKey, request: IncomingHttpHeaders, now: number): Promise<CacheEntry | null> {
    try {
      const hash = digest(key.primary)
      const [stored, varies] = await this.redis.run(() => this.client.mgetBuffer(this.entryKey(hash), this.varyKey(hash)))
      let bytes = stored
      if (varies !== null) {
        const names = JSON.parse(varies.toString('utf8')) as string[]
        bytes = await this.redis.run(() => this.client.getBuffer(this.entryKey(digest(variantKey(key.primary, names, request)))))
      }
      if (bytes === null) return null
      const entry = deserializeEntry(bytes)
      return entry === null || entry.keepUntil <= now ? null : entry
    } catch (err) {
      this.failed(err)
      return null
    }
  }

  async set (key: CacheKey, request: IncomingHttpHeaders, entry: CacheEntry): Promise<void> {
    const ttl = Math.ceil(entry.keepUntil - Date.now())
    if (ttl <= 0) return
    const hash = digest(key.primary)
    const urlIndex = this.urlIndexKey(key.routeId, key.url)
    const keys = entry.varyNames.length === 0
      ? [this.entryKey(hash), urlIndex, this.routeIndexKey(key.routeId)]
      : [this.entryKey(digest(variantKey(key.primary, entry.varyNames, request))), urlIndex, this.routeIndexKey(key.routeId), this.varyKey(hash)]
    const args: Array<string | Buffer> = [serializeEntry(entry), String(ttl), key.path]
    if (entry.varyNames.length > 0) args.push(JSON.stringify(entry.varyNames))
    try {
      // When the answer stops varying, the old Vary record must not send lookups to old variants.
      if (entry.varyNames.length === 0) await this.redis.run(() => this.client.del(this.varyKey(hash)))
      await this.redis.run(() => this.client.eval(STORE_SCRIPT, keys.length, ...keys, ...args))
    } catch (err) {
      this.failed(err)
    }
  }

  async remove (key: CacheKey): Promise<void> {
    const hash = digest(key.primary)
    try {
      await this.redis.run(() => this.client.del(this.entryKey(hash), this.varyKey(hash)))
    } catch (err) {
      this.failed(err)
    }
  }

  async invalidateUrl (routeId: string, url: string): Promise<number> {
    try {
      return await this.invalidateIndex(this.urlIndexKey(routeId, url), '')
    } catch (err) {
      this.failed(err)
      return 0
    }
  }

  /** Unlike lookups, a purge that fails is reported: the caller must not say it purged. */
  async purge (routeId: string | null, pathPrefix: string | null): Promise<number> {
    if (routeId === null) return await this.purgeAll()
    const routeIndex = this.routeIndexKey(routeId)
    const urls = await this.redis.run(() => this.client.hgetall(routeIndex))
    let deleted = 0
    for (const [urlIndex, path] of Object.entries(urls)) {
      if (!underPrefix(path, pathPrefix)) continue
      deleted += await this.invalidateIndex(urlIndex, routeIndex)
    }
    return deleted
  }

  private async purgeAll (): Promise<number> {
    let cursor = '0'
    let deleted = 0
    const entries = `${this.prefix}e:`
    do {
      const [next, keys] = await this.redis.run(() => this.client.scan(cursor, 'MATCH', `${escapeGlob(this.prefix)}*`, 'COUNT', 1000))
      cursor = next
      if (keys.length === 0) continue
      deleted += keys.filter((key) => key.startsWith(entries)).length
      await this.redis.run(() => this.client.del(...keys))
    } while (cursor !== '0')
    return deleted
  }

  private async invalidateIndex (urlIndex: string, routeIndex: string): Promise<number> {
    return Number(await this.redis.run(() => this.client.eval(INVALIDATE_SCRIPT, 1, urlIndex, `${this.prefix}e:`, routeIndex)))
  }

  private failed (err: unknown): void {
    this.failures++
    if (this.mayWarn()) this.log.warn({ err: (err as Error)?.message ?? String(err) }, 'redis cache store unavailable: answering as a miss until it is back')
  }

  private entryKey (hash: string): string { return `${this.prefix}e:${hash}` }
  private varyKey (hash: string): string { return `${this.prefix}v:${hash}` }
  private urlIndexKey (routeId: string, url: string): string { return `${this.prefix}u:${routeId}:${digest(url)}` }
  private routeIndexKey (routeId: string): string { return `${this.prefix}r:${routeId}` }
}

function digest (text: string): string {
  return createHash('sha256').update(text).digest('base64url')
}

function escapeGlob (text: string): string {
  return text.replace(/[*?[\]\\]/g, (char) => `\\${char}`)
}
