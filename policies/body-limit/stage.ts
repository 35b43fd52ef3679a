import type { GatewayContext } from '../../lib/gateway-context.js'
import { reject } from '../../lib/gateway-reply.js'
import type { RouteStage } from '../../lib/pipeline.js'
import type { Route } from '../../schemas/route.js'

/** Sent with 413: the rest of an oversized body is not worth reading (nginx closes too). */
const CLOSE = { connection: 'close' }

/**
 * The body-limit stage of every route: a declared Content-Length over the route's bodyLimit
 * is refused with 413 before a byte is read (and before 100 Continue); a chunked body is
 * counted and cut while it streams (lib/body-limit.ts limitedRequestBody; docs/routing.md "Forwarding").
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
