import type { FastifyRateLimitStore, FastifyRateLimitStoreCtor } from '@fastify/rate-limit'

interface Window {
  failures: number
  endsAt: number
}

/**
 * Failed attempts per key (a client IP) in fixed windows that start at the key's first failure.
 * Memory is bounded by the keys that failed within the last two windows: expired ones are swept
 * at most once per window, when a failure is recorded.
 */
export class FailureWindow {
  private readonly windows = new Map<string, Window>()
  private nextSweepAt = 0

  constructor (readonly windowMs: number, private readonly now: () => number = Date.now) {}

  record (key: string): void {
    const now = this.now()
    if (now >= this.nextSweepAt) this.sweep(now)
    const window = this.live(key, now)
    if (window === undefined) this.windows.set(key, { failures: 1, endsAt: now + this.windowMs })
    else window.failures++
  }

  /** Failures of the key's current window and the milliseconds left in it (0 failures: none open). */
  current (key: string): { failures: number, msLeft: number } {
    const now = this.now()
    const window = this.live(key, now)
    return window === undefined ? { failures: 0, msLeft: this.windowMs } : { failures: window.failures, msLeft: window.endsAt - now }
  }

  get size (): number {
    return this.windows.size
  }

  private live (key: string, now: number): Window | undefined {
    const window = this.windows.get(key)
    if (window !== undefined && window.endsAt <= now) {
      this.windows.delete(key)
      return undefined
    }
    return window
  }

  private sweep (now: number): void {
    for (const [key, window] of this.windows) if (window.endsAt <= now) this.windows.delete(key)
    this.nextSweepAt = now + this.windowMs
  }
}

/**
 * A store for @fastify/rate-limit that counts nothing itself: its `incr` only reads how many
 * failures the key has, so the limiter refuses a key once it has more than `max` failures and
 * requests that succeed never use up the allowance. Failures are recorded by the caller.
 */
export function failureStore (failures: FailureWindow): FastifyRateLimitStoreCtor {
  return class FailureStore implements FastifyRateLimitStore {
    incr (key: string, callback: (error: Error | null, result?: { current: number, ttl: number }) => void): void {
      const { failures: current, msLeft } = failures.current(key)
      callback(null, { current, ttl: msLeft })
    }

    child (): FastifyRateLimitStore {
      return this
    }
  }
}
