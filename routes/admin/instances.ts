import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { GatewayError } from '../../lib/errors.js'
import { aggregate, BUCKET_MS, parseStoredSeries, type StoredBucket } from '../../lib/timeseries.js'
import { FORGOTTEN_AFTER_MS, UNHEALTHY_AFTER_MS } from '../../plugins/instances.js'
import { listInstances, listInstanceSeries } from '../../repositories/instances.js'
import { ErrorSchema } from '../../schemas/common.js'
import { InstanceListSchema, TimeseriesQuerySchema, TimeseriesSchema } from '../../schemas/instances.js'

const security = [{ bearerAuth: [] }]

/** GET /admin/instances and GET /admin/metrics/timeseries — docs/dashboard.md. */
const instancesAdmin: FastifyPluginAsyncTypebox = async (app) => {
  app.get('/instances', {
    schema: {
      tags: ['system'],
      security,
      summary: 'Every gateway instance sharing the database',
      description: 'From the heartbeat each instance writes every 5 s. healthy is false once an instance is unseen for 15 s; ' +
        'it is removed after an hour. Each worker of a WORKERS cluster is an instance of its own.',
      response: { 200: InstanceListSchema, 401: ErrorSchema, 503: ErrorSchema }
    }
  }, async () => {
    const now = Date.now()
    const rows = await listInstances(app.db, new Date(now - FORGOTTEN_AFTER_MS).toISOString())
    const items = rows.map((row) => ({
      instanceId: row.instance_id,
      host: row.host,
      pid: Number(row.pid),
      version: row.version,
      startedAt: row.started_at,
      lastSeenAt: row.last_seen_at,
      configRevision: Number(row.config_revision),
      requestsPerSecond: Number(row.requests_per_second),
      healthy: now - Date.parse(row.last_seen_at) <= UNHEALTHY_AFTER_MS
    }))
    return { items, total: items.length }
  })

  app.get('/metrics/timeseries', {
    schema: {
      tags: ['system'],
      security,
      summary: 'Recent traffic in steps: requests, status classes, latency percentiles, bytes',
      description: 'From an in-memory buffer of 10-second buckets per instance (15 minutes). scope=instance: the instance that answers; ' +
        'scope=cluster: every instance sharing the database summed (others as of their last heartbeat, at most 5 s old), ' +
        'percentiles from their merged latency histograms, and the series of each instance in `instances`. route: one route (id or name).',
      querystring: TimeseriesQuerySchema,
      response: { 200: TimeseriesSchema, 400: ErrorSchema, 401: ErrorSchema, 404: ErrorSchema, 503: ErrorSchema }
    }
  }, async (request) => {
    const { window, step, scope, route } = request.query
    if (step > window) throw new GatewayError(400, 'GW_BAD_REQUEST', `querystring/step must be at most window (${window})`)
    let routeId: string | null = null
    if (route !== undefined) {
      const found = app.routeTable.routes.find((candidate) => candidate.id === route || candidate.name === route)
      // A route deleted since still has its id in the other instances' buckets: accepted by id only when known here.
      if (found === undefined) throw new GatewayError(404, 'GW_NOT_FOUND', `no route ${route}`)
      routeId = found.id
    }
    const now = Date.now()
    const since = now - window * 1000 - BUCKET_MS
    const local = routeId === null ? app.timeseries.total : app.timeseries.routes.get(routeId)
    const localBuckets = local === undefined ? [] : local.stored(since, now)
    const base = { instanceId: app.instance.id, scope, window, step, routeId }
    if (scope === 'instance') return { ...base, items: aggregate([localBuckets], window, step, now) }

    const rows = await listInstanceSeries(app.db, new Date(since).toISOString())
    const perInstance: Array<{ instanceId: string, buckets: StoredBucket[] }> = [{ instanceId: app.instance.id, buckets: localBuckets }]
    for (const row of rows) {
      if (row.instance_id === app.instance.id) continue
      const stored = parseStoredSeries(row.series)
      perInstance.push({ instanceId: row.instance_id, buckets: routeId === null ? stored.total : stored.routes[routeId] ?? [] })
    }
    return {
      ...base,
      items: aggregate(perInstance.map((entry) => entry.buckets), window, step, now),
      instances: perInstance.map((entry) => ({ instanceId: entry.instanceId, items: aggregate([entry.buckets], window, step, now) }))
    }
  })
}

export default instancesAdmin
