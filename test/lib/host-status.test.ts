import t from 'tap'
import { hostStatus } from '../../lib/host-status.js'
import type { ProcessStatus } from '../../schemas/status.js'

function worker (n: number, targets: ProcessStatus['targets']): ProcessStatus {
  return {
    version: '1.0.0',
    instanceId: `host-${n}-abc`,
    uptimeSeconds: 10 * n,
    routes: 2,
    requests: { total: 100 * n, byStatusClass: { '1xx': 0, '2xx': 90 * n, '3xx': 0, '4xx': 10 * n, '5xx': 0 } },
    activeConnections: n,
    maxConnections: 10_000,
    bytesIn: 1000 * n,
    bytesOut: 2000 * n,
    rateLimited: 3 * n,
    blocked: n,
    targets,
    audit: { queueDepth: n, dropped: 0 },
    redis: { configured: false, up: false, since: null, consecutiveFailures: 0, lastError: null, bypassed: 0 },
    cache: { entries: n, bytes: 100 * n, hits: 0, misses: 0, stale: 0, bypass: 0, revalidated: 0 },
    logSinks: [],
    egress: { activeTunnels: n, activeRequests: 0, bytesIn: 10 * n, bytesOut: 20 * n, allowed: 5 * n, blocked: n }
  }
}

t.test('sums counters over the workers, keeps the host\'s identity and lists each worker\'s own numbers', async (t) => {
  const one = worker(1, [])
  const two = worker(2, [])
  const host = hostStatus(one, {
    answers: [{ workerId: 1, pid: 101, value: one }, { workerId: 2, pid: 102, value: two }],
    unresponsive: [{ workerId: 3, pid: 103 }],
    primary: { pid: 100, uptimeSeconds: 77 }
  }, 'host-100')
  t.same(host, {
    version: '1.0.0',
    instanceId: 'host-100',
    uptimeSeconds: 77,
    routes: 2,
    requests: { total: 300, byStatusClass: { '1xx': 0, '2xx': 270, '3xx': 0, '4xx': 30, '5xx': 0 } },
    activeConnections: 3,
    maxConnections: 20_000,
    bytesIn: 3000,
    bytesOut: 6000,
    rateLimited: 9,
    blocked: 3,
    targets: [],
    audit: { queueDepth: 3, dropped: 0 },
    redis: one.redis,
    cache: { entries: 3, bytes: 300, hits: 0, misses: 0, stale: 0, bypass: 0, revalidated: 0 },
    logSinks: [],
    egress: { activeTunnels: 3, activeRequests: 0, bytesIn: 30, bytesOut: 60, allowed: 15, blocked: 3 },
    workers: [
      { workerId: 1, pid: 101, instanceId: 'host-1-abc', uptimeSeconds: 10, routes: 2, requests: one.requests, activeConnections: 1, maxConnections: 10_000, bytesIn: 1000, bytesOut: 2000, rateLimited: 3, blocked: 1, audit: one.audit, redis: one.redis, cache: one.cache, logSinks: [], egress: one.egress },
      { workerId: 2, pid: 102, instanceId: 'host-2-abc', uptimeSeconds: 20, routes: 2, requests: two.requests, activeConnections: 2, maxConnections: 10_000, bytesIn: 2000, bytesOut: 4000, rateLimited: 6, blocked: 2, audit: two.audit, redis: two.redis, cache: two.cache, logSinks: [], egress: two.egress }
    ],
    unresponsiveWorkers: [{ workerId: 3, pid: 103 }]
  })
})

t.test('a numeric field added to the status later is summed at any depth; other values are the answering worker\'s', async (t) => {
  const one = { ...worker(1, []), redis: { up: true, failures: 2 } } as unknown as ProcessStatus
  const two = { ...worker(2, []), redis: { up: false, failures: 5 } } as unknown as ProcessStatus
  const host = hostStatus(one, { answers: [{ workerId: 1, pid: 1, value: one }, { workerId: 2, pid: 2, value: two }], unresponsive: [], primary: { pid: 9, uptimeSeconds: 1 } }, 'h') as unknown as { redis: unknown }
  t.same(host.redis, { up: true, failures: 7 })
})

t.test('targets merge by route and URL: in-flight summed, healthy only if every worker says so, latest ejection, worst failure streak', async (t) => {
  const a = { routeId: 'r1', url: 'http://a', healthy: true, inFlight: 2, consecutiveFailures: 0, ejectedUntil: null, ejectionsTotal: 1, activeHealthy: null }
  const b = { routeId: 'r1', url: 'http://b', healthy: true, inFlight: 1 }
  const one = worker(1, [a, b])
  const two = worker(2, [
    { ...a, healthy: false, inFlight: 3, consecutiveFailures: 4, ejectedUntil: '2030-01-01T00:00:05.000Z', ejectionsTotal: 2, activeHealthy: false },
    b,
    { routeId: 'r2', url: 'http://c', healthy: true, inFlight: 0 }
  ])
  const host = hostStatus(one, { answers: [{ workerId: 1, pid: 1, value: one }, { workerId: 2, pid: 2, value: two }], unresponsive: [], primary: { pid: 9, uptimeSeconds: 1 } }, 'h')
  t.same(host.targets, [
    { routeId: 'r1', url: 'http://a', healthy: false, inFlight: 5, consecutiveFailures: 4, ejectedUntil: '2030-01-01T00:00:05.000Z', ejectionsTotal: 3, activeHealthy: false },
    { routeId: 'r1', url: 'http://b', healthy: true, inFlight: 2 },
    { routeId: 'r2', url: 'http://c', healthy: true, inFlight: 0 }
  ])
})
