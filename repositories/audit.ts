import SQLite from 'better-sqlite3'
import { sql, type Kysely, type SelectQueryBuilder } from 'kysely'
import type { Outcome } from '../lib/gateway-context.js'
import type { AuditLogRow, Database, NewAuditLogRow } from './database.js'

/** An audit row as the admin API answers it (contract section 4 "Audit"). */
export interface AuditEntry {
  id: number
  ts: string
  eventType: 'request' | 'admin'
  requestId: string | null
  clientIp: string | null
  method: string | null
  path: string | null
  routeId: string | null
  consumerId: string | null
  status: number | null
  outcome: Outcome | 'admin'
  durationMs: number | null
  bytesIn: number | null
  bytesOut: number | null
  userAgent: string | null
  /** Request rows: the reason of a rejection or failure. Admin rows: {actor, action, resource, id, before, after}. */
  detail: unknown
}

export interface AuditFilter {
  eventType?: string
  clientIp?: string
  routeId?: string
  status?: number
  outcome?: string
  /** ISO-8601 (UTC, as written by toISOString), inclusive. */
  since?: string
  /** ISO-8601, exclusive. */
  until?: string
}

/** SQLite caps bound parameters per statement (32766 since 3.32); 16 columns × 500 rows stays below. */
const ROWS_PER_STATEMENT = 500

/** One transaction for the whole batch: all rows are written, or none. */
export async function insertAuditRows (db: Kysely<Database>, rows: readonly NewAuditLogRow[]): Promise<void> {
  if (rows.length === 0) return
  await db.transaction().execute(async (trx) => {
    for (let i = 0; i < rows.length; i += ROWS_PER_STATEMENT) {
      await trx.insertInto('audit_log').values(rows.slice(i, i + ROWS_PER_STATEMENT)).execute()
    }
  })
}

const COLUMNS = ['ts', 'event_type', 'request_id', 'client_ip', 'method', 'path', 'route_id', 'consumer_id',
  'status', 'outcome', 'duration_ms', 'bytes_in', 'bytes_out', 'user_agent', 'detail'] as const

/** Writes audit batches; one per audit plugin, closed after its last flush. */
export interface AuditWriter {
  write: (rows: readonly NewAuditLogRow[]) => Promise<void>
  close: () => void
}

/**
 * On an SQLite file, batches go through a connection of their own with one prepared INSERT
 * run per row inside a transaction: a third of the CPU of building and compiling a 500-row
 * Kysely insert per batch, which every proxied request pays for (bench/audit-cost.mjs). Same
 * file, WAL, and the same short busy timeout as plugins/db.ts (traps.md #6): SQLITE_BUSY is
 * thrown, not waited out, and the audit plugin retries. Elsewhere (PostgreSQL, :memory:,
 * which a second connection would not see) batches go through Kysely.
 */
export function openAuditWriter (db: Kysely<Database>, databaseUrl: string): AuditWriter {
  if (!databaseUrl.startsWith('sqlite:') || databaseUrl === 'sqlite::memory:') {
    return { write: async (rows) => { await insertAuditRows(db, rows) }, close () {} }
  }
  const sqlite = new SQLite(databaseUrl.slice('sqlite:'.length))
  sqlite.pragma('busy_timeout = 250')
  // Per connection, like plugins/db.ts: in WAL mode a commit is then not an fsync (a crash of
  // the machine, not of the process, may lose the last batches; checkpoints still sync).
  sqlite.pragma('synchronous = NORMAL')
  // Positional parameters: binding them costs ~1 µs less per row than named ones from an object.
  const insert = sqlite.prepare(`insert into audit_log (${COLUMNS.join(', ')}) values (${COLUMNS.map(() => '?').join(', ')})`)
  const insertAll = sqlite.transaction((rows: readonly NewAuditLogRow[]) => {
    for (const row of rows) {
      insert.run(row.ts, row.event_type, row.request_id ?? null, row.client_ip ?? null, row.method ?? null, row.path ?? null,
        row.route_id ?? null, row.consumer_id ?? null, row.status ?? null, row.outcome, row.duration_ms ?? null,
        row.bytes_in ?? null, row.bytes_out ?? null, row.user_agent ?? null, row.detail ?? null)
    }
  })
  return {
    write: async (rows) => { insertAll(rows) },
    close () { sqlite.close() }
  }
}

// Every value below goes in as a bound parameter: a filter value that looks like SQL is just a string.
function filtered<O> (query: SelectQueryBuilder<Database, 'audit_log', O>, filter: AuditFilter): SelectQueryBuilder<Database, 'audit_log', O> {
  if (filter.eventType !== undefined) query = query.where('event_type', '=', filter.eventType)
  if (filter.clientIp !== undefined) query = query.where('client_ip', '=', filter.clientIp)
  if (filter.routeId !== undefined) query = query.where('route_id', '=', filter.routeId)
  if (filter.status !== undefined) query = query.where('status', '=', filter.status)
  if (filter.outcome !== undefined) query = query.where('outcome', '=', filter.outcome)
  if (filter.since !== undefined) query = query.where('ts', '>=', filter.since)
  if (filter.until !== undefined) query = query.where('ts', '<', filter.until)
  return query
}

/** Newest first (by time, then by insertion order), paginated. */
export async function listAuditRows (
  db: Kysely<Database>,
  filter: AuditFilter,
  page: { limit: number, offset: number }
): Promise<{ items: AuditEntry[], total: number }> {
  const [rows, count] = await Promise.all([
    filtered(db.selectFrom('audit_log').selectAll(), filter)
      .orderBy('ts', 'desc').orderBy('id', 'desc')
      .limit(page.limit).offset(page.offset)
      .execute(),
    filtered(db.selectFrom('audit_log').select((eb) => eb.fn.countAll<number>().as('total')), filter)
      .executeTakeFirstOrThrow()
  ])
  return { items: rows.map(toEntry), total: Number(count.total) }
}

