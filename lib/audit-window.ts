import { GatewayError } from './errors.js'

export interface AuditWindow {
  since?: string
  until?: string
}

/** Rows store toISOString() text, so every bound is normalised to it before comparing. */
function isoTime (value: string, field: string): string {
  const time = Date.parse(value)
  if (Number.isNaN(time)) throw new GatewayError(400, 'GW_VALIDATION', `${field} is not a valid date-time`)
  return new Date(time).toISOString()
}

/**
 * The [since, until) bounds a client sent, normalised. Only an explicit `until` before an
 * explicit `since` is an error (it names both); a `since` later than now is just an empty
 * window (docs/observability.md "GET /admin/audit/stats").
 */
export function requestedWindow (query: { since?: string, until?: string }): AuditWindow {
  const since = query.since === undefined ? undefined : isoTime(query.since, 'since')
  const until = query.until === undefined ? undefined : isoTime(query.until, 'until')
  if (since !== undefined && until !== undefined && since > until) {
    throw new GatewayError(400, 'GW_VALIDATION', `since (${since}) must not be after until (${until})`)
  }
  return { since, until }
}

/**
 * The window of /admin/audit/stats: until defaults to now, since to one hour before until.
 * A since later than the default until (now) moves until to since: the window is empty.
 */
export function statsWindow (query: { since?: string, until?: string }, now = Date.now(), defaultSpanMs = 60 * 60 * 1000): Required<AuditWindow> {
  const requested = requestedWindow(query)
  const nowIso = new Date(now).toISOString()
  const until = requested.until ?? (requested.since !== undefined && requested.since > nowIso ? requested.since : nowIso)
  const since = requested.since ?? new Date(Date.parse(until) - defaultSpanMs).toISOString()
  return { since, until }
}
