import type { NewAuditLogRow } from './database.js'

/** audit_log's columns in the order the writer thread binds them. */
export const AUDIT_COLUMNS = ['ts', 'event_type', 'request_id', 'client_ip', 'method', 'path', 'route_id', 'consumer_id',
  'status', 'outcome', 'duration_ms', 'bytes_in', 'bytes_out', 'user_agent', 'detail', 'trace_id'] as const

export interface AuditWorkerData {
  file: string
}

/**
 * One batch for the writer thread: its rows' values one after another, AUDIT_COLUMNS.length
 * per row. A flat array of strings and numbers is copied to the thread at a third of the
 * cost of the row objects.
 */
export interface AuditBatchRequest {
  id: number
  values: unknown[]
}

export interface AuditBatchReply {
  id: number
  error: { message: string, code?: string } | null
}

export function flattenRows (rows: readonly NewAuditLogRow[]): unknown[] {
  const values: unknown[] = []
  for (const row of rows) {
    values.push(row.ts, row.event_type, row.request_id ?? null, row.client_ip ?? null, row.method ?? null, row.path ?? null,
      row.route_id ?? null, row.consumer_id ?? null, row.status ?? null, row.outcome, row.duration_ms ?? null,
      row.bytes_in ?? null, row.bytes_out ?? null, row.user_agent ?? null, row.detail ?? null, row.trace_id ?? null)
  }
  return values
}
