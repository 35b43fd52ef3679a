import type { FastifyInstance } from 'fastify'

export interface ShutdownTimings {
  /** Keep serving this long after the signal while /ready answers 503 (SHUTDOWN_DELAY_MS). */
  delayMs: number
  /** How long in-flight requests may take once the listener is closed (SHUTDOWN_GRACE_MS). */
  graceMs: number
}

/** Extra time the onClose hooks (audit flush, pools, database) get after the grace period. */
const CLOSE_HOOKS_MS = 10_000
/** Connections that were busy when the listener closed are closed as soon as they turn idle. */
const IDLE_SWEEP_MS = 50

/**
 * The graceful sequence of README "Shutdown": /ready 503 at once → keep serving for delayMs →
 * close the listener (app.close(): idle keep-alive connections close, in-flight requests finish,
 * new requests on kept-alive connections are still served with Connection: close) → after
 * graceMs cut whatever is left → onClose hooks run (audit rows written, pools and db closed).
 */
export async function drainAndClose (app: FastifyInstance, { delayMs, graceMs }: ShutdownTimings): Promise<void> {
  app.readiness.drain()
  app.log.info({ delayMs, graceMs }, 'shutting down: /ready answers 503')
  if (delayMs > 0) await new Promise((resolve) => setTimeout(resolve, delayMs))

  const server = app.server
  // Node closes only the connections idle at close(); one finishing a response afterwards would
  // otherwise linger for KEEP_ALIVE_TIMEOUT_MS.
  // The HTTPS listener (docs/tls.md) drains alongside; WebSocket tunnels are waited for too
  // and closed at the end of the grace period (docs/websocket.md).
  const tls = app.tlsListener
  const sweep = setInterval(() => {
    server.closeIdleConnections()
    tls?.closeIdleConnections()
  }, IDLE_SWEEP_MS)
  const cut = setTimeout(() => {
    app.log.warn({ graceMs }, 'shutdown grace period over: cutting the remaining connections')
    app.websockets.closeAll('shutdown')
    server.closeAllConnections()
    tls?.closeAllConnections()
  }, graceMs)
  try {
    await app.close()
  } finally {
    clearInterval(sweep)
    clearTimeout(cut)
  }
  app.log.info('shut down cleanly')
}

/**
 * Runs `shutdown` on the first SIGTERM or SIGINT and exits 0 when it resolves (1 when it throws
 * or hangs past its deadline). Later signals are logged and otherwise ignored: a second Ctrl-C or
 * a supervisor repeating SIGTERM must not cut the drain short.
 */
export function exitOnSignals (shutdown: () => Promise<void>, deadlineMs: number, log: { info: (msg: string) => void, error: (obj: object, msg: string) => void }): void {
  let started = false
  const onSignal = (signal: NodeJS.Signals): void => {
    if (started) {
      log.info(`${signal} received while shutting down: already draining`)
      return
    }
    started = true
    log.info(`${signal} received: draining`)
    setTimeout(() => {
      log.error({ deadlineMs }, 'shutdown did not finish in time: exiting')
      process.exit(1)
    }, deadlineMs + CLOSE_HOOKS_MS).unref()
    shutdown().then(() => process.exit(0), (err: unknown) => {
      log.error({ err }, 'shutdown failed')
      process.exit(1)
    })
  }
  process.on('SIGTERM', onSignal)
  process.on('SIGINT', onSignal)
}
