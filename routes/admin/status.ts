import { hostname } from 'node:os'
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { inClusterWorker, primaryLink } from '../../lib/cluster-ipc.js'
import { GatewayError } from '../../lib/errors.js'
import { hostStatus } from '../../lib/host-status.js'
import { version } from '../../lib/version.js'
import { ErrorSchema } from '../../schemas/common.js'
import { type ProcessStatus, StatusSchema } from '../../schemas/status.js'

/** The load balancer's health state of a target, shown when plugins/upstreams.ts keeps it. */
const HEALTH_FIELDS = ['consecutiveFailures', 'ejectedUntil', 'ejectionsTotal', 'activeHealthy'] as const

/** How long the host-wide answer waits for each worker (WORKERS > 1). */
const GATHER_TIMEOUT_MS = 1000

/** GET /admin/status — docs/observability.md "GET /admin/status" (and "… with WORKERS > 1"). */
const statusAdmin: FastifyPluginAsyncTypebox = async (app) => {
  const { id: instanceId, startedAt } = app.instance

  function localStatus (): ProcessStatus {
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
      redis: app.redis.status(),
      cache: app.cache.status(),
      logSinks: app.logShipping.status(),
      egress: { ...app.egress.stats }
    }
  }

  const clustered = inClusterWorker()
  if (clustered) {
    const link = primaryLink()
    link.answer('status', localStatus)
    app.addHook('onClose', async () => { link.stopAnswering('status') })
  }

  app.get('/status', {
    schema: {
      tags: ['system'],
      security: [{ bearerAuth: [] }],
      summary: 'Live state of this instance (with WORKERS > 1, of the host)',
      description: 'Counters are this process\'s since it started (proxied traffic only; admin, /metrics and health calls are not counted). ' +
        'targets: one entry per route and target URL, with in-flight requests and health as the load balancer sees them. ' +
        'With WORKERS > 1: counters summed over the workers, targets merged, and workers/unresponsiveWorkers added.',
      response: { 200: StatusSchema, 401: ErrorSchema, 503: ErrorSchema }
    }
  }, async () => {
    const configRevision = await app.configHistory.latest()
    if (!clustered) return { ...localStatus(), configRevision }
    const gathered = await primaryLink().gather<ProcessStatus>('status', GATHER_TIMEOUT_MS).catch((err: Error) => {
      throw new GatewayError(503, 'GW_CLUSTER_UNAVAILABLE', `cannot gather the workers' status: ${err.message}`, { 'retry-after': '1' })
    })
    return { ...hostStatus(localStatus(), gathered, `${hostname()}-${process.ppid}`), configRevision }
  })
}

export default statusAdmin
