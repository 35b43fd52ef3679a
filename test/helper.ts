import { mkdtempSync, rmSync } from 'node:fs'
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import { connect } from 'node:net'
import { tmpdir } from 'node:os'
import path from 'node:path'
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
  const app = await buildApp(config, { configPollIntervalMs: 100, ...options.build })
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
