import { Pool } from 'undici'
import type { SendOutcome } from './batch-queue.js'

/** How long one batch's request may take before it counts as failed (and is retried). */
export const SINK_REQUEST_TIMEOUT_MS = 10_000

export interface PostAnswer { status: number, body: string }

/** One connection pool per sink origin, so a slow sink never holds another's connections. */
export class SinkClient {
  private readonly pool: Pool

  constructor (origin: string, private readonly timeoutMs = SINK_REQUEST_TIMEOUT_MS) {
    this.pool = new Pool(origin, { connections: 2, headersTimeout: timeoutMs, bodyTimeout: timeoutMs })
  }

  async post (path: string, headers: Record<string, string>, body: string, signal: AbortSignal): Promise<PostAnswer> {
    const answer = await this.pool.request({ method: 'POST', path, headers, body, signal })
    return { status: answer.statusCode, body: await answer.body.text() }
  }

  async close (): Promise<void> { await this.pool.destroy() }
}

/** A whole-batch answer: 2xx sent; 408, 429 and 5xx retried; any other status refuses the batch for good. */
export function wholeBatchOutcome<T> (answer: PostAnswer, batch: T[]): SendOutcome<T> {
  if (answer.status >= 200 && answer.status < 300) return { retry: [], refused: 0, error: null }
  const error = `HTTP ${answer.status}${answer.body === '' ? '' : `: ${answer.body.slice(0, 200)}`}`
  if (answer.status === 408 || answer.status === 429 || answer.status >= 500) return { retry: batch, refused: 0, error }
  return { retry: [], refused: batch.length, error }
}

export function withAuthorization (headers: Record<string, string>, authorization: string | null): Record<string, string> {
  if (authorization !== null) headers.authorization = authorization
  return headers
}
