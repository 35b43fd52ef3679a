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
  await runPrimary(config, pino({ level: config.logLevel }))
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
  try {
    await app.listen({ port: config.port, host: config.host })
  } catch (err) {
    await app.close().catch(() => {})
    fail(`cannot listen on ${config.host}:${config.port}: ${(err as Error).message}`)
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

function fail (message: string): never {
  console.error(`gatehouse: ${message}`)
  process.exit(1)
}
