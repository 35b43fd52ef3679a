/**
 * Request collapsing (docs/cache.md "Collapsing"): the first miss for a key leads — its request
 * goes upstream — and later misses for the same key wait for what it brings, each for at most
 * its own timeout, as nginx's proxy_cache_lock does. `T` is what a flight ends with (the stored
 * entry); null tells the waiters to go upstream themselves (not stored, failed, or gone).
 */
export class Flights<T> {
  private readonly running = new Map<string, Flight<T>>()

  /** Flights in the air right now. */
  get size (): number { return this.running.size }

  /** A new flight for `key`, or null when one is already running (then wait() for it). */
  lead (key: string): Flight<T> | null {
    if (this.running.has(key)) return null
    const flight = new Flight<T>(() => { if (this.running.get(key) === flight) this.running.delete(key) })
    this.running.set(key, flight)
    return flight
  }

  /** What the running flight for `key` ends with (null after `timeoutMs`), or undefined when none runs. */
  wait (key: string, timeoutMs: number): Promise<T | null> | undefined {
    return this.running.get(key)?.wait(timeoutMs)
  }
}

export class Flight<T> {
  private waiters: Array<(value: T | null) => void> = []
  private ended = false

  constructor (private readonly landed: () => void) {}

  get waiting (): number { return this.waiters.length }

  /** Ends the flight once; later calls are ignored. */
  finish (value: T | null): void {
    if (this.ended) return
    this.ended = true
    this.landed()
    const waiters = this.waiters
    this.waiters = []
    for (const waiter of waiters) waiter(value)
  }

  wait (timeoutMs: number): Promise<T | null> {
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.waiters = this.waiters.filter((waiter) => waiter !== settle)
        resolve(null)
      }, timeoutMs)
      const settle = (value: T | null): void => {
        clearTimeout(timer)
        resolve(value)
      }
      this.waiters.push(settle)
    })
  }
}
