import { randomBytes } from 'node:crypto'
import { hostname } from 'node:os'
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { version } from '../../lib/version.js'
import { ErrorSchema } from '../../schemas/common.js'
import { StatusSchema } from '../../schemas/status.js'

/** The load balancer's health state of a target, shown when plugins/upstreams.ts keeps it. */
const HEALTH_FIELDS = ['consecutiveFailures', 'ejectedUntil', 'ejectionsTotal', 'activeHealthy'] as const

/** GET /admin/status — contract section 4 "Status and configuration". */
const statusAdmin: FastifyPluginAsyncTypebox = async (app) => {
  const instanceId = `${hostname()}-${process.pid}-${randomBytes(3).toString('hex')}`
  const startedAt = Date.now()

  app.get('/status', {
    schema: {
      tags: ['system'],
      security: [{ bearerAuth: [] }],
      summary: 'Live state of this instance',
      description: 'Counters are this process\'s since it started (proxied traffic only; admin, /metrics and health calls are not counted). ' +
        'targets: one entry per route and target URL, with in-flight requests and health as the load balancer sees them.',
      response: { 200: StatusSchema, 401: ErrorSchema }
    }
  }, async () => {
    const { traffic } = app.metrics
    const targets = []
    for (const route of app.routeTable.routes) {
      for (const { url } of route.targets) {
        const target = app.upstreams.target(url)
        const entry: Record<string, unknown> = { routeId: route.id, url, healthy: target?.healthy ?? false, inFlight: target?.inFlight ?? 0 }
        // The load balancer's ejection state (consecutive failures, ejected until …) when it keeps one.
        if (target !== undefined) {
          const state = target as unknown as Record<string, unknown>
          for (const field of HEALTH_FIELDS) {
            const value = state[field]
            if (value === undefined) continue
            entry[field] = field === 'ejectedUntil' && typeof value === 'number' ? new Date(value).toISOString() : value
          }
        }
        targets.push(entry as { routeId: string, url: string, healthy: boolean, inFlight: number })
      }
    }
    return {
      version,
      instanceId,
      uptimeSeconds: Math.floor((Date.now() - startedAt) / 1000),
      routes: app.routeTable.routes.length,
      requests: { total: traffic.requests, byStatusClass: { ...traffic.byStatusClass } },
      activeConnections: traffic.activeConnections,
      maxConnections: app.connectionCap.max,
      bytesIn: traffic.bytesIn,
      bytesOut: traffic.bytesOut,
      rateLimited: traffic.rateLimited,
      blocked: traffic.blocked,
      targets,
      audit: { queueDepth: app.audit.queueDepth, dropped: app.audit.dropped },
      redis: app.redis.status()
    }
  })
}

export default statusAdmin
