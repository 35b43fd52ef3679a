import { type Static, Type } from '@sinclair/typebox'
import { CacheStatusSchema } from './cache.js'
import { RedisStatusSchema } from './redis-status.js'

const ByStatusClass = Type.Object({
  '1xx': Type.Integer(), '2xx': Type.Integer(), '3xx': Type.Integer(), '4xx': Type.Integer(), '5xx': Type.Integer()
})

/** GET /admin/status (docs/observability.md "GET /admin/status"): this instance since it started. */
const ProcessStatusSchema = Type.Object({
  version: Type.String(),
  instanceId: Type.String({ description: 'this process (host, pid and a random part); with WORKERS > 1, the host (host name and the primary\'s pid)' }),
  uptimeSeconds: Type.Integer({ description: 'with WORKERS > 1, the primary\'s' }),
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
  redis: RedisStatusSchema,
  cache: CacheStatusSchema,
  logSinks: Type.Array(Type.Object({
    sink: Type.String({ description: 'the LOG_SINKS entry, any password replaced by ***', examples: ['loki+http://admin:***@loki:3100'] }),
    queued: Type.Integer({ description: 'lines (s3: rotated files) waiting, the batch in flight included' }),
    sent: Type.Integer(),
    dropped: Type.Integer({ description: 'queue full, refused by the sink, retries over 60 s, or unsent at shutdown' }),
    retries: Type.Integer({ description: 'batches sent again after a failure' }),
    lastError: Type.Union([Type.String(), Type.Null()], { description: 'the last failure, kept after the sink recovers' })
  }), { description: 'one entry per LOG_SINKS sink (docs/logging.md); with WORKERS > 1 the answering worker\'s, each worker\'s under workers' }),
  egress: Type.Object({
    activeTunnels: Type.Integer({ description: 'CONNECT tunnels open now' }),
    activeRequests: Type.Integer({ description: 'forward-proxy HTTP requests in flight now' }),
    bytesIn: Type.Integer({ description: 'bytes from clients: request bodies and tunnel traffic towards destinations' }),
    bytesOut: Type.Integer({ description: 'bytes to clients: answers and tunnel traffic from destinations' }),
    allowed: Type.Integer({ description: 'requests and tunnels admitted to a destination' }),
    blocked: Type.Integer({ description: 'requests and tunnels refused by an egress rule, the private-address check or the CONNECT port rule' })
  }, { description: 'the forward proxy (EGRESS_PORT, docs/egress.md); all 0 when it is off' })
})

/** One worker's own numbers in a WORKERS > 1 answer: everything but version and targets. */
const WorkerStatusSchema = Type.Object({
  workerId: Type.Integer({ description: 'node:cluster worker id' }),
  pid: Type.Integer(),
  ...Type.Omit(ProcessStatusSchema, ['version', 'targets']).properties
})

/**
 * With WORKERS > 1 the answer is the host's: counters
 * summed over the workers, targets merged, and `workers` the per-worker breakdown
 * (docs/observability.md "/admin/status with WORKERS > 1").
 */
export const StatusSchema = Type.Object({
  ...ProcessStatusSchema.properties,
  configRevision: Type.Integer({ description: 'the newest configuration revision in the database (docs/config-history.md); 0 before the first change' }),
  workers: Type.Optional(Type.Array(WorkerStatusSchema, { description: 'WORKERS > 1 only: each worker that answered, by workerId' })),
  unresponsiveWorkers: Type.Optional(Type.Array(Type.Object({ workerId: Type.Integer(), pid: Type.Integer() }), {
    description: 'WORKERS > 1 only: workers that did not answer within 1 s; the totals leave them out'
  }))
}, { $id: 'Status' })

export type ProcessStatus = Static<typeof ProcessStatusSchema>
export type Status = Static<typeof StatusSchema>
