import { mkdirSync, promises as fs } from 'node:fs'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import SQLite from 'better-sqlite3'
import pg from 'pg'
import { type DatabaseConnection, type Driver, FileMigrationProvider, Kysely, Migrator, PostgresDialect, SqliteDialect } from 'kysely'
import { databaseProblem } from '../lib/database-errors.js'
import type { Database } from './database.js'

export type DatabaseKind = 'sqlite' | 'postgres'

// A write lock held by another process must not freeze this one for long: better-sqlite3 waits
// synchronously, blocking the event loop (docs/faults.md "How it is built"). Writes are off the request path and retried.
const SQLITE_BUSY_TIMEOUT_MS = 250

export function openDatabase (databaseUrl: string, onConnectionError: (err: Error) => void = () => {}): { db: Kysely<Database>, kind: DatabaseKind } {
  if (databaseUrl.startsWith('sqlite:')) {
    const file = databaseUrl.slice('sqlite:'.length)
    if (file !== ':memory:') fsMkdirFor(file)
    const sqlite = new SQLite(file)
    sqlite.pragma('journal_mode = WAL')
    sqlite.pragma('synchronous = NORMAL')
    sqlite.pragma(`busy_timeout = ${SQLITE_BUSY_TIMEOUT_MS}`)
    return { db: new Kysely<Database>({ dialect: new SqliteDialectKeepingErrors(sqlite) }), kind: 'sqlite' }
  }
  const pool = new pg.Pool({
    connectionString: databaseUrl,
    max: 10,
    connectionTimeoutMillis: 5000,
    types: { getTypeParser: (oid, format) => oid === pg.types.builtins.INT8 ? Number : pg.types.getTypeParser(oid, format) }
  })
  // A connection the server ends (stop, restart, failover, pg_terminate_backend) is an 'error'
  // event on its client; unhandled, it would crash the process. pg-pool listens only while a
  // client is idle, so every client gets a listener of its own for its whole life, also while
  // checked out (the audit writer, the config poll, an admin transaction between statements).
  // The query in flight fails by itself, and pg-pool discards the client when it is released.
  pool.on('connect', (client) => { client.on('error', onConnectionError) })
  // The same error of an idle client, also emitted by the pool: already reported above.
  pool.on('error', () => {})
  return { db: new Kysely<Database>({ dialect: new PostgresDialect({ pool }) }), kind: 'postgres' }
}

/**
 * When a statement fails with SQLITE_FULL or an I/O error, SQLite has already rolled the
 * transaction back; Kysely's ROLLBACK then fails with "cannot rollback - no transaction is
 * active", and that error replaced the one that says what happened. Roll back only what is open.
 */
class SqliteDialectKeepingErrors extends SqliteDialect {
  constructor (private readonly sqlite: SQLite.Database) { super({ database: sqlite }) }

  override createDriver (): Driver {
    const driver = super.createDriver()
    const rollback = driver.rollbackTransaction.bind(driver)
    driver.rollbackTransaction = async (connection: DatabaseConnection) => {
      if (this.sqlite.inTransaction) await rollback(connection)
    }
    return driver
  }
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
  // Unreachable is not a failed migration: the caller retries (docs/faults.md "Starting without the database").
  if (databaseProblem(error)?.unreachable === true) throw error
  const failed = results?.find((result) => result.status === 'Error')
  if (error !== undefined || failed !== undefined) {
    const name = failed?.migrationName ?? 'unknown'
    throw new Error(`database migration ${name} failed: ${error instanceof Error ? error.message : String(error)}`)
  }
}
