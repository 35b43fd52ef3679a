import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { requestedWindow, statsWindow } from '../../lib/audit-window.js'
import { auditStats, listAuditRows, type AuditFilter } from '../../repositories/audit.js'
import { ErrorSchema, listOf } from '../../schemas/common.js'
import { AuditEntrySchema, AuditLogQuerySchema, AuditStatsQuerySchema, AuditStatsSchema } from '../../schemas/audit.js'

const tags = ['audit']
const security = [{ bearerAuth: [] }]

/** /admin/audit/logs and /admin/audit/stats — docs/observability.md "Audit log". */
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
    const window = requestedWindow({ since, until })
    if (window.since !== undefined) filter.since = window.since
    if (window.until !== undefined) filter.until = window.until
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
        'durations (nearest rank) over [since, until); since defaults to one hour before until, until to now. ' +
        'A since later than now is an empty window (until = since); only an explicit until before since is a 400.',
      querystring: AuditStatsQuerySchema,
      response: { 200: AuditStatsSchema, 400: ErrorSchema, 401: ErrorSchema }
    }
  }, async (request) => {
    const { since, until } = statsWindow(request.query)
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
