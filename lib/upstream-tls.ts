import { createHash } from 'node:crypto'
import type { Route } from '../schemas/route.js'

/** A route's `upstreamTls` for one https target, as undici's connect options (docs/tls.md "Upstream TLS"). */
export interface UpstreamTls {
  /** Identifies the settings: targets and pools are shared only by routes with the same ones. */
  key: string
  connect: { rejectUnauthorized: boolean, ca?: string, servername?: string }
}

/**
 * null for plain http targets and for routes without upstreamTls: those https targets are
 * verified against the system CAs by the URL's host, undici's default.
 */
export function upstreamTlsOf (route: Route, url: string): UpstreamTls | null {
  const tls = route.upstreamTls
  if (tls === null || tls === undefined || !url.startsWith('https:')) return null
  const connect: UpstreamTls['connect'] = { rejectUnauthorized: tls.verify !== false }
  if (typeof tls.ca === 'string') connect.ca = tls.ca
  if (typeof tls.serverName === 'string') connect.servername = tls.serverName
  const key = createHash('sha256').update(JSON.stringify(connect)).digest('base64url').slice(0, 16)
  return { key, connect }
}

export function targetKey (url: string, tls: UpstreamTls | null): string {
  return tls === null ? url : `${url}#tls=${tls.key}`
}

/** OpenSSL and Node codes of a failed certificate check or handshake with an upstream. */
const TLS_FAILURE = /CERT|SELF_SIGNED|UNABLE_TO_|ERR_TLS_|ERR_SSL_|HOSTNAME_MISMATCH/

export function isUpstreamTlsFailure (code: string): boolean {
  return TLS_FAILURE.test(code)
}
