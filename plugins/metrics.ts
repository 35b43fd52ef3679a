import fp from 'fastify-plugin'
import type { FastifyPluginAsync } from 'fastify'
import { Registry, collectDefaultMetrics } from 'prom-client'
import type { Outcome } from '../lib/gateway-context.js'

/**
 * Prometheus metrics of this instance, served by GET /metrics (routes/metrics.ts).
 *
 * The registry is the app's own, never prom-client's global one, so several apps in one
 * process (tests) neither share nor clash; other plugins add their metrics to it.
 *
 * The per-request series are kept in plain numbers here and turned into Prometheus
 * samples only when scraped: prom-client's own Counter/Histogram hash the label object
 * on every call, which the proxied hot path should not pay.
 */
export interface Metrics {
  readonly registry: Registry
  /** Totals of proxied traffic since start, for /admin/status. */
  readonly traffic: Readonly<TrafficTotals>
  /** One finished proxied request (or one the HTTP parser refused: route null, durationMs -1 = not measured). */
  recordRequest: (routeName: string | null, method: string, status: number, durationMs: number, outcome: Outcome, bytesIn: number, bytesOut: number) => void
  requestStarted: () => void
  requestEnded: () => void
  connectionOpened: () => void
  connectionClosed: () => void
  /** Drops the series of routes that no longer exist, so deleted routes do not grow the label set. */
  retainRoutes: (names: Iterable<string>) => void
  /** Registers a sample read from `read` at scrape time. */
  gauge: (name: string, help: string, read: () => number) => void
  counter: (name: string, help: string, read: () => number) => void
}

export interface TrafficTotals {
  requests: number
  byStatusClass: { '1xx': number, '2xx': number, '3xx': number, '4xx': number, '5xx': number }
  bytesIn: number
  bytesOut: number
  rateLimited: number
  blocked: number
  inFlight: number
  activeConnections: number
  upstreamErrors: { connection: number, timeout: number, no_healthy_target: number }
}

declare module 'fastify' {
  interface FastifyInstance {
    metrics: Metrics
  }
}

/**
 * Latency buckets in seconds: a gateway adds little, upstreams add the rest. The sub-millisecond
 * ones resolve the gateway's own overhead (and answers it makes itself), often below 1 ms.
 */
export const DURATION_BUCKETS = [0.0001, 0.00025, 0.0005, 0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60]

/** Label of requests that matched no route (names are [a-z0-9][a-z0-9_-]*, so this cannot clash). */
export const NO_ROUTE_LABEL = '(none)'

/** Bounded method label: the methods the gateway proxies, everything else is OTHER. */
const METHODS = ['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS', 'OTHER']
const STATUS_CLASSES = ['1xx', '2xx', '3xx', '4xx', '5xx'] as const

function methodIndex (method: string): number {
  switch (method) {
    case 'GET': return 0
    case 'HEAD': return 1
    case 'POST': return 2
    case 'PUT': return 3
    case 'PATCH': return 4
    case 'DELETE': return 5
    case 'OPTIONS': return 6
    default: return 7
  }
}

/** Index into STATUS_CLASSES; anything outside 100–599 counts as 5xx. */
function statusClassIndex (status: number): number {
  const index = Math.floor(status / 100) - 1
  return index >= 0 && index <= 4 ? index : 4
}

interface Series {
  /** Requests (gatehouse_requests_total). */
  requests: number
  /** Requests with a measured duration (the histogram's _count). */
  count: number
  /** Seconds. */
  sum: number
  /** Non-cumulative: buckets[i] counts observations in (bounds[i-1], bounds[i]]; the last is +Inf. */
  buckets: number[]
}

export interface SampleValue { value: number, labels: Record<string, string | number>, metricName?: string }
interface CollectedMetric { name: string, help: string, type: string, values: SampleValue[], aggregator: string }

/** A metric object prom-client's Registry accepts, computed at scrape time. */
export function collected (name: string, help: string, type: 'counter' | 'gauge' | 'histogram', values: () => SampleValue[]) {
  return {
    name,
    help,
    type,
    aggregator: 'sum',
    get: async (): Promise<CollectedMetric> => ({ name, help, type, values: values(), aggregator: 'sum' }),
    reset () {}
  }
}

