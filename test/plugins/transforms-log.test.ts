/* eslint-disable no-template-curly-in-string -- ${…} are the gateway's template variables */
import t from 'tap'
import type { FastifyRequest } from 'fastify'
import { compileRequestTransforms, compileResponseTransforms } from '../../policies/transforms/stage.js'
import type { Route } from '../../schemas/route.js'

// The drop-and-log path of a header rule, at the stage itself: what is logged, and how often.
t.test('a header dropped after substitution is logged with the route, direction and names, at most every 10 s', async (t) => {
  const warnings: Array<{ fields: Record<string, unknown>, message: string }> = []
  const request = {
    id: 'rid',
    protocol: 'http',
    gateway: { clientIp: '127.0.0.1', consumer: { id: null, name: 'x\r\ny', rateLimit: null } },
    log: { warn: (fields: Record<string, unknown>, message: string) => { warnings.push({ fields, message }) } }
  } as unknown as FastifyRequest
  const route = {
    name: 'orders',
    requestHeaders: { remove: [], set: { 'x-user': '${consumerName}' }, add: { 'x-also': 'id ${consumerName}' } },
    responseHeaders: { remove: [], set: { 'x-user': '${consumerName}' }, add: {} }
  } as unknown as Route
  const requestStage = compileRequestTransforms(route)
  const responseStage = compileResponseTransforms(route)
  for (let i = 0; i < 3; i++) {
    const upstream = { path: '/x', headers: ['accept', '*/*'] }
    t.equal(requestStage?.onUpstreamRequest?.(request, upstream), null, 'the request goes on')
    t.same(upstream.headers, ['accept', '*/*'], 'nothing unsafe is sent')
    const head: Record<string, string | undefined> = {}
    responseStage?.onResponseHead?.(request, head)
    t.same(head, {})
  }
  t.equal(warnings.length, 2, 'one warning per direction in the interval, not one per request')
  t.match(warnings[0], { fields: { route: 'orders', direction: 'request', headers: ['x-user', 'x-also'], droppedSinceLastLog: 1 }, message: /header rule dropped/ })
  t.match(warnings[1], { fields: { route: 'orders', direction: 'response', headers: ['x-user'] } })
})
