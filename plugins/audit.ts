import { setTimeout as sleep } from 'node:timers/promises'
import fp from 'fastify-plugin'
import type { FastifyPluginAsync, FastifyRequest } from 'fastify'
import type { NewAuditLogRow } from '../repositories/database.js'
import { databaseProblem } from '../lib/database-errors.js'
import { deleteAuditRowsBefore, openAuditWriter } from '../repositories/audit.js'

export interface AdminChange {
  action: 'create' | 'replace' | 'update' | 'delete' | 'import' | 'reload' | string
  /** e.g. "route", "filter", "consumer", "key", "config" */
  resource: string
  resourceId: string | null
  before: unknown
  after: unknown
}

export interface AuditLog {
  /**
   * One finished proxied request (plugins/access-log.ts calls it for every one, including
   * those refused before routing and those whose client went away). Never blocks: the row
   * is queued, or counted as dropped when the queue is full.
   */
  recordRequest: (row: NewAuditLogRow) => void
  /** One row per admin change. Values of secret-looking fields in before/after are redacted here too. */
  /** null request: a change the gateway made itself (CONFIG_FILE at start or on SIGHUP), actor "system". */
  recordAdmin: (request: FastifyRequest | null, change: AdminChange) => void
  /** Write everything queued now (retrying while the database is busy). */
  flush: () => Promise<void>
  /** Rows waiting to be written, the batch being written included. */
  readonly queueDepth: number
  /** Rows thrown away because the queue was full since start. */
  readonly dropped: number
  /** Why writing rows fails right now (they stay queued and are retried); null while writes succeed. */
  readonly writeError: string | null
  /** Deletes rows older than the retention in small batches now; resolves with how many went. */
  enforceRetention: () => Promise<number>
}

declare module 'fastify' {
  interface FastifyInstance {
    audit: AuditLog
  }
}

export interface AuditOptions {
  /** How long a row may wait before its batch is written. */
  flushIntervalMs?: number
  /** Rows per write transaction; a full batch is written at once. */
  batchSize?: number
  /** Rows the queue holds at most; beyond it rows are dropped and counted, memory stays bounded. */
  maxQueueRows?: number
  /** false: request rows are not written (the bench's audit-off profile). Admin rows always are. */
  recordRequests?: boolean
  /** How often old rows are deleted, and how many per delete statement. */
  retentionIntervalMs?: number
  retentionBatchSize?: number
  /** How long close() keeps retrying a busy database before giving up on the rest. */
  closeTimeoutMs?: number
}

/** Field names whose values are credentials wherever they appear in an admin before/after. */
const SECRET_FIELD = /^(secret|password|passwordhash|key|keyhash|apikey|token|hash|salt|clientsecret|privatekey)$/i
export const REDACTED = '[redacted]'

/** A copy of `value` with every secret-looking field's value replaced, at any depth. */
export function redactSecrets (value: unknown): unknown {
  if (Array.isArray(value)) return value.map(redactSecrets)
  if (value === null || typeof value !== 'object') return value
  const copy: Record<string, unknown> = {}
  for (const [name, field] of Object.entries(value)) {
    copy[name] = SECRET_FIELD.test(name) && field !== null && field !== undefined ? REDACTED : redactSecrets(field)
  }
  return copy
}

/**
 * Rows are queued in memory and written off the request path, one transaction per batch
 * (every flushIntervalMs, or at once when a batch is full). A failed write (SQLITE_BUSY
 * while another process holds the lock, PostgreSQL away) keeps its rows queued and is
 * retried with backoff; while the database cannot keep up the queue stops at maxQueueRows
 * and further rows are counted as dropped instead of growing memory.
 *
 * Shutdown: Fastify runs onClose hooks in reverse order of registration, so this plugin's
 * (registered after db) writes the rest BEFORE db's destroys the connection — see
 * test/plugins/audit.test.ts "close writes every queued row before the database closes".
 */
