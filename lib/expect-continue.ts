import type { IncomingMessage, ServerResponse } from 'node:http'

/**
 * `Expect: 100-continue` (docs/routing.md "Forwarding"). Node answers "100 Continue" at once unless the
 * server listens to 'checkContinue'; then a declared body over the limit would still get a
 * 100 before its 413. Instead the request goes through the normal handler marked, and the
 * 100 is sent only once the gateway has decided to read the body: by the proxy's body-limit
 * stage for proxied traffic, by the admin scope once its token check passed
 * (routes/admin/index.ts). Other endpoints read no body: their final answer is all a client needs.
 */
const kExpectsContinue = Symbol('gatehouse.expectsContinue')

type MarkedRequest = IncomingMessage & { [kExpectsContinue]?: boolean }

/** The server's 'checkContinue' listener: the request is handled as any other, with no 100 yet. */
export function deferContinue (handler: (req: IncomingMessage, res: ServerResponse) => void): (req: IncomingMessage, res: ServerResponse) => void {
  return (req, res) => {
    (req as MarkedRequest)[kExpectsContinue] = true
    handler(req, res)
  }
}

/** Sends the deferred "100 Continue" (once), if the client asked for one. */
export function sendContinue (req: IncomingMessage, res: ServerResponse): void {
  const marked = req as MarkedRequest
  if (marked[kExpectsContinue] !== true) return
  marked[kExpectsContinue] = false
  if (!res.headersSent && !res.destroyed) res.writeContinue()
}
