import type { RateLimitStore } from './rate-limit-store.js'

/**
 * Sliding-window counter (the algorithm Cloudflare and nginx-plus describe), chosen over
 * GCRA and over a sliding log:
 * - a sliding log is exact but keeps one timestamp per admitted request (max × keys memory);
 * - GCRA keeps one timestamp but admits a full burst and then a steady drip, so any window
 *   can still see up to 2 × max;
 * - the sliding-window counter keeps two integers per key (this fixed window's count and the
 *   previous one's) and weighs the previous count by how much of it the sliding window still
 *   covers: estimate = previous × (1 − elapsed/window) + current. A request is admitted when
 *   estimate + 1 ≤ max.
 *
 * Approximation error (documented in docs/policies.md): the estimate assumes the previous
 * window's requests were spread evenly. A burst of `max` at the very end of one window
 * followed by requests in the next admits at most max × f more within the sliding window,
 * f being how far into the new window the client is: a burst straddling the boundary by d ms
 * passes at most max × (1 + d/window), never twice the limit at once. Rejected requests are
 * not counted, so a client that keeps knocking is admitted again at the allowed rate.
 *
 * Windows are aligned to the epoch (index = floor(now / window)), so every instance and the
 * Redis script agree on them; the Redis script runs the same arithmetic on Redis's clock.
 */
export interface WindowState {
  /** floor(now / windowMs) of the window `current` counts. */
  index: number
  previous: number
  current: number
  windowMs: number
}

export interface Decision {
  allowed: boolean
  limit: number
  /** Requests the client may still make now. */
  remaining: number
  /** Seconds until the current fixed window ends and its count starts to slide out. */
  resetSeconds: number
  /** When not allowed: seconds until one more request would be admitted (≥ 1). */
  retryAfterSeconds: number
  /** The weighted count after this request, for the admin API. */
  estimate: number
}

/** Moves `state` to the window containing `now` (previous ← current when adjacent). */
export function roll (state: WindowState, now: number): void {
  const index = Math.floor(now / state.windowMs)
  if (index === state.index) return
  state.previous = index === state.index + 1 ? state.current : 0
  state.current = 0
  state.index = index
}

/** The decision for counts already rolled to `now` (shared by the memory store and the Redis reply). */
export function decide (previous: number, current: number, elapsedMs: number, windowMs: number, max: number, counted: boolean): Decision {
  const weight = (windowMs - elapsedMs) / windowMs
  const estimate = previous * weight + current
  const remaining = Math.max(0, Math.floor(max - estimate))
  const resetSeconds = Math.max(1, Math.ceil((windowMs - elapsedMs) / 1000))
  return {
    allowed: counted,
    limit: max,
    remaining,
    resetSeconds,
    retryAfterSeconds: counted ? 0 : retryAfter(previous, current, elapsedMs, windowMs, max),
    estimate
  }
}

/** Milliseconds → whole seconds until previous × weight + current ≤ max − 1. */
function retryAfter (previous: number, current: number, elapsedMs: number, windowMs: number, max: number): number {
  const room = max - 1
  let waitMs: number
  if (current <= room && previous > 0) {
    // Still in this window: wait until the previous window's share has slid out far enough.
    waitMs = windowMs * (1 - (room - current) / previous) - elapsedMs
  } else {
    // Only in the next window, once `current` has become the previous count and slid out enough.
    waitMs = windowMs - elapsedMs + windowMs * (1 - room / Math.max(current, 1))
  }
  // Whole milliseconds first: float noise (0.30000000000000004) must not add a second.
  return Math.max(1, Math.ceil(Math.round(waitMs) / 1000))
}

export interface MemoryStoreOptions {
  /** Most keys kept at once; the least recently used is dropped first. */
  maxKeys?: number
  /** How often a slice of the keys is checked for windows that have fully slid out. */
  sweepIntervalMs?: number
  /** Keys checked per slice: sweeping a million keys at once would stall the event loop ~0.4 s. */
  sweepBudget?: number
}

/**
 * Counters of one process. Memory is bounded twice: keys idle for two windows are swept
 * (their count is zero anyway) a slice at a time, and at most `maxKeys` are kept. The bound is a two-generation
 * LRU (as in hashlru): hits go to `recent`; when it holds maxKeys / 2 keys it becomes `older`
 * and the previous `older` is dropped whole; a key found in `older` moves back to `recent`.
 * Every operation is O(1), with no per-hit reordering and no eviction scan; a key is only lost
 * after maxKeys / 2 other keys have been used since it was last.
 */
