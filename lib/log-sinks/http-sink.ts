import type { SendOutcome } from './batch-queue.js'
import { SinkClient, wholeBatchOutcome, withAuthorization } from './http-post.js'
import type { LogEntry } from './log-entry.js'
import type { LineSender } from './line-sender.js'

/** http(s)://host/path: each batch POSTed as one JSON array of the lines. */
export function httpSender (url: string, authorization: string | null): LineSender {
  const parsed = new URL(url)
  const client = new SinkClient(parsed.origin)
  const path = `${parsed.pathname}${parsed.search}`
  return {
    async send (batch: LogEntry[], signal: AbortSignal): Promise<SendOutcome<LogEntry>> {
      let body = '['
      for (let i = 0; i < batch.length; i++) body += (i === 0 ? '' : ',') + batch[i].line
      body += ']'
      const answer = await client.post(path, withAuthorization({ 'content-type': 'application/json' }, authorization), body, signal)
      return wholeBatchOutcome(answer, batch)
    },
    close: async () => { await client.close() }
  }
}
