/**
 * Circuit breaker in front of Redis (docs/policies.md "Redis outage").
 *
 * A command timeout alone is not enough: a Redis that hangs (SIGSTOP, a stuck host, a
 * black-holed network) would still cost every rate-limited request the whole timeout, so
 * throughput collapses to connections ÷ timeout. After `threshold` failures in a row the
 * breaker opens: commands are refused at once without touching the connection, and a
 * single probe every `probeIntervalMs` asks Redis whether it is back. The connection's own
 * 'ready' and 'close' events (wired by plugins/redis.ts) move it too, so a Redis that is
 * killed is bypassed from the first request and one that restarts is used again at once.
 */
export class RedisUnavailableError extends Error {
  constructor (reason: string) {
    super(`redis unavailable: ${reason}`)
    this.name = 'RedisUnavailableError'
  }
}

export interface BreakerOptions {
  /** Failures in a row that open the breaker. */
  threshold: number
  probeIntervalMs: number
  /** Resolves when Redis answers; its own command timeout bounds it. */
  probe: () => Promise<unknown>
  /** Called on every change of state. */
  onChange?: (up: boolean, reason: string) => void
  /** Whether Redis is taken as up before anything is known. */
  up?: boolean
}

export class RedisBreaker {
  private isUp: boolean
  private failuresInRow = 0
  private changed = Date.now()
  private reason = 'not connected yet'
  /** One error shared by every bypassed command of an outage: nothing is allocated per request. */
  private refusal: RedisUnavailableError | null = null
  private timer: NodeJS.Timeout | null = null
  private probing = false
  private closed = false
  /** Commands refused without being sent because the breaker was open. */
  bypassed = 0
  /** Times the breaker opened. */
  opened = 0

  constructor (private readonly options: BreakerOptions) {
    this.isUp = options.up ?? false
    if (!this.isUp) this.startProbing()
  }

  get up (): boolean { return this.isUp }
  /** When the state last changed (epoch ms). */
  get since (): number { return this.changed }
  get consecutiveFailures (): number { return this.failuresInRow }
  /** Why Redis was last taken as down (null while up). */
  get lastError (): string | null { return this.isUp ? null : this.reason }

  /** Runs `command` when Redis is up; otherwise rejects at once with RedisUnavailableError. */
  run<T> (command: () => Promise<T>): Promise<T> {
    if (!this.isUp) {
      this.bypassed++
      this.refusal ??= new RedisUnavailableError(this.reason)
      return Promise.reject(this.refusal)
    }
    return command().then((value) => {
      this.failuresInRow = 0
      return value
    }, (err: unknown) => {
      this.failure(err)
      throw err
    })
  }

  failure (err: unknown): void {
    this.failuresInRow++
    if (this.failuresInRow >= this.options.threshold) this.markDown((err as Error)?.message ?? String(err))
  }

  markDown (reason: string): void {
    this.setReason(reason)
    if (!this.isUp || this.closed) return
    this.isUp = false
    this.opened++
    this.changed = Date.now()
    this.options.onChange?.(false, reason)
    this.startProbing()
  }

  markUp (): void {
    this.failuresInRow = 0
    if (this.isUp || this.closed) return
    this.isUp = true
    this.changed = Date.now()
    this.stopProbing()
    this.options.onChange?.(true, 'redis answered')
  }

  close (): void {
    this.closed = true
    this.stopProbing()
  }

  private startProbing (): void {
    if (this.timer !== null || this.closed) return
    this.timer = setInterval(() => this.probe(), this.options.probeIntervalMs)
    this.timer.unref()
  }

  private stopProbing (): void {
    if (this.timer !== null) clearInterval(this.timer)
    this.timer = null
  }

  private probe (): void {
    if (this.probing) return
    this.probing = true
    this.options.probe().then(() => {
      this.probing = false
      this.markUp()
    }, (err: unknown) => {
      this.probing = false
      this.setReason((err as Error)?.message ?? String(err))
    })
  }

  private setReason (reason: string): void {
    if (reason !== this.reason) this.refusal = null
    this.reason = reason
  }
}
