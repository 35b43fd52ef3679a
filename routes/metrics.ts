import type { FastifyInstance } from 'fastify'
import { ErrorSchema } from '../schemas/common.js'

/**
 * GET /metrics: Prometheus text format, behind the admin token (docs/observability.md "GET /metrics"). A
 * reserved endpoint on the root, so it is answered here and never reaches the proxy, even
 * when a route covers "/".
 */
export default async function metricsRoute (app: FastifyInstance): Promise<void> {
  app.get('/metrics', {
    onRequest: app.requireAdmin,
    schema: {
      tags: ['observability'],
      summary: 'Prometheus metrics of this instance',
      description: 'Proxied requests and latency by route name, method and status class; upstream errors by kind; ' +
        'rate-limited and blocked requests; in-flight requests and open connections; audit queue depth and dropped rows; ' +
        'process and Node.js runtime metrics. Each worker process answers for itself.',
      security: [{ bearerAuth: [] }],
      response: {
        200: { description: 'Prometheus text exposition format 0.0.4', content: { 'text/plain': { schema: { type: 'string' } } } },
        401: ErrorSchema
      }
    }
  }, async (_request, reply) => {
    const body = await app.metrics.registry.metrics()
    return reply.type(app.metrics.registry.contentType).send(body)
  })
}
