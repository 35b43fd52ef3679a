import { type Readable, Transform, type TransformCallback } from 'node:stream'
import type { FastifyRequest } from 'fastify'
import type { GatewayContext } from './gateway-context.js'

export class BodyTooLargeError extends Error {
  constructor (readonly limit: number) { super(`request body exceeds the limit of ${limit} bytes`) }
}

/** True when the request carries a body to forward. */
export function hasRequestBody (request: FastifyRequest): boolean {
  const headers = request.raw.headers
  return headers['content-length'] !== undefined ? headers['content-length'] !== '0' : headers['transfer-encoding'] !== undefined
}

/**
 * The request body as a stream for the upstream. A declared Content-Length was checked
 * against the limit before reading and Node enforces it, so only chunked bodies are
 * counted and cut as soon as they pass the limit: a parser that hands the raw stream on
 * never checks `bodyLimit` itself (docs/routing.md "Forwarding").
 */
export function limitedRequestBody (request: FastifyRequest, context: GatewayContext, limit: number): Readable {
  if (request.raw.headers['content-length'] !== undefined) return request.raw
  const counter = new BodyLimiter(limit, context)
  request.raw.on('error', (err) => counter.destroy(err))
  return request.raw.pipe(counter)
}

class BodyLimiter extends Transform {
  constructor (private readonly limit: number, private readonly context: GatewayContext) { super() }

  override _transform (chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    this.context.bytesIn += chunk.length
    if (this.context.bytesIn > this.limit) return callback(new BodyTooLargeError(this.limit))
    callback(null, chunk)
  }
}
