import fp from 'fastify-plugin'
import type { FastifyPluginAsync } from 'fastify'
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client'

/**
 * Prometheus metrics of this instance. The registry is the app's own (never prom-client's
 * global one), so several apps in one process (tests) do not share or clash; other plugins
 * add their metrics to `app.metrics.registry`.
 */
export interface Metrics {
  readonly registry: Registry
}

declare module 'fastify' {
  interface FastifyInstance {
    metrics: Metrics
  }
}

const metricsPlugin: FastifyPluginAsync = async (app) => {
  const registry = new Registry()
  collectDefaultMetrics({ register: registry })
  app.decorate('metrics', { registry })
}

export default fp(metricsPlugin, { name: 'metrics' })

// Re-exported so plugins adding metrics use the same prom-client instance as the registry.
export { Counter, Gauge, Histogram }
