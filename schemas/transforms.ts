import { Type, type Static } from '@sinclair/typebox'

/**
 * Route fields of docs/transforms.md. Header names, values and path templates are checked
 * further by lib/header-rules.ts and lib/path-rewrite.ts (400 naming the field): a JSON schema
 * cannot say "an HTTP token that is not a protected name" or "a template that stays under the base".
 */

/* eslint-disable no-template-curly-in-string -- ${…} are the documented variables, not JavaScript */
const HeaderValues = Type.Record(Type.String({ maxLength: 256 }), Type.String({ maxLength: 4096 }), {
  default: {},
  maxProperties: 100,
  description: 'header name → value; values may use ${clientIp}, ${requestId}, ${routeName}, ${consumerId}, ${consumerName}'
})

export const HeaderRulesSchema = Type.Object({
  remove: Type.Array(Type.String({ maxLength: 256 }), { default: [], maxItems: 100, description: 'header names removed first' }),
  set: HeaderValues,
  add: HeaderValues
}, {
  additionalProperties: false,
  description: 'applied in order: remove, then set (replace or create), then add (append another value)',
  examples: [{ remove: ['x-debug'], set: { 'x-env': 'prod', 'x-client': '${clientIp}' }, add: { 'x-seen-by': 'gatehouse' } }]
})

/* eslint-enable no-template-curly-in-string */

export const RewriteSchema = Type.Object({
  from: Type.String({ minLength: 1, maxLength: 2048, description: 'path template: literal segments, :name (one segment), :name* (the rest, last)' }),
  to: Type.String({ minLength: 1, maxLength: 2048, description: 'path template using the names of `from`' })
}, {
  additionalProperties: false,
  description: 'applied to the forwarded path after stripPath; a path `from` does not match is forwarded unchanged',
  examples: [{ from: '/v1/:rest*', to: '/v2/:rest*' }]
})

export const COMPRESSION_ENCODINGS = ['br', 'gzip', 'zstd'] as const

export const CompressionSchema = Type.Object({
  encodings: Type.Array(Type.Union(COMPRESSION_ENCODINGS.map((encoding) => Type.Literal(encoding))), {
    minItems: 1,
    maxItems: 3,
    uniqueItems: true,
    default: ['br', 'gzip'],
    description: 'in order of preference (it breaks q-value ties); zstd only on a Node that has it'
  }),
  minBytes: Type.Integer({ minimum: 0, default: 1024, description: 'answers declaring a smaller Content-Length are sent as they are' }),
  types: Type.Array(Type.String({ pattern: '^[A-Za-z0-9!#$%&\'*+.^_`|~-]+/(\\*|[A-Za-z0-9!#$%&\'*+.^_`|~-]+)$', maxLength: 255 }), {
    minItems: 1,
    maxItems: 100,
    default: ['text/*', 'application/json', 'application/javascript', 'application/xml', 'image/svg+xml'],
    description: 'media types compressed (type/* for a whole type); text/event-stream never is'
  })
}, {
  additionalProperties: false,
  examples: [{ encodings: ['br', 'gzip'], minBytes: 1024, types: ['text/*', 'application/json'] }]
})

export type HeaderRules = Static<typeof HeaderRulesSchema>
export type RouteRewrite = Static<typeof RewriteSchema>
export type RouteCompression = Static<typeof CompressionSchema>
export type CompressionEncoding = typeof COMPRESSION_ENCODINGS[number]

/**
 * The route fields, as schemas/route.ts spreads them into a route. Optional in the type (their
 * defaults are filled in on every write, and repositories/routes.ts fills them for routes stored
 * before they existed), so code built against older routes keeps compiling.
 */
export const transformFields = {
  requestHeaders: Type.Optional(Type.Union([HeaderRulesSchema, Type.Null()], { default: null, description: 'changes to the request headers sent upstream (after auth)' })),
  responseHeaders: Type.Optional(Type.Union([HeaderRulesSchema, Type.Null()], { default: null, description: 'changes to the answer\'s headers (before CORS)' })),
  rewrite: Type.Optional(Type.Union([RewriteSchema, Type.Null()], { default: null })),
  compression: Type.Optional(Type.Union([CompressionSchema, Type.Null()], { default: null, description: 'compress answers as they stream (gzip, br)' })),
  securityHeaders: Type.Optional(Type.Boolean({ default: false, description: 'add X-Content-Type-Options, X-Frame-Options, Referrer-Policy and, on HTTPS, Strict-Transport-Security unless the upstream sent them' }))
}

/** What a route stored before these fields existed reads as. */
export const TRANSFORM_DEFAULTS = { requestHeaders: null, responseHeaders: null, rewrite: null, compression: null, securityHeaders: false } as const