const metricsPlugin: FastifyPluginAsync = async (app) => {
  const registry = new Registry()
  collectDefaultMetrics({ register: registry })

  const traffic: TrafficTotals = {
    requests: 0,
    byStatusClass: { '1xx': 0, '2xx': 0, '3xx': 0, '4xx': 0, '5xx': 0 },
    bytesIn: 0,
    bytesOut: 0,
    rateLimited: 0,
    blocked: 0,
    inFlight: 0,
    activeConnections: 0,
    upstreamErrors: { connection: 0, timeout: 0, no_healthy_target: 0 }
  }
  /** route label → (method index × 5 + status class index) → series. */
  const series = new Map<string, Array<Series | undefined>>()

  function seriesFor (route: string, method: number, statusClass: number): Series {
    let byRoute = series.get(route)
    if (byRoute === undefined) {
      byRoute = new Array<Series | undefined>(METHODS.length * STATUS_CLASSES.length)
      series.set(route, byRoute)
    }
    const slot = method * STATUS_CLASSES.length + statusClass
    let found = byRoute[slot]
    if (found === undefined) {
      found = { requests: 0, count: 0, sum: 0, buckets: new Array<number>(DURATION_BUCKETS.length + 1).fill(0) }
      byRoute[slot] = found
    }
    return found
  }

  function recordRequest (routeName: string | null, method: string, status: number, durationMs: number, outcome: Outcome, bytesIn: number, bytesOut: number): void {
    const statusClass = statusClassIndex(status)
    const entry = seriesFor(routeName ?? NO_ROUTE_LABEL, methodIndex(method), statusClass)
    entry.requests++
    if (durationMs >= 0) {
      const seconds = durationMs / 1000
      entry.count++
      entry.sum += seconds
      let bucket = 0
      while (bucket < DURATION_BUCKETS.length && seconds > DURATION_BUCKETS[bucket]) bucket++
      entry.buckets[bucket]++
    }

    traffic.requests++
    traffic.byStatusClass[STATUS_CLASSES[statusClass]]++
    traffic.bytesIn += bytesIn
    traffic.bytesOut += bytesOut
    if (outcome === 'rate_limited') traffic.rateLimited++
    else if (outcome === 'blocked') traffic.blocked++
    else if (outcome === 'upstream_error') {
      if (status === 504) traffic.upstreamErrors.timeout++
      else if (status === 503) traffic.upstreamErrors.no_healthy_target++
      else traffic.upstreamErrors.connection++
    }
  }

  function forEachSeries (each: (labels: { route: string, method: string, status_class: string }, entry: Series) => void): void {
    for (const [route, byRoute] of series) {
      for (let slot = 0; slot < byRoute.length; slot++) {
        const entry = byRoute[slot]
        if (entry === undefined) continue
        const method = METHODS[Math.floor(slot / STATUS_CLASSES.length)]
        each({ route, method, status_class: STATUS_CLASSES[slot % STATUS_CLASSES.length] }, entry)
      }
    }
  }

  registry.registerMetric(collected('gatehouse_requests_total',
    'Proxied requests by route name, method and status class (route "(none)": matched no route or refused before routing)',
    'counter', () => {
      const values: SampleValue[] = []
      forEachSeries((labels, entry) => { values.push({ value: entry.requests, labels }) })
      return values
    }) as never)
  registry.registerMetric(collected('gatehouse_request_duration_seconds',
    'Time from request arrival to the end of the response, proxied requests',
    'histogram', () => {
      const values: SampleValue[] = []
      forEachSeries((labels, entry) => {
        if (entry.count === 0) return
        let cumulative = 0
        for (let i = 0; i < DURATION_BUCKETS.length; i++) {
          cumulative += entry.buckets[i]
          values.push({ metricName: 'gatehouse_request_duration_seconds_bucket', value: cumulative, labels: { ...labels, le: DURATION_BUCKETS[i] } })
        }
        values.push({ metricName: 'gatehouse_request_duration_seconds_bucket', value: entry.count, labels: { ...labels, le: '+Inf' } })
        values.push({ metricName: 'gatehouse_request_duration_seconds_sum', value: entry.sum, labels })
        values.push({ metricName: 'gatehouse_request_duration_seconds_count', value: entry.count, labels })
      })
      return values
    }) as never)
  registry.registerMetric(collected('gatehouse_upstream_errors_total',
    'Proxied requests that failed upstream, by kind: connection (502), timeout (504), no_healthy_target (503)',
    'counter', () => Object.entries(traffic.upstreamErrors).map(([kind, value]) => ({ value, labels: { kind } }))) as never)

  function single (type: 'counter' | 'gauge') {
    return (name: string, help: string, read: () => number): void => {
      registry.registerMetric(collected(name, help, type, () => [{ value: read(), labels: {} }]) as never)
    }
  }
  const gauge = single('gauge')
  const counter = single('counter')
  counter('gatehouse_rate_limited_total', 'Proxied requests refused with 429 by a rate limit', () => traffic.rateLimited)
  counter('gatehouse_blocked_total', 'Proxied requests refused as blocked: deny/allow filters, malformed paths and headers, client timeouts', () => traffic.blocked)
  gauge('gatehouse_requests_in_flight', 'Requests received and not yet answered (all endpoints)', () => traffic.inFlight)
  gauge('gatehouse_active_connections', 'Open client connections', () => traffic.activeConnections)
  counter('gatehouse_bytes_in_total', 'Request body bytes received on proxied requests', () => traffic.bytesIn)
  counter('gatehouse_bytes_out_total', 'Bytes written to clients on proxied requests, headers included', () => traffic.bytesOut)

  const metrics: Metrics = {
    registry,
    traffic,
    recordRequest,
    requestStarted () { traffic.inFlight++ },
    requestEnded () { traffic.inFlight-- },
    connectionOpened () { traffic.activeConnections++ },
    connectionClosed () { traffic.activeConnections-- },
    retainRoutes (names) {
      const keep = new Set(names)
      keep.add(NO_ROUTE_LABEL)
      for (const route of series.keys()) if (!keep.has(route)) series.delete(route)
    },
    gauge,
    counter
  }
  app.decorate('metrics', metrics)
}

export default fp(metricsPlugin, { name: 'metrics' })
