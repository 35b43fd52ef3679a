import type { IncomingHttpHeaders } from 'node:http'
import { Readable } from 'node:stream'
import type { FastifyInstance, FastifyRequest } from 'fastify'
import { buildUpstreamRequest, upstreamPath } from '../../lib/forward.js'
import type { GatewayContext } from '../../lib/gateway-context.js'
import type { UpstreamRequest } from '../../lib/pipeline.js'
import type { Target } from '../../lib/upstream-target.js'
import type { Route } from '../../schemas/route.js'

/** What the upstream answered to the cache's own request. */
export interface Fetched {
  status: number
  headers: IncomingHttpHeaders
  /** The whole body when it fit in maxBodyBytes. */
  body: Buffer | null
  /** Otherwise the body as it streams (what was read already first). */
  stream: Readable | null
}

/** Request headers the cache replaces with its own validators, or drops. */
const CONDITIONAL = new Set(['if-none-match', 'if-modified-since', 'if-match', 'if-unmodified-since', 'if-range', 'range'])

export interface Validators {
  etag: string | null
  lastModified: string | null
}

/**
 * A GET the cache sends itself — to revalidate a stale entry (with the entry's validators) or to
 * refresh one in the background — built as forward() builds the client's request (the route's
 * request stages included), at the time of the client's request. Connection failures are
 * retried on another target like forward()'s; any other failure rejects.
 */
export type UpstreamFetch = (upstream: PreparedFetch, maxBodyBytes: number, needStream: boolean) => Promise<Fetched>

export interface PreparedFetch {
  route: Route
  path: string
  headers: string[]
}

/** The cache's GET for this client request, with `validators` as its conditional headers; null when a request stage refuses it. */
export function prepareFetch (request: FastifyRequest, context: GatewayContext, route: Route, validators: Validators | null): PreparedFetch | null {
  const upstream: UpstreamRequest = buildUpstreamRequest(request, context, route)
  const change = context.pipeline?.onUpstreamRequest
  if (change !== undefined && change !== null && change(request, upstream) !== null) return null
  const headers: string[] = []
  for (let i = 0; i < upstream.headers.length; i += 2) {
    if (CONDITIONAL.has(upstream.headers[i].toLowerCase())) continue
    headers.push(upstream.headers[i], upstream.headers[i + 1])
  }
  if (validators?.etag !== null && validators?.etag !== undefined) headers.push('if-none-match', validators.etag)
  if (validators?.lastModified !== null && validators?.lastModified !== undefined) headers.push('if-modified-since', validators.lastModified)
  return { route, path: upstream.path, headers }
}

const CONNECTION_FAILURES = new Set(['ECONNREFUSED', 'ECONNRESET', 'EPIPE', 'EHOSTUNREACH', 'ENETUNREACH', 'UND_ERR_SOCKET', 'UND_ERR_CLOSED', 'UND_ERR_CONNECT_TIMEOUT'])

export function createUpstreamFetch (app: FastifyInstance): UpstreamFetch {
  return async function fetchUpstream (prepared, maxBodyBytes, needStream) {
    const { route } = prepared
    const tried = new Set<Target>()
    for (;;) {
      const target = app.upstreams.select(route, tried)
      if (target === null) throw new Error('no healthy target')
      tried.add(target)
      target.inFlight++
      let settled = false
      const settle = (): void => { if (!settled) { settled = true; target.inFlight-- } }
      try {
        const response = await target.pool.request({
          method: 'GET',
          path: upstreamPath(target.basePath, prepared.path),
          headers: prepared.headers,
          headersTimeout: route.timeoutMs,
          bodyTimeout: route.timeoutMs
        })
        app.upstreams.report(target, response.statusCode >= 500 ? 'failure' : 'success')
        const body = await readUpTo(response.body, maxBodyBytes, needStream, settle)
        return { status: response.statusCode, headers: response.headers, ...body }
      } catch (err) {
        settle()
        const code = (err as { code?: string }).code ?? ''
        app.upstreams.report(target, 'failure')
        if (CONNECTION_FAILURES.has(code) && tried.size <= route.retries) continue
        throw err
      }
    }
  }
}

/**
 * The body whole when it fits in `max` bytes; otherwise the rest as a stream behind what was
 * read (or, when nobody will read it, the connection's body discarded).
 */
async function readUpTo (body: Readable, max: number, needStream: boolean, settle: () => void): Promise<{ body: Buffer | null, stream: Readable | null }> {
  const iterator = body[Symbol.asyncIterator]() as AsyncIterator<Buffer>
  const chunks: Buffer[] = []
  let size = 0
  for (;;) {
    const next = await iterator.next()
    if (next.done === true) {
      settle()
      return { body: Buffer.concat(chunks, size), stream: null }
    }
    size += next.value.length
    chunks.push(next.value)
    if (size <= max) continue
    if (!needStream) {
      body.destroy()
      settle()
      return { body: null, stream: null }
    }
    const rest = Readable.from((async function * () {
      yield * chunks
      for (;;) {
        const more = await iterator.next()
        if (more.done === true) return
        yield more.value
      }
    })())
    rest.once('close', () => { settle(); if (!body.destroyed) body.destroy() })
    return { body: null, stream: rest }
  }
}
