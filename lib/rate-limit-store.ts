import { type Decision, MemoryWindowStore, type MemoryStoreOptions } from './sliding-window.js'

/** Memory answers at once; shared stores (Redis, another process) answer with a promise. */
export type MaybePromise<T> = T | Promise<T>

/**
 * What policies/rate-limit/ needs of a counter store: the sliding-window counters and the
 * bans, keyed by the same counter key. Every store shares its bans with whoever shares its
 * counters: memory (this process), Redis (every instance on it, lib/sliding-window-redis.ts),
 * or the cluster primary (the workers of one host, lib/sliding-window-cluster.ts). Time is the
 * store's own clock. Memory answers synchronously, so the hot path needs no promise per request.
 */
export interface RateLimitStore {
  readonly kind: 'memory' | 'redis' | 'cluster'
  /**
   * Counts one request against `key` if it fits. A key under a ban is refused without
   * counting (Decision.banned); a key that does not fit is banned for `banMs` when it is > 0.
   */
  hit: (key: string, max: number, windowMs: number, banMs: number) => MaybePromise<Decision>
  /** The counts of `key` without counting; null when it has none. */
  peek: (key: string, max: number, windowMs: number) => MaybePromise<Decision | null>
  /** Deletes the counters of `keys`; returns how many existed. */
  delete: (keys: string[]) => MaybePromise<number>
  /** Milliseconds left of `key`'s ban; 0 when it has none. */
  banRemainingMs: (key: string) => MaybePromise<number>
  /** Lifts the bans of `keys`; returns how many were in force. */
  liftBans: (keys: string[]) => MaybePromise<number>
  close: () => void
}

/** This process's counters and bans (lib/sliding-window.ts) on the wall clock. */
export class MemoryRateLimitStore implements RateLimitStore {
  readonly kind = 'memory'
  readonly windows: MemoryWindowStore

  constructor (options: MemoryStoreOptions = {}) {
    this.windows = new MemoryWindowStore(options)
  }

  hit (key: string, max: number, windowMs: number, banMs: number): Decision {
    return this.windows.hit(key, max, windowMs, Date.now(), banMs)
  }

  peek (key: string, max: number, windowMs: number): Decision | null {
    return this.windows.peek(key, max, windowMs, Date.now())
  }

  delete (keys: string[]): number {
    return keys.filter((key) => this.windows.delete(key)).length
  }

  banRemainingMs (key: string): number {
    return this.windows.banRemainingMs(key, Date.now())
  }

  liftBans (keys: string[]): number {
    return this.windows.liftBans(keys, Date.now())
  }

  close (): void {
    this.windows.close()
  }
}
