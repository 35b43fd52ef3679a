import type { Socket } from 'node:net'

/**
 * The requests in flight on one client connection, kept on the socket itself so nothing has to
 * be cleaned up when it closes: usually one, a Set only when a client pipelines.
 */
const kInFlight = Symbol('gatehouse.inFlight')
/** Node's request timer fired while a request was in flight (the answer is then 408). */
const kTimedOut = Symbol('gatehouse.clientTimedOut')

interface TrackedSocket<T> extends Socket {
  [kInFlight]?: T | Set<T> | null
  [kTimedOut]?: boolean
}

/** Give a new connection its (empty) fields up front, so every socket has the same shape. */
export function initInFlight (socket: Socket): void {
  const tracked = socket as TrackedSocket<unknown>
  tracked[kInFlight] = null
  tracked[kTimedOut] = false
}

export function addInFlight<T> (socket: Socket, item: T): void {
  const tracked = socket as TrackedSocket<T>
  const current = tracked[kInFlight]
  if (current === null || current === undefined) tracked[kInFlight] = item
  else if (current instanceof Set) current.add(item)
  else tracked[kInFlight] = new Set([current, item])
}

/** True when `item` was still in flight: whoever removes it first records it. */
export function removeInFlight<T> (socket: Socket, item: T): boolean {
  const tracked = socket as TrackedSocket<T>
  const current = tracked[kInFlight]
  if (current === item) {
    tracked[kInFlight] = null
    return true
  }
  if (current instanceof Set && current.delete(item)) {
    if (current.size === 0) tracked[kInFlight] = null
    return true
  }
  return false
}

export function hasInFlight (socket: Socket): boolean {
  const current = (socket as TrackedSocket<unknown>)[kInFlight]
  return current !== null && current !== undefined
}

/** Everything still in flight, removed: the connection closed under it. */
export function takeInFlight<T> (socket: Socket): T[] {
  const tracked = socket as TrackedSocket<T>
  const current = tracked[kInFlight]
  if (current === null || current === undefined) return []
  tracked[kInFlight] = null
  return current instanceof Set ? [...current] : [current]
}

export function markTimedOut (socket: Socket): void {
  (socket as TrackedSocket<unknown>)[kTimedOut] = true
}

export function timedOut (socket: Socket): boolean {
  return (socket as TrackedSocket<unknown>)[kTimedOut] === true
}