export class MemoryWindowStore implements RateLimitStore {
  readonly kind = 'memory'
  private recent = new Map<string, WindowState>()
  private older = new Map<string, WindowState>()
  readonly maxKeys: number
  private readonly generationSize: number
  private readonly timer: NodeJS.Timeout

  constructor (options: MemoryStoreOptions = {}) {
    this.maxKeys = options.maxKeys ?? 1_000_000
    this.generationSize = Math.max(1, Math.floor(this.maxKeys / 2))
    const budget = options.sweepBudget ?? 5_000
    this.timer = setInterval(() => this.sweepStep(Date.now(), budget), options.sweepIntervalMs ?? 100)
    this.timer.unref()
  }

  get size (): number { return this.recent.size + this.older.size }

  private get (key: string): WindowState | undefined {
    const state = this.recent.get(key)
    if (state !== undefined) return state
    const old = this.older.get(key)
    if (old !== undefined) {
      this.older.delete(key)
      this.insert(key, old)
    }
    return old
  }

  private insert (key: string, state: WindowState): void {
    if (this.recent.size >= this.generationSize) {
      this.older = this.recent
      this.recent = new Map()
    }
    this.recent.set(key, state)
  }

  /** Counts one request against `key` if it fits, and says what happened. */
  hit (key: string, max: number, windowMs: number, now = Date.now()): Decision {
    let state = this.get(key)
    if (state === undefined || state.windowMs !== windowMs) {
      // A route whose window changed starts afresh rather than mixing two window sizes.
      const fresh: WindowState = { index: Math.floor(now / windowMs), previous: 0, current: 0, windowMs }
      if (state === undefined) this.insert(key, fresh)
      else this.recent.set(key, fresh)
      state = fresh
    } else {
      roll(state, now)
    }
    const elapsed = now - state.index * windowMs
    const fits = state.previous * ((windowMs - elapsed) / windowMs) + state.current + 1 <= max
    if (fits) state.current++
    return decide(state.previous, state.current, elapsed, windowMs, max, fits)
  }

  /** The counts for `key` without counting anything; null when it has none. */
  peek (key: string, max: number, windowMs: number, now = Date.now()): Decision | null {
    const state = this.recent.get(key) ?? this.older.get(key)
    if (state === undefined || state.windowMs !== windowMs) return null
    roll(state, now)
    if (state.previous === 0 && state.current === 0) return null
    return decide(state.previous, state.current, now - state.index * windowMs, windowMs, max, true)
  }

  delete (key: string): boolean {
    const inRecent = this.recent.delete(key)
    return this.older.delete(key) || inRecent
  }

  reset (keys: string[]): number {
    return keys.filter((key) => this.delete(key)).length
  }

  /** Drops keys whose windows have fully slid out. */
  sweep (now: number): number {
    let removed = 0
    for (const map of [this.recent, this.older]) {
      for (const [key, state] of map) {
        if (Math.floor(now / state.windowMs) > state.index + 1) {
          map.delete(key)
          removed++
        }
      }
    }
    return removed
  }

  private pass: Array<Map<string, WindowState>> = []
  private passMap: Map<string, WindowState> | null = null
  private passEntries: IterableIterator<[string, WindowState]> | null = null

  /**
   * Checks up to `budget` keys, resuming where the previous step stopped, and drops those
   * whose windows have slid out. Map iterators survive deletions; a generation dropped
   * meanwhile is simply walked to its end for nothing.
   */
  sweepStep (now: number, budget: number): number {
    let removed = 0
    let startedPass = false
    for (let checked = 0; checked < budget; checked++) {
      if (this.passEntries === null) {
        let map = this.pass.shift()
        if (map === undefined) {
          // At most one new pass per step, so empty maps cannot spin.
          if (startedPass) return removed
          startedPass = true
          this.pass = [this.older]
          map = this.recent
        }
        this.passMap = map
        this.passEntries = map.entries()
      }
      const next = this.passEntries.next()
      if (next.done === true) {
        this.passEntries = null
        continue
      }
      const [key, state] = next.value
      if (Math.floor(now / state.windowMs) > state.index + 1) {
        (this.passMap as Map<string, WindowState>).delete(key)
        removed++
      }
    }
    return removed
  }

  close (): void {
    clearInterval(this.timer)
    this.recent.clear()
    this.older.clear()
  }
}
