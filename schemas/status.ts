import { Type } from '@sinclair/typebox'
import { RedisStatusSchema } from './redis-status.js'

const ByStatusClass = Type.Object({
  '1xx': Type.Integer(), '2xx': Type.Integer(), '3xx': Type.Integer(), '4xx': Type.Integer(), '5xx': Type.Integer()
})

/** GET /admin/status (contract section 4 "Status and configuration"): this instance since it started. */
export const StatusSchema = Type.Object({
  version: Type.String(),
  instanceId: Type.String({ description: 'this process (host, pid and a random part); each worker answers for itself' }),
  uptimeSeconds: Type.Integer(),
  routes: Type.Integer({ description: 'routes in the route table, enabled or not' }),
  requests: Type.Object({
    total: Type.Integer({ description: 'proxied requests answered since start, refused ones included' }),
    byStatusClass: ByStatusClass
  }),
  activeConnections: Type.Integer(),
  maxConnections: Type.Integer({ description: 'MAX_CONNECTIONS: connections this process holds on each listener; more are closed at once' }),
  bytesIn: Type.Integer({ description: 'request body bytes of proxied requests' }),
  bytesOut: Type.Integer({ description: 'bytes written to clients for proxied requests, headers included' }),
  rateLimited: Type.Integer(),
  blocked: Type.Integer(),
  targets: Type.Array(Type.Object({
    routeId: Type.String(),
    url: Type.String(),
    healthy: Type.Boolean(),
    inFlight: Type.Integer(),
    consecutiveFailures: Type.Optional(Type.Integer()),
    ejectedUntil: Type.Optional(Type.Union([Type.String({ format: 'date-time' }), Type.Null()], { description: 'null: not ejected' })),
    ejectionsTotal: Type.Optional(Type.Integer()),
    activeHealthy: Type.Optional(Type.Union([Type.Boolean(), Type.Null()], { description: 'the active health check\'s verdict; null: no active check' }))
  }, { description: 'health fields appear when the load balancer keeps them' })),
  audit: Type.Object({
    queueDepth: Type.Integer({ description: 'rows waiting to be written' }),
    dropped: Type.Integer({ description: 'rows dropped since start because the queue was full' })
  }),
  redis: RedisStatusSchema
}, { $id: 'Status' })
