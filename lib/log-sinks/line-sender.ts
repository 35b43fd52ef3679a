import type { SendOutcome } from './batch-queue.js'
import type { LogEntry } from './log-entry.js'

/** One kind of sink's wire: sends a batch of lines, and lets go of its connections at the end. */
export interface LineSender {
  send: (batch: LogEntry[], signal: AbortSignal) => Promise<SendOutcome<LogEntry>>
  close: () => Promise<void>
}
