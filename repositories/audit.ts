import { once } from 'node:events'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { Worker } from 'node:worker_threads'
import { sql, type Kysely, type SelectQueryBuilder, type Transaction } from 'kysely'
import type { Outcome } from '../lib/gateway-context.js'
import type { AuditLogRow, Database, NewAuditLogRow } from './database.js'
import { type AuditBatchReply, type AuditBatchRequest, type AuditWorkerData, flattenRows } from './audit-columns.js'

/** An audit row as the admin API answers it (docs/observability.md "Audit log"). */
export interface AuditEntry {
  id: number
  ts: string
  eventType: 'request' | 'admin' | 'egress'
  requestId: string | null
  traceId: string | null
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

/** SQLite caps bound parameters per statement (32766 since 3.32); 17 columns × 500 rows stays below. */
const ROWS_PER_STATEMENT = 500

/** One transaction for the whole batch: all rows are written, or none. */
export async function insertAuditRows (db: Kysely<Database>, rows: readonly NewAuditLogRow[]): Promise<void> {
  if (rows.length === 0) return
  await db.transaction().execute(async (trx) => { await insertChunks(trx, rows) })
}

async function insertChunks (trx: Transaction<Database>, rows: readonly NewAuditLogRow[]): Promise<void> {
  for (let i = 0; i < rows.length; i += ROWS_PER_STATEMENT) {
    await trx.insertInto('audit_log').values(rows.slice(i, i + ROWS_PER_STATEMENT)).execute()
  }
}

/** Writes audit batches; one per audit plugin, closed after its last flush. */
export interface AuditWriter {
  /**
   * Writes `rows` in one transaction, or learns that a leading part of them was already
   * written by an earlier call whose outcome was unknown; resolves with how many of the
   * leading rows are now written (the caller drops them from its queue). Throws while the
   * database cannot take them: the caller retries with the same leading rows.
   */
  write: (rows: readonly NewAuditLogRow[]) => Promise<number>
  close: () => Promise<void>
}

/**
 * On an SQLite file, batches are written by a thread of their own (audit-sqlite-worker.ts)
 * with its own connection: inserting a row cost the event loop ~10 µs plus a page write to
 * the WAL, a tenth of a proxied request's CPU; copying the row to the thread costs ~0.5 µs.
 * On PostgreSQL, whose driver is asynchronous already, batches go through Kysely, and a
 * commit whose answer was lost is looked up before anything is written again; :memory:
 * (which a second connection would not see) writes through Kysely too.
 */
export function openAuditWriter (db: Kysely<Database>, databaseUrl: string): AuditWriter {
  if (!databaseUrl.startsWith('sqlite:')) return new PostgresAuditWriter(db)
  if (databaseUrl === 'sqlite::memory:') {
    return { write: async (rows) => { await insertAuditRows(db, rows); return rows.length }, async close () {} }
  }
  return new ThreadAuditWriter(databaseUrl.slice('sqlite:'.length))
}

/**
 * Exactly once on PostgreSQL (docs/faults.md "Audit rows"): when the connection dies after COMMIT was
 * sent (server stopped, failed over, backend terminated), the batch may or may not have been
 * committed, and writing it again could write every row twice. Each batch notes its
 * transaction id first; after such a failure, txid_status() (PostgreSQL 10+) on the next
 * connection says which it was.
 */
class PostgresAuditWriter implements AuditWriter {
  /** The last batch whose COMMIT got no answer: its transaction and how many rows it held. */
  private unsure: { txid: string, rows: number } | null = null

  constructor (private readonly db: Kysely<Database>) {}

  async write (rows: readonly NewAuditLogRow[]): Promise<number> {
    if (this.unsure !== null) {
      const { txid, rows: count } = this.unsure
      const { rows: [row] } = await sql<{ status: string | null }>`select txid_status(${txid}::bigint) as status`.execute(this.db)
      if (row?.status === 'in progress') throw new Error(`audit batch transaction ${txid} is still in progress; retried`)
      this.unsure = null
      // The caller retries with the same leading rows, so the committed batch is their first `count`.
      if (row?.status === 'committed') return Math.min(count, rows.length)
    }
    if (rows.length === 0) return 0
    let txid: string | null = null
    let committing = false
    try {
      await this.db.transaction().execute(async (trx) => {
        const { rows: [current] } = await sql<{ txid: string }>`select txid_current()::text as txid`.execute(trx)
        txid = current.txid
        await insertChunks(trx, rows)
        committing = true
      })
    } catch (err) {
      if (committing && txid !== null) this.unsure = { txid, rows: rows.length }
      throw err
    }
    return rows.length
  }

  async close (): Promise<void> {}
}

/** Rejects a write with the thread's error, code (SQLITE_BUSY …) included. */
class AuditWriteError extends Error {
  constructor (message: string, readonly code: string | undefined) { super(message) }
}

class ThreadAuditWriter implements AuditWriter {
  private worker: Worker | null = null
  private nextId = 1
  private readonly pending = new Map<number, { resolve: () => void, reject: (err: Error) => void }>()

  constructor (private readonly file: string) { this.start() }

  async write (rows: readonly NewAuditLogRow[]): Promise<number> {
    const worker = this.worker ?? this.start()
    const id = this.nextId++
    const done = new Promise<void>((resolve, reject) => { this.pending.set(id, { resolve, reject }) })
    // Held open only while a batch is out: an idle thread must not keep the process alive,
    // and a process must not exit while a batch is being written.
    if (this.pending.size === 1) worker.ref()
    worker.postMessage({ id, values: flattenRows(rows) } satisfies AuditBatchRequest)
    await done
    return rows.length
  }

  async close (): Promise<void> {
    const worker = this.worker
    if (worker === null) return
    this.worker = null
    const exited = once(worker, 'exit')
    worker.ref()
    worker.postMessage('close')
    await exited
  }

  /** Started with the writer; a thread that dies fails what it had and is started again on the next write. */
  private start (): Worker {
    const workerData: AuditWorkerData = { file: this.file }
    const worker = new Worker(WORKER_SCRIPT, { eval: FROM_SOURCE, workerData, execArgv: [] })
    worker.unref()
    worker.on('message', (reply: AuditBatchReply) => {
      const waiting = this.pending.get(reply.id)
      this.pending.delete(reply.id)
      if (this.pending.size === 0) worker.unref()
      if (reply.error === null) waiting?.resolve()
      else waiting?.reject(new AuditWriteError(reply.error.message, reply.error.code))
    })
    worker.on('error', (err) => { this.failAll(err) })
    worker.on('exit', (code) => {
      if (this.worker === worker) this.worker = null
      this.failAll(new Error(`audit writer thread exited (${code})`))
    })
    this.worker = worker
    return worker
  }

  private failAll (err: Error): void {
    for (const waiting of this.pending.values()) waiting.reject(err)
    this.pending.clear()
  }
}

/**
 * The thread's module beside this one: .js when built. Run from source (the tests), it is
 * the .ts file, loaded through tsx's API: a worker does not take the parent's loader hooks.
 */
const FROM_SOURCE = path.extname(fileURLToPath(import.meta.url)) === '.ts'
const WORKER_SCRIPT = FROM_SOURCE
  ? `import(${JSON.stringify(import.meta.resolve('tsx/esm/api'))}).then(({ register }) => { register(); return import(${JSON.stringify(new URL('./audit-sqlite-worker.ts', import.meta.url).href)}) })`
  : new URL('./audit-sqlite-worker.js', import.meta.url)

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
    traceId: row.trace_id ?? null,
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
