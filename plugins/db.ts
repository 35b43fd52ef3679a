import fp from 'fastify-plugin'
import type { FastifyPluginAsync } from 'fastify'
import type { Kysely } from 'kysely'
import { databaseProblem } from '../lib/database-errors.js'
import { type DatabaseKind, migrateToLatest, openDatabase } from '../repositories/connection.js'
import type { Database } from '../repositories/database.js'

export { type DatabaseKind, migrateToLatest, openDatabase } from '../repositories/connection.js'

declare module 'fastify' {
  interface FastifyInstance {
    db: Kysely<Database>
    dbKind: DatabaseKind
    dbState: DatabaseState
  }
}

/**
 * Whether the database answers, as the config poll and start-up last found it
 * (docs/faults.md): /ready reads it, plugins/config-changes.ts keeps it current.
 */
export interface DatabaseState {
  /** null while the database answers; otherwise what is wrong ("database unreachable: …"). */
  readonly problem: string | null
  /** Runs the migrations this process owns, if they have not run yet; throws while the database is away. */
  ensureMigrated: () => Promise<void>
  /** Logged once per outage, not on every failed poll. */
  markDown: (err: unknown) => void
  markUp: () => void
}

export interface DbPluginOptions {
  databaseUrl: string
  /** Run pending migrations at registration (the cluster primary does; workers do not). */
  migrate: boolean
}

const dbPlugin: FastifyPluginAsync<DbPluginOptions> = async (app, options) => {
  const { db, kind } = openDatabase(options.databaseUrl, (err) => app.log.warn({ err }, 'database connection lost; it will be replaced'))
  let migrated = !options.migrate
  let problem: string | null = null
  const state: DatabaseState = {
    get problem () { return problem },
    async ensureMigrated () {
      if (migrated) return
      await migrateToLatest(db)
      migrated = true
    },
    markDown (err) {
      const message = databaseProblem(err)?.message ?? (err instanceof Error ? err.message : String(err))
      if (problem === null) app.log.error({ err }, `database unavailable: proxying goes on with the configuration in memory (${message})`)
      problem = message
    },
    markUp () {
      if (problem !== null) app.log.info('database answers again')
      problem = null
    }
  }
  try {
    await state.ensureMigrated()
  } catch (err) {
    // A database that is away does not stop start-up: the config plugin serves the last
    // configuration it saw and keeps retrying, migrations included. A failing migration does.
    if (databaseProblem(err)?.unreachable !== true) {
      await db.destroy()
      throw err
    }
    state.markDown(err)
  }
  app.decorate('db', db)
  app.decorate('dbKind', kind)
  app.decorate('dbState', state)
  app.addHook('onClose', async () => { await db.destroy() })
}

export default fp(dbPlugin, { name: 'db' })
