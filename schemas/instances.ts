import { Type, type Static } from '@sinclair/typebox'
import { defaultsOptional } from './defaults.js'

export const InstanceSchema = Type.Object({
  instanceId: Type.String({ description: 'host name, pid and a random part; each worker of a WORKERS cluster is an instance of its own' }),
  host: Type.String(),
  pid: Type.Integer(),
  version: Type.String({ description: 'the gateway version it runs' }),
  startedAt: Type.String({ format: 'date-time' }),
  lastSeenAt: Type.String({ format: 'date-time', description: 'its last heartbeat (written every 5 s)' }),
  configRevision: Type.Integer({ description: 'the configuration version it had loaded at that heartbeat' }),
  requestsPerSecond: Type.Number({ description: 'proxied requests per second over its last complete 10-second bucket' }),
  healthy: Type.Boolean({ description: 'false once unseen for 15 s; rows unseen for an hour are removed' })
}, {
  $id: 'Instance',
  examples: [{
    instanceId: 'gw-1-4242-a1b2c3', host: 'gw-1', pid: 4242, version: '0.1.0', startedAt: '2026-01-01T00:00:00.000Z',
    lastSeenAt: '2026-01-01T00:10:00.000Z', configRevision: 17, requestsPerSecond: 12.3, healthy: true
  }]
})

export const InstanceListSchema = Type.Object({ items: Type.Array(InstanceSchema), total: Type.Integer() })

export const StatusClassCountsSchema = Type.Object({
  '1xx': Type.Integer(), '2xx': Type.Integer(), '3xx': Type.Integer(), '4xx': Type.Integer(), '5xx': Type.Integer()
})

const latency = (q: string) => Type.Union([Type.Number(), Type.Null()], {
  description: `${q} latency in ms (upper bound of its histogram bin, at most 25 % above the true value); null without requests`
})

export const SeriesPointSchema = Type.Object({
  ts: Type.String({ format: 'date-time', description: 'start of the step' }),
  requests: Type.Integer(),
  byStatusClass: StatusClassCountsSchema,
  p50: latency('median'),
  p95: latency('95th percentile'),
  p99: latency('99th percentile'),
  bytesIn: Type.Integer(),
  bytesOut: Type.Integer(),
  rateLimited: Type.Integer({ description: 'requests refused 429 by a rate limit' }),
  blocked: Type.Integer({ description: 'requests refused as blocked (filters, malformed requests, client timeouts)' })
})

export const TimeseriesQuerySchema = defaultsOptional(Type.Object({
  window: Type.Integer({ minimum: 10, maximum: 900, default: 900, description: 'seconds back from now (at most 900: the buffer keeps 15 minutes)' }),
  step: Type.Integer({ minimum: 10, maximum: 900, multipleOf: 10, default: 10, description: 'seconds per point, a multiple of 10 (the bucket size), at most window' }),
  scope: Type.Union([Type.Literal('instance'), Type.Literal('cluster')], { default: 'instance', description: 'instance: the one that answers; cluster: summed over every instance sharing the database, from their heartbeats' }),
  route: Type.Optional(Type.String({ minLength: 1, maxLength: 200, description: 'only this route (id or name)' }))
}, { additionalProperties: false }))
export type TimeseriesQuery = Static<typeof TimeseriesQuerySchema>

export const TimeseriesSchema = Type.Object({
  instanceId: Type.String({ description: 'the instance that answered' }),
  scope: Type.Union([Type.Literal('instance'), Type.Literal('cluster')]),
  window: Type.Integer(),
  step: Type.Integer(),
  routeId: Type.Union([Type.String(), Type.Null()]),
  items: Type.Array(SeriesPointSchema, { description: 'one point per step, oldest first; the last is the step in progress' }),
  instances: Type.Optional(Type.Array(Type.Object({
    instanceId: Type.String(),
    items: Type.Array(SeriesPointSchema)
  }), { description: 'scope=cluster only: the same series for each instance' }))
}, {
  $id: 'Timeseries',
  examples: [{
    instanceId: 'gw-1-4242-a1b2c3', scope: 'instance', window: 20, step: 10, routeId: null,
    items: [
      { ts: '2026-01-01T00:00:00.000Z', requests: 120, byStatusClass: { '1xx': 0, '2xx': 118, '3xx': 0, '4xx': 2, '5xx': 0 }, p50: 1.455, p95: 4.441, p99: 8.674, bytesIn: 0, bytesOut: 48000, rateLimited: 0, blocked: 2 },
      { ts: '2026-01-01T00:00:10.000Z', requests: 0, byStatusClass: { '1xx': 0, '2xx': 0, '3xx': 0, '4xx': 0, '5xx': 0 }, p50: null, p95: null, p99: null, bytesIn: 0, bytesOut: 0, rateLimited: 0, blocked: 0 }
    ]
  }]
})
