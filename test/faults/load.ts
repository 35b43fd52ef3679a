import { randomBytes } from 'node:crypto'
import { setTimeout as sleep } from 'node:timers/promises'
import { Pool } from 'undici'
import { ADMIN_TOKEN } from '../helper.js'

/** One answered request of a load run. */
export interface Served {
  requestId: string
  status: number
  /** Date.now() when the whole answer had arrived. */
  finishedAt: number
}

export interface Load {
  /** Every request that got an answer, in order of answers. */
  readonly served: Served[]
  /** Requests that got no answer (connection refused or cut), with what happened. */
  readonly failed: string[]
  /** Stops sending and resolves when every connection's last request is done. */
  stop: () => Promise<void>
}

/**
 * `connections` loops sending GET `path` one after the other, each with an X-Request-Id of its
 * own (kept by the gateway, so audit rows can be matched to answers), until stop() or
 * `maxMs` — bounded in time whatever the test does.
 */
export function startLoad (origin: string, path: string, options: { connections: number, maxMs: number, pauseMs?: number }): Load {
  const pool = new Pool(origin, { connections: options.connections, pipelining: 1 })
  const prefix = randomBytes(4).toString('hex')
  const served: Served[] = []
  const failed: string[] = []
  const deadline = Date.now() + options.maxMs
  let running = true
  let next = 0
  const loop = async (): Promise<void> => {
    while (running && Date.now() < deadline) {
      const requestId = `load-${prefix}-${next++}`
      try {
        const response = await pool.request({ method: 'GET', path, headers: { 'x-request-id': requestId } })
        await response.body.dump()
        served.push({ requestId, status: response.statusCode, finishedAt: Date.now() })
      } catch (err) {
        failed.push(`${requestId}: ${(err as Error).message}`)
      }
      if (options.pauseMs !== undefined) await sleep(options.pauseMs)
    }
  }
  const loops = Array.from({ length: options.connections }, loop)
  return {
    served,
    failed,
    async stop () {
      running = false
      await Promise.all(loops)
      await pool.close()
    }
  }
}

export interface JsonAnswer {
  status: number
  headers: Record<string, string | string[] | undefined>
  body: any
}

/** One request with the admin token (or none for /ready), answer parsed as JSON. */
export async function call (origin: string, method: string, path: string, body?: unknown): Promise<JsonAnswer> {
  const { request } = await import('undici')
  const response = await request(origin + path, {
    method: method as 'GET',
    headers: { authorization: `Bearer ${ADMIN_TOKEN}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
    body: body === undefined ? undefined : JSON.stringify(body),
    headersTimeout: 15_000,
    bodyTimeout: 15_000
  })
  const text = await response.body.text()
  let parsed: unknown = text
  try { parsed = JSON.parse(text) } catch {}
  return { status: response.statusCode, headers: response.headers, body: parsed }
}

/** Polls `check` every 50 ms until it returns true or `timeoutMs` passes; says whether it did. */
export async function waitFor (check: () => Promise<boolean> | boolean, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs
  while (Date.now() < deadline) {
    try {
      if (await check()) return true
    } catch {}
    await sleep(50)
  }
  return false
}
