import { randomBytes } from 'node:crypto'
import { spawn, type ChildProcess } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import { createServer, get as httpGet, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import { connect, createServer as createNetServer } from 'node:net'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { createInterface } from 'node:readline'
import { fileURLToPath, pathToFileURL } from 'node:url'
import type { FastifyInstance } from 'fastify'
import { request as undiciRequest, type Dispatcher } from 'undici'
import { buildApp, type BuildOptions } from '../app.js'
import { loadConfig } from '../plugins/config.js'
import type { Route, RouteInput } from '../schemas/route.js'

/** What tap's `t` offers that these helpers use. */
export interface TestContext {
  teardown: (fn: () => unknown) => void
}

export const ADMIN_TOKEN = 'test-admin-token-0123456789'
export const adminHeaders = { authorization: `Bearer ${ADMIN_TOKEN}` }

/** A fresh directory removed at teardown. */
export function tempDir (t: TestContext): string {
  const dir = mkdtempSync(path.join(tmpdir(), 'gatehouse-test-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  return dir
}

export interface TestAppOptions {
  /** Environment variables on top of the test defaults (e.g. RATE_LIMIT_MAX). */
  env?: Record<string, string>
  /** Share a database file between apps (two instances on one database). */
  databaseUrl?: string
  build?: BuildOptions
}

/** A migrated app on its own SQLite file, closed at teardown. Not listening: use for inject(). */
export async function buildTestApp (t: TestContext, options: TestAppOptions = {}): Promise<FastifyInstance> {
  const databaseUrl = options.databaseUrl ?? `sqlite:${path.join(tempDir(t), 'gatehouse.db')}`
  const config = loadConfig({ DATABASE_URL: databaseUrl, ADMIN_TOKEN, LOG_LEVEL: 'silent', ...options.env })
  // No snapshot file in the repository's ./data/ from in-process tests (test/faults/ checks it on real processes).
  const app = await buildApp(config, { configPollIntervalMs: 100, configSnapshotFile: null, ...options.build })
  t.teardown(() => app.close())
  return app
}

export interface RunningGateway {
  app: FastifyInstance
  url: string
  port: number
}

/** buildTestApp, listening on 127.0.0.1 on a free port: for tests over real sockets. */
export async function startGateway (t: TestContext, options: TestAppOptions = {}): Promise<RunningGateway> {
  const app = await buildTestApp(t, options)
  await app.listen({ port: 0, host: '127.0.0.1' })
  const { port } = app.server.address() as { port: number }
  return { app, url: `http://127.0.0.1:${port}`, port }
}

export interface Upstream {
  server: Server
  url: string
  port: number
  /** Every request received, in order. */
  requests: Array<{ method: string, url: string, headers: IncomingMessage['headers'], rawHeaders: string[] }>
}

/** A node:http server on 127.0.0.1 and a free port, closed at teardown. Default handler echoes the request as JSON. */
export async function startUpstream (t: TestContext, handler: (req: IncomingMessage, res: ServerResponse) => void = echo): Promise<Upstream> {
  const requests: Upstream['requests'] = []
  const server = createServer((req, res) => {
    requests.push({ method: req.method ?? '', url: req.url ?? '', headers: req.headers, rawHeaders: req.rawHeaders })
    handler(req, res)
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  t.teardown(() => new Promise<void>((resolve) => {
    server.closeAllConnections()
    server.close(() => resolve())
  }))
  const { port } = server.address() as { port: number }
  return { server, url: `http://127.0.0.1:${port}`, port, requests }
}

/** Answers with the request line, headers and body as JSON. */
export function echo (req: IncomingMessage, res: ServerResponse): void {
  const chunks: Buffer[] = []
  req.on('data', (chunk: Buffer) => chunks.push(chunk))
  req.on('end', () => {
    const body = JSON.stringify({ method: req.method, url: req.url, headers: req.headers, body: Buffer.concat(chunks).toString('utf8') })
    res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) })
    res.end(body)
  })
}

/** Creates a route through the admin API (inject) and returns it; fails the test on a non-201. */
export async function createRoute (app: FastifyInstance, input: Partial<RouteInput> & { name: string, path: string, targets: RouteInput['targets'] }): Promise<Route> {
  const response = await app.inject({ method: 'POST', url: '/admin/routes', headers: adminHeaders, payload: input })
  if (response.statusCode !== 201) throw new Error(`creating route ${input.name} failed: ${response.statusCode} ${response.body}`)
  return response.json() as Route
}

export interface HttpResponse {
  statusCode: number
  headers: Record<string, string | string[] | undefined>
  body: string
  json: <T = any>() => T
}

/** One request over a real socket (undici), body read whole. */
export type HttpRequestOptions = Partial<Omit<Dispatcher.RequestOptions, 'origin' | 'path'>>

export async function httpRequest (url: string, options: HttpRequestOptions = {}): Promise<HttpResponse> {
  const response = await undiciRequest(url, options as Parameters<typeof undiciRequest>[1])
  const body = await response.body.text()
  return {
    statusCode: response.statusCode,
    headers: response.headers,
    body,
    json: () => JSON.parse(body)
  }
}

/**
 * Writes raw bytes to host:port and collects everything until the server closes the
 * connection or `timeoutMs` passes: for requests no client library would send.
 */
export async function rawHttp (port: number, payload: string | Buffer, timeoutMs = 3000): Promise<string> {
  return await new Promise((resolve, reject) => {
    const socket = connect(port, '127.0.0.1')
    const chunks: Buffer[] = []
    const timer = setTimeout(() => socket.destroy(), timeoutMs)
    socket.on('data', (chunk: Buffer) => chunks.push(chunk))
    socket.on('error', reject)
    socket.on('close', () => {
      clearTimeout(timer)
      resolve(Buffer.concat(chunks).toString('latin1'))
    })
    socket.write(payload)
  })
}

/** Status code of the first response in raw HTTP text (0 when there is none). */
export function rawStatus (response: string): number {
  const match = /^HTTP\/1\.[01] (\d{3})/.exec(response)
  return match === null ? 0 : Number(match[1])
}

/** The real process (`node --import tsx server.ts`), started by spawnGateway. */
export interface SpawnedGateway {
  url: string
  port: number
  process: ChildProcess
  /** Everything the process wrote, one entry per line, as it arrives (pino writes JSON lines). */
  stdout: string[]
  stderr: string[]
  /** Resolves with the exit code (null when killed by a signal) once the process has exited. */
  exited: Promise<number | null>
  /** Sends `signal` (default SIGTERM) and resolves with the exit code. */
  stop: (signal?: NodeJS.Signals) => Promise<number | null>
  /** Resolves with the first stdout/stderr line matching `pattern` (already written or still to come). */
  waitForLine: (pattern: RegExp, timeoutMs?: number) => Promise<string>
}

export interface SpawnOptions {
  /** Wait until GET /health answers 200 (default). false: return at once (e.g. to see start-up fail). */
  waitForHealth?: boolean
  /** Working directory (default: the repository root); `.env` is read from here. */
  cwd?: string
  /** How long start-up may take (default 30 s: tsx compiles on the fly on a busy machine). */
  startTimeoutMs?: number
}

const REPO_ROOT = fileURLToPath(new URL('..', import.meta.url))
const GATEWAY_VARIABLES = ['PORT', 'HOST', 'DATABASE_URL', 'ADMIN_TOKEN', 'ADMIN_AUTH_MAX_FAILURES', 'ADMIN_CORS_ORIGINS', 'REDIS_URL', 'TRUST_PROXY', 'WORKERS',
  'LOG_LEVEL', 'BODY_LIMIT', 'UPSTREAM_TIMEOUT_MS', 'RATE_LIMIT_MAX', 'RATE_LIMIT_WINDOW_MS', 'CORS_ORIGINS',
  'AUDIT_RETENTION_DAYS', 'HEADERS_TIMEOUT_MS', 'REQUEST_TIMEOUT_MS', 'KEEP_ALIVE_TIMEOUT_MS',
  'MAX_CONNECTIONS', 'SEND_TIMEOUT_MS', 'SHUTDOWN_DELAY_MS', 'SHUTDOWN_GRACE_MS', 'SERVER_TIMING',
  'CACHE_MEMORY_BYTES',
  'ACCESS_LOG_FILE', 'ACCESS_LOG_ROTATE_BYTES', 'ACCESS_LOG_KEEP', 'LOG_SINKS', 'LOG_SINK_QUEUE',
  'OTEL_EXPORTER_OTLP_ENDPOINT', 'OTEL_TRACES_SAMPLER_ARG', 'OTEL_SERVICE_NAME',
  'SECRET_KEY', 'CONFIG_FILE', 'CONFIG_REVISIONS_KEEP', 'TLS_PORT', 'TLS_CERT_FILE', 'TLS_KEY_FILE',
  'EGRESS_PORT', 'EGRESS_AUTH', 'EGRESS_DEFAULT', 'EGRESS_MAX_CONNECTIONS', 'EGRESS_IDLE_TIMEOUT_MS', 'EGRESS_CACHE']

/** A port nobody listens on right now (the process needs a real number: PORT=0 would hide it). */
export async function freePort (): Promise<number> {
  const server = createNetServer()
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const { port } = server.address() as { port: number }
  await new Promise<void>((resolve) => server.close(() => resolve()))
  return port
}

/**
 * Starts the gateway as a real process from the sources (no build needed), on 127.0.0.1, a free
 * port and a temporary SQLite file, with ADMIN_TOKEN and LOG_LEVEL=warn; `env` goes on top
 * (undefined removes a default). Waits for /health; killed (with its workers) at teardown.
 */
export async function spawnGateway (t: TestContext, env: Record<string, string | undefined> = {}, options: SpawnOptions = {}): Promise<SpawnedGateway> {
  const port = env.PORT !== undefined && /^\d+$/.test(env.PORT) ? Number(env.PORT) : await freePort()
  const inherited: Record<string, string | undefined> = { ...process.env }
  for (const name of GATEWAY_VARIABLES) delete inherited[name]
  delete inherited.NODE_OPTIONS
  const childEnv: Record<string, string | undefined> = {
    ...inherited,
    PORT: String(port),
    HOST: '127.0.0.1',
    DATABASE_URL: `sqlite:${path.join(tempDir(t), 'gatehouse.db')}`,
    ADMIN_TOKEN,
    LOG_LEVEL: 'warn',
    ...env
  }
  // undefined in `env` removes a default (e.g. ADMIN_TOKEN, to see one generated).
  for (const [name, value] of Object.entries(childEnv)) if (value === undefined) delete childEnv[name]
  const tsx = fileURLToPath(import.meta.resolve('tsx'))
  // Own process group, so teardown can kill cluster workers along with the primary.
  const child = spawn(process.execPath, ['--import', pathToFileURL(tsx).href, path.join(REPO_ROOT, 'server.ts')], {
    cwd: options.cwd ?? REPO_ROOT,
    env: childEnv,
    stdio: ['ignore', 'pipe', 'pipe'],
    detached: true
  })
  const stdout: string[] = []
  const stderr: string[] = []
  const watchers = new Set<(line: string) => void>()
  const collect = (stream: NodeJS.ReadableStream, lines: string[]): void => {
    createInterface({ input: stream }).on('line', (line) => {
      lines.push(line)
      for (const watcher of watchers) watcher(line)
    })
  }
  collect(child.stdout as NodeJS.ReadableStream, stdout)
  collect(child.stderr as NodeJS.ReadableStream, stderr)
  let exitCode: number | null | undefined
  const exited = new Promise<number | null>((resolve) => {
    child.on('exit', (code) => { exitCode = code; resolve(code) })
  })
  t.teardown(async () => {
    if (exitCode !== undefined) return
    try { process.kill(-(child.pid as number), 'SIGKILL') } catch {}
    await exited
  })

  const output = (): string => `stdout:\n${stdout.join('\n')}\nstderr:\n${stderr.join('\n')}`
  const gateway: SpawnedGateway = {
    url: `http://127.0.0.1:${port}`,
    port,
    process: child,
    stdout,
    stderr,
    exited,
    async stop (signal = 'SIGTERM') {
      if (exitCode === undefined) child.kill(signal)
      return await exited
    },
    async waitForLine (pattern, timeoutMs = 10_000) {
      const seen = stdout.find((line) => pattern.test(line)) ?? stderr.find((line) => pattern.test(line))
      if (seen !== undefined) return seen
      return await new Promise<string>((resolve, reject) => {
        const timer = setTimeout(() => {
          watchers.delete(watcher)
          reject(new Error(`no output line matched ${pattern} within ${timeoutMs} ms\n${output()}`))
        }, timeoutMs)
        const watcher = (line: string): void => {
          if (!pattern.test(line)) return
          clearTimeout(timer)
          watchers.delete(watcher)
          resolve(line)
        }
        watchers.add(watcher)
      })
    }
  }
  if (options.waitForHealth === false) return gateway

  const deadline = Date.now() + (options.startTimeoutMs ?? 30_000)
  while (true) {
    if (exitCode !== undefined) throw new Error(`gateway exited with ${exitCode} before it was healthy\n${output()}`)
    if (Date.now() > deadline) throw new Error(`gateway not healthy within ${options.startTimeoutMs ?? 30_000} ms\n${output()}`)
    const healthy = await new Promise<boolean>((resolve) => {
      const request = httpGet({ host: '127.0.0.1', port, path: '/health', agent: false }, (response) => {
        response.resume()
        resolve(response.statusCode === 200)
      })
      request.on('error', () => resolve(false))
      request.setTimeout(1000, () => request.destroy())
    })
    if (healthy) return gateway
    await new Promise((resolve) => setTimeout(resolve, 50))
  }
}

/** Creates a consumer through the admin API (inject); fails the test on a non-201. */
export async function createConsumer (app: FastifyInstance, name: string, rateLimit: { max: number, windowMs: number } | null = null): Promise<{ id: string, name: string }> {
  const response = await app.inject({ method: 'POST', url: '/admin/consumers', headers: adminHeaders, payload: { name, rateLimit } })
  if (response.statusCode !== 201) throw new Error(`creating consumer ${name} failed: ${response.statusCode} ${response.body}`)
  return response.json()
}

/** Creates an API key for a consumer (id or name) and returns the answer, key included. */
export async function createApiKey (app: FastifyInstance, consumer: string): Promise<{ id: string, key: string, prefix: string }> {
  const response = await app.inject({ method: 'POST', url: `/admin/consumers/${consumer}/keys`, headers: adminHeaders })
  if (response.statusCode !== 201) throw new Error(`creating a key for ${consumer} failed: ${response.statusCode} ${response.body}`)
  return response.json()
}

/** Where the PostgreSQL tests create their databases (trust auth); override with GATEHOUSE_TEST_POSTGRES_URL. */
export const POSTGRES_ADMIN_URL = process.env.GATEHOUSE_TEST_POSTGRES_URL ?? 'postgres://postgres@127.0.0.1:5432/test'

/**
 * A fresh PostgreSQL database `gh_<random>` for one test, dropped at teardown; its URL, or
 * null when the server is unreachable (the caller skips with a message). With
 * GATEHOUSE_REQUIRE_SERVICES=1 an unreachable server fails the test instead.
 */
export async function postgresDatabase (t: TestContext): Promise<string | null> {
  const { default: pg } = await import('pg')
  const admin = new pg.Client({ connectionString: POSTGRES_ADMIN_URL, connectionTimeoutMillis: 2000 })
  try {
    await admin.connect()
  } catch (err) {
    await admin.end().catch(() => {})
    if (process.env.GATEHOUSE_REQUIRE_SERVICES === '1') throw new Error(`PostgreSQL required but unreachable at ${POSTGRES_ADMIN_URL}: ${(err as Error).message}`)
    return null
  }
  const name = `gh_${randomBytes(6).toString('hex')}`
  await admin.query(`CREATE DATABASE ${name}`)
  t.teardown(async () => {
    // Apps close before this runs (teardowns run last-in first-out); give their pools a moment to hang up.
    for (let i = 0; i < 40; i++) {
      const { rows } = await admin.query('SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = $1', [name])
      if (rows[0].n === 0) break
      await new Promise((resolve) => setTimeout(resolve, 50))
    }
    await admin.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`)
    await admin.end()
  })
  const url = new URL(POSTGRES_ADMIN_URL)
  url.pathname = `/${name}`
  return url.toString()
}

/**
 * Fails the test on any unhandled promise rejection or uncaught exception while it runs:
 * for tests that provoke upstream failures (resets, timeouts, dead targets).
 */
export function failOnUnhandledRejections (t: TestContext & { fail: (message: string) => unknown }): void {
  const onRejection = (reason: unknown): void => { t.fail(`unhandled rejection: ${reason instanceof Error ? reason.stack ?? reason.message : String(reason)}`) }
  const onException = (err: Error): void => { t.fail(`uncaught exception: ${err.stack ?? err.message}`) }
  process.on('unhandledRejection', onRejection)
  process.on('uncaughtException', onException)
  t.teardown(() => {
    process.off('unhandledRejection', onRejection)
    process.off('uncaughtException', onException)
  })
}

/** The shared Redis of the test machine; override with GATEHOUSE_TEST_REDIS_URL. */
export const TEST_REDIS_URL = process.env.GATEHOUSE_TEST_REDIS_URL ?? 'redis://127.0.0.1:6379'

/**
 * A key prefix of its own for one test on the shared Redis (its keys are deleted at
 * teardown), or null when Redis is unreachable (the caller skips with a message). With
 * GATEHOUSE_REQUIRE_SERVICES=1 an unreachable Redis fails the test instead.
 */
export async function redisKeyPrefix (t: TestContext): Promise<string | null> {
  const { Redis } = await import('ioredis')
  const client = new Redis(TEST_REDIS_URL, { lazyConnect: true, connectTimeout: 1000, maxRetriesPerRequest: 0, retryStrategy: () => null })
  client.on('error', () => {})
  try {
    await client.connect()
    await client.ping()
  } catch (err) {
    client.disconnect()
    if (process.env.GATEHOUSE_REQUIRE_SERVICES === '1') throw new Error(`Redis required but unreachable at ${TEST_REDIS_URL}: ${(err as Error).message}`)
    return null
  }
  const prefix = `gatehouse-test:${randomBytes(6).toString('hex')}:`
  t.teardown(async () => {
    const keys = await client.keys(`${prefix}*`)
    if (keys.length > 0) await client.del(...keys)
    client.disconnect()
  })
  return prefix
}

export interface PrivateRedis {
  port: number
  url: string
  stop: () => Promise<void>
  start: () => Promise<void>
  /** Sends a signal to the server (SIGSTOP/SIGCONT: a Redis that hangs without closing connections). */
  signal: (signal: NodeJS.Signals) => void
}

/**
 * A redis-server of this test's own on a free port, for tests that stop and restart Redis
 * (the shared one is never stopped). null when redis-server is not installed.
 */
export async function startPrivateRedis (t: TestContext): Promise<PrivateRedis | null> {
  const { spawn, spawnSync } = await import('node:child_process')
  if (spawnSync('redis-server', ['--version']).status !== 0) {
    if (process.env.GATEHOUSE_REQUIRE_SERVICES === '1') throw new Error('redis-server required but not installed')
    return null
  }
  const port = await freePort()
  let child: ReturnType<typeof spawn> | null = null
  const start = async (): Promise<void> => {
    child = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'], { stdio: 'ignore' })
    for (let i = 0; i < 100; i++) {
      if (await canConnect(port)) return
      await new Promise((resolve) => setTimeout(resolve, 20))
    }
    throw new Error(`private redis-server on port ${port} did not start`)
  }
  const stop = async (): Promise<void> => {
    const running = child
    child = null
    if (running === null || running.exitCode !== null) return
    await new Promise<void>((resolve) => { running.once('exit', () => resolve()); running.kill('SIGKILL') })
  }
  await start()
  t.teardown(stop)
  const signal = (name: NodeJS.Signals): void => { (child as ReturnType<typeof spawn> | null)?.kill(name) }
  return { port, url: `redis://127.0.0.1:${port}`, stop, start, signal }
}

async function canConnect (port: number): Promise<boolean> {
  return await new Promise((resolve) => {
    const socket = connect(port, '127.0.0.1')
    socket.once('connect', () => { socket.destroy(); resolve(true) })
    socket.once('error', () => resolve(false))
  })
}
