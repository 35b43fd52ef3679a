import fp from 'fastify-plugin'
import type { FastifyPluginAsync } from 'fastify'
import type { Kysely, Transaction } from 'kysely'
import { type ConfigSnapshot, readSnapshot, snapshotFileFor, writeSnapshot } from '../lib/config-snapshot.js'
import { databaseProblem } from '../lib/database-errors.js'
import type { Database } from '../repositories/database.js'

/**
 * One monotonically increasing `config_version` row tells every process sharing the
 * database that routes, filters or consumers changed. Each concern registers a reload
 * function; a change made here reloads at once, a change made elsewhere is seen by the
 * poll (well within the 1 s of docs/admin-api.md "Common rules") or earlier when something calls refresh().
 *
 * Database outages (docs/faults.md): the poll doubles as the database's heartbeat
 * (app.dbState). Concerns registered with track() have what they loaded saved to a local
 * file (lib/config-snapshot.ts, PostgreSQL only); a process that starts while the database
 * is unreachable installs that instead, keeps polling, and loads from the database — after
 * running its migrations, when it owns them — as soon as it answers.
 */
export interface ConfigChanges {
  /** Version of the configuration this process has loaded. */
  readonly version: number
  /** false while this process runs on the saved snapshot (or on nothing) because the database has not answered since start. */
  readonly loaded: boolean
  /** Called inside the transaction that changes configuration. */
  bump: (trx: Transaction<Database> | Kysely<Database>) => Promise<void>
  /** Reload every concern if the stored version moved; resolves when done. */
  refresh: () => Promise<void>
  /** Register a reload; it runs now and after every change. */
  onChange: (name: string, reload: () => Promise<void>) => Promise<void>
  /**
   * Like onChange, for state the database holds: what reload resolves with is saved in the
   * snapshot, and restore(saved) installs it when the process starts without its database.
   */
  track: <T>(name: string, reload: () => Promise<T>, restore: (saved: T) => void) => Promise<void>
}

declare module 'fastify' {
  interface FastifyInstance {
    configChanges: ConfigChanges
  }
}

export interface ConfigChangesOptions {
  pollIntervalMs?: number
  /** Where the last configuration is kept; default from DATABASE_URL (lib/config-snapshot.ts), null for none. */
  snapshotFile?: string | null
}