function toEntry (row: AuditLogRow): AuditEntry {
  return {
    id: Number(row.id),
    ts: row.ts,
    eventType: row.event_type as AuditEntry['eventType'],
    requestId: row.request_id,
    clientIp: row.client_ip,
    method: row.method,
    path: row.path,
    routeId: row.route_id,
    consumerId: row.consumer_id,
    status: row.status,
    outcome: row.outcome as AuditEntry['outcome'],
    durationMs: row.duration_ms === null ? null : Number(row.duration_ms),
    bytesIn: row.bytes_in === null ? null : Number(row.bytes_in),
    bytesOut: row.bytes_out === null ? null : Number(row.bytes_out),
    userAgent: row.user_agent,
    detail: row.event_type === 'admin' && row.detail !== null ? parseJson(row.detail) : row.detail
  }
}

function parseJson (text: string): unknown {
  try {
    return JSON.parse(text)
  } catch {
    return text
  }
}

export interface AuditStats {
  total: number
  byEventType: Record<string, number>
  byStatusClass: Record<string, number>
  byOutcome: Record<string, number>
  byRoute: Array<{ routeId: string | null, count: number }>
  topClientIps: Array<{ clientIp: string, count: number }>
  /** Nearest-rank percentiles of request rows' durationMs; null when the window has none. */
  latencyMs: { p50: number | null, p95: number | null, p99: number | null }
}

/**
 * Aggregates over [since, until). Counting and ordering happen in the database; the
 * percentiles are nearest-rank (the value at rank ⌈p·n⌉), computed the same way on
 * SQLite and PostgreSQL so both answer identical numbers for identical rows.
 */
export async function auditStats (db: Kysely<Database>, window: { since: string, until: string }, top: number): Promise<AuditStats> {
  const inWindow = <O>(query: SelectQueryBuilder<Database, 'audit_log', O>): SelectQueryBuilder<Database, 'audit_log', O> =>
    query.where('ts', '>=', window.since).where('ts', '<', window.until)
  const requests = <O>(query: SelectQueryBuilder<Database, 'audit_log', O>): SelectQueryBuilder<Database, 'audit_log', O> =>
    inWindow(query).where('event_type', '=', 'request')
  const statusClass = sql<number>`status / 100`

  const [byEventType, byStatusClass, byOutcome, byRoute, topClientIps, latencyCount] = await Promise.all([
    inWindow(db.selectFrom('audit_log').select((eb) => ['event_type as key', eb.fn.countAll<number>().as('count')]))
      .groupBy('event_type').execute(),
    requests(db.selectFrom('audit_log').select((eb) => [statusClass.as('key'), eb.fn.countAll<number>().as('count')]))
      .where('status', 'is not', null).groupBy(statusClass).execute(),
    inWindow(db.selectFrom('audit_log').select((eb) => ['outcome as key', eb.fn.countAll<number>().as('count')]))
      .groupBy('outcome').execute(),
    requests(db.selectFrom('audit_log').select((eb) => ['route_id', eb.fn.countAll<number>().as('count')]))
      .groupBy('route_id').orderBy('count', 'desc').orderBy('route_id').execute(),
    requests(db.selectFrom('audit_log').select((eb) => ['client_ip', eb.fn.countAll<number>().as('count')]))
      .where('client_ip', 'is not', null).groupBy('client_ip')
      .orderBy('count', 'desc').orderBy('client_ip').limit(top).execute(),
    requests(db.selectFrom('audit_log').select((eb) => eb.fn.countAll<number>().as('count')))
      .where('duration_ms', 'is not', null).executeTakeFirstOrThrow()
  ])

  const measured = Number(latencyCount.count)
  const percentile = async (p: number): Promise<number | null> => {
    if (measured === 0) return null
    const rank = Math.max(1, Math.ceil(p * measured))
    const row = await requests(db.selectFrom('audit_log').select('duration_ms'))
      .where('duration_ms', 'is not', null)
      .orderBy('duration_ms').limit(1).offset(rank - 1)
      .executeTakeFirst()
    return row?.duration_ms === undefined || row.duration_ms === null ? null : Number(row.duration_ms)
  }
  const [p50, p95, p99] = await Promise.all([percentile(0.5), percentile(0.95), percentile(0.99)])

  const counts = (rows: Array<{ key: unknown, count: unknown }>, label: (key: unknown) => string): Record<string, number> => {
    const result: Record<string, number> = {}
    for (const row of rows) result[label(row.key)] = Number(row.count)
    return result
  }
  const eventCounts = counts(byEventType, String)
  return {
    total: Object.values(eventCounts).reduce((sum, n) => sum + n, 0),
    byEventType: eventCounts,
    byStatusClass: counts(byStatusClass, (key) => `${Number(key)}xx`),
    byOutcome: counts(byOutcome, String),
    byRoute: byRoute.map((row) => ({ routeId: row.route_id, count: Number(row.count) })),
    topClientIps: topClientIps.map((row) => ({ clientIp: row.client_ip as string, count: Number(row.count) })),
    latencyMs: { p50, p95, p99 }
  }
}

/**
 * Deletes up to `limit` rows older than `before` and says how many went. Small batches keep
 * each write transaction short, so the audit writer and admin writes never wait long for it.
 */
export async function deleteAuditRowsBefore (db: Kysely<Database>, before: string, limit: number): Promise<number> {
  const result = await db.deleteFrom('audit_log')
    .where('id', 'in', (eb) => eb.selectFrom('audit_log').select('id').where('ts', '<', before).orderBy('id').limit(limit))
    .executeTakeFirst()
  return Number(result.numDeletedRows)
}
