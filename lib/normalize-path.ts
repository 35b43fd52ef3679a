/**
 * The one place a request path is normalised (docs/routing.md "Normalisation"). Routing
 * decides on the result and exactly the result is forwarded, so no spelling of a path can
 * reach a route its normalised form would not.
 *
 * - percent-escapes of unreserved characters are decoded (`%41` → `A`, `%2e` → `.`),
 *   other escapes are kept with upper-case hex;
 * - `.` and `..` segments are resolved (RFC 3986 5.2.4; `..` never climbs above `/`);
 * - runs of `/` are merged;
 * - refused outright (the caller answers 400): a raw or encoded backslash, an encoded
 *   slash (`%2F`, which upstreams disagree about), NUL, malformed escapes, and request
 *   targets that are not origin-form.
 */
export type NormalizedPath = { ok: true, path: string } | { ok: false, reason: string }

const NEEDS_WORK = /%|\/\/|\/\.|\\/
const HEX = /^[0-9A-Fa-f]{2}$/

export function normalizePath (rawPath: string): NormalizedPath {
  if (rawPath.charCodeAt(0) !== 47 /* / */) return { ok: false, reason: 'request target must be an absolute path' }
  if (!NEEDS_WORK.test(rawPath)) return { ok: true, path: rawPath }
  if (rawPath.includes('\\')) return { ok: false, reason: 'backslash in path' }

  const decoded = decodeUnreserved(rawPath)
  if (!decoded.ok) return decoded
  return { ok: true, path: removeDotSegments(decoded.path) }
}

function decodeUnreserved (path: string): NormalizedPath {
  if (!path.includes('%')) return { ok: true, path }
  let out = ''
  for (let i = 0; i < path.length; i++) {
    const ch = path[i]
    if (ch !== '%') { out += ch; continue }
    const hex = path.slice(i + 1, i + 3)
    if (!HEX.test(hex)) return { ok: false, reason: 'malformed percent-escape in path' }
    const code = parseInt(hex, 16)
    if (code === 0x2f || code === 0x5c) return { ok: false, reason: 'encoded slash or backslash in path' }
    if (code === 0) return { ok: false, reason: 'encoded NUL in path' }
    out += isUnreserved(code) ? String.fromCharCode(code) : '%' + hex.toUpperCase()
    i += 2
  }
  return { ok: true, path: out }
}

function isUnreserved (code: number): boolean {
  return (code >= 0x41 && code <= 0x5a) || (code >= 0x61 && code <= 0x7a) || (code >= 0x30 && code <= 0x39) ||
    code === 0x2d || code === 0x2e || code === 0x5f || code === 0x7e
}

function removeDotSegments (path: string): string {
  const segments = path.split('/')
  const out: string[] = []
  // A path ending in "/", "/." or "/.." names a directory: keep the trailing slash.
  const last = segments[segments.length - 1]
  const trailingSlash = last === '' || last === '.' || last === '..'
  for (const segment of segments) {
    if (segment === '' || segment === '.') continue
    if (segment === '..') { out.pop(); continue }
    out.push(segment)
  }
  if (out.length === 0) return '/'
  return '/' + out.join('/') + (trailingSlash ? '/' : '')
}
