import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { GatewayError } from '../../lib/errors.js'
import { auditStats, listAuditRows, type AuditFilter } from '../../repositories/audit.js'
import { ErrorSchema, listOf } from '../../schemas/common.js'
import { AuditEntrySchema, AuditLogQuerySchema, AuditStatsQuerySchema, AuditStatsSchema } from '../../schemas/audit.js'

const tags = ['audit']
const security = [{ bearerAuth: [] }]
const HOUR_MS = 60 * 60 * 1000

/** Rows store toISOString() text, so every bound is normalised to it before comparing. */
function isoTime (value: string, field: string): string {
  const time = Date.parse(value)
  if (Number.isNaN(time)) throw new GatewayError(400, 'GW_VALIDATION', `${field} is not a valid date-time`)
  return new Date(time).toISOString()
}

/** /admin/audit/logs and /admin/audit/stats — contract section 4 "Audit". */
const auditAdmin: FastifyPluginAsyncTypebox = async (app) => {
  app.get('/logs', {
    schema: {
      tags,
      security,
      summary: 'Audit rows, newest first',
      description: 'Every proxied request and every admin change. Filters combine with AND; `since` is inclusive, `until` exclusive. ' +
        'Rows are written in batches: a request shows up here within about 50 ms of its answer.',
      querystring: AuditLogQuerySchema,
      response: { 200: listOf(AuditEntrySchema), 400: ErrorSchema, 401: ErrorSchema }
    }
  }, async (request) => {
    const { limit, offset, since, until, routeId, ...rest } = request.query
    const filter: AuditFilter = { ...rest }
    if (since !== undefined) filter.since = isoTime(since, 'since')
    if (until !== undefined) filter.until = isoTime(until, 'until')
    // A route's name is accepted for its id, as everywhere else in the admin API (":id accepts the id or the name").
    if (routeId !== undefined) filter.routeId = app.routeTable.routes.find((route) => route.name === routeId)?.id ?? routeId
    return await listAuditRows(app.db, filter, { limit, offset })
  })

  app.get('/stats', {
    schema: {
      tags,
      security,
      summary: 'Audit counts and latency percentiles over a window',
      description: 'Counts by event type, status class, outcome and route, the top client IPs, and p50/p95/p99 of request ' +
        'durations (nearest rank) over [since, until); since defaults to one hour before until, until to now.',
      querystring: AuditStatsQuerySchema,
      response: { 200: AuditStatsSchema, 400: ErrorSchema, 401: ErrorSchema }
    }
  }, async (request) => {
    const until = request.query.until === undefined ? new Date().toISOString() : isoTime(request.query.until, 'until')
    const since = request.query.since === undefined ? new Date(Date.parse(until) - HOUR_MS).toISOString() : isoTime(request.query.since, 'since')
    if (since > until) throw new GatewayError(400, 'GW_VALIDATION', 'since must not be after until')
    const stats = await auditStats(app.db, { since, until }, request.query.top)
    const names = new Map(app.routeTable.routes.map((route) => [route.id, route.name]))
    return {
      since,
      until,
      ...stats,
      byRoute: stats.byRoute.map((entry) => ({ ...entry, routeName: entry.routeId === null ? null : names.get(entry.routeId) ?? null })),
      unwritten: { queuedRows: app.audit.queueDepth, droppedRows: app.audit.dropped, writeError: app.audit.writeError }
    }
  })
}

export default auditAdmin