const configChangesPlugin: FastifyPluginAsync<ConfigChangesOptions> = async (app, options) => {
  const db = app.db
  const snapshotFile = options.snapshotFile === undefined ? snapshotFileFor(app.config.databaseUrl) : options.snapshotFile
  const reloads: Array<{ name: string, reload: () => Promise<unknown>, tracked: boolean }> = []
  /** What each tracked concern last loaded from the database. */
  const sections: Record<string, unknown> = {}
  let savedVersion: number | null = null
  let queue: Promise<void> = Promise.resolve()

  let version = 0
  let loaded = true
  let saved: ConfigSnapshot | null = null
  try {
    await app.dbState.ensureMigrated()
    version = await readVersion(db)
  } catch (err) {
    if (databaseProblem(err) === null) throw err
    app.dbState.markDown(err)
    loaded = false
    saved = readSavedSnapshot()
    version = saved?.version ?? 0
    app.log.warn({ snapshotFile, savedVersion: saved?.version ?? null, savedAt: saved?.savedAt ?? null },
      saved === null ? 'starting without the database and without a saved configuration: no routes until it answers' : 'starting without the database: serving the last configuration saved')
  }

  function readSavedSnapshot (): ConfigSnapshot | null {
    if (snapshotFile === null) return null
    try {
      return readSnapshot(snapshotFile)
    } catch (err) {
      app.log.error({ err, snapshotFile }, 'the saved configuration cannot be read; ignoring it')
      return null
    }
  }

  function save (): void {
    if (snapshotFile === null || !loaded || savedVersion === version) return
    try {
      writeSnapshot(snapshotFile, { format: 1, version, savedAt: new Date().toISOString(), sections })
      savedVersion = version
    } catch (err) {
      app.log.warn({ err, snapshotFile }, 'saving the configuration snapshot failed')
    }
  }

  async function runReload (entry: { name: string, reload: () => Promise<unknown>, tracked: boolean }): Promise<void> {
    const result = await entry.reload()
    if (entry.tracked) sections[entry.name] = result
  }

  /**
   * Every concern reloads even when one fails. A failure because the database went away is
   * thrown after the others ran, so the version does not move and the next poll tries again;
   * any other failure keeps that concern's previous state (logged).
   */
  async function reloadAll (): Promise<void> {
    let unavailable: unknown = null
    for (const entry of reloads) {
      try {
        await runReload(entry)
      } catch (err) {
        if (databaseProblem(err) !== null) unavailable ??= err
        else app.log.error({ err, concern: entry.name }, 'reloading configuration failed; keeping the previous state')
      }
    }
    if (unavailable !== null) throw unavailable
  }

  async function refreshOnce (): Promise<void> {
    if (!loaded) {
      await connect()
      return
    }
    const stored = await readVersion(db)
    if (stored === version) return
    await reloadAllAt(stored)
    save()
  }

  /**
   * The version moves before the concerns reload, because some of them act on it (the Redis
   * broadcast announces it); it moves back when the database failed mid-way, so the next poll
   * tries again.
   */
  async function reloadAllAt (stored: number): Promise<void> {
    const previous = version
    version = stored
    try {
      await reloadAll()
    } catch (err) {
      version = previous
      throw err
    }
  }

  /** The first load from the database after starting without it. */
  async function connect (): Promise<void> {
    await app.dbState.ensureMigrated()
    const stored = await readVersion(db)
    await reloadAllAt(stored)
    loaded = true
    app.log.info({ version }, 'configuration loaded from the database')
    save()
  }

  // Serialised so two refreshes never interleave their swaps.
  function refresh (): Promise<void> {
    queue = queue.then(refreshOnce, refreshOnce)
    return queue
  }

  async function register (entry: { name: string, reload: () => Promise<unknown>, tracked: boolean }, restore?: (saved: unknown) => void): Promise<void> {
    reloads.push(entry)
    if (!loaded) {
      if (restore !== undefined && saved !== null && entry.name in saved.sections) restore(saved.sections[entry.name])
      if (entry.tracked) return
    }
    await runReload(entry)
  }

  const changes: ConfigChanges = {
    get version () { return version },
    get loaded () { return loaded },
    async bump (trx) {
      await trx.updateTable('config_version').set((eb) => ({ version: eb('version', '+', 1) })).where('id', '=', 1).execute()
    },
    refresh,
    onChange: async (name, reload) => { await register({ name, reload, tracked: false }) },
    track: async (name, reload, restore) => { await register({ name, reload, tracked: true }, restore as (saved: unknown) => void) }
  }
  app.decorate('configChanges', changes)
  // Every concern has loaded once all plugins are registered: the first snapshot.
  app.addHook('onReady', async () => { save() })

  const interval = options.pollIntervalMs ?? 250
  let closed = false
  const timer = setInterval(() => {
    if (closed) return
    refresh().then(
      () => { if (loaded) app.dbState.markUp() },
      (err: unknown) => {
        if (databaseProblem(err) !== null) app.dbState.markDown(err)
        else app.log.warn({ err }, 'polling config_version failed')
      })
  }, interval)
  timer.unref()
  app.addHook('onClose', async () => {
    closed = true
    clearInterval(timer)
    await queue.catch(() => {})
  })
}

async function readVersion (db: Kysely<Database>): Promise<number> {
  const row = await db.selectFrom('config_version').select('version').where('id', '=', 1).executeTakeFirstOrThrow()
  return Number(row.version)
}

export default fp(configChangesPlugin, { name: 'config-changes', dependencies: ['db'] })
