import type { Redis } from 'ioredis'
import type { RateLimitStore } from './rate-limit-store.js'
import { type Decision, bannedDecision, decide } from './sliding-window.js'

/**
 * The sliding-window counter of lib/sliding-window.ts in Redis: one hash per counter
 * (i = window index, p = previous count, c = current count, w = window ms), read, rolled,
 * decided and written by one Lua script, so N gateway instances together admit at most the
 * limit and each request costs one round trip. The script reads Redis's clock (TIME), so
 * instances with skewed clocks still agree on the window. ARGV[3] = 0 only reads.
 *
 * Bans (docs/policies.md "Bans") live beside the counter in KEYS[2], a plain key expiring with
 * the ban (PX), checked and set by the same script: a banned key costs no extra round trip
 * and every instance on this Redis sees the ban. ARGV[4] = ban length in ms (0: none).
 * Reply: {allowed, previous, current, elapsed ms, ban ms left (0: none)}.
 */
const SLIDE = `
local window = tonumber(ARGV[1])
local max = tonumber(ARGV[2])
local counting = ARGV[3] == '1'
local banMs = tonumber(ARGV[4])
local ban = redis.call('PTTL', KEYS[2])
if ban < 0 then ban = 0 end
if counting and ban > 0 then
  return {0, 0, 0, 0, ban}
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local index = math.floor(now / window)
local elapsed = now - index * window
local state = redis.call('HMGET', KEYS[1], 'i', 'p', 'c', 'w')
local previous, current = 0, 0
if state[1] and tonumber(state[4]) == window then
  local stored = tonumber(state[1])
  if stored == index then
    previous = tonumber(state[2])
    current = tonumber(state[3])
  elseif stored == index - 1 then
    previous = tonumber(state[3])
  end
end
local allowed = 0
if counting then
  if previous * (window - elapsed) / window + current + 1 <= max then
    current = current + 1
    allowed = 1
  elseif banMs > 0 then
    redis.call('SET', KEYS[2], '1', 'PX', banMs)
    ban = banMs
  end
  redis.call('HSET', KEYS[1], 'i', index, 'p', previous, 'c', current, 'w', window)
  redis.call('PEXPIRE', KEYS[1], window * 2)
end
return {allowed, previous, current, elapsed, ban}
`

type SlideReply = [number, number, number, number, number]

interface SlidingRedis extends Redis {
  gatehouseSlide: (key: string, banKey: string, windowMs: number, max: number, counting: 0 | 1, banMs: number) => Promise<SlideReply>
}

/** Runs one command on the request path (through plugins/redis.ts's breaker). */
export type RedisGuard = <T>(command: () => Promise<T>) => Promise<T>

export class RedisWindowStore implements RateLimitStore {
  readonly kind = 'redis'
  private readonly redis: SlidingRedis

  constructor (redis: Redis, private readonly keyPrefix: string, private readonly guard: RedisGuard = async (command) => await command()) {
    if (!('gatehouseSlide' in redis)) redis.defineCommand('gatehouseSlide', { numberOfKeys: 2, lua: SLIDE })
    this.redis = redis as SlidingRedis
  }

  private banKey (key: string): string {
    return `${this.keyPrefix}ban:${key}`
  }

  async hit (key: string, max: number, windowMs: number, banMs = 0): Promise<Decision> {
    const [allowed, previous, current, elapsed, ban] = await this.guard(() =>
      this.redis.gatehouseSlide(this.keyPrefix + key, this.banKey(key), windowMs, max, 1, banMs))
    if (allowed !== 1 && ban > 0) return bannedDecision(max, ban)
    return decide(previous, current, elapsed, windowMs, max, allowed === 1)
  }

  async peek (key: string, max: number, windowMs: number): Promise<Decision | null> {
    const [, previous, current, elapsed] = await this.guard(() =>
      this.redis.gatehouseSlide(this.keyPrefix + key, this.banKey(key), windowMs, max, 0, 0))
    if (previous === 0 && current === 0) return null
    return decide(previous, current, elapsed, windowMs, max, true)
  }

  async delete (keys: string[]): Promise<number> {
    if (keys.length === 0) return 0
    return await this.guard(() => this.redis.del(...keys.map((key) => this.keyPrefix + key)))
  }

  async banRemainingMs (key: string): Promise<number> {
    return Math.max(0, await this.guard(() => this.redis.pttl(this.banKey(key))))
  }

  async liftBans (keys: string[]): Promise<number> {
    if (keys.length === 0) return 0
    return await this.guard(() => this.redis.del(...keys.map((key) => this.banKey(key))))
  }

  close (): void {}
}
