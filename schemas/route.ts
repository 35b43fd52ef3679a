import { Type, type Static, type TSchema } from '@sinclair/typebox'
import { NamePattern } from './common.js'
import { defaultsOptional } from './defaults.js'
import { transformFields } from './transforms.js'

const HttpMethod = Type.Union(
  ['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS'].map((method) => Type.Literal(method))
)

export const TargetSchema = Type.Object({
  url: Type.String({ pattern: '^https?://[^/?#\\s]+(/[^?#\\s]*)?$', maxLength: 2048, description: 'http(s) URL; its path is a base prefix' }),
  weight: Type.Integer({ minimum: 1, maximum: 1000, default: 1 })
}, { additionalProperties: false })

export const HealthCheckSchema = Type.Object({
  path: Type.String({ pattern: '^/', maxLength: 2048 }),
  intervalMs: Type.Integer({ minimum: 100, maximum: 3_600_000, default: 5000 }),
  timeoutMs: Type.Integer({ minimum: 1, maximum: 60_000, default: 2000 }),
  healthyThreshold: Type.Integer({ minimum: 1, maximum: 100, default: 1 }),
  unhealthyThreshold: Type.Integer({ minimum: 1, maximum: 100, default: 2 })
}, { additionalProperties: false })

export const RateLimitSchema = Type.Object({
  max: Type.Integer({ minimum: 1 }),
  windowMs: Type.Integer({ minimum: 100, maximum: 86_400_000 * 7, default: 60_000 }),
  by: Type.Union([Type.Literal('ip'), Type.Literal('consumer'), Type.Literal('route')], { default: 'ip' }),
  banSeconds: Type.Optional(Type.Integer({
    minimum: 1,
    maximum: 604_800,
    description: 'once a key exceeds the limit it is refused (429) for this many seconds, whatever the window says (at most 7 days); omitted: no ban'
  }))
}, { additionalProperties: false })

export const CorsSchema = Type.Object({
  origins: Type.Array(Type.String({ pattern: '^(\\*|https?://[^/\\s]+)$' }), { minItems: 1 }),
  methods: Type.Array(HttpMethod, { default: ['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE'] }),
  headers: Type.Array(Type.String({ pattern: '^[A-Za-z0-9!#$%&\'*+.^`|~-]+$' }), { default: [] }),
  exposedHeaders: Type.Array(Type.String({ pattern: '^[A-Za-z0-9!#$%&\'*+.^`|~-]+$' }), { default: [] }),
  credentials: Type.Boolean({ default: false }),
  maxAge: Type.Integer({ minimum: 0, maximum: 86_400, default: 600 })
}, { additionalProperties: false })

export const AuthSchema = Type.Union([
  Type.Object({ type: Type.Literal('none') }, { additionalProperties: false }),
  Type.Object({
    type: Type.Literal('api-key'),
    header: Type.String({ pattern: '^[A-Za-z0-9-]+$', default: 'x-api-key' })
  }, { additionalProperties: false }),
  Type.Object({
    type: Type.Literal('basic'),
    realm: Type.String({ pattern: '^[^"\\\\\\r\\n]*$', maxLength: 200, default: 'gatehouse' })
  }, { additionalProperties: false }),
  Type.Object({
    type: Type.Literal('jwt'),
    secret: Type.Union([Type.String({ minLength: 32 }), Type.Null()], {
      default: null,
      description: 'HS256 secret, write-only: answers show null and secretSet. On PUT or PATCH, a jwt auth with neither secret nor jwksUrl keeps the stored secret'
    }),
    secretSet: Type.Optional(Type.Boolean({ readOnly: true, description: 'in answers: whether an HS256 secret is stored; ignored in requests' })),
    jwksUrl: Type.Union([Type.String({ pattern: '^https?://' }), Type.Null()], { default: null }),
    issuer: Type.Optional(Type.String({ minLength: 1 })),
    audience: Type.Optional(Type.String({ minLength: 1 })),
    consumerClaim: Type.String({ minLength: 1, default: 'sub' })
  }, { additionalProperties: false })
])

const HeaderName = Type.String({ pattern: '^[A-Za-z0-9!#$%&\'*+.^`|~-]+$', maxLength: 100 })

/** Route `cache` (docs/cache.md): every field optional, these are the defaults. */
export const CacheSchema = Type.Object({
  ttlSeconds: Type.Integer({ minimum: 0, maximum: 31_536_000, default: 60, description: 'freshness when the answer names none (s-maxage, max-age, Expires win)' }),
  statuses: Type.Array(Type.Integer({ minimum: 200, maximum: 599 }), { default: [200, 203, 204, 301, 404, 410], maxItems: 50, uniqueItems: true, description: 'statuses that may be stored' }),
  maxBodyBytes: Type.Integer({ minimum: 0, maximum: 1_073_741_824, default: 1_048_576, description: 'larger answers stream through uncached' }),
  vary: Type.Array(HeaderName, { default: [], maxItems: 20, description: 'request headers added to the key, besides those the answer\'s Vary names' }),
  staleWhileRevalidateSeconds: Type.Integer({ minimum: 0, maximum: 604_800, default: 0 }),
  staleIfErrorSeconds: Type.Integer({ minimum: 0, maximum: 604_800, default: 0 }),
  store: Type.Union([Type.Literal('memory'), Type.Literal('redis')], { default: 'memory', description: 'redis needs REDIS_URL; shared by every instance' })
}, { additionalProperties: false, examples: [{ ttlSeconds: 60, statuses: [200, 203, 204, 301, 404, 410], maxBodyBytes: 1_048_576, vary: [], staleWhileRevalidateSeconds: 0, staleIfErrorSeconds: 0, store: 'memory' }] })
export const UpstreamTlsSchema = Type.Object({
  verify: Type.Boolean({ default: true, description: 'verify the https target\'s certificate and name (false only for tests and trusted networks)' }),
  ca: Type.Union([Type.String({ pattern: '-----BEGIN CERTIFICATE-----', maxLength: 262_144 }), Type.Null()], {
    default: null,
    description: 'PEM CA certificate(s) trusted instead of the system CAs'
  }),
  serverName: Type.Union([Type.String({ pattern: '^[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?$', maxLength: 253 }), Type.Null()], {
    default: null,
    description: 'SNI sent and name verified; null: the target URL\'s host'
  })
}, { additionalProperties: false, examples: [{ verify: true, ca: null, serverName: null }] })

