import { randomBytes } from 'node:crypto'
import { hostname } from 'node:os'
import fp from 'fastify-plugin'
import type { FastifyPluginAsync } from 'fastify'
import { atMostEvery } from '../lib/at-most-every.js'
import { Timeseries } from '../lib/timeseries.js'
import { version } from '../lib/version.js'
import { deleteInstancesNotSeenSince, upsertInstance } from '../repositories/instances.js'

/** This process as the other instances and the dashboard see it. */
export interface InstanceIdentity {
  readonly id: string
  readonly host: string
  readonly pid: number
  /** ms since the epoch. */
  readonly startedAt: number
}

declare module 'fastify' {
  interface FastifyInstance {
    instance: InstanceIdentity
    /** Recent traffic in 10-second buckets (lib/timeseries.ts); plugins/access-log.ts records into it. */
    timeseries: Timeseries
  }
}

export interface InstancesOptions {
  /** Heartbeat period (default 5 s); tests shorten it. */
  heartbeatIntervalMs?: number
}

export const HEARTBEAT_INTERVAL_MS = 5000
/** Unseen this long: healthy false. */
export const UNHEALTHY_AFTER_MS = 15_000
/** Unseen this long: the row is removed. */
export const FORGOTTEN_AFTER_MS = 60 * 60_000

/**
 * Every process (each worker of a WORKERS cluster too) is an instance: it writes its heartbeat
 * row — identity, config revision, requests per second and its last 15 minutes of traffic
 * buckets — every 5 s, and removes rows unseen for an hour (docs/dashboard.md "Instances").
 * The heartbeat is a timer, never on the request path; a database that is away costs a
 * warning at most once a minute.
 */
const instancesPlugin: FastifyPluginAsync<InstancesOptions> = async (app, options) => {
  const host = hostname()
  const identity: InstanceIdentity = {
    id: `${host}-${process.pid}-${randomBytes(3).toString('hex')}`,
    host,
    pid: process.pid,
    startedAt: Date.now()
  }
  const timeseries = new Timeseries()
  app.decorate('instance', identity)
  app.decorate('timeseries', timeseries)
  app.routeTable.onSwap((routes) => { timeseries.retainRoutes(routes.map((route) => route.id)) })

  const intervalMs = options.heartbeatIntervalMs ?? HEARTBEAT_INTERVAL_MS
  const warnNow = atMostEvery(60_000)
  let timer: NodeJS.Timeout | null = null
  let beating: Promise<void> | null = null

  async function heartbeat (): Promise<void> {
    const now = Date.now()
    try {
      await upsertInstance(app.db, {
        instance_id: identity.id,
        host: identity.host,
        pid: identity.pid,
        version,
        started_at: new Date(identity.startedAt).toISOString(),
        last_seen_at: new Date(now).toISOString(),
        config_revision: app.configChanges.version,
        requests_per_second: timeseries.total.requestsPerSecond(now),
        series: JSON.stringify(timeseries.stored(now))
      })
      await deleteInstancesNotSeenSince(app.db, new Date(now - FORGOTTEN_AFTER_MS).toISOString())
    } catch (err) {
      if (warnNow()) app.log.warn({ err }, 'writing the instance heartbeat failed; retried every beat')
    }
  }

  function beat (): void {
    if (beating !== null) return
    beating = heartbeat().finally(() => { beating = null })
  }

  // The first beat is not awaited: a database that is away must not hold up the start.
  app.addHook('onReady', async () => {
    beat()
    timer = setInterval(beat, intervalMs)
    timer.unref()
  })
  app.addHook('onClose', async () => {
    if (timer !== null) clearInterval(timer)
    if (beating !== null) await beating
  })
}

export default fp(instancesPlugin, { name: 'instances', dependencies: ['db', 'config-changes', 'route-table'] })
