import type { Route } from '../schemas/route.js'
import { type Balancer, createBalancer } from './balancer.js'
import type { Target } from './upstream-target.js'
import type { UpstreamTargets } from './upstream-targets.js'
import { upstreamTlsOf } from './upstream-tls.js'

interface CompiledBalancer {
  signature: string
  balancer: Balancer<Target>
}

/** One balancer per route id: it keeps its smooth round-robin state while the route's targets stay the same. */
export class RouteBalancers {
  private readonly balancers = new Map<string, CompiledBalancer>()

  constructor (private readonly targets: UpstreamTargets) {}

  pick (route: Route, now: number, exclude?: ReadonlySet<Target>): Target | null {
    const compiled = this.balancers.get(route.id) ?? this.compile(route)
    return compiled.balancer.pick(now, exclude)
  }

  sync (routes: readonly Route[]): void {
    const ids = new Set<string>()
    for (const route of routes) {
      ids.add(route.id)
      this.compile(route)
    }
    for (const id of this.balancers.keys()) if (!ids.has(id)) this.balancers.delete(id)
  }

  private compile (route: Route): CompiledBalancer {
    const signature = balancerSignature(route)
    const existing = this.balancers.get(route.id)
    if (existing !== undefined && existing.signature === signature) return existing
    const weighted = route.targets.map(({ url, weight }) => ({ target: this.targets.for(url, upstreamTlsOf(route, url)), weight }))
    const compiled = { signature, balancer: createBalancer(route.loadBalancing, weighted) }
    this.balancers.set(route.id, compiled)
    return compiled
  }
}

function balancerSignature (route: Route): string {
  let signature = route.loadBalancing
  if (route.upstreamTls !== null) signature += ` tls=${JSON.stringify(route.upstreamTls)}`
  for (const { url, weight } of route.targets) signature += ` ${weight}*${url}`
  return signature
}
