import { createHash } from 'node:crypto'
import type { IncomingMessage } from 'node:http'

/** RFC 6455 4.2.2: the GUID appended to the client's key to compute Sec-WebSocket-Accept. */
const WEBSOCKET_GUID = '258EAFA5-E914-47DA-95CA-C5AB0DC85B11'

/** The Sec-WebSocket-Accept an upstream must answer for this key. */
export function acceptFor (key: string): string {
  return createHash('sha1').update(key + WEBSOCKET_GUID).digest('base64')
}

/** Node sets `upgrade` on a request it handed to the server's 'upgrade' listeners (missing from its types). */
export function isUpgrade (req: IncomingMessage): boolean {
  return (req as IncomingMessage & { upgrade?: boolean | null }).upgrade === true
}

/** Node hands requests with Connection: upgrade and an Upgrade header to the server's 'upgrade' listeners; those asking for websocket. */
export function isWebSocketUpgrade (req: IncomingMessage): boolean {
  if (!isUpgrade(req)) return false
  const upgrade = req.headers.upgrade
  return typeof upgrade === 'string' && /(^|,)\s*websocket\s*(,|$)/i.test(upgrade)
}

/** Whether the request would carry a body (an upgrade request with one is never tunnelled nor forwarded). */
export function declaresBody (req: IncomingMessage): boolean {
  const length = req.headers['content-length']
  return req.headers['transfer-encoding'] !== undefined || (length !== undefined && length !== '0')
}

/**
 * Why a WebSocket upgrade request is not a valid handshake (RFC 6455 4.2.1), or null. Only a
 * GET without a body, with a 16-byte base64 key and version 13, is forwarded (docs/websocket.md).
 */
export function handshakeProblem (req: IncomingMessage): string | null {
  if (req.method !== 'GET') return `a WebSocket handshake must be a GET, not ${req.method ?? 'unknown'}`
  if (declaresBody(req)) return 'a WebSocket handshake has no body'
  const key = req.headers['sec-websocket-key']
  if (typeof key !== 'string' || !/^[A-Za-z0-9+/]{22}==$/.test(key.trim())) return 'Sec-WebSocket-Key is missing or not 16 bytes of base64'
  if (req.headers['sec-websocket-version'] !== '13') return 'Sec-WebSocket-Version must be 13'
  return null
}
