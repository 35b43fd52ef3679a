import cluster, { type Worker } from 'node:cluster'
import type { FastifyBaseLogger } from 'fastify'
import { migrateToLatest, openDatabase } from '../repositories/connection.js'
import { resolveAdminTokenHash } from './admin-token.js'
import { servePrimaryOperations } from './cluster-ipc.js'
import { databaseProblem } from './database-errors.js'
import { rateLimitOperations } from './sliding-window-cluster.js'

/** The settings the primary itself uses (a Config from plugins/config.ts fits). */
export interface HostConfig {
  databaseUrl: string
  adminToken: string | null
  workers: number
  /** ACCESS_LOG_FILE: when set, SIGHUP is passed on to every worker (each reopens its own file). */
  accessLogFile: string | null
}

/** A worker that exits within this long of starting counts as a crash for the backoff. */
const STABLE_AFTER_MS = 10_000
/** Replacement delay grows 250 ms, 500 ms, 1 s … up to this while workers keep crashing. */
const MAX_BACKOFF_MS = 30_000
/** Workers that never manage to listen (port taken): give up after so many. A database that is away does not stop a worker from listening. */
const MAX_STARTUP_FAILURES = 3

/** Migration retries while the database is away: 250 ms, doubling up to 5 s. */
const RETRY_FIRST_MS = 250
const RETRY_MAX_MS = 5000

/**
 * Migrations and the admin token, once per host. true when done; false while the database is
 * unreachable (logged); any other failure (a migration that fails) stops the host.
 */
async function prepareDatabase (config: Readonly<HostConfig>, log: FastifyBaseLogger): Promise<boolean> {
  const { db } = openDatabase(config.databaseUrl)
  try {
    await migrateToLatest(db)
    await resolveAdminTokenHash(db, config.adminToken, log)
    return true
  } catch (err) {
    if (databaseProblem(err)?.unreachable !== true) throw err
    log.warn({ err }, 'database unreachable: starting the workers anyway; migrations are retried')
    return false
  } finally {
    await db.destroy()
  }
}

/**
 * The cluster primary (WORKERS > 1): does the once-per-host work — migrations and admin-token
 * generation — then forks the workers, which build the app with migrate: false and share the
 * port. A worker that dies is replaced (with backoff); SIGTERM/SIGINT drains every worker and
 * exits when all have exited: 0 when every one exited cleanly.
 */
export async function runPrimary (config: Readonly<HostConfig>, log: FastifyBaseLogger): Promise<void> {
  // The database being away does not stop the host (docs/faults.md "Starting without the database"): the workers start
  // on the last configuration saved and wait for it; the migrations are retried here until
  // they ran, and the workers, which poll, load from the database once it has them.
  if (!await prepareDatabase(config, log)) {
    const retry = (delayMs: number): void => {
      setTimeout(() => {
        prepareDatabase(config, log).catch((err: unknown) => {
          // The workers keep serving the saved configuration meanwhile; their /ready says 503.
          log.error({ err }, 'migrating the database failed; retried')
          return false
        }).then((done) => {
          if (done) log.info('database migrated')
          else retry(Math.min(RETRY_MAX_MS, delayMs * 2))
        }, () => {})
      }, delayMs).unref()
    }
    retry(RETRY_FIRST_MS)
  }

  /** The live workers and when each was forked. */
  const startedAt = new Map<Worker, number>()
  const listening = new Set<Worker>()
  let stopping = false
  let crashes = 0
  let startupFailures = 0
  let exitCode = 0

  /** Each worker's slot 1…WORKERS, inherited by its replacement: it names the worker's access-log file. */
  const slots = new Map<Worker, number>()
  const fork = (slot: number): void => {
    if (stopping) return
    const worker = cluster.fork({ GATEHOUSE_WORKER_SLOT: String(slot) })
    slots.set(worker, slot)
    startedAt.set(worker, Date.now())
    worker.once('listening', () => {
      listening.add(worker)
      startupFailures = 0
      log.info({ worker: worker.id, pid: worker.process.pid }, 'worker listening')
    })
  }

  cluster.on('exit', (worker, code, signal) => {
    const lived = Date.now() - (startedAt.get(worker) ?? 0)
    const wasListening = listening.delete(worker)
    startedAt.delete(worker)
    const slot = slots.get(worker) ?? 1
    slots.delete(worker)
    if (stopping) {
      if (code !== 0) exitCode = 1
      log.info({ worker: worker.id, code, signal }, 'worker exited')
      exitWhenAllGone()
      return
    }
    if (!wasListening && ++startupFailures >= MAX_STARTUP_FAILURES) {
      log.fatal({ code, signal }, `${startupFailures} workers in a row failed to start: giving up`)
      stopping = true
      exitCode = 1
      stopAll('SIGTERM')
      exitWhenAllGone()
      return
    }
    crashes = lived >= STABLE_AFTER_MS ? 0 : crashes + 1
    const delayMs = crashes <= 1 ? 0 : Math.min(MAX_BACKOFF_MS, 250 * 2 ** (crashes - 2))
    log.error({ worker: worker.id, code, signal, delayMs }, 'worker died: replacing it')
    setTimeout(() => { fork(slot) }, delayMs)
  })

  const exitWhenAllGone = (): void => {
    if (startedAt.size > 0) return
    log.info({ exitCode }, 'all workers exited')
    process.exit(exitCode)
  }
  const stopAll = (signal: NodeJS.Signals): void => {
    for (const worker of startedAt.keys()) worker.process.kill(signal)
  }

  const onSignal = (signal: NodeJS.Signals): void => {
    if (stopping) {
      log.info(`${signal} received while shutting down: already draining`)
      return
    }
    stopping = true
    log.info(`${signal} received: draining ${startedAt.size} workers`)
    // Each worker runs the graceful sequence itself (lib/shutdown.ts).
    stopAll('SIGTERM')
    exitWhenAllGone()
  }
  process.on('SIGTERM', onSignal)
  process.on('SIGINT', onSignal)

  // Host-wide rate-limit counters and admin answers gathered from every worker (lib/cluster-ipc.ts).
  servePrimaryOperations(rateLimitOperations())

  // logrotate's postrotate signals the primary: each worker reopens its own file (docs/logging.md).
  if (config.accessLogFile !== null) process.on('SIGHUP', () => { stopAll('SIGHUP') })

  for (let slot = 1; slot <= config.workers; slot++) fork(slot)
}
