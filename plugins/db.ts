import { mkdirSync, promises as fs } from 'node:fs'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import fp from 'fastify-plugin'
import type { FastifyPluginAsync } from 'fastify'
import SQLite from 'better-sqlite3'
import pg from 'pg'
import { FileMigrationProvider, Kysely, Migrator, PostgresDialect, SqliteDialect } from 'kysely'
import type { Database } from '../repositories/database.js'

export type DatabaseKind = 'sqlite' | 'postgres'

declare module 'fastify' {
  interface FastifyInstance {
    db: Kysely<Database>
    dbKind: DatabaseKind
  }
}

export interface DbPluginOptions {
  databaseUrl: string
  /** Run pending migrations at registration (the cluster primary does; workers do not). */
  migrate: boolean
}

// A write lock held by another process must not freeze this one for long: better-sqlite3 waits
// synchronously, blocking the event loop (traps.md #6). Writes are off the request path and retried.
const SQLITE_BUSY_TIMEOUT_MS = 250

export function openDatabase (databaseUrl: string, onIdleError: (err: Error) => void = () => {}): { db: Kysely<Database>, kind: DatabaseKind } {
  if (databaseUrl.startsWith('sqlite:')) {
    const file = databaseUrl.slice('sqlite:'.length)
    if (file !== ':memory:') fsMkdirFor(file)
    const sqlite = new SQLite(file)
    sqlite.pragma('journal_mode = WAL')
    sqlite.pragma('synchronous = NORMAL')
    sqlite.pragma(`busy_timeout = ${SQLITE_BUSY_TIMEOUT_MS}`)
    return { db: new Kysely<Database>({ dialect: new SqliteDialect({ database: sqlite }) }), kind: 'sqlite' }
  }
  const pool = new pg.Pool({
    connectionString: databaseUrl,
    max: 10,
    connectionTimeoutMillis: 5000,
    types: { getTypeParser: (oid, format) => oid === pg.types.builtins.INT8 ? Number : pg.types.getTypeParser(oid, format) }
  })
  // An idle connection the server ends (restart, failover, pg_terminate_backend) is an 'error'
  // event on the pool; unhandled, it would crash the process. pg-pool drops that client itself.
  pool.on('error', onIdleError)
  return { db: new Kysely<Database>({ dialect: new PostgresDialect({ pool }) }), kind: 'postgres' }
}

function fsMkdirFor (file: string): void {
  mkdirSync(path.dirname(path.resolve(file)), { recursive: true })
}

export async function migrateToLatest (db: Kysely<Database>): Promise<void> {
  const migrator = new Migrator({
    db,
    provider: new FileMigrationProvider({
      fs,
      path,
      migrationFolder: fileURLToPath(new URL('../migrations', import.meta.url))
    })
  })
  const { error, results } = await migrator.migrateToLatest()
  const failed = results?.find((result) => result.status === 'Error')
  if (error !== undefined || failed !== undefined) {
    const name = failed?.migrationName ?? 'unknown'
    throw new Error(`database migration ${name} failed: ${error instanceof Error ? error.message : String(error)}`)
  }
}

const dbPlugin: FastifyPluginAsync<DbPluginOptions> = async (app, options) => {
  const { db, kind } = openDatabase(options.databaseUrl, (err) => app.log.warn({ err }, 'idle database connection failed; it will be replaced'))
  try {
    if (options.migrate) await migrateToLatest(db)
  } catch (err) {
    await db.destroy()
    throw err
  }
  app.decorate('db', db)
  app.decorate('dbKind', kind)
  app.addHook('onClose', async () => { await db.destroy() })
}

export default fp(dbPlugin, { name: 'db' })
