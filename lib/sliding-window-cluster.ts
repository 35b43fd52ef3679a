import type { PrimaryLink, PrimaryOperation } from './cluster-ipc.js'
import type { RateLimitStore } from './rate-limit-store.js'
import { type Decision, MemoryWindowStore } from './sliding-window.js'

/**
 * Host-wide rate-limit counters for WORKERS > 1 without Redis: the cluster primary keeps one
 * MemoryWindowStore, and each worker asks it on every limited request over node:cluster IPC.
 * The primary decides hits one at a time, so the host admits exactly `max` per window, as one
 * process would (no over-admission to tolerate); the price is one IPC round trip per limited
 * request (measured in docs/policies.md "Rate limits with WORKERS > 1").
 *
 * A primary that does not answer within `timeoutMs` makes the hit fail, and the plugin fails
 * open (counted), as it does when Redis fails. After FAILURES_BEFORE_BYPASS failures in a row
 * the primary is not asked at all for BYPASS_MS (every hit fails at once, so a hung primary
 * costs a handful of requests `timeoutMs` each, not every request); then one call probes it.
 *
 * Operations are named "rl.<method>"; a new store operation (bans, say) is one more entry in
 * rateLimitOperations and one more method here.
 */
export const FAILURES_BEFORE_BYPASS = 3
export const BYPASS_MS = 1000

export class ClusterWindowStore implements RateLimitStore {
  readonly kind = 'cluster'
  private failures = 0
  private bypassUntil = 0

  constructor (private readonly link: PrimaryLink, private readonly timeoutMs: number) {}

  async hit (key: string, max: number, windowMs: number): Promise<Decision> {
    return await this.ask<Decision>('rl.hit', [key, max, windowMs])
  }

  async peek (key: string, max: number, windowMs: number): Promise<Decision | null> {
    return await this.ask<Decision | null>('rl.peek', [key, max, windowMs])
  }

  async reset (keys: string[]): Promise<number> {
    return await this.ask<number>('rl.reset', [keys])
  }

  private async ask<T> (op: string, args: unknown[]): Promise<T> {
    if (this.failures >= FAILURES_BEFORE_BYPASS && Date.now() < this.bypassUntil) {
      throw new Error(`the cluster primary failed ${this.failures} calls in a row: not asked again for up to ${BYPASS_MS} ms`)
    }
    try {
      const value = await this.link.call<T>(op, args, this.timeoutMs)
      this.failures = 0
      return value
    } catch (err) {
      if (++this.failures >= FAILURES_BEFORE_BYPASS) this.bypassUntil = Date.now() + BYPASS_MS
      throw err
    }
  }

  close (): void {}
}

/**
 * The primary's side: the operations ClusterWindowStore calls, on one MemoryWindowStore made
 * on first use (a host with Redis, or without limited routes, never makes it).
 */
export function rateLimitOperations (options: { maxKeys?: number } = {}): Record<string, PrimaryOperation> {
  let store: MemoryWindowStore | null = null
  const counters = (): MemoryWindowStore => (store ??= new MemoryWindowStore(options))
  return {
    'rl.hit': ([key, max, windowMs]) => counters().hit(key as string, max as number, windowMs as number, Date.now()),
    'rl.peek': ([key, max, windowMs]) => counters().peek(key as string, max as number, windowMs as number, Date.now()),
    'rl.reset': ([keys]) => counters().reset(keys as string[])
  }
}
