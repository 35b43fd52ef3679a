import type { IncomingHttpHeaders } from 'node:http'

/** Stored header block: the upstream's own, lower-case names. */
export type StoredHeaders = Record<string, string | string[]>

/** One stored answer (docs/cache.md "What is stored"). Times are epoch ms. */
export interface CacheEntry {
  readonly status: number
  readonly headers: StoredHeaders
  /** The same Buffer on every hit: compressed variants are memoised per Buffer. */
  readonly body: Buffer
  readonly receivedAt: number
  readonly freshUntil: number
  readonly staleWhileRevalidateUntil: number
  readonly staleIfErrorUntil: number
  /** When the store may forget it (fresh and stale windows over, or the time kept for revalidation). */
  readonly keepUntil: number
  /** Seconds it was already old when received (the upstream's Age). */
  readonly initialAgeSeconds: number
  /** Lower-case names of the request headers the answer's Vary names. */
  readonly varyNames: readonly string[]
}

/** Where an entry belongs: the parts of the key the store indexes for purges and invalidation. */
export interface CacheKey {
  readonly routeId: string
  /** Normalised path. */
  readonly path: string
  /** Normalised path and query string as sent: what an unsafe request invalidates. */
  readonly url: string
  /** Every part of the key except the Vary-named request headers (docs/cache.md "The key"). */
  readonly primary: string
}

/**
 * Headers never stored: hop-by-hop ones, what the gateway sets per answer (X-Request-Id, Age,
 * Via is appended per answer), and Content-Length (recomputed from the stored body).
 */
const NOT_STORED = new Set([
  'connection', 'keep-alive', 'proxy-connection', 'proxy-authenticate', 'proxy-authorization',
  'te', 'trailer', 'transfer-encoding', 'upgrade', 'http2-settings',
  'x-request-id', 'age', 'content-length', 'set-cookie'
])

/** The upstream's header block as stored. */
export function storedHeaders (upstream: IncomingHttpHeaders): StoredHeaders {
  const connection = typeof upstream.connection === 'string' ? upstream.connection.toLowerCase().split(',').map((name) => name.trim()) : []
  const stored: StoredHeaders = {}
  for (const name in upstream) {
    const value = upstream[name]
    if (value === undefined || NOT_STORED.has(name) || name.includes('_') || connection.includes(name)) continue
    stored[name] = value
  }
  return stored
}

/** The bytes an entry holds: body, header names and values, key, and a fixed per-entry overhead. */
export function entrySize (entry: CacheEntry, key: string): number {
  let size = ENTRY_OVERHEAD_BYTES + entry.body.length + key.length * 2
  for (const name in entry.headers) {
    const value = entry.headers[name]
    size += name.length * 2 + (Array.isArray(value) ? value.reduce((sum, item) => sum + item.length * 2, 0) : value.length * 2)
  }
  return size
}

/**
 * The objects, Map slots, index sets and Buffer around each entry: heap growth per stored entry
 * measured by bench/cache.mjs (docs/cache.md "Measured") minus what the other terms count.
 * Strings count two bytes a character, as V8 may store them.
 */
export const ENTRY_OVERHEAD_BYTES = 960

/** The key of one variant: the primary key and the values of the Vary-named request headers. */
export function variantKey (primary: string, names: readonly string[], request: IncomingHttpHeaders): string {
  if (names.length === 0) return primary
  const values = names.map((name) => {
    const value = request[name]
    return value === undefined ? null : Array.isArray(value) ? value.join(', ') : value
  })
  return `${primary}\u0000${JSON.stringify(values)}`
}

/** Age in seconds (RFC 9111 §4.2.3, with the arrival as response time). */
export function ageSeconds (entry: CacheEntry, now: number): number {
  return Math.max(0, Math.floor(entry.initialAgeSeconds + (now - entry.receivedAt) / 1000))
}

interface EntryMeta {
  status: number
  headers: StoredHeaders
  receivedAt: number
  freshUntil: number
  staleWhileRevalidateUntil: number
  staleIfErrorUntil: number
  keepUntil: number
  initialAgeSeconds: number
  varyNames: string[]
}

/** An entry as bytes (the Redis store): 4-byte length of the JSON metadata, the metadata, the body as is. */
export function serializeEntry (entry: CacheEntry): Buffer {
  const meta: EntryMeta = {
    status: entry.status,
    headers: entry.headers,
    receivedAt: entry.receivedAt,
    freshUntil: entry.freshUntil,
    staleWhileRevalidateUntil: entry.staleWhileRevalidateUntil,
    staleIfErrorUntil: entry.staleIfErrorUntil,
    keepUntil: entry.keepUntil,
    initialAgeSeconds: entry.initialAgeSeconds,
    varyNames: [...entry.varyNames]
  }
  const json = Buffer.from(JSON.stringify(meta))
  const length = Buffer.allocUnsafe(4)
  length.writeUInt32BE(json.length)
  return Buffer.concat([length, json, entry.body])
}

/** serializeEntry's inverse; null for bytes that are not an entry. */
export function deserializeEntry (bytes: Buffer): CacheEntry | null {
  if (bytes.length < 4) return null
  const length = bytes.readUInt32BE(0)
  if (4 + length > bytes.length) return null
  try {
    const meta = JSON.parse(bytes.subarray(4, 4 + length).toString('utf8')) as EntryMeta
    if (typeof meta.status !== 'number' || typeof meta.headers !== 'object') return null
    return { ...meta, body: bytes.subarray(4 + length) }
  } catch {
    return null
  }
}

/** Headers a 304 carries over from the stored answer (RFC 9110 §15.4.5). */
export const NOT_MODIFIED_HEADERS = ['cache-control', 'content-location', 'date', 'etag', 'expires', 'vary', 'last-modified']

/** Whether a conditional request is satisfied by the entry (RFC 9110 §13.1.2, §13.1.3): answered 304. */
export function notModified (request: IncomingHttpHeaders, entry: CacheEntry): boolean {
  if (entry.status !== 200) return false
  const ifNoneMatch = request['if-none-match']
  if (ifNoneMatch !== undefined) {
    const etag = entry.headers.etag
    if (typeof etag !== 'string') return false
    if (ifNoneMatch.trim() === '*') return true
    const opaque = weakTag(etag)
    return ifNoneMatch.split(',').some((tag) => weakTag(tag.trim()) === opaque)
  }
  const ifModifiedSince = request['if-modified-since']
  if (ifModifiedSince === undefined) return false
  const since = Date.parse(ifModifiedSince)
  const modified = entry.headers['last-modified'] ?? entry.headers.date
  const at = typeof modified === 'string' ? Date.parse(modified) : NaN
  return !Number.isNaN(since) && !Number.isNaN(at) && at <= since
}

/** Weak comparison: W/"x" and "x" are the same tag. */
function weakTag (tag: string): string {
  return tag.startsWith('W/') ? tag.slice(2) : tag
}
