import { mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs'
import path from 'node:path'

/**
 * The last configuration a process loaded from PostgreSQL, kept in a local file so that a
 * process (or cluster worker) that starts while the database is unreachable serves it until
 * the database answers (docs/faults.md "Starting without the database"). One file per database:
 * `./data/last-config-<host>-<port>-<database>.json`, relative to the working directory, the
 * same folder as the default SQLite database. SQLite needs none: its file is the data.
 *
 * The file holds what the database holds (route specs with their JWT secrets, credential
 * hashes, the admin token's hash), so it is written 0600.
 */
export interface ConfigSnapshot {
  format: 1
  /** config_version the sections were loaded at. */
  version: number
  savedAt: string
  /** What each tracked concern (routes, filters, consumers, admin token) loaded, as it loaded it. */
  sections: Record<string, unknown>
}

/** Where DATABASE_URL's last configuration is kept; null for SQLite. */
export function snapshotFileFor (databaseUrl: string, cwd = process.cwd()): string | null {
  if (databaseUrl.startsWith('sqlite:')) return null
  const url = new URL(databaseUrl)
  const database = decodeURIComponent(url.pathname.replace(/^\//, '')) || 'postgres'
  const name = `last-config-${url.hostname}-${url.port || '5432'}-${database}`.replace(/[^A-Za-z0-9._-]/g, '_')
  return path.resolve(cwd, 'data', `${name}.json`)
}

/** The saved snapshot, or null when there is none; a damaged file is an error naming it. */
export function readSnapshot (file: string): ConfigSnapshot | null {
  let text: string
  try {
    text = readFileSync(file, 'utf8')
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null
    throw err
  }
  const parsed = JSON.parse(text) as Partial<ConfigSnapshot>
  if (parsed.format !== 1 || typeof parsed.version !== 'number' || parsed.sections === null || typeof parsed.sections !== 'object') {
    throw new Error(`${file} is not a Gatehouse configuration snapshot`)
  }
  return parsed as ConfigSnapshot
}

/** Written whole to a file of this process's own, then renamed over: readers never see half. */
export function writeSnapshot (file: string, snapshot: ConfigSnapshot): void {
  mkdirSync(path.dirname(file), { recursive: true })
  const partial = `${file}.${process.pid}.tmp`
  writeFileSync(partial, JSON.stringify(snapshot), { mode: 0o600 })
  renameSync(partial, file)
}
