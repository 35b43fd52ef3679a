import fp from 'fastify-plugin'
import type { FastifyPluginAsync, FastifyReply, FastifyRequest, HookHandlerDoneFunction } from 'fastify'
import { performance } from 'node:perf_hooks'
import type { NewAuditLogRow } from '../repositories/database.js'
import { insertAuditRows } from '../repositories/audit.js'

export interface AdminChange {
  action: 'create' | 'replace' | 'update' | 'delete' | 'import' | 'reload' | string
  /** e.g. "route", "filter", "consumer", "key", "config" */
  resource: string
  resourceId: string | null
  before: unknown
  after: unknown
}

export interface AuditLog {
  /** onResponse hook of the proxied scope: one row per proxied request. */
  recordRequest: (request: FastifyRequest, reply: FastifyReply, done: HookHandlerDoneFunction) => void
  /** One row per admin change; secrets must already be removed from before/after. */
  recordAdmin: (request: FastifyRequest, change: AdminChange) => void
  /** Write everything buffered now. */
  flush: () => Promise<void>
}

declare module 'fastify' {
  interface FastifyInstance {
    audit: AuditLog
  }
}

export interface AuditOptions {
  flushIntervalMs?: number
  batchSize?: number
}

/**
 * Rows are buffered in memory and written in one transaction per batch, never on the
 * request path; onClose writes whatever is left, so a clean shutdown loses nothing.
 */
const auditPlugin: FastifyPluginAsync<AuditOptions> = async (app, options) => {
  const batchSize = options.batchSize ?? 500
  let buffer: NewAuditLogRow[] = []
  let writing: Promise<void> = Promise.resolve()

  function push (row: NewAuditLogRow): void {
    buffer.push(row)
    if (buffer.length >= batchSize) void flush()
  }

  function flush (): Promise<void> {
    writing = writing.then(async () => {
      while (buffer.length > 0) {
        const batch = buffer
        buffer = []
        try {
          await insertAuditRows(app.db, batch)
        } catch (err) {
          app.log.error({ err, rows: batch.length }, 'writing audit rows failed; will retry')
          buffer = batch.concat(buffer)
          return
        }
      }
    })
    return writing
  }

  const audit: AuditLog = {
    recordRequest (request, reply, done) {
      const context = request.gateway
      if (context !== null) {
        push({
          ts: new Date().toISOString(),
          event_type: 'request',
          request_id: request.id,
          client_ip: context.clientIp,
          method: request.method,
          path: context.path,
          route_id: context.route?.id ?? null,
          consumer_id: context.consumer?.id ?? null,
          status: reply.statusCode,
          outcome: context.outcome,
          duration_ms: Math.round((performance.now() - context.startedAt) * 1000) / 1000,
          bytes_in: context.bytesIn,
          bytes_out: context.socket.bytesWritten - context.socketBytesWrittenAtStart,
          user_agent: request.headers['user-agent'] ?? null,
          detail: context.detail
        })
      }
      done()
    },
    recordAdmin (request, change) {
      push({
        ts: new Date().toISOString(),
        event_type: 'admin',
        request_id: request.id,
        client_ip: request.ip,
        method: request.method,
        path: request.url.split('?')[0],
        route_id: change.resource === 'route' ? change.resourceId : null,
        consumer_id: null,
        status: null,
        outcome: 'admin',
        duration_ms: null,
        bytes_in: null,
        bytes_out: null,
        user_agent: request.headers['user-agent'] ?? null,
        detail: JSON.stringify({ action: change.action, resource: change.resource, id: change.resourceId, before: change.before, after: change.after })
      })
    },
    flush
  }
  app.decorate('audit', audit)

  const timer = setInterval(() => { if (buffer.length > 0) void flush() }, options.flushIntervalMs ?? 50)
  timer.unref()
  app.addHook('onClose', async () => {
    clearInterval(timer)
    await flush()
  })
}

export default fp(auditPlugin, { name: 'audit', dependencies: ['db'] })
