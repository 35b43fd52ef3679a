import type { Pool } from 'undici'
import type { Balanceable } from './balancer.js'
import { ejectionCooldownMs, type PassiveHealthOptions, type ProbedTarget } from './health-check.js'

/** How one attempt on a target ended, for passive health. */
export type AttemptResult =
  /** An answer below 500. */
  | 'success'
  /** Connect error, reset, timeout, or a 5xx answer. */
  | 'failure'
  /** Ended for a reason that says nothing about the target (client gone, body too large). */
  | 'aborted'

/**
 * One upstream target URL, shared by every route that lists it; its state (in flight,
 * passive and active health) survives route edits that keep the URL. Every state field
 * is a plain field so /admin/status and /metrics read it as it is.
 */
export class Target implements Balanceable, ProbedTarget {
  readonly origin: string
  /** The target URL's own path without trailing slash ('' for none): a prefix of every forwarded path. */
  readonly basePath: string
  inFlight = 0
  /** False while ejected (passive) or marked down by its active check. */
  healthy = true
  /** Failures in a row (connect errors, resets, timeouts, 5xx); any success resets it. */
  consecutiveFailures = 0
  /** Epoch ms the current ejection ends; after it, one trial request decides (half-open). null: not ejected. */
  ejectedUntil: number | null = null
  /** True while the one half-open trial request is under way. */
  trialInFlight = false
  /** Ejections in a row without a lasting recovery; grows the cool-down. */
  ejectionStreak = 0
  /** Ejections since the target was first used, for /metrics. */
  ejectionsTotal = 0
  /** The active check's verdict; null when no active check probes this target. */
  activeHealthy: boolean | null = null
  /** The active check's interval, for Retry-After while it says down. */
  probeIntervalMs: number | null = null
  private recoveredAt = 0

  constructor (readonly url: string, readonly pool: Pool, private readonly passive: Readonly<PassiveHealthOptions>) {
    const parsed = new URL(url)
    this.origin = parsed.origin
    this.basePath = parsed.pathname === '/' ? '' : parsed.pathname.replace(/\/+$/, '')
  }

  /** May a request be sent here now? A target past its cool-down admits exactly one (the trial). */
  selectable (now: number): boolean {
    if (this.activeHealthy === false) return false
    return this.ejectedUntil === null || (now >= this.ejectedUntil && !this.trialInFlight)
  }

  /** Called for the chosen target; marks a half-open trial. */
  chosen (): void {
    if (this.ejectedUntil !== null) this.trialInFlight = true
  }

  /** Records one attempt's outcome; returns 'ejected' or 'recovered' when that changed the state. */
  record (result: AttemptResult, now: number): 'ejected' | 'recovered' | null {
    if (result === 'aborted') {
      this.trialInFlight = false
      return null
    }
    if (result === 'success') {
      this.consecutiveFailures = 0
      if (this.ejectedUntil === null) return null
      if (!this.trialInFlight && now < this.ejectedUntil) return null // a request sent before the ejection
      this.ejectedUntil = null
      this.trialInFlight = false
      this.recoveredAt = now
      this.refreshHealthy()
      return 'recovered'
    }
    this.consecutiveFailures++
    if (this.trialInFlight) {
      this.trialInFlight = false
      this.eject(now)
      return 'ejected'
    }
    if (this.ejectedUntil === null && this.consecutiveFailures >= this.passive.failures) {
      this.eject(now)
      return 'ejected'
    }
    return null
  }

  setActiveHealth (healthy: boolean | null, intervalMs: number | null): void {
    const cameBack = healthy === true && this.activeHealthy === false
    this.activeHealthy = healthy
    this.probeIntervalMs = intervalMs
    // A target the active check sees come back is given a clean slate, as Kong does:
    // the probe is evidence the passive ejection's reason is gone.
    if (cameBack) {
      this.ejectedUntil = null
      this.trialInFlight = false
      this.consecutiveFailures = 0
      this.ejectionStreak = 0
    }
    this.refreshHealthy()
  }

  /** How long until this target may take a request again (0: now). */
  waitMs (now: number): number {
    if (this.activeHealthy === false) return this.probeIntervalMs ?? 1000
    if (this.ejectedUntil === null) return 0
    return Math.max(0, this.ejectedUntil - now)
  }

  /** What /admin/status shows (the pool is not data). */
  toJSON (): Record<string, unknown> {
    return {
      url: this.url,
      healthy: this.healthy,
      inFlight: this.inFlight,
      consecutiveFailures: this.consecutiveFailures,
      ejectedUntil: this.ejectedUntil === null ? null : new Date(this.ejectedUntil).toISOString(),
      halfOpen: this.trialInFlight,
      ejections: this.ejectionsTotal,
      activeHealthy: this.activeHealthy
    }
  }

  private eject (now: number): void {
    if (this.recoveredAt !== 0 && now - this.recoveredAt > this.passive.maxCooldownMs) this.ejectionStreak = 0
    this.ejectionStreak++
    this.ejectionsTotal++
    this.ejectedUntil = now + ejectionCooldownMs(this.passive, this.ejectionStreak)
    this.refreshHealthy()
  }

  private refreshHealthy (): void {
    this.healthy = this.activeHealthy !== false && this.ejectedUntil === null
  }
}
