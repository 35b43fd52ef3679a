/** One line to ship: an access-log line or an audit row, already serialised. */
export interface LogEntry {
  /** 'request' for access-log lines; audit rows keep their event type ('admin'). */
  type: string
  /** Epoch milliseconds. */
  timeMs: number
  /** One JSON object, no trailing newline. */
  line: string
}
