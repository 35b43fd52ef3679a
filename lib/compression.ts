import type { Transform } from 'node:stream'
import zlib from 'node:zlib'
import type { CompressionEncoding, RouteCompression } from '../schemas/transforms.js'
import type { ResponseHead } from './proxy-headers.js'

/**
 * Route `compression` (docs/transforms.md "Compression"): which encoding a client gets, whether
 * an answer may be compressed at all, and the streams that do it. Levels are chosen for a proxy
 * core to keep up: gzip 6 (zlib's default), brotli quality 4 with a 1 MiB window (quality 11,
 * brotli's default, is ~50 times slower), zstd 3 (its default) where Node has it.
 */

export const GZIP_LEVEL = 6
export const BROTLI_QUALITY = 4
const BROTLI_WINDOW_BITS = 20

type ZstdFactory = (options?: { params?: Record<number, number> }) => Transform
const zstdFactory = (zlib as unknown as { createZstdCompress?: ZstdFactory }).createZstdCompress
/** Node 22.15+ and 23.8+ have zstd in node:zlib; Node 20 has not. */
export const ZSTD_AVAILABLE = typeof zstdFactory === 'function'

/** Why the route's compression is refused at the admin API, or null. */
export function compressionProblem (compression: RouteCompression, field: string): string | null {
  const zstdAt = compression.encodings.indexOf('zstd')
  if (zstdAt !== -1 && !ZSTD_AVAILABLE) return `${field}/encodings/${zstdAt} zstd is not available in this Node (${process.version}); use br or gzip`
  return null
}

/** A compressing stream for one answer. */
export function compressor (encoding: CompressionEncoding): Transform {
  if (encoding === 'gzip') return zlib.createGzip({ level: GZIP_LEVEL })
  if (encoding === 'br') return zlib.createBrotliCompress({ params: brotliParams })
  return (zstdFactory as ZstdFactory)()
}

const brotliParams = {
  [zlib.constants.BROTLI_PARAM_QUALITY]: BROTLI_QUALITY,
  [zlib.constants.BROTLI_PARAM_LGWIN]: BROTLI_WINDOW_BITS,
  [zlib.constants.BROTLI_PARAM_MODE]: zlib.constants.BROTLI_MODE_TEXT
}

/** A whole body compressed off the event loop (zlib's thread pool): for answers the gateway holds as a Buffer. */
export async function compressBuffer (encoding: CompressionEncoding, body: Buffer): Promise<Buffer> {
  const stream = compressor(encoding)
  const chunks: Buffer[] = []
  stream.on('data', (chunk: Buffer) => chunks.push(chunk))
  return await new Promise((resolve, reject) => {
    stream.once('error', reject)
    stream.once('end', () => resolve(Buffer.concat(chunks)))
    stream.end(body)
  })
}

/**
 * The encoding to use for an Accept-Encoding header: the highest q-value among `offered`, the
 * first offered winning a tie; `*` stands for any encoding the header does not name, `x-gzip`
 * for gzip, `q=0` refuses. No header, or nothing acceptable: null (sent as it is).
 */
export function negotiateEncoding (acceptEncoding: string | undefined, offered: readonly CompressionEncoding[]): CompressionEncoding | null {
  if (acceptEncoding === undefined || acceptEncoding === '') return null
  const named = new Map<string, number>()
  let anyQ: number | null = null
  for (const item of acceptEncoding.split(',')) {
    const [token, ...params] = item.split(';')
    let coding = token.trim().toLowerCase()
    if (coding === '') continue
    if (coding === 'x-gzip') coding = 'gzip'
    let q = 1
    for (const param of params) {
      const [key, value] = param.split('=')
      if (key.trim().toLowerCase() !== 'q') continue
      q = /^\s*(0(\.\d{0,3})?|1(\.0{0,3})?)\s*$/.test(value ?? '') ? Number(value) : 0
    }
    if (coding === '*') anyQ = q
    else if (!named.has(coding) || (named.get(coding) as number) < q) named.set(coding, q)
  }
  let best: CompressionEncoding | null = null
  let bestQ = 0
  for (const encoding of offered) {
    const q = named.get(encoding) ?? anyQ ?? 0
    if (q > bestQ) { best = encoding; bestQ = q }
  }
  return best
}

