import { isIP } from 'node:net'

/**
 * Where a client asks the forward proxy to go (docs/egress.md "What is refused as bad input"):
 * the target of `CONNECT host:port` or of an absolute-form `GET http://host[:port]/path`.
 * Host names are lower-cased without a trailing dot; IP literals in any spelling the URL
 * standard accepts (decimal "2130706433", hex "0x7f.1", octal "0177.0.0.1", short "127.1",
 * bracketed IPv6) come out as one canonical address, so rules and the private-address check
 * see the address that will be connected to, never a spelling of it.
 */
export interface Destination {
  /** Lower-case host name, or the canonical IP (IPv6 without brackets). */
  host: string
  /** true when `host` is an IP address (no name to resolve). */
  isIp: boolean
  port: number
}

export interface AbsoluteTarget extends Destination {
  /** What the upstream gets as Host: the authority as the client wrote it, normalised. */
  authority: string
  /** Path and query ("/" when the URL had none); the fragment is dropped. */
  path: string
}

export type Parsed<T> = { ok: true, value: T } | { ok: false, problem: string }

/** RFC 1035 names (with the '_' found in real service names), at most 253 characters. */
const HOST_NAME = /^(?=.{1,253}$)([a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?)(\.[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?)*$/
const HOST_CHARS = /^[A-Za-z0-9._-]+$/
const MAX_HOST_INPUT = 255

/** `host:port` of a CONNECT request (authority-form, port required). */
export function parseConnectTarget (target: string): Parsed<Destination> {
  if (target.includes('@')) return fail('the CONNECT target must not contain userinfo ("user@")')
  const split = splitHostPort(target)
  if (split === null) return fail(`the CONNECT target must be host:port, got "${shorten(target)}"`)
  if (split.port === null) return fail(`the CONNECT target must name a port (host:port), got "${shorten(target)}"`)
  const host = normaliseHost(split.host)
  if (!host.ok) return host
  return { ok: true, value: { ...host.value, port: split.port } }
}

/** An absolute-form request target: `http://host[:port][/path][?query]`. */
export function parseAbsoluteTarget (url: string): Parsed<AbsoluteTarget> {
  const scheme = /^([A-Za-z][A-Za-z0-9+.-]*):\/\//.exec(url)
  if (scheme === null) return fail('the request target must be an absolute URL (http://host/path): this listener is a forward proxy')
  if (scheme[1].toLowerCase() !== 'http') {
    return fail(`scheme "${shorten(scheme[1])}" is not forwarded: use http:// URLs, and CONNECT for https`)
  }
  const rest = url.slice(scheme[0].length)
  const end = rest.search(/[/?#]/)
  const authorityText = end === -1 ? rest : rest.slice(0, end)
  if (authorityText.includes('@')) return fail('the request URL must not contain userinfo ("user:pass@"): send Proxy-Authorization instead')
  let path = end === -1 ? '/' : rest.slice(end)
  const hash = path.indexOf('#')
  if (hash !== -1) path = path.slice(0, hash)
  if (path.startsWith('?')) path = '/' + path
  if (path === '') path = '/'
  const split = splitHostPort(authorityText)
  if (split === null) return fail(`the request URL's host must be host or host:port, got "${shorten(authorityText)}"`)
  const host = normaliseHost(split.host)
  if (!host.ok) return host
  const port = split.port ?? 80
  const hostText = host.value.isIp && host.value.host.includes(':') ? `[${host.value.host}]` : host.value.host
  return {
    ok: true,
    value: { ...host.value, port, authority: port === 80 ? hostText : `${hostText}:${port}`, path }
  }
}

/** "host:port", "[v6]:port", "host" → parts; null when it is not one of those shapes. */
function splitHostPort (text: string): { host: string, port: number | null } | null {
  let host: string
  let portText: string | null
  if (text.startsWith('[')) {
    const close = text.indexOf(']')
    if (close === -1) return null
    host = text.slice(0, close + 1)
    const after = text.slice(close + 1)
    if (after === '') portText = null
    else if (after.startsWith(':')) portText = after.slice(1)
    else return null
  } else {
    const colon = text.lastIndexOf(':')
    if (colon === -1) {
      host = text
      portText = null
    } else {
      host = text.slice(0, colon)
      portText = text.slice(colon + 1)
      if (host.includes(':')) return null // an unbracketed IPv6 literal
    }
  }
  if (host === '' || host === '[]') return null
  if (portText === null) return { host, port: null }
  if (!/^\d{1,5}$/.test(portText)) return null
  const port = Number(portText)
  if (port < 1 || port > 65535) return null
  return { host, port }
}

function normaliseHost (raw: string): Parsed<{ host: string, isIp: boolean }> {
  if (raw.length > MAX_HOST_INPUT) return fail(`the host name is ${raw.length} characters long; at most 253 are allowed`)
  if (raw.startsWith('[')) {
    const inner = raw.slice(1, -1)
    if (isIP(inner) !== 6) return fail(`"${shorten(raw)}" is not an IPv6 address`)
    // The URL parser writes IPv6 in its canonical (RFC 5952) form.
    return { ok: true, value: { host: new URL(`http://${raw}/`).hostname.slice(1, -1), isIp: true } }
  }
  if (!HOST_CHARS.test(raw)) return fail(`the host "${shorten(raw)}" contains characters a host name cannot have`)
  let hostname: string
  try {
    hostname = new URL(`http://${raw}/`).hostname
  } catch {
    return fail(`the host "${shorten(raw)}" is neither a host name nor an IP address`)
  }
  if (isIP(hostname) === 4) return { ok: true, value: { host: hostname, isIp: true } }
  const name = hostname.endsWith('.') ? hostname.slice(0, -1) : hostname
  if (!HOST_NAME.test(name)) return fail(`the host "${shorten(raw)}" is not a valid host name`)
  return { ok: true, value: { host: name, isIp: false } }
}

function fail<T> (problem: string): Parsed<T> {
  return { ok: false, problem }
}

/** Echoes of client input stay short in answers and logs. */
function shorten (text: string): string {
  return text.length > 64 ? `${text.slice(0, 64)}…` : text
}
