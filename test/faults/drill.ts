import type { Socket } from 'node:net'
import { adminHeaders, httpRequest, type SpawnedGateway, type Upstream } from '../helper.js'

/** Shared by the fault drills: they run against the real process (spawnGateway). */

/** Creates a route in the running process through the admin API; returns its id. */
export async function addRoute (gateway: SpawnedGateway, name: string, path: string, target: string): Promise<string> {
  const response = await httpRequest(`${gateway.url}/admin/routes`, {
    method: 'POST',
    headers: { ...adminHeaders, 'content-type': 'application/json' },
    body: JSON.stringify({ name, path, targets: [{ url: target, weight: 1 }] })
  })
  if (response.statusCode !== 201) throw new Error(`creating route ${name}: ${response.statusCode} ${response.body}`)
  return response.json().id
}

export interface TargetStatus { url: string, inFlight: number, healthy: boolean, consecutiveFailures: number }

export async function targetStatus (gateway: SpawnedGateway, url: string): Promise<TargetStatus> {
  const response = await httpRequest(`${gateway.url}/admin/status`, { headers: adminHeaders })
  const target = (response.json().targets as TargetStatus[]).find((entry) => entry.url === url)
  if (target === undefined) throw new Error(`no target ${url} in /admin/status`)
  return target
}

export interface AuditRow { status: number, outcome: string, detail: string | null, routeId: string | null }

/** The request rows of one route (at most 1000). */
export async function auditRows (gateway: SpawnedGateway, routeId: string): Promise<AuditRow[]> {
  const response = await httpRequest(`${gateway.url}/admin/audit/logs?eventType=request&routeId=${routeId}&limit=1000`, { headers: adminHeaders })
  if (response.statusCode !== 200) throw new Error(`audit logs: ${response.statusCode} ${response.body}`)
  return response.json().items
}

/** Polls `read` until `done` says yes or `timeoutMs` passes; returns the last value either way. */
export async function settle<T> (read: () => Promise<T> | T, done: (value: T) => boolean, timeoutMs: number): Promise<T> {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    const value = await read()
    if (done(value) || Date.now() > deadline) return value
    await sleep(50)
  }
}

/** `promise`, or a rejection naming `what` after `timeoutMs`. */
export async function within<T> (promise: Promise<T>, timeoutMs: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  const timeout = new Promise<never>((_resolve, reject) => { timer = setTimeout(() => reject(new Error(`${what}: not within ${timeoutMs} ms`)), timeoutMs) })
  try {
    return await Promise.race([promise, timeout])
  } finally {
    clearTimeout(timer)
  }
}

export async function sleep (ms: number): Promise<void> {
  await new Promise((resolve) => setTimeout(resolve, ms))
}

/** Counts the upstream's open connections, and those that carried a request. */
export function countConnections (upstream: Upstream): { open: () => number, withRequest: () => number } {
  const open = new Set<Socket>()
  const used = new Set<Socket>()
  upstream.server.on('connection', (socket: Socket) => {
    open.add(socket)
    socket.once('close', () => { open.delete(socket); used.delete(socket) })
  })
  upstream.server.on('request', (req: { socket: Socket }) => { if (open.has(req.socket)) used.add(req.socket) })
  return { open: () => open.size, withRequest: () => used.size }
}

/** Counts every status in a list of rows: { '408': 3, … }. */
export function countBy<T> (rows: readonly T[], key: (row: T) => string | number | null): Record<string, number> {
  const counts: Record<string, number> = {}
  for (const row of rows) {
    const value = String(key(row))
    counts[value] = (counts[value] ?? 0) + 1
  }
  return counts
}