/** Media types a route compresses: exact ones and whole types ("text/*"); text/event-stream never. */
export class CompressibleTypes {
  private readonly exact = new Set<string>()
  private readonly wholeTypes = new Set<string>()

  constructor (types: readonly string[]) {
    for (const type of types) {
      const lower = type.toLowerCase()
      if (lower.endsWith('/*')) this.wholeTypes.add(lower.slice(0, -1))
      else this.exact.add(lower)
    }
  }

  has (contentType: string): boolean {
    const semicolon = contentType.indexOf(';')
    const media = (semicolon === -1 ? contentType : contentType.slice(0, semicolon)).trim().toLowerCase()
    if (media === 'text/event-stream') return false
    if (this.exact.has(media)) return true
    const slash = media.indexOf('/')
    return slash > 0 && this.wholeTypes.has(media.slice(0, slash + 1))
  }
}

/** A header's value as one string (upstream heads may hold arrays and numbers). */
function headerText (value: ResponseHead[string]): string | undefined {
  if (value === undefined) return undefined
  return Array.isArray(value) ? value.join(', ') : String(value)
}

export function hasNoTransform (cacheControl: ResponseHead[string]): boolean {
  const text = headerText(cacheControl)
  return text !== undefined && /(?:^|,)\s*no-transform\s*(?:,|$)/i.test(text)
}

/**
 * Whether this answer is one compression may change at all (docs/transforms.md "When an answer
 * is not compressed"), whatever the client accepts. `declaredLength` is the Content-Length the
 * answer declares, or the body's length when the gateway holds it.
 */
export function compressibleAnswer (statusCode: number, head: ResponseHead, types: CompressibleTypes, minBytes: number, declaredLength: number | null): boolean {
  if (statusCode < 200 || statusCode === 204 || statusCode === 206 || statusCode === 304) return false
  if (head['content-range'] !== undefined) return false
  const encoding = headerText(head['content-encoding'])
  if (encoding !== undefined && encoding.trim().toLowerCase() !== 'identity') return false
  if (hasNoTransform(head['cache-control'])) return false
  const contentType = headerText(head['content-type'])
  if (contentType === undefined || !types.has(contentType)) return false
  return declaredLength === null || declaredLength >= minBytes
}

/** Adds Accept-Encoding to Vary unless it is already there (any case) or Vary is "*". */
export function varyOnAcceptEncoding (head: ResponseHead): void {
  const vary = headerText(head.vary)
  if (vary === undefined || vary.trim() === '') { head.vary = 'Accept-Encoding'; return }
  const listed = vary.split(',').map((token) => token.trim().toLowerCase())
  if (listed.includes('*') || listed.includes('accept-encoding')) { head.vary = vary; return }
  head.vary = `${vary}, Accept-Encoding`
}

/**
 * The head of an answer about to be sent compressed: Content-Encoding set, Content-Length and
 * Accept-Ranges dropped (ranges of the compressed form are not served), a strong ETag made weak
 * (the bytes differ from the upstream's representation), Vary merged.
 */
export function markCompressed (head: ResponseHead, encoding: CompressionEncoding): void {
  head['content-encoding'] = encoding
  head['content-length'] = undefined
  if (head['accept-ranges'] !== undefined) head['accept-ranges'] = undefined
  const etag = headerText(head.etag)
  if (etag !== undefined && !etag.startsWith('W/')) head.etag = `W/${etag}`
  varyOnAcceptEncoding(head)
}

/** The Content-Length a head declares, or null (none, or not a number). */
export function declaredLength (head: ResponseHead): number | null {
  const value = head['content-length']
  if (value === undefined) return null
  const length = Number(Array.isArray(value) ? value[0] : value)
  return Number.isFinite(length) ? length : null
}
