import type { NewAuditLogRow } from '../repositories/database.js'
import type { Outcome } from './gateway-context.js'

/**
 * What is known about one exchange when it ends. Its audit row and its access-log line are
 * both built from it (docs/observability.md "Audit log", docs/logging.md), so every kind of end
 * — answered, refused by the parser, aborted by the client, a WebSocket tunnel, an egress
 * exchange — is recorded with the same fields.
 */
export interface RequestRecord {
  eventType: 'request' | 'egress'
  requestId: string
  clientIp: string
  /** null when the parser refused a request line it could not read. */
  method: string | null
  path: string | null
  route: { id: string, name: string } | null
  consumer: { id: string | null, name: string } | null
  status: number
  outcome: Outcome
  /** null when the request was refused before it was timed (by the parser or the router). */
  durationMs: number | null
  /** null when bytes were not counted (nothing was parsed into a gateway context). */
  bytesIn: number | null
  bytesOut: number | null
  userAgent: string | null
  detail: string | null
  traceId: string | null
}

/** The fields of the JSON access-log line ("request completed"); pino adds reqId and time. */
export interface AccessLogLine {
  route: string | null
  method: string | null
  path: string | null
  status: number
  durationMs: number | null
  outcome: Outcome
  traceId: string | null
  consumer: string | null
  bytesIn: number | null
  bytesOut: number | null
  detail: string | null
}

export function accessLogLine (record: RequestRecord): AccessLogLine {
  return {
    route: record.route === null ? null : record.route.name,
    method: record.method,
    path: record.path,
    status: record.status,
    durationMs: record.durationMs,
    outcome: record.outcome,
    traceId: record.traceId,
    consumer: record.consumer === null ? null : record.consumer.name,
    bytesIn: record.bytesIn,
    bytesOut: record.bytesOut,
    detail: record.detail
  }
}

export function auditRow (record: RequestRecord, ts: string): NewAuditLogRow {
  return {
    ts,
    event_type: record.eventType,
    request_id: record.requestId,
    client_ip: record.clientIp,
    method: record.method,
    path: record.path,
    route_id: record.route === null ? null : record.route.id,
    consumer_id: record.consumer === null ? null : record.consumer.id,
    status: record.status,
    outcome: record.outcome,
    duration_ms: record.durationMs,
    bytes_in: record.bytesIn,
    bytes_out: record.bytesOut,
    user_agent: record.userAgent,
    detail: record.detail,
    trace_id: record.traceId
  }
}

/** Milliseconds rounded to the microsecond, as durations are recorded. */
export const roundMs = (ms: number): number => Math.round(ms * 1000) / 1000
