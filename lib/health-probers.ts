import type { Route, RouteHealthCheck } from '../schemas/route.js'
import { ActiveHealthCheck, type HealthFlip } from './health-check.js'
import type { UpstreamTargets } from './upstream-targets.js'
import { upstreamTlsOf } from './upstream-tls.js'

/**
 * The active health checks: one prober per target URL per process. When routes sharing a URL
 * configure different checks, the first enabled route (creation order) with a healthCheck decides.
 */
export class HealthProbers {
  private readonly probers = new Map<string, { key: string, check: ActiveHealthCheck }>()

  constructor (private readonly targets: UpstreamTargets, private readonly onFlip: HealthFlip) {}

  get (url: string): ActiveHealthCheck | undefined {
    return this.probers.get(url)?.check
  }

  sync (routes: readonly Route[]): void {
    const wanted = new Map<string, { config: RouteHealthCheck, route: Route }>()
    for (const route of routes) {
      if (!route.enabled || route.healthCheck === null) continue
      for (const { url } of route.targets) {
        if (!wanted.has(url)) wanted.set(url, { config: route.healthCheck, route })
      }
    }
    for (const [url, running] of this.probers) {
      const config = wanted.get(url)?.config
      if (config === undefined || JSON.stringify(config) !== running.key) {
        this.probers.delete(url)
        void running.check.stop()
      }
    }
    for (const [url, { config, route }] of wanted) {
      if (this.probers.has(url)) continue
      const check = new ActiveHealthCheck(this.targets.for(url, upstreamTlsOf(route, url)), config, this.onFlip)
      this.probers.set(url, { key: JSON.stringify(config), check })
      check.start()
    }
  }

  async stop (): Promise<void> {
    await Promise.all([...this.probers.values()].map(({ check }) => check.stop()))
    this.probers.clear()
  }
}
