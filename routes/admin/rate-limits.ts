import { Type } from '@sinclair/typebox'
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { GatewayError } from '../../lib/errors.js'
import { clientKey, parseIp } from '../../lib/ip.js'
import { ErrorSchema } from '../../schemas/common.js'

const tags = ['rate-limits']
const security = [{ bearerAuth: [] }]

const IpParamsSchema = Type.Object({
  ip: Type.String({ minLength: 2, maxLength: 64, description: 'a client IPv4 or IPv6 address' })
})

const CounterSchema = Type.Object({
  routeId: Type.Union([Type.String(), Type.Null()]),
  routeName: Type.Union([Type.String(), Type.Null()]),
  scope: Type.Union([Type.Literal('ip'), Type.Literal('route'), Type.Literal('gateway')], {
    description: 'ip: this client\'s counter on the route; route: one counter for all clients of the route; gateway: RATE_LIMIT_MAX'
  }),
  key: Type.String(),
  limit: Type.Integer(),
  windowMs: Type.Integer(),
  current: Type.Integer({ description: 'requests counted in the sliding window' }),
  remaining: Type.Integer(),
  resetSeconds: Type.Integer(),
  banSeconds: Type.Union([Type.Integer(), Type.Null()], { description: 'the route\'s rateLimit.banSeconds; null: exceeding this limit bans nobody' }),
  bannedUntil: Type.Union([Type.String({ format: 'date-time' }), Type.Null()], { description: 'when the ban on this counter ends; null: not banned' })
})

const CountersSchema = Type.Object({
  ip: Type.String(),
  /** IPv6 clients are counted by their /64. */
  subject: Type.String(),
  items: Type.Array(CounterSchema),
  total: Type.Integer()
})

/** /admin/rate-limits/:ip — docs/policies.md "Admin". */
const rateLimitsAdmin: FastifyPluginAsyncTypebox = async (app) => {
  function checkedIp (ip: string): string {
    const parsed = parseIp(ip)
    if (parsed === null) throw new GatewayError(400, 'GW_VALIDATION', `params/ip must be an IPv4 or IPv6 address, got "${ip}"`)
    return ip
  }

  app.get('/:ip', {
    schema: { tags, security, summary: 'Rate-limit counters and bans of a client IP on every route that limits it', params: IpParamsSchema, response: { 200: CountersSchema, 400: ErrorSchema, 401: ErrorSchema, 503: ErrorSchema } }
  }, async (request) => {
    const ip = checkedIp(request.params.ip)
    const items = await app.rateLimits.counters(ip)
    return { ip, subject: clientKey(ip), items, total: items.length }
  })

  app.delete('/:ip', {
    schema: { tags, security, summary: 'Reset the rate-limit counters of a client IP and lift its bans', params: IpParamsSchema, response: { 204: Type.Null(), 400: ErrorSchema, 401: ErrorSchema, 503: ErrorSchema } }
  }, async (request, reply) => {
    const ip = checkedIp(request.params.ip)
    const removed = await app.rateLimits.reset(ip)
    app.audit.recordAdmin(request, { action: 'delete', resource: 'rate-limit', resourceId: clientKey(ip), before: removed, after: null })
    return reply.code(204).send(null)
  })
}

export default rateLimitsAdmin
