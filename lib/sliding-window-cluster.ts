import type { PrimaryLink, PrimaryOperation } from './cluster-ipc.js'
import { MemoryRateLimitStore, type RateLimitStore } from './rate-limit-store.js'
import type { Decision } from './sliding-window.js'

/**
 * Host-wide rate-limit counters for WORKERS > 1 without Redis: the cluster primary keeps one
 * MemoryRateLimitStore (counters and bans), and each worker asks it on every limited request over node:cluster IPC.
 * The primary decides hits one at a time, so the host admits exactly `max` per window, as one
 * process would (no over-admission to tolerate); the price is one IPC round trip per limited
 * request (measured in docs/policies.md "Several worker processes").
 *
 * A primary that does not answer within `timeoutMs` makes the hit fail, and the plugin fails
 * open (counted), as it does when Redis fails. After FAILURES_BEFORE_BYPASS failures in a row
 * the primary is not asked at all for BYPASS_MS (every hit fails at once, so a hung primary
 * costs a handful of requests `timeoutMs` each, not every request); then one call probes it.
 *
 * Operations are named "rl.<method>"; a new store operation is one more entry in
 * rateLimitOperations and one more method here.
 */
export const FAILURES_BEFORE_BYPASS = 3
export const BYPASS_MS = 1000

export class ClusterWindowStore implements RateLimitStore {
  readonly kind = 'cluster'
  private failures = 0
  private bypassUntil = 0

  constructor (private readonly link: PrimaryLink, private readonly timeoutMs: number) {}

  async hit (key: string, max: number, windowMs: number, banMs: number): Promise<Decision> {
    return await this.ask<Decision>('rl.hit', [key, max, windowMs, banMs])
  }

  async peek (key: string, max: number, windowMs: number): Promise<Decision | null> {
    return await this.ask<Decision | null>('rl.peek', [key, max, windowMs])
  }

  async delete (keys: string[]): Promise<number> {
    return await this.ask<number>('rl.delete', [keys])
  }

  async banRemainingMs (key: string): Promise<number> {
    return await this.ask<number>('rl.banRemainingMs', [key])
  }

  async liftBans (keys: string[]): Promise<number> {
    return await this.ask<number>('rl.liftBans', [keys])
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
 * The primary's side: the operations ClusterWindowStore calls, on one MemoryRateLimitStore made
 * on first use (a host with Redis, or without limited routes, never makes it).
 */
export function rateLimitOperations (options: { maxKeys?: number } = {}): Record<string, PrimaryOperation> {
  let store: MemoryRateLimitStore | null = null
  const counters = (): MemoryRateLimitStore => (store ??= new MemoryRateLimitStore(options))
  return {
    'rl.hit': ([key, max, windowMs, banMs]) => counters().hit(key as string, max as number, windowMs as number, banMs as number),
    'rl.peek': ([key, max, windowMs]) => counters().peek(key as string, max as number, windowMs as number),
    'rl.delete': ([keys]) => counters().delete(keys as string[]),
    'rl.banRemainingMs': ([key]) => counters().banRemainingMs(key as string),
    'rl.liftBans': ([keys]) => counters().liftBans(keys as string[])
  }
}
