import { type Readable, Transform, type TransformCallback } from 'node:stream'
import type { FastifyRequest } from 'fastify'
import type { GatewayContext } from './gateway-context.js'
import { reject } from './gateway-reply.js'
import type { RouteStage } from './pipeline.js'
import type { Route } from '../schemas/route.js'

/** Sent with 413: the rest of an oversized body is not worth reading (nginx closes too). */
const CLOSE = { connection: 'close' }

export class BodyTooLargeError extends Error {
  constructor (readonly limit: number) { super(`request body exceeds the limit of ${limit} bytes`) }
}

/**
 * The body-limit stage of every route: a declared Content-Length over the route's bodyLimit
 * is refused with 413 before a byte is read (and before 100 Continue); a chunked body is
 * counted and cut while it streams (limitedRequestBody, traps.md #2).
 */
export function compileBodyLimit (route: Route): RouteStage {
  const limit = route.bodyLimit
  const message = `request body exceeds the limit of ${limit} bytes`
  return {
    name: 'body-limit',
    onRequest (request, reply, done) {
      const declared = request.raw.headers['content-length']
      if (declared !== undefined) {
        const context = request.gateway as GatewayContext
        const size = Number(declared)
        if (size > limit) return void reject(reply, context, 413, 'too_large', message, CLOSE)
        context.bytesIn = size
      }
      done()
    }
  }
}

/** True when the request carries a body to forward. */
export function hasRequestBody (request: FastifyRequest): boolean {
  const headers = request.raw.headers
  return headers['content-length'] !== undefined ? headers['content-length'] !== '0' : headers['transfer-encoding'] !== undefined
}

/**
 * The request body as a stream for the upstream. A declared Content-Length was checked
 * against the limit before reading and Node enforces it, so only chunked bodies are
 * counted and cut as soon as they pass the limit (traps.md #2).
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
