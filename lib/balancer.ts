/**
 * Target choice for one route. The balancer keeps only what is per route (the smooth
 * round-robin's current weights); whether a target may be chosen and how busy it is
 * belong to the target itself, which is shared by every route that uses its URL.
 */
export interface Balanceable {
  /** Requests sent to this target and not yet finished. */
  readonly inFlight: number
  /** False while the target is ejected or failing its active check. */
  selectable: (now: number) => boolean
}

export type BalancingAlgorithm = 'round-robin' | 'least-connections'

export interface WeightedTarget<T> {
  readonly target: T
  readonly weight: number
}

interface Peer<T> {
  readonly target: T
  readonly weight: number
  /** nginx's current_weight: grows by weight each pick, falls by the total when chosen. */
  current: number
}

export interface Balancer<T extends Balanceable> {
  readonly algorithm: BalancingAlgorithm
  readonly targets: ReadonlyArray<WeightedTarget<T>>
  /** The next target, skipping `exclude` and what is not selectable at `now`; null when none is left. */
  pick: (now: number, exclude?: ReadonlySet<T>) => T | null
}

export function createBalancer<T extends Balanceable> (algorithm: BalancingAlgorithm, targets: ReadonlyArray<WeightedTarget<T>>): Balancer<T> {
  return algorithm === 'least-connections' ? new LeastConnections(targets) : new SmoothWeightedRoundRobin(targets)
}

/**
 * nginx's smooth weighted round-robin (ngx_http_upstream_get_peer): every eligible peer's
 * current weight grows by its weight, the largest wins and loses the sum. Weights 5,1,1
 * give a a b a c a a — the heavy target never gets a burst. Ineligible peers neither
 * gain nor lose, as in nginx, so a target that comes back does not get a burst either.
 */
export class SmoothWeightedRoundRobin<T extends Balanceable> implements Balancer<T> {
  readonly algorithm: BalancingAlgorithm = 'round-robin'
  protected readonly peers: Array<Peer<T>>

  constructor (readonly targets: ReadonlyArray<WeightedTarget<T>>) {
    this.peers = targets.map(({ target, weight }) => ({ target, weight, current: 0 }))
  }

  pick (now: number, exclude?: ReadonlySet<T>): T | null {
    const peers = this.peers
    let best: Peer<T> | null = null
    let total = 0
    for (let i = 0; i < peers.length; i++) {
      const peer = peers[i]
      if (!eligible(peer.target, now, exclude)) continue
      peer.current += peer.weight
      total += peer.weight
      if (best === null || peer.current > best.current) best = peer
    }
    if (best === null) return null
    best.current -= total
    return best.target
  }
}

/**
 * nginx's least_conn: the fewest requests in flight relative to weight (a target of
 * weight 2 with 2 in flight ties one of weight 1 with 1); ties are settled by the smooth
 * weighted round-robin among the tied targets only, so equal weights alternate and a
 * heavier target gets its share of the ties.
 */
export class LeastConnections<T extends Balanceable> extends SmoothWeightedRoundRobin<T> {
  override readonly algorithm: BalancingAlgorithm = 'least-connections'

  override pick (now: number, exclude?: ReadonlySet<T>): T | null {
    const peers = this.peers
    let best: Peer<T> | null = null
    let first = 0
    let tied = false
    for (let i = 0; i < peers.length; i++) {
      const peer = peers[i]
      if (!eligible(peer.target, now, exclude)) continue
      if (best === null || peer.target.inFlight * best.weight < best.target.inFlight * peer.weight) {
        best = peer
        first = i
        tied = false
      } else if (peer.target.inFlight * best.weight === best.target.inFlight * peer.weight) {
        tied = true
      }
    }
    if (best === null || !tied) return best?.target ?? null

    const lead = best
    let chosen: Peer<T> | null = null
    let total = 0
    for (let i = first; i < peers.length; i++) {
      const peer = peers[i]
      if (!eligible(peer.target, now, exclude)) continue
      if (peer.target.inFlight * lead.weight !== lead.target.inFlight * peer.weight) continue
      peer.current += peer.weight
      total += peer.weight
      if (chosen === null || peer.current > chosen.current) chosen = peer
    }
    const winner = chosen as Peer<T>
    winner.current -= total
    return winner.target
  }
}

function eligible<T extends Balanceable> (target: T, now: number, exclude: ReadonlySet<T> | undefined): boolean {
  return target.selectable(now) && (exclude === undefined || !exclude.has(target))
}
