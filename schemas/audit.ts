import { Type, type Static } from '@sinclair/typebox'
import { pageFields } from './common.js'
import { defaultsOptional } from './defaults.js'

export const OUTCOMES = ['proxied', 'no_route', 'blocked', 'unauthorized', 'rate_limited', 'too_large', 'upstream_error', 'admin', 'cached'] as const
const Outcome = Type.Union(OUTCOMES.map((outcome) => Type.Literal(outcome)))
const EventType = Type.Union([Type.Literal('request'), Type.Literal('admin'), Type.Literal('egress')], {
  description: 'request: proxied traffic; admin: a change through the admin API; egress: a forward-proxy request or tunnel (docs/egress.md)'
})
const Nullable = <T extends ReturnType<typeof Type.String> | ReturnType<typeof Type.Integer> | ReturnType<typeof Type.Number>>(schema: T) =>
  Type.Union([schema, Type.Null()])

/** One audit row (docs/observability.md "Audit log"). */
export const AuditEntrySchema = Type.Object({
  id: Type.Integer(),
  ts: Type.String({ format: 'date-time', description: 'when the request ended (UTC)' }),
  eventType: EventType,
  requestId: Nullable(Type.String()),
  traceId: Nullable(Type.String({ description: 'W3C trace id (32 lowercase hex) of a request row: the client\'s traceparent continued, or the trace the gateway started; null for admin rows', examples: ['4bf92f3577b34da6a3ce929d0e0e4736'] })),
  clientIp: Nullable(Type.String()),
  method: Nullable(Type.String()),
  path: Nullable(Type.String({ description: 'normalised path, without the query string' })),
  routeId: Nullable(Type.String()),
  consumerId: Nullable(Type.String()),
  status: Nullable(Type.Integer({ description: '499: the client closed the connection before any answer' })),
  outcome: Outcome,
  durationMs: Nullable(Type.Number()),
  bytesIn: Nullable(Type.Integer()),
  bytesOut: Nullable(Type.Integer()),
  userAgent: Nullable(Type.String()),
  detail: Type.Unknown({
    description: 'request rows: why it was refused or failed (string) or null; ' +
      'admin rows: {actor, action, resource, id, before, after} with secrets redacted'
  })
}, { $id: 'AuditEntry' })
export type AuditEntryBody = Static<typeof AuditEntrySchema>

export const AuditLogQuerySchema = defaultsOptional(Type.Object({
  eventType: Type.Optional(EventType),
  clientIp: Type.Optional(Type.String({ minLength: 1, maxLength: 64 })),
  routeId: Type.Optional(Type.String({ minLength: 1, maxLength: 200, description: 'a route id, or the name of a current route' })),
  status: Type.Optional(Type.Integer({ minimum: 100, maximum: 599 })),
  outcome: Type.Optional(Outcome),
  since: Type.Optional(Type.String({ format: 'date-time', description: 'inclusive' })),
  until: Type.Optional(Type.String({ format: 'date-time', description: 'exclusive' })),
  ...pageFields
}, { additionalProperties: false }))
export type AuditLogQuery = Static<typeof AuditLogQuerySchema>

export const AuditStatsQuerySchema = defaultsOptional(Type.Object({
  since: Type.Optional(Type.String({ format: 'date-time', description: 'inclusive; default one hour before until' })),
  until: Type.Optional(Type.String({ format: 'date-time', description: 'exclusive; default now' })),
  top: Type.Integer({ minimum: 1, maximum: 100, default: 10, description: 'how many client IPs' })
}, { additionalProperties: false }))
export type AuditStatsQuery = Static<typeof AuditStatsQuerySchema>

const Counts = Type.Record(Type.String(), Type.Integer())

export const AuditStatsSchema = Type.Object({
  since: Type.String({ format: 'date-time' }),
  until: Type.String({ format: 'date-time' }),
  total: Type.Integer({ description: 'rows in the window, both event types' }),
  byEventType: Counts,
  byStatusClass: Type.Record(Type.String(), Type.Integer(), { description: 'request rows by "2xx", "4xx", …' }),
  byOutcome: Counts,
  byRoute: Type.Array(Type.Object({
    routeId: Nullable(Type.String()),
    routeName: Nullable(Type.String({ description: 'the current name; null for no route or a deleted one' })),
    count: Type.Integer()
  }), { description: 'request rows per route, most first; routeId null: matched no route' }),
  topClientIps: Type.Array(Type.Object({ clientIp: Type.String(), count: Type.Integer() })),
  latencyMs: Type.Object({
    p50: Nullable(Type.Number()),
    p95: Nullable(Type.Number()),
    p99: Nullable(Type.Number())
  }, { description: 'nearest-rank percentiles of request durations; null when there are none' }),
  unwritten: Type.Object({
    queuedRows: Type.Integer({ description: 'rows this process has queued and not yet written: not counted above' }),
    droppedRows: Type.Integer({ description: 'rows this process dropped since start because its queue was full' }),
    writeError: Nullable(Type.String({ description: 'why writing rows fails right now; null while writes succeed' }))
  }, { description: 'what the counts above are missing: while writeError is set they are stale' })
}, { $id: 'AuditStats' })
