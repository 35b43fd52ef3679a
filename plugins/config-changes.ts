import fp from 'fastify-plugin'
import type { FastifyPluginAsync } from 'fastify'
import type { Kysely, Transaction } from 'kysely'
import type { Database } from '../repositories/database.js'

/**
 * One monotonically increasing `config_version` row tells every process sharing the
 * database that routes, filters or consumers changed. Each concern registers a reload
 * function; a change made here reloads at once, a change made elsewhere is seen by the
 * poll (well within the contract's 1 s) or earlier when something calls refresh().
 */
export interface ConfigChanges {
  /** Version of the configuration this process has loaded. */
  readonly version: number
  /** Called inside the transaction that changes configuration. */
  bump: (trx: Transaction<Database> | Kysely<Database>) => Promise<void>
  /** Reload every concern if the stored version moved; resolves when done. */
  refresh: () => Promise<void>
  /** Register a reload; it runs now and after every change. */
  onChange: (name: string, reload: () => Promise<void>) => Promise<void>
}

declare module 'fastify' {
  interface FastifyInstance {
    configChanges: ConfigChanges
  }
}

export interface ConfigChangesOptions {
  pollIntervalMs?: number
}

const configChangesPlugin: FastifyPluginAsync<ConfigChangesOptions> = async (app, options) => {
  const db = app.db
  const reloads: Array<{ name: string, reload: () => Promise<void> }> = []
  let version = await readVersion(db)
  let queue: Promise<void> = Promise.resolve()

  async function reloadAll (): Promise<void> {
    for (const { name, reload } of reloads) {
      try {
        await reload()
      } catch (err) {
        app.log.error({ err, concern: name }, 'reloading configuration failed; keeping the previous state')
      }
    }
  }

  async function refreshOnce (): Promise<void> {
    const stored = await readVersion(db)
    if (stored === version) return
    version = stored
    await reloadAll()
  }

  // Serialised so two refreshes never interleave their swaps.
  function refresh (): Promise<void> {
    queue = queue.then(refreshOnce, refreshOnce)
    return queue
  }

  const changes: ConfigChanges = {
    get version () { return version },
    async bump (trx) {
      await trx.updateTable('config_version').set((eb) => ({ version: eb('version', '+', 1) })).where('id', '=', 1).execute()
    },
    refresh,
    async onChange (name, reload) {
      reloads.push({ name, reload })
      await reload()
    }
  }
  app.decorate('configChanges', changes)

  const interval = options.pollIntervalMs ?? 250
  let closed = false
  const timer = setInterval(() => {
    if (closed) return
    refresh().catch((err: unknown) => app.log.warn({ err }, 'polling config_version failed'))
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
