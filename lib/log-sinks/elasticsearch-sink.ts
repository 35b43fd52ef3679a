import type { SendOutcome } from './batch-queue.js'
import { SinkClient, wholeBatchOutcome, withAuthorization } from './http-post.js'
import type { LogEntry } from './log-entry.js'
import type { LineSender } from './line-sender.js'

const ACTION = '{"create":{}}\n'

interface BulkItem { status?: number, error?: { type?: string, reason?: string } }

/**
 * Elasticsearch's bulk API (POST /INDEX/_bulk, NDJSON with a trailing newline). A 200 answer
 * may still refuse items: each item's status is read, 429 and 5xx items are retried, any other
 * refused item is counted as dropped with its reason. `create` works for plain indices and data
 * streams alike; each document gets an "@timestamp" (ISO) before its own fields.
 */
export function elasticsearchSender (origin: string, index: string, authorization: string | null): LineSender {
  const client = new SinkClient(origin)
  const path = `/${encodeURIComponent(index)}/_bulk`
  return {
    async send (batch: LogEntry[], signal: AbortSignal): Promise<SendOutcome<LogEntry>> {
      let body = ''
      for (const entry of batch) body += `${ACTION}{"@timestamp":"${new Date(entry.timeMs).toISOString()}",${entry.line.slice(1)}\n`
      const answer = await client.post(path, withAuthorization({ 'content-type': 'application/x-ndjson' }, authorization), body, signal)
      if (answer.status !== 200) return wholeBatchOutcome(answer, batch)
      let parsed: { errors?: boolean, items?: Array<Record<string, BulkItem>> }
      try {
        parsed = JSON.parse(answer.body)
      } catch {
        return { retry: batch, refused: 0, error: 'bulk answer is not JSON' }
      }
      if (parsed.errors !== true) return { retry: [], refused: 0, error: null }
      const items = parsed.items ?? []
      if (items.length !== batch.length) return { retry: batch, refused: 0, error: `bulk answer has ${items.length} items for ${batch.length} documents` }
      const retry: LogEntry[] = []
      let refused = 0
      let error: string | null = null
      for (let i = 0; i < items.length; i++) {
        const item = Object.values(items[i])[0] ?? {}
        const status = item.status ?? 0
        if (status >= 200 && status < 300) continue
        error = `item status ${status}${item.error === undefined ? '' : `: ${item.error.type ?? ''} ${item.error.reason ?? ''}`.trimEnd()}`
        if (status === 429 || status >= 500) retry.push(batch[i])
        else refused++
      }
      return { retry, refused, error }
    },
    close: async () => { await client.close() }
  }
}
