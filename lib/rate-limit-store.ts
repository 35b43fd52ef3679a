import type { Decision } from './sliding-window.js'

/**
 * Where rate-limit counters live, behind plugins/rate-limit.ts: one process's memory
 * (lib/sliding-window.ts), Redis shared by every instance (lib/sliding-window-redis.ts), or
 * the cluster primary shared by the workers of one host (lib/sliding-window-cluster.ts).
 * The memory store answers synchronously, so the hot path stays callback-style without a
 * promise per request; the others answer with promises.
 */
export interface RateLimitStore {
  readonly kind: 'memory' | 'redis' | 'cluster'
  /** Counts one request against `key` if it fits in `max` per sliding `windowMs`, and says what happened. */
  hit: (key: string, max: number, windowMs: number) => Decision | Promise<Decision>
  /** The counts for `key` without counting anything; null when it has none. */
  peek: (key: string, max: number, windowMs: number) => Decision | null | Promise<Decision | null>
  /** Deletes these counters; resolves with how many existed. */
  reset: (keys: string[]) => number | Promise<number>
  close: () => void
}
