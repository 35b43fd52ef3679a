import { Counter, Gauge, type Registry } from 'prom-client'
import type { Target } from './upstream-target.js'

/**
 * Target gauges are read when /metrics is scraped (collect), so the request path only
 * keeps the plain fields it keeps anyway.
 */
export function registerUpstreamMetrics (registry: Registry, targets: () => Iterable<Target>, retries: () => number): void {
  const registers = [registry]
  const perTarget = (name: string, help: string, value: (target: Target) => number): void => {
    // eslint-disable-next-line no-new -- prom-client registers the metric when it is built
    new Gauge({
      name,
      help,
      labelNames: ['target'],
      registers,
      collect () {
        this.reset()
        for (const target of targets()) this.set({ target: target.url }, value(target))
      }
    })
  }
  perTarget('gatehouse_upstream_target_healthy', '1 when the target takes requests, 0 while ejected or failing its active check', (target) => target.healthy ? 1 : 0)
  perTarget('gatehouse_upstream_target_in_flight', 'Requests sent to the target and not yet finished', (target) => target.inFlight)
  perTarget('gatehouse_upstream_target_ejected', '1 while the target is ejected by passive health checks (including its half-open trial)', (target) => target.ejectedUntil === null ? 0 : 1)
  perTarget('gatehouse_upstream_target_consecutive_failures', 'Failures in a row (connect errors, resets, timeouts, 5xx)', (target) => target.consecutiveFailures)
  perTarget('gatehouse_upstream_target_active_healthy', 'Active health check verdict: 1 up, 0 down, -1 not probed', (target) => target.activeHealthy === null ? -1 : target.activeHealthy ? 1 : 0)
  // eslint-disable-next-line no-new -- prom-client registers the metric when it is built
  new Counter({
    name: 'gatehouse_upstream_target_ejections_total',
    help: 'Passive-health ejections of the target',
    labelNames: ['target'],
    registers,
    collect () {
      this.reset()
      for (const target of targets()) this.inc({ target: target.url }, target.ejectionsTotal)
    }
  })
  // eslint-disable-next-line no-new -- prom-client registers the metric when it is built
  new Counter({
    name: 'gatehouse_upstream_retries_total',
    help: 'Requests sent again to another target after a connection failure',
    registers,
    collect () {
      this.reset()
      this.inc(retries())
    }
  })
}