const auditPlugin: FastifyPluginAsync<AuditOptions> = async (app, options) => {
  const flushIntervalMs = positive(options.flushIntervalMs ?? 50, 'flushIntervalMs')
  const batchSize = positive(options.batchSize ?? 500, 'batchSize')
  const maxQueueRows = positive(options.maxQueueRows ?? 100_000, 'maxQueueRows')
  const retentionIntervalMs = positive(options.retentionIntervalMs ?? 60_000, 'retentionIntervalMs')
  const retentionBatchSize = positive(options.retentionBatchSize ?? 500, 'retentionBatchSize')
  const closeTimeoutMs = positive(options.closeTimeoutMs ?? 10_000, 'closeTimeoutMs')
  const recordRequests = options.recordRequests ?? true
  const retentionMs = app.config.auditRetentionDays * 24 * 60 * 60 * 1000
  const writer = openAuditWriter(app.db, app.config.databaseUrl)
  // Admin rows also go to LOG_SINKS (request rows are shipped as access-log lines: plugins/log-shipping.ts).
  const shipAdminRow = app.hasDecorator('logShipping') ? app.logShipping.auditRow : () => {}

  // The queue is queue[head..]; rows stay in it until their batch has committed, so a failed
  // write needs no putting back, and queueDepth always counts the batch in flight.
  let queue: NewAuditLogRow[] = []
  let head = 0
  let dropped = 0
  let writing: Promise<void> | null = null
  let failures = 0
  /** Why the last write failed, while writes fail: /admin/audit/stats says so. */
  let lastError: string | null = null
  let retryAt = 0
  let closing = false

  const depth = (): number => queue.length - head

  function push (row: NewAuditLogRow): void {
    if (queue.length - head >= maxQueueRows) {
      if (dropped++ === 0 || dropped % 10_000 === 0) app.log.warn({ dropped, maxQueueRows }, 'audit queue full: rows are being dropped')
      return
    }
    queue.push(row)
    if (queue.length - head >= batchSize && writing === null && failures === 0) startWriting()
  }

  function startWriting (): void {
    writing = writeAll().finally(() => { writing = null })
  }

  /**
   * Writes what is queued as one batch, then more only while full batches are waiting: rows
   * arriving during a write wait for the flush timer, so batches stay large (per row, a
   * 250-row transaction costs SQLite a fifth less than an 80-row one).
   */
  async function writeAll (): Promise<void> {
    do {
      if (!await writeBatch()) return
      // Let requests run between batches (PostgreSQL, :memory: write on this thread).
      if (depth() >= batchSize) await new Promise((resolve) => setImmediate(resolve))
    } while (depth() >= batchSize)
  }

  /** The oldest batchSize rows; false when the write failed (they stay queued, retried with backoff). */
  async function writeBatch (): Promise<boolean> {
    // A copy, never the live queue: rows pushed while the write awaits must not join this
    // batch, or they would be written by it and again by the next (docs/faults.md "Audit rows").
    const batch = queue.slice(head, Math.min(queue.length, head + batchSize))
    let written: number
    try {
      written = await writer.write(batch)
    } catch (err) {
      failures++
      lastError = databaseProblem(err)?.message ?? (err as Error).message
      retryAt = Date.now() + Math.min(2000, 50 * 2 ** Math.min(failures, 6))
      if (failures === 1 || failures % 20 === 0) {
        app.log.error({ err, rows: depth(), failures }, 'writing audit rows failed; they stay queued and are retried')
      }
      return false
    }
    if (failures > 0) app.log.info({ failures, rows: depth() }, 'audit rows are being written again')
    failures = 0
    lastError = null
    head += written
    if (head === queue.length) {
      queue = []
      head = 0
    } else if (head >= 4096 && head * 2 >= queue.length) {
      queue = queue.slice(head)
      head = 0
    }
    return true
  }

  async function flush (): Promise<void> {
    const deadline = Date.now() + closeTimeoutMs
    while (true) {
      if (writing !== null) {
        await writing
        continue
      }
      if (depth() === 0) return
      if (Date.now() > deadline) {
        app.log.error({ lost: depth() }, 'audit rows could not be written before the deadline')
        return
      }
      if (failures > 0 && Date.now() < retryAt) {
        await sleep(Math.min(retryAt, deadline) - Date.now())
        continue
      }
      startWriting()
    }
  }

  const audit: AuditLog = {
    recordRequest: recordRequests ? push : () => {},
    recordAdmin (request, change) {
      const row: NewAuditLogRow = {
        ts: new Date().toISOString(),
        event_type: 'admin',
        request_id: request?.id ?? null,
        client_ip: request?.ip ?? null,
        method: request?.method ?? null,
        path: request?.url.split('?')[0] ?? null,
        route_id: change.resource === 'route' ? change.resourceId : null,
        consumer_id: change.resource === 'consumer' ? change.resourceId : null,
        // Admin changes are recorded before the answer is sent; a change that failed is not recorded.
        status: null,
        outcome: 'admin',
        duration_ms: null,
        bytes_in: null,
        bytes_out: null,
        user_agent: request?.headers['user-agent'] ?? null,
        detail: JSON.stringify({
          // One shared ADMIN_TOKEN: the actor is its holder; clientIp and userAgent say from where.
          actor: request === null ? 'system' : 'admin-token',
          action: change.action,
          resource: change.resource,
          id: change.resourceId,
          before: redactSecrets(change.before) ?? null,
          after: redactSecrets(change.after) ?? null
        }),
        trace_id: null
      }
      push(row)
      shipAdminRow(row)
    },
    flush,
    get queueDepth () { return depth() },
    get dropped () { return dropped },
    get writeError () { return lastError },
    enforceRetention
  }
  app.decorate('audit', audit)

  app.metrics.gauge('gatehouse_audit_queue_depth', 'Audit rows waiting to be written', depth)
  app.metrics.counter('gatehouse_audit_dropped_rows_total', 'Audit rows dropped because the queue was full (database too slow or away)', () => dropped)

  let retention: Promise<number> | null = null
  function enforceRetention (): Promise<number> {
    retention ??= deleteOldRows().finally(() => { retention = null })
    return retention
  }

  async function deleteOldRows (): Promise<number> {
    let deleted = 0
    const before = new Date(Date.now() - retentionMs).toISOString()
    while (!closing) {
      const count = await deleteAuditRowsBefore(app.db, before, retentionBatchSize)
      deleted += count
      if (count < retentionBatchSize) break
      // A pause between batches: requests and the audit writer get the event loop and the lock.
      await sleep(10)
    }
    if (deleted > 0) app.log.info({ deleted, retentionDays: app.config.auditRetentionDays }, 'old audit rows deleted')
    return deleted
  }

  const flushTimer = setInterval(() => {
    if (depth() > 0 && writing === null && Date.now() >= retryAt) startWriting()
  }, flushIntervalMs)
  flushTimer.unref()
  const retentionTimer = setInterval(() => {
    enforceRetention().catch((err: unknown) => { app.log.error({ err }, 'deleting old audit rows failed; retried later') })
  }, retentionIntervalMs)
  retentionTimer.unref()

  app.addHook('onClose', async () => {
    closing = true
    clearInterval(flushTimer)
    clearInterval(retentionTimer)
    await retention?.catch(() => {})
    await flush()
    await writer.close()
  })
}

function positive (value: number, name: string): number {
  if (!Number.isFinite(value) || value <= 0) throw new Error(`audit option ${name} must be a positive number, got ${value}`)
  return value
}

export default fp(auditPlugin, { name: 'audit', dependencies: ['db', 'metrics'] })
