import { hostname } from 'node:os'
import cluster from 'node:cluster'
import fp from 'fastify-plugin'
import type { FastifyPluginAsync } from 'fastify'
import { OtlpExporter } from '../lib/otlp-exporter.js'
import { Tracer } from '../lib/tracer.js'
import { version } from '../lib/version.js'

declare module 'fastify' {
  interface FastifyInstance {
    tracing: Tracer
  }
}

export interface TracingOptions {
  /** Span batches leave at most this long after their first span (default 1000 ms); tests shorten it. */
  exportIntervalMs?: number
}

/**
 * W3C trace context on every proxied request, and with OTEL_EXPORTER_OTLP_ENDPOINT the
 * export of server and client spans (docs/logging.md "Tracing"). The exporter's queue is
 * drained at shutdown within SHUTDOWN_GRACE_MS, like the log sinks.
 */
const tracingPlugin: FastifyPluginAsync<TracingOptions> = async (app, options) => {
  const { otlpEndpoint, tracesSamplerRatio, otelServiceName, shutdownGraceMs } = app.config
  const exporter = otlpEndpoint === null
    ? null
    : new OtlpExporter({
      endpoint: otlpEndpoint,
      serviceName: otelServiceName,
      serviceVersion: version,
      instance: cluster.isWorker ? `${hostname()}-w${cluster.worker?.id ?? 0}` : hostname(),
      maxWaitMs: options.exportIntervalMs
    })
  app.decorate('tracing', new Tracer(tracesSamplerRatio, exporter))

  if (exporter === null) return
  const { counter, gauge } = app.metrics
  counter('gatehouse_trace_spans_exported_total', 'Spans sent to the OTLP endpoint', () => exporter.queue.sent)
  counter('gatehouse_trace_spans_dropped_total', 'Spans dropped: the export queue was full, the endpoint refused them, or retries ran out', () => exporter.queue.dropped)
  gauge('gatehouse_trace_spans_queued', 'Spans waiting to be exported', () => exporter.queue.queued)
  let closeStartedAt = 0
  app.addHook('preClose', async () => { closeStartedAt = Date.now() })
  app.addHook('onClose', async () => {
    await exporter.close(Math.max((closeStartedAt || Date.now()) + shutdownGraceMs, Date.now() + 1000))
  })
}

export default fp(tracingPlugin, { name: 'tracing', dependencies: ['metrics'] })
