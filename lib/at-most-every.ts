/**
 * A gate that opens at most once per `intervalMs`: for a warning about something that can happen
 * thousands of times a second (a store that keeps failing, a connection flood), so the log says
 * it without being flooded itself.
 */
export function atMostEvery (intervalMs: number, now: () => number = Date.now): () => boolean {
  let openedAt = -Infinity
  return () => {
    const at = now()
    if (at - openedAt < intervalMs) return false
    openedAt = at
    return true
  }
}
