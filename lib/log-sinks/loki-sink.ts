import type { SendOutcome } from './batch-queue.js'
import { SinkClient, wholeBatchOutcome, withAuthorization } from './http-post.js'
import type { LogEntry } from './log-entry.js'
import type { LineSender } from './line-sender.js'

/**
 * Loki's push API (POST /loki/api/v1/push): one stream per event type, labelled
 * job="gatehouse", instance and event_type only (few label values: Loki indexes labels),
 * values as ["<epoch ns as a string>", "<line>"] in arrival order.
 */
export function lokiSender (origin: string, authorization: string | null, instance: string): LineSender {
  const client = new SinkClient(origin)
  return {
    async send (batch: LogEntry[], signal: AbortSignal): Promise<SendOutcome<LogEntry>> {
      const streams = new Map<string, Array<[string, string]>>()
      for (const entry of batch) {
        let values = streams.get(entry.type)
        if (values === undefined) streams.set(entry.type, values = [])
        values.push([`${Math.trunc(entry.timeMs)}000000`, entry.line])
      }
      const body = JSON.stringify({
        streams: [...streams].map(([type, values]) => ({ stream: { job: 'gatehouse', instance, event_type: type }, values }))
      })
      const answer = await client.post('/loki/api/v1/push', withAuthorization({ 'content-type': 'application/json' }, authorization), body, signal)
      return wholeBatchOutcome(answer, batch)
    },
    close: async () => { await client.close() }
  }
}
