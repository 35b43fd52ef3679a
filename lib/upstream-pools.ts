import { Pool } from 'undici'
import type { UpstreamTls } from './upstream-tls.js'

export interface PoolOptions {
  connectionsPerOrigin: number
  /** Time to establish an upstream connection, separate from a route's timeoutMs (response). */
  connectTimeoutMs: number
}

/** The connection pools to upstreams: one per origin and TLS settings, so a route's new upstreamTls gets a new pool on its next request. */
export class UpstreamPools {
  private readonly pools = new Map<string, Pool>()

  constructor (private readonly options: PoolOptions) {}

  static keyOf (origin: string, tls: UpstreamTls | null): string {
    return tls === null ? origin : `${origin}#${tls.key}`
  }

  get (origin: string, tls: UpstreamTls | null): Pool {
    const key = UpstreamPools.keyOf(origin, tls)
    let pool = this.pools.get(key)
    if (pool === undefined) {
      pool = new Pool(origin, {
        connections: this.options.connectionsPerOrigin,
        connectTimeout: this.options.connectTimeoutMs,
        keepAliveTimeout: 4000,
        pipelining: 1,
        ...(tls === null ? {} : { connect: tls.connect })
      })
      this.pools.set(key, pool)
    }
    return pool
  }

  /** Close the pools whose key is not in `live`; requests still on them finish first. */
  retainOnly (live: ReadonlySet<string>): void {
    for (const [key, pool] of this.pools) {
      if (live.has(key)) continue
      this.pools.delete(key)
      pool.close().catch(() => {})
    }
  }

  async close (): Promise<void> {
    await Promise.all([...this.pools.values()].map((pool) => pool.close()))
  }
}
