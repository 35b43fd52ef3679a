import { randomFillSync } from 'node:crypto'

/**
 * W3C Trace Context (docs/logging.md "Tracing"): the client's `traceparent` is continued when
 * valid, otherwise a new trace starts. The gateway's server span is the child of the client's
 * span; every upstream attempt is a client span, child of the server span, and is what the
 * upstream's single `traceparent` names as its parent.
 */
export interface TraceContext {
  /** 32 lowercase hex digits. */
  traceId: string
  /** The client's span (the server span's parent), or null when the gateway started the trace. */
  parentSpanId: string | null
  /** The gateway's server span. */
  spanId: string
  sampled: boolean
  /** Upstream attempts made so far (retries are attempts − 1). */
  attempts: number
}

/** version 00: exactly "00-<32 hex>-<16 hex>-<2 hex>"; later versions may append "-…". */
const TRACEPARENT = /^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?$/
const ZERO_TRACE = '0'.repeat(32)
const ZERO_SPAN = '0'.repeat(16)

export interface ParsedTraceparent {
  traceId: string
  spanId: string
  sampled: boolean
}

/**
 * A valid traceparent, or null. Lowercase hex only (uppercase is invalid), ids not all zero,
 * version not ff, version 00 without anything after the flags. Two traceparent headers reach
 * here joined by Node as "a, b", which no version accepts: a new trace starts.
 */
export function parseTraceparent (value: string | undefined): ParsedTraceparent | null {
  if (value === undefined || value.length < 55) return null
  const match = TRACEPARENT.exec(value)
  if (match === null) return null
  const [, version, traceId, spanId, flags, rest] = match
  if (version === 'ff' || (version === '00' && rest !== undefined)) return null
  if (traceId === ZERO_TRACE || spanId === ZERO_SPAN) return null
  // A later version's extra field must not hold another header's text (", 00-…").
  if (rest !== undefined && rest.includes(',')) return null
  return { traceId, spanId, sampled: (parseInt(flags, 16) & 1) === 1 }
}

/**
 * The trace of one request: the client's continued, or a new one. Sampling is parent-based:
 * a parent's sampled flag is followed; a new trace is sampled with probability `ratio`.
 */
export function startTrace (traceparent: string | undefined, ratio: number): TraceContext {
  const parent = parseTraceparent(traceparent)
  if (parent !== null) return { traceId: parent.traceId, parentSpanId: parent.spanId, spanId: newSpanId(), sampled: parent.sampled, attempts: 0 }
  return { traceId: newTraceId(), parentSpanId: null, spanId: newSpanId(), sampled: ratio >= 1 || (ratio > 0 && Math.random() < ratio), attempts: 0 }
}

/** The header the upstream gets: this trace, `spanId` (the attempt's client span) as parent. */
export function traceparentOf (trace: TraceContext, spanId: string): string {
  return `00-${trace.traceId}-${spanId}-${trace.sampled ? '01' : '00'}`
}

const POOL_BYTES = 4096
let pool = Buffer.alloc(0)
let used = 0

/** Hex of `bytes` random bytes from a pool refilled 4 KiB at a time (one crypto call per ~200 requests). */
function randomHex (bytes: number): string {
  if (used + bytes > pool.length) {
    pool = randomFillSync(Buffer.allocUnsafe(POOL_BYTES))
    used = 0
  }
  const hex = pool.toString('hex', used, used + bytes)
  used += bytes
  return hex
}

export function newTraceId (): string {
  let id = randomHex(16)
  while (id === ZERO_TRACE) id = randomHex(16)
  return id
}

export function newSpanId (): string {
  let id = randomHex(8)
  while (id === ZERO_SPAN) id = randomHex(8)
  return id
}
