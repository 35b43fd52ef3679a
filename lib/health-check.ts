import { performance } from 'node:perf_hooks'
import { Client } from 'undici'
import type { RouteHealthCheck } from '../schemas/route.js'

/** Passive health (docs/upstreams.md "Passive health"): what ejects a target and for how long. */
export interface PassiveHealthOptions {
  /** Consecutive failures (connect errors, resets, timeouts, 5xx answers) that eject a target. */
  failures: number
  /** Cool-down of a first ejection; it doubles on each ejection in a row. */
  cooldownMs: number
  /** Cap of the growing cool-down; a target that stays up this long starts again from cooldownMs. */
  maxCooldownMs: number
}

export const DEFAULT_PASSIVE_HEALTH: Readonly<PassiveHealthOptions> = Object.freeze({
  failures: 3,
  cooldownMs: 10_000,
  maxCooldownMs: 300_000
})

/** Cool-down of the n-th ejection in a row (n ≥ 1): cooldownMs · 2^(n−1), capped. */
export function ejectionCooldownMs (options: PassiveHealthOptions, ejectionsInARow: number): number {
  const exponent = Math.min(Math.max(ejectionsInARow - 1, 0), 30)
  return Math.min(options.cooldownMs * 2 ** exponent, options.maxCooldownMs)
}

/** What an active check needs of a target. */
export interface ProbedTarget {
  readonly url: string
  readonly origin: string
  readonly basePath: string
  /** Called on every flip (and with null when the check stops). */
  setActiveHealth: (healthy: boolean | null, intervalMs: number | null) => void
}

export type HealthFlip = (target: ProbedTarget, healthy: boolean, reason: string) => void

/**
 * Probes one target URL every intervalMs with GET basePath + path on a connection of its
 * own (so probes never queue behind proxied traffic on the target's pool). 2xx and 3xx
 * count as up; anything else, a timeout or a connection error as down. healthyThreshold
 * successes in a row mark the target up, unhealthyThreshold failures in a row mark it
 * down. Starts optimistic (up) and probes at once. Timers are unref'd: a prober never
 * keeps the process alive.
 */
export class ActiveHealthCheck {
  private readonly client: Client
  private readonly path: string
  private timer: NodeJS.Timeout | null = null
  private probing: AbortController | null = null
  private stopped = false
  private successes = 0
  private failures = 0
  private up = true
  /** Probes sent so far; for tests and logs. */
  probes = 0

  constructor (
    private readonly target: ProbedTarget,
    readonly config: Readonly<RouteHealthCheck>,
    private readonly onFlip: HealthFlip
  ) {
    this.path = target.basePath + config.path
    this.client = new Client(target.origin, {
      connectTimeout: config.timeoutMs,
      headersTimeout: config.timeoutMs,
      bodyTimeout: config.timeoutMs,
      pipelining: 1,
      keepAliveTimeout: Math.min(config.intervalMs * 2, 60_000)
    })
  }

  start (): void {
    this.target.setActiveHealth(true, this.config.intervalMs)
    this.schedule(0)
  }

  async stop (): Promise<void> {
    this.stopped = true
    if (this.timer !== null) clearTimeout(this.timer)
    this.timer = null
    this.probing?.abort()
    this.target.setActiveHealth(null, null)
    await this.client.destroy().catch(() => {})
  }

  private schedule (delayMs: number): void {
    if (this.stopped) return
    this.timer = setTimeout(() => { void this.probe() }, delayMs)
    this.timer.unref()
  }

  private async probe (): Promise<void> {
    this.timer = null
    const started = performance.now()
    const controller = new AbortController()
    this.probing = controller
    const deadline = setTimeout(() => controller.abort(), this.config.timeoutMs)
    deadline.unref()
    this.probes++
    let ok = false
    let reason: string
    try {
      const response = await this.client.request({
        method: 'GET',
        path: this.path,
        headers: { 'user-agent': 'gatehouse-health-check', accept: '*/*' },
        signal: controller.signal
      })
      await response.body.dump({ limit: 64 * 1024, signal: controller.signal })
      ok = response.statusCode >= 200 && response.statusCode < 400
      reason = `status ${response.statusCode}`
    } catch (err) {
      reason = controller.signal.aborted ? `no answer within ${this.config.timeoutMs} ms` : (err as { code?: string }).code ?? (err as Error).message
    } finally {
      clearTimeout(deadline)
      this.probing = null
    }
    if (this.stopped) return
    this.record(ok, reason)
    this.schedule(Math.max(0, this.config.intervalMs - (performance.now() - started)))
  }

  private record (ok: boolean, reason: string): void {
    if (ok) {
      this.failures = 0
      this.successes++
      if (!this.up && this.successes >= this.config.healthyThreshold) this.flip(true, reason)
    } else {
      this.successes = 0
      this.failures++
      if (this.up && this.failures >= this.config.unhealthyThreshold) this.flip(false, reason)
    }
  }

  private flip (up: boolean, reason: string): void {
    this.up = up
    this.target.setActiveHealth(up, this.config.intervalMs)
    this.onFlip(this.target, up, reason)
  }
}
