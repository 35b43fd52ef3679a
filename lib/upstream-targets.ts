import type { Route } from '../schemas/route.js'
import type { PassiveHealthOptions } from './health-check.js'
import { UpstreamPools } from './upstream-pools.js'
import { Target } from './upstream-target.js'
import { targetKey, type UpstreamTls, upstreamTlsOf } from './upstream-tls.js'

/**
 * Every target some route uses, shared by URL (and by TLS settings for https targets of routes
 * with upstreamTls), so their health and in-flight counts are per upstream, not per route.
 */
export class UpstreamTargets {
  private readonly targets = new Map<string, Target>()
  /** The pool key of each target, to close pools no target uses any more. */
  private readonly poolKeys = new WeakMap<Target, string>()

  constructor (private readonly pools: UpstreamPools, private readonly passive: PassiveHealthOptions) {}

  for (url: string, tls: UpstreamTls | null = null): Target {
    const key = targetKey(url, tls)
    let target = this.targets.get(key)
    if (target === undefined) {
      const origin = new URL(url).origin
      target = new Target(url, this.pools.get(origin, tls), this.passive)
      this.targets.set(key, target)
      this.poolKeys.set(target, UpstreamPools.keyOf(origin, tls))
    }
    return target
  }

  /** The target of this route's `url`, if it exists. */
  ofRoute (route: Route, url: string): Target | undefined {
    return this.targets.get(targetKey(url, upstreamTlsOf(route, url)))
  }

  /** By key, or else the first target with this URL (whatever its TLS settings). */
  find (url: string): Target | undefined {
    return this.targets.get(url) ?? [...this.targets.values()].find((target) => target.url === url)
  }

  values (): Iterable<Target> {
    return this.targets.values()
  }

  /** Create the targets the routes use, forget the others and close their pools. */
  sync (routes: readonly Route[]): void {
    const wanted = new Set<string>()
    for (const route of routes) {
      for (const { url } of route.targets) {
        const tls = upstreamTlsOf(route, url)
        wanted.add(targetKey(url, tls))
        this.for(url, tls)
      }
    }
    for (const key of this.targets.keys()) if (!wanted.has(key)) this.targets.delete(key)
    const livePools = new Set<string>()
    for (const target of this.targets.values()) livePools.add(this.poolKeys.get(target) as string)
    this.pools.retainOnly(livePools)
  }
}
