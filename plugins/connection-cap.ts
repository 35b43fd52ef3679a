import type { Server } from 'node:net'
import fp from 'fastify-plugin'
import type { FastifyPluginAsync } from 'fastify'
import { Counter } from 'prom-client'
import { atMostEvery } from '../lib/at-most-every.js'

/**
 * MAX_CONNECTIONS (docs/routing.md "Refused before routing") on every listener of the process: a connection beyond the
 * cap is closed as soon as it is accepted, those already open are unaffected.
 *
 * Node's own `server.maxConnections` does exactly that (net.Server counts the sockets it accepted
 * until they close, and closes the handle of one more before any 'connection' listener or the
 * HTTP parser sees it), and reports each refusal as a 'drop' event; this plugin only counts and
 * logs those. The count is per listener, so a flood on one listener does not refuse another's.
 */
export interface ConnectionCap {
  readonly max: number
  /** Caps another listener of the process (e.g. an HTTPS or egress server) under `listener`'s name. */
  apply: (server: Server, listener: string) => void
  /** Connections refused on `listener` since start. */
  refused: (listener: string) => number
}

declare module 'fastify' {
  interface FastifyInstance {
    connectionCap: ConnectionCap
  }
}

/** How often a continuing flood is logged (the counter in /metrics has every refusal). */
const WARN_EVERY_MS = 10_000

const connectionCapPlugin: FastifyPluginAsync = async (app) => {
  const max = app.config.maxConnections
  const refusedTotal = new Counter({
    name: 'gatehouse_connections_refused_total',
    help: 'Client connections closed at once because the listener held MAX_CONNECTIONS already',
    labelNames: ['listener'],
    registers: [app.metrics.registry]
  })
  const refusedBy = new Map<string, number>()

  function apply (server: Server, listener: string): void {
    if (refusedBy.has(listener)) throw new Error(`connection cap: listener "${listener}" is already capped`)
    server.maxConnections = max
    refusedBy.set(listener, 0)
    refusedTotal.inc({ listener }, 0)
    const warnNow = atMostEvery(WARN_EVERY_MS)
    server.on('drop', (dropped) => {
      const refused = (refusedBy.get(listener) ?? 0) + 1
      refusedBy.set(listener, refused)
      refusedTotal.inc({ listener })
      if (warnNow()) {
        app.log.warn({ listener, maxConnections: max, refused, remoteAddress: dropped?.remoteAddress },
          'connection limit reached: new connections are closed at once (MAX_CONNECTIONS)')
      }
    })
  }

  apply(app.server, 'main')
  app.decorate('connectionCap', {
    max,
    apply,
    refused: (listener) => refusedBy.get(listener) ?? 0
  } satisfies ConnectionCap)
}

export default fp(connectionCapPlugin, { name: 'connection-cap', dependencies: ['metrics'] })
