/**
 * Tells a database that is away, full or locked (docs/faults.md) from
 * a query that is wrong. The first kind is answered 503 with Retry-After and a message naming
 * the problem, and makes a process that starts without its database fall back to the last
 * configuration it saw; the second stays an error.
 */
export interface DatabaseProblem {
  /** Names the problem for the admin's 503 and /ready: "database disk is full (SQLITE_FULL)". */
  message: string
  retryAfterSeconds: number
  /** The server cannot be reached or the connection was cut (as opposed to full, locked or not migrated). */
  unreachable: boolean
}

/** Node socket errors of a connection to PostgreSQL that could not be made or was cut. */
const SOCKET_CODES = new Set(['ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'EPIPE', 'ENOTFOUND', 'EHOSTUNREACH', 'ENETUNREACH', 'EAI_AGAIN'])

/** What pg says (without a code) when a connection ends or cannot be had. */
const PG_CONNECTION_MESSAGE = /connection terminated|not queryable|timeout exceeded when trying to connect|connection timeout|cannot use a pool after calling end/i

export function databaseProblem (err: unknown): DatabaseProblem | null {
  if (err === null || typeof err !== 'object') return null
  const { code, message = '' } = err as { code?: unknown, message?: string }
  if (typeof code === 'string') {
    if (code === 'SQLITE_FULL') return { message: `database disk is full (SQLITE_FULL): ${message}`, retryAfterSeconds: 5, unreachable: false }
    if (code.startsWith('SQLITE_BUSY') || code.startsWith('SQLITE_LOCKED')) return { message: `database is locked by another writer (${code})`, retryAfterSeconds: 1, unreachable: false }
    if (code.startsWith('SQLITE_IOERR') || code.startsWith('SQLITE_READONLY') || code.startsWith('SQLITE_CANTOPEN')) {
      return { message: `database file cannot be written (${code}): ${message}`, retryAfterSeconds: 5, unreachable: false }
    }
    // Class 08 connection exception, 57P01–57P03 shutdown/starting up, 53300 too many connections.
    if (/^08/.test(code) || /^57P0[1-3]$/.test(code) || code === '53300') return { message: `database unavailable (${code}): ${message}`, retryAfterSeconds: 5, unreachable: true }
    // A worker that starts before the primary has migrated a fresh database.
    if (code === '42P01') return { message: `database schema is not ready yet: ${message}`, retryAfterSeconds: 5, unreachable: false }
    if (SOCKET_CODES.has(code)) return { message: `database unreachable: ${message === '' ? code : message}`, retryAfterSeconds: 5, unreachable: true }
  }
  if (PG_CONNECTION_MESSAGE.test(message)) return { message: `database unavailable: ${message}`, retryAfterSeconds: 5, unreachable: true }
  if (/^no such table/.test(message)) return { message: `database schema is not ready yet: ${message}`, retryAfterSeconds: 5, unreachable: false }
  return null
}
