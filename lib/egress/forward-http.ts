import type { IncomingHttpHeaders, IncomingMessage, ServerResponse } from 'node:http'
import { Readable } from 'node:stream'
import { pipeline } from 'node:stream/promises'
import type { Agent, Dispatcher } from 'undici'
import { addUpstreamResponseHeaders, connectionNamedHeaders, type ResponseHead } from '../proxy-headers.js'
import type { BodyRecorder } from './cache.js'
import type { AbsoluteTarget } from './destination.js'

/**
 * One absolute-form request forwarded to a checked address (docs/egress.md "Plain HTTP").
 * The pool is keyed by that address (the Host header carries the name), so a kept-alive
 * upstream connection is only ever reused for a destination that was checked to resolve to it.
 * Bodies stream both ways; hop-by-hop and Proxy-* headers (Proxy-Authorization with them) are
 * removed and Via is added in both directions.
 */
export interface ForwardOutcome {
  status: number
  /** Request body bytes sent on. */
  bytesIn: number
  /** null when the answer reached the client; otherwise why not (the caller answers if it still can). */
  failure: null | { status: 502 | 504, message: string } | { status: 499, message: string }
}

/**
 * Called with the answer's status and headers before they are sent (EGRESS_CACHE=true): may add
 * to the head sent on, and may return a recorder that sees the body as it streams.
 */
export type AnswerTap = (status: number, headers: IncomingHttpHeaders, head: ResponseHead) => BodyRecorder | null

const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'te', 'trailer', 'transfer-encoding', 'upgrade', 'host', 'expect', 'http2-settings'])
const TIMEOUT_CODES = new Set(['UND_ERR_HEADERS_TIMEOUT', 'UND_ERR_CONNECT_TIMEOUT'])
const CONNECT_FAILURES = new Set(['ECONNREFUSED', 'ECONNRESET', 'EHOSTUNREACH', 'ENETUNREACH', 'UND_ERR_CONNECT_TIMEOUT', 'UND_ERR_SOCKET'])

export function egressRequestHeaders (request: IncomingMessage, target: AbsoluteTarget): string[] {
  const named = connectionNamedHeaders(request.headers.connection)
  const raw = request.rawHeaders
  const out: string[] = []
  let via: string | undefined
  for (let i = 0; i < raw.length; i += 2) {
    const lower = raw[i].toLowerCase()
    if (HOP_BY_HOP.has(lower) || lower.startsWith('proxy-') || lower.includes('_')) continue
    if (named !== null && named.has(lower)) continue
    if (lower === 'via') {
      via = via === undefined ? raw[i + 1] : `${via}, ${raw[i + 1]}`
      continue
    }
    out.push(raw[i], raw[i + 1])
  }
  const ours = `${request.httpVersion} gatehouse`
  out.push('host', target.authority, 'via', via === undefined ? ours : `${via}, ${ours}`)
  return out
}

export async function forwardHttp (
  agent: Agent, request: IncomingMessage, response: ServerResponse, target: AbsoluteTarget,
  addresses: readonly string[], timeoutMs: number, tap: AnswerTap | null = null
): Promise<ForwardOutcome> {
  const counter = { bytes: 0 }
  const hasBody = request.headers['transfer-encoding'] !== undefined || (request.headers['content-length'] !== undefined && request.headers['content-length'] !== '0')
  const headers = egressRequestHeaders(request, target)
  const abort = new AbortController()
  const onClientGone = (): void => { if (!response.writableFinished) abort.abort() }
  response.on('close', onClientGone)

  let lastError: NodeJS.ErrnoException | null = null
  try {
    // Another checked address is tried only while nothing of the body has been sent.
    for (const address of hasBody ? addresses.slice(0, 1) : addresses) {
      const host = address.includes(':') ? `[${address}]` : address
      let answer: Dispatcher.ResponseData
      try {
        answer = await agent.request({
          origin: `http://${host}:${target.port}`,
          path: target.path,
          method: request.method as string,
          headers,
          body: hasBody ? Readable.from(counted(request, counter), { objectMode: false }) : null,
          headersTimeout: timeoutMs,
          bodyTimeout: timeoutMs,
          signal: abort.signal
        })
      } catch (err) {
        lastError = err as NodeJS.ErrnoException
        if (abort.signal.aborted) return { status: 499, bytesIn: counter.bytes, failure: { status: 499, message: 'the client went away' } }
        if (!hasBody && CONNECT_FAILURES.has(lastError.code ?? '')) continue
        break
      }
      const head = addUpstreamResponseHeaders({}, answer.headers as Record<string, string | string[]>)
      const recorder = tap === null ? null : tap(answer.statusCode, answer.headers as IncomingHttpHeaders, head)
      response.writeHead(answer.statusCode, head)
      if (recorder !== null) answer.body.on('data', recorder.chunk)
      try {
        await pipeline(answer.body, response)
        recorder?.done()
      } catch (err) {
        response.destroy()
        return { status: answer.statusCode, bytesIn: counter.bytes, failure: { status: 499, message: `answer cut: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}` } }
      }
      return { status: answer.statusCode, bytesIn: counter.bytes, failure: null }
    }
  } finally {
    response.removeListener('close', onClientGone)
  }
  const code = lastError?.code ?? ''
  if (TIMEOUT_CODES.has(code)) return { status: 504, bytesIn: counter.bytes, failure: { status: 504, message: `no answer from ${target.authority} within ${timeoutMs} ms` } }
  return { status: 502, bytesIn: counter.bytes, failure: { status: 502, message: `${target.authority} failed: ${code !== '' ? code : lastError?.message ?? 'unknown error'}` } }
}

async function * counted (request: IncomingMessage, counter: { bytes: number }): AsyncGenerator<Buffer> {
  for await (const chunk of request) {
    counter.bytes += (chunk as Buffer).length
    yield chunk as Buffer
  }
}