export const WebSocketOptionsSchema = Type.Object({
  idleTimeoutMs: Type.Integer({ minimum: 1000, maximum: 86_400_000, default: 300_000, description: 'a tunnel without traffic in either direction for this long is closed' })
}, { additionalProperties: false })

/** The fields a client may set; shared by create (with required ones) and patch. */
const routeFields = {
  name: Type.String({ pattern: NamePattern, maxLength: 100 }),
  path: Type.String({ pattern: '^/[^?#\\s\\\\]*$', maxLength: 2048 }),
  hosts: Type.Array(Type.String({ pattern: '^(\\*\\.)?[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?(\\.[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?)*$', maxLength: 253 }), { default: [], maxItems: 100 }),
  methods: Type.Array(HttpMethod, { default: [] }),
  stripPath: Type.Boolean({ default: false }),
  preserveHost: Type.Boolean({ default: false }),
  targets: Type.Array(TargetSchema, { minItems: 1, maxItems: 100 }),
  loadBalancing: Type.Union([Type.Literal('round-robin'), Type.Literal('least-connections')], { default: 'round-robin' }),
  healthCheck: Type.Union([HealthCheckSchema, Type.Null()], { default: null }),
  timeoutMs: Type.Integer({ minimum: 1, maximum: 3_600_000 }),
  retries: Type.Integer({ minimum: 0, maximum: 10, default: 1 }),
  bodyLimit: Type.Integer({ minimum: 0 }),
  auth: Type.Union([AuthSchema], { default: { type: 'none' } }),
  rateLimit: Type.Union([RateLimitSchema, Type.Null()], { default: null }),
  cors: Type.Union([CorsSchema, Type.Null()], { default: null }),
  ...transformFields,
  cache: Type.Union([CacheSchema, Type.Null()], { default: null }),
  enabled: Type.Boolean({ default: true }),
  httpsRedirect: Type.Boolean({ default: false, description: 'requests on the plain listener are answered 308 to the same URL on https (TLS_PORT unless 443)' }),
  upstreamTls: Type.Union([UpstreamTlsSchema, Type.Null()], { default: null, description: 'how https targets are verified; null: against the system CAs, by the URL\'s host' }),
  websocket: Type.Union([Type.Boolean(), WebSocketOptionsSchema], {
    default: false,
    description: 'WebSocket upgrades allowed on this route: true means {"idleTimeoutMs": 300000}',
    examples: [true, { idleTimeoutMs: 60000 }]
  })
}

/** POST and PUT body. timeoutMs and bodyLimit default to UPSTREAM_TIMEOUT_MS / BODY_LIMIT. */
export const RouteInputSchema = defaultsOptional(Type.Object({
  ...routeFields,
  timeoutMs: Type.Optional(routeFields.timeoutMs),
  bodyLimit: Type.Optional(routeFields.bodyLimit)
}, { additionalProperties: false, $id: 'RouteInput' }))
export type RouteInput = Static<typeof RouteInputSchema>

/** The field's schema without its own default (nested defaults stay). */
function withoutDefault<T extends TSchema> (schema: T): T {
  const { default: _default, ...rest } = schema
  return rest as T
}

/**
 * PATCH body: any subset; objects replace the stored value whole. Top-level defaults are
 * dropped, or a patch of one field would reset every omitted field to its default.
 */
export const RoutePatchSchema = Type.Partial(
  Type.Object(Object.fromEntries(Object.entries(routeFields).map(([key, schema]) => [key, withoutDefault(schema)])) as typeof routeFields),
  { additionalProperties: false, $id: 'RoutePatch' }
)
export type RoutePatch = Static<typeof RoutePatchSchema>

/**
 * One route in the /admin/config document: what GET /admin/config exports, so a document
 * round-trips. `id` is kept for a route whose name already exists and used for a new one;
 * `createdAt` and `updatedAt` are informational and ignored on import.
 */
export const RouteConfigItemSchema = defaultsOptional(Type.Object({
  id: Type.Optional(Type.String({ pattern: '^[A-Za-z0-9._:-]+$', maxLength: 200 })),
  ...RouteInputSchema.properties,
  createdAt: Type.Optional(Type.String()),
  updatedAt: Type.Optional(Type.String())
}, { additionalProperties: false }))
export type RouteConfigItem = Static<typeof RouteConfigItemSchema>

export const RouteSchema = Type.Object({
  id: Type.String(),
  ...routeFields,
  createdAt: Type.String({ format: 'date-time' }),
  updatedAt: Type.String({ format: 'date-time' })
}, { $id: 'Route' })
export type Route = Static<typeof RouteSchema>
export type RouteTarget = Static<typeof TargetSchema>
export type RouteAuth = Static<typeof AuthSchema>
export type RouteRateLimit = Static<typeof RateLimitSchema>
export type RouteCors = Static<typeof CorsSchema>
export type RouteCache = Static<typeof CacheSchema>
export type RouteHealthCheck = Static<typeof HealthCheckSchema>
export type RouteUpstreamTls = Static<typeof UpstreamTlsSchema>
