/** What one attempt at sending a batch achieved. */
export interface SendOutcome<T> {
  /** Items to send again after the backoff (a 5xx, a 429, items an Elasticsearch bulk answer refused with 429/5xx). */
  retry: T[]
  /** Items the receiver refused for good (a 400, a mapping error): counted as dropped. */
  refused: number
  /** Why anything was retried or refused. */
  error: string | null
}

export interface BatchQueueOptions<T> {
  /** Items held at most, the batch being sent included; beyond it new items are dropped and counted. */
  maxQueued: number
  /** Items per batch. */
  maxBatch: number
  /** A batch leaves at most this long after its first item arrived. */
  maxWaitMs: number
  /** A batch is retried with doubling delays until this long after its first attempt, then dropped. */
  retryWindowMs: number
  /** First retry delay (doubled each time, at most maxRetryDelayMs). */
  firstRetryMs: number
  maxRetryDelayMs: number
  /** Sends one batch; throwing means "retry all of it". `signal` aborts when a drain reaches its deadline. */
  send: (batch: T[], signal: AbortSignal) => Promise<SendOutcome<T>>
  /** Told of each failure that will be retried or that dropped items (rate-limited by the caller). */
  onError?: (error: string) => void
}

/** What /metrics and /admin/status show of a queue. */
export interface QueueCounters {
  readonly sent: number
  readonly dropped: number
  readonly retries: number
  readonly lastError: string | null
  readonly queued: number
}

export const BATCH_DEFAULTS = { maxBatch: 1000, maxWaitMs: 1000, retryWindowMs: 60_000, firstRetryMs: 250, maxRetryDelayMs: 10_000 }

/**
 * A bounded queue sending its items in batches, off the request path: push() never waits
 * and never throws. One batch is in flight at a time; a failed one is retried with
 * exponential backoff for retryWindowMs, then dropped and counted. drain() sends what is
 * left up to a deadline (the shutdown grace period) and counts the rest as dropped.
 */
export class BatchQueue<T> implements QueueCounters {
  sent = 0
  dropped = 0
  retries = 0
  lastError: string | null = null

  private queue: T[] = []
  private head = 0
  private inFlight = 0
  private timer: NodeJS.Timeout | null = null
  private running = false
  private draining = false
  private closed = false
  private wakeUp: (() => void) | null = null
  private readonly abort = new AbortController()
  private idle: Array<() => void> = []

  constructor (private readonly options: BatchQueueOptions<T>) {}

  /** Items waiting, the batch in flight included. */
  get queued (): number { return this.queue.length - this.head + this.inFlight }

  push (item: T): void {
    if (this.closed || this.queued >= this.options.maxQueued) {
      this.dropped++
      return
    }
    this.queue.push(item)
    if (this.running) return
    if (this.queue.length - this.head >= this.options.maxBatch) this.start()
    else if (this.timer === null) {
      this.timer = setTimeout(() => { this.timer = null; this.start() }, this.options.maxWaitMs)
      this.timer.unref()
    }
  }

  /**
   * Sends everything queued now, retrying until `deadline` (a Date.now() value); whatever is
   * still queued then is dropped and counted. Later pushes are dropped.
   */
  async drain (deadline: number): Promise<void> {
    this.draining = true
    this.wakeUp?.()
    if (this.queued > 0) {
      this.start()
      const cut = setTimeout(() => { this.close() }, Math.max(0, deadline - Date.now()))
      await new Promise<void>((resolve) => { this.idle.push(resolve) })
      clearTimeout(cut)
    }
    this.close()
  }

  private close (): void {
    if (this.closed) return
    this.closed = true
    this.abort.abort()
    this.wakeUp?.()
    if (this.timer !== null) clearTimeout(this.timer)
    this.dropped += this.queue.length - this.head
    this.queue = []
    this.head = 0
    for (const resolve of this.idle.splice(0)) resolve()
  }

  private start (): void {
    if (this.timer !== null) {
      clearTimeout(this.timer)
      this.timer = null
    }
    if (this.running || this.closed) return
    this.running = true
    this.pump().catch((err: Error) => { this.lastError = err.message }).finally(() => {
      this.running = false
      if (this.queued === 0 || this.closed) for (const resolve of this.idle.splice(0)) resolve()
    })
  }

  /** Started by a full batch, the wait running out, or drain(): sends one batch, then more while full ones wait. */
  private async pump (): Promise<void> {
    let first = true
    while (!this.closed) {
      const waiting = this.queue.length - this.head
      if (waiting === 0) return
      if (!first && waiting < this.options.maxBatch && !this.draining) {
        // A partial batch waits for more items, at most maxWaitMs since the last batch left.
        this.timer = setTimeout(() => { this.timer = null; this.start() }, this.options.maxWaitMs)
        this.timer.unref()
        return
      }
      first = false
      const batch = this.queue.slice(this.head, this.head + this.options.maxBatch)
      this.head += batch.length
      if (this.head > 4096 && this.head * 2 > this.queue.length) {
        this.queue = this.queue.slice(this.head)
        this.head = 0
      }
      this.inFlight = batch.length
      await this.sendWithRetries(batch)
      this.inFlight = 0
    }
  }

  private async sendWithRetries (batch: T[]): Promise<void> {
    const giveUpAt = Date.now() + this.options.retryWindowMs
    let delay = this.options.firstRetryMs
    let pending = batch
    for (;;) {
      let outcome: SendOutcome<T>
      try {
        outcome = await this.options.send(pending, this.abort.signal)
      } catch (err) {
        outcome = { retry: pending, refused: 0, error: (err as Error).message }
      }
      this.sent += pending.length - outcome.retry.length - outcome.refused
      this.dropped += outcome.refused
      if (outcome.error !== null) {
        this.lastError = outcome.error
        this.options.onError?.(outcome.error)
      }
      pending = outcome.retry
      if (pending.length === 0) return
      if (this.closed || Date.now() + delay > giveUpAt) {
        this.dropped += pending.length
        return
      }
      this.retries++
      await this.sleep(delay)
      delay = Math.min(delay * 2, this.options.maxRetryDelayMs)
    }
  }

  /** The backoff; cut short by drain() (retry at once) and close(). */
  private async sleep (ms: number): Promise<void> {
    if (this.draining) ms = Math.min(ms, this.options.firstRetryMs)
    await new Promise<void>((resolve) => {
      const timer = setTimeout(done, ms)
      timer.unref()
      this.wakeUp = done
      function done (): void {
        clearTimeout(timer)
        resolve()
      }
    })
    this.wakeUp = null
  }
}
