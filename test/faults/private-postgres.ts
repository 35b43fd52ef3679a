import { execFile } from 'node:child_process'
import { chownSync, existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { promisify } from 'node:util'
import pg from 'pg'
import { freePort, type TestContext } from '../helper.js'

const run = promisify(execFile)

/** A PostgreSQL server of one test's own, to stop, restart and cut (the shared one is never touched). */
export interface PrivatePostgres {
  port: number
  /** URL of database `name` on it (trust auth, user postgres). */
  url: (name: string) => string
  /** Runs SQL on the `postgres` database through a short-lived connection. */
  query: <R extends pg.QueryResultRow = pg.QueryResultRow>(text: string, values?: unknown[]) => Promise<pg.QueryResult<R>>
  /** pg_ctl stop (fast: sessions are cut, as a restart or failover does). */
  stop: () => Promise<void>
  start: () => Promise<void>
  /** pg_terminate_backend on every session of database `name`; how many were cut. */
  terminateBackends: (name: string) => Promise<number>
}

function binDir (): string | null {
  const root = '/usr/lib/postgresql'
  if (!existsSync(root)) return null
  const versions = readdirSync(root).filter((name) => existsSync(path.join(root, name, 'bin', 'initdb'))).sort((a, b) => Number(b) - Number(a))
  return versions.length === 0 ? null : path.join(root, versions[0], 'bin')
}

/**
 * initdb + pg_ctl from the machine's PostgreSQL binaries, run as the `postgres` user (they
 * refuse root) on a free port, data in a temporary folder removed at teardown. null with a
 * reason when the binaries, runuser or the postgres user are missing (the caller skips);
 * with GATEHOUSE_REQUIRE_SERVICES=1 that is an error instead.
 */
export async function startPrivatePostgres (t: TestContext): Promise<PrivatePostgres | string> {
  const bin = binDir()
  const missing = bin === null
    ? 'PostgreSQL server binaries (/usr/lib/postgresql/*/bin/initdb) not installed'
    : process.getuid?.() !== 0 ? 'not root: cannot run initdb as the postgres user' : null
  let uid = -1
  if (missing === null) {
    try {
      uid = Number((await run('id', ['-u', 'postgres'])).stdout.trim())
    } catch {
      return skipOrFail('no postgres user')
    }
  }
  if (missing !== null) return skipOrFail(missing)
  const dir = mkdtempSync(path.join(tmpdir(), 'gatehouse-pg-'))
  chownSync(dir, uid, uid)
  const data = path.join(dir, 'data')
  const port = await freePort()
  const asPostgres = async (program: string, args: string[]): Promise<void> => {
    await run('runuser', ['-u', 'postgres', '--', path.join(bin as string, program), ...args], { timeout: 30_000 })
  }
  await asPostgres('initdb', ['-D', data, '--auth=trust', '-U', 'postgres', '-E', 'UTF8', '--no-sync'])
  const options = `-p ${port} -k ${dir} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=50`
  const start = async (): Promise<void> => { await asPostgres('pg_ctl', ['-D', data, '-o', options, '-l', path.join(dir, 'log'), '-w', '-t', '20', 'start']) }
  const stop = async (): Promise<void> => { await asPostgres('pg_ctl', ['-D', data, '-m', 'fast', '-w', '-t', '20', 'stop']) }
  await start()
  t.teardown(async () => {
    await asPostgres('pg_ctl', ['-D', data, '-m', 'immediate', '-w', 'stop']).catch(() => {})
    rmSync(dir, { recursive: true, force: true })
  })

  const url = (name: string): string => `postgres://postgres@127.0.0.1:${port}/${name}`
  const query = async <R extends pg.QueryResultRow>(text: string, values?: unknown[]): Promise<pg.QueryResult<R>> => {
    const client = new pg.Client({ connectionString: url('postgres'), connectionTimeoutMillis: 3000 })
    client.on('error', () => {})
    await client.connect()
    try {
      return await client.query<R>(text, values)
    } finally {
      await client.end().catch(() => {})
    }
  }
  const terminateBackends = async (name: string): Promise<number> => {
    const { rows } = await query<{ n: number }>('select count(pg_terminate_backend(pid))::int as n from pg_stat_activity where datname = $1 and pid <> pg_backend_pid()', [name])
    return rows[0].n
  }
  return { port, url, query, stop, start, terminateBackends }
}

function skipOrFail (reason: string): string {
  if (process.env.GATEHOUSE_REQUIRE_SERVICES === '1') throw new Error(`private PostgreSQL required: ${reason}`)
  return reason
}
