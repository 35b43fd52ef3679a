import type { FastifyRequest } from 'fastify'
import {
  compressBuffer, CompressibleTypes, compressibleAnswer, compressor, declaredLength, hasNoTransform, markCompressed,
  negotiateEncoding, varyOnAcceptEncoding
} from '../../lib/compression.js'
import type { RouteStage } from '../../lib/pipeline.js'
import type { ResponseHead } from '../../lib/proxy-headers.js'
import type { Route } from '../../schemas/route.js'
import type { CompressionEncoding } from '../../schemas/transforms.js'

/**
 * Compressed forms of bodies the gateway holds as Buffers (a cache hit sends the same Buffer on
 * every hit, docs/transforms.md "Cached answers"): compressed once per Buffer and encoding, and
 * forgotten with the Buffer (a WeakMap: an evicted cache entry takes its variants with it).
 * Concurrent hits share one compression.
 */
const compressedBodies = new WeakMap<Buffer, Map<CompressionEncoding, Promise<Buffer>>>()

export function compressedOnce (body: Buffer, encoding: CompressionEncoding): Promise<Buffer> {
  let variants = compressedBodies.get(body)
  if (variants === undefined) {
    variants = new Map()
    compressedBodies.set(body, variants)
  }
  let variant = variants.get(encoding)
  if (variant === undefined) {
    variant = compressBuffer(encoding, body)
    // A failure is not remembered: the next hit tries again.
    variant.catch(() => { variants.delete(encoding) })
    variants.set(encoding, variant)
  }
  return variant
}

/**
 * The client's choice for an answer that may be compressed, or null (HEAD, a request asking for
 * no transformation, nothing acceptable). A compressible answer varies on Accept-Encoding even
 * when this client gets it as it is.
 */
function chosenEncoding (request: FastifyRequest, head: ResponseHead, encodings: readonly CompressionEncoding[]): CompressionEncoding | null {
  varyOnAcceptEncoding(head)
  if (request.method === 'HEAD') return null
  const headers = request.raw.headers
  if (hasNoTransform(headers['cache-control'])) return null
  return negotiateEncoding(headers['accept-encoding'], encodings)
}

/** Route `compression` (docs/transforms.md "Compression"): on the way back only, nearest the upstream after the cache. */
export function compileCompression (route: Route): RouteStage | null {
  const compression = route.compression ?? null
  if (compression === null) return null
  const { encodings, minBytes } = compression
  const types = new CompressibleTypes(compression.types)
  return {
    name: 'compression',
    onResponseBody (request, statusCode, head) {
      if (!compressibleAnswer(statusCode, head, types, minBytes, declaredLength(head))) return null
      const encoding = chosenEncoding(request, head, encodings)
      if (encoding === null) return null
      markCompressed(head, encoding)
      return compressor(encoding)
    },
    onGatewayPayload (request, statusCode, head, payload) {
      if (!compressibleAnswer(statusCode, head, types, minBytes, payload.length)) return null
      const encoding = chosenEncoding(request, head, encodings)
      if (encoding === null) return null
      // The head is marked once the compressed form exists: a failure sends the body as it is, with its own head.
      return compressedOnce(payload, encoding).then((compressed) => {
        markCompressed(head, encoding)
        return compressed
      }, (err: Error) => {
        request.log.warn({ err, encoding }, 'compressing an answer held by the gateway failed; sent uncompressed')
        return payload
      })
    }
  }
}
