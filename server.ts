import cluster from 'node:cluster'
import { readFileSync } from 'node:fs'
import pino from 'pino'
import { buildApp } from './app.js'
import { runPrimary } from './lib/cluster.js'
import { drainAndClose, exitOnSignals } from './lib/shutdown.js'
import { type Config, ConfigError, envFileAdditions, loadConfig } from './plugins/config.js'

/**
 * The process (README "Configuration" and "Shutdown"): environment (and `.env`) → config → one server, or with
 * WORKERS > 1 a cluster primary that migrates once and forks the workers → graceful shutdown.
 */

// `.env` fills what the real environment leaves unset. Written into process.env so that cluster
// workers, which inherit it, see the same settings.
try {
  Object.assign(process.env, envFileAdditions(readFileSync('.env', 'utf8'), process.env))
} catch (err) {
  if ((err as NodeJS.ErrnoException).code !== 'ENOENT') fail(`cannot read .env: ${(err as Error).message}`)
}

let config: Readonly<Config>
try {
  config = loadConfig(process.env)
} catch (err) {
  if (err instanceof ConfigError) fail(`invalid setting ${err.message}`)
  throw err
}

if (config.workers > 1 && cluster.isPrimary) {
  const log = pino({ level: config.logLevel })
  // CONFIG_FILE is applied once for the host, by the primary, before the workers start.
  if (config.configFile !== null) {
    await applyConfigFileOnce(config).catch((err: Error) => fail(`start-up failed: ${err.message}`))
    onHangup(() => applyConfigFileOnce(config), log)
  }
  await runPrimary(config, log)
} else {
  await serve(config)
}

async function serve (config: Readonly<Config>): Promise<void> {
  const app = await buildApp(config, { migrate: cluster.isPrimary }).catch((err: Error) => fail(`start-up failed: ${err.message}`))
  exitOnSignals(
    async () => { await drainAndClose(app, { delayMs: config.shutdownDelayMs, graceMs: config.shutdownGraceMs }) },
    config.shutdownDelayMs + config.shutdownGraceMs,
    app.log
  )
  // Plugins load (and CONFIG_FILE is applied) before listening: a failure here is a start-up failure.
  try {
    await app.ready()
  } catch (err) {
    fail(`start-up failed: ${(err as Error).message}`)
  }
  if (cluster.isWorker) {
    // The primary applies CONFIG_FILE on SIGHUP; a worker that gets one too (a signal to the process group) carries on.
    process.on('SIGHUP', () => {})
  } else {
    onHangup(async () => { await app.configFile.apply(null) }, app.log)
  }
  try {
    await app.listen({ port: config.port, host: config.host })
  } catch (err) {
    await app.close().catch(() => {})
    fail(`cannot listen on ${config.host}:${config.port}: ${(err as Error).message}`)
  }
  if (app.tlsListener !== null) {
    try {
      await app.tlsListener.listen(config.host)
    } catch (err) {
      await app.close().catch(() => {})
      fail(`cannot listen on ${config.host}:${config.tlsPort} (TLS_PORT): ${(err as Error).message}`)
    }
  }
  if (config.egressPort !== null) {
    try {
      await app.egress.listen(config.egressPort, config.host)
    } catch (err) {
      await app.close().catch(() => {})
      fail(`cannot listen on ${config.host}:${config.egressPort} (EGRESS_PORT): ${(err as Error).message}`)
    }
  }
}

/**
 * The CONFIG_FILE applied by a short-lived app of the primary (WORKERS > 1): the workers follow
 * through the database like any other change (docs/config-history.md "Configuration file").
 */
async function applyConfigFileOnce (config: Readonly<Config>): Promise<void> {
  const app = await buildApp(config, { migrate: true, configSnapshotFile: null, configFile: { applyAtStart: true } })
  try {
    await app.ready()
  } finally {
    await app.close()
  }
}

/** SIGHUP reapplies CONFIG_FILE; one at a time; a refused file is logged and the running configuration stays. */
function onHangup (apply: () => Promise<unknown>, log: { info: (o: object, m: string) => void, error: (o: object, m: string) => void }): void {
  let running: Promise<void> = Promise.resolve()
  process.on('SIGHUP', () => {
    running = running.then(async () => {
      log.info({ configFile: config.configFile }, 'SIGHUP: applying CONFIG_FILE')
      await apply()
    }).catch((err: Error) => {
      log.error({ configFile: config.configFile, err: { message: err.message } }, `CONFIG_FILE refused, the running configuration stays: ${err.message}`)
    })
  })
}

function fail (message: string): never {
  console.error(`gatehouse: ${message}`)
  process.exit(1)
}
