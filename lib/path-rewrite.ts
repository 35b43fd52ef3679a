import type { RouteRewrite } from '../schemas/transforms.js'
import { normalizePath } from './normalize-path.js'

/**
 * Route `rewrite` (docs/transforms.md "Path rewrite"): path templates of whole segments —
 * literal text, `:name` (one non-empty segment), `:name*` (the rest of the path, zero or more
 * segments, last in `from`). Matching walks segments once; no regular expression is built from
 * user input, so no template can make a request slow (ReDoS) or fail (a bad regex).
 */

type Segment =
  | { readonly kind: 'literal', readonly text: string }
  | { readonly kind: 'one', readonly name: string }
  | { readonly kind: 'rest', readonly name: string }

export interface CompiledRewrite {
  readonly from: readonly Segment[]
  readonly to: readonly Segment[]
  /** A name's segment position in `from`. */
  readonly slots: ReadonlyMap<string, number>
}

/** The rewritten path, `null` when `from` does not match (forwarded unchanged), or why the result is refused (400). */
export type RewriteResult = string | null | { refused: string }

const NAME = /^[A-Za-z_][A-Za-z0-9_]*$/
/** RFC 3986 segment characters (percent-escapes included). */
const SEGMENT_CHARS = /^[A-Za-z0-9\-._~!$&'()*+,;=:@%]*$/

/** Why a rewrite is refused at the admin API, or null. `field` names it, e.g. "body/rewrite". */
export function rewriteProblem (rewrite: RouteRewrite, field: string): string | null {
  const from = parseTemplate(rewrite.from)
  if (typeof from === 'string') return `${field}/from ${from}`
  const to = parseTemplate(rewrite.to)
  if (typeof to === 'string') return `${field}/to ${to}`
  const names = new Map<string, Segment['kind']>()
  for (const [index, segment] of from.entries()) {
    if (segment.kind === 'literal') continue
    if (names.has(segment.name)) return `${field}/from uses :${segment.name} twice`
    if (segment.kind === 'rest' && index !== from.length - 1) return `${field}/from may use :${segment.name}* only as its last segment`
    names.set(segment.name, segment.kind)
  }
  for (const segment of to) {
    if (segment.kind === 'literal') continue
    const kind = names.get(segment.name)
    if (kind === undefined) return `${field}/to uses :${segment.name}${segment.kind === 'rest' ? '*' : ''}, which from does not define`
    if (kind !== segment.kind) return `${field}/to uses :${segment.name}${segment.kind === 'rest' ? '*' : ''} but from defines it as :${segment.name}${kind === 'rest' ? '*' : ''}`
  }
  return null
}

/** Segments of a template, or why it is refused. */
function parseTemplate (template: string): Segment[] | string {
  if (!template.startsWith('/')) return 'must start with "/"'
  if (template === '/') return []
  const parts = template.slice(1).split('/')
  const segments: Segment[] = []
  for (const [index, part] of parts.entries()) {
    if (part === '') {
      // Only a trailing slash: "/a//b" has no meaning once paths are normalised.
      if (index !== parts.length - 1) return 'must not contain "//"'
      segments.push({ kind: 'literal', text: '' })
      continue
    }
    if (part.startsWith(':')) {
      const rest = part.endsWith('*')
      const name = part.slice(1, rest ? -1 : undefined)
      if (!NAME.test(name)) return `has a bad parameter "${part}" (":name" or ":name*", name of letters, digits, "_")`
      segments.push(rest ? { kind: 'rest', name } : { kind: 'one', name })
      continue
    }
    if (part === '.' || part === '..') return 'must not contain "." or ".." segments (the result must stay under the target\'s base path)'
    if (!SEGMENT_CHARS.test(part)) return `has characters outside RFC 3986 path segments in "${part}" (percent-encode them)`
    const normalized = normalizePath('/' + part)
    if (!normalized.ok) return `is refused: ${normalized.reason}`
    if (normalized.path !== '/' + part) return `must be written in normalised form: "${normalized.path.slice(1)}" for "${part}"`
    segments.push({ kind: 'literal', text: part })
  }
  return segments
}

/** Compiles a rewrite that rewriteProblem accepted. */
export function compileRewrite (rewrite: RouteRewrite): CompiledRewrite {
  const from = parseTemplate(rewrite.from)
  const to = parseTemplate(rewrite.to)
  if (typeof from === 'string' || typeof to === 'string') throw new Error(`rewrite refused: ${typeof from === 'string' ? from : to as string}`)
  const slots = new Map<string, number>()
  for (const [index, segment] of from.entries()) if (segment.kind !== 'literal') slots.set(segment.name, index)
  return { from, to, slots }
}

/** A "." or ".." segment anywhere in a captured value. */
const DOT_SEGMENT = /(?:^|\/)\.\.?(?:\/|$)/

/**
 * `path` is the forwarded path (normalised, after stripPath; "" stands for "/"). The result is
 * normalised again and refused when a captured value holds a "." or ".." segment, so however the
 * path was spelled the answer stays under the target's base path. One pass over the path, no
 * split: this runs on every request of the route.
 */
export function rewritePath (rewrite: CompiledRewrite, path: string): RewriteResult {
  const from = rewrite.from
  // Captured values by the position of their segment in `from`; a rest capture is null when it took no segment.
  const captured: Array<string | null> = new Array(from.length)
  // `at` is where the next segment starts (just after its "/"), or -1 once the path is used up.
  let at = path.length <= 1 ? -1 : 1
  for (let index = 0; index < from.length; index++) {
    const segment = from[index]
    if (segment.kind === 'rest') {
      captured[index] = at === -1 ? null : path.slice(at)
      at = -1
      break
    }
    if (at === -1) return null
    const slash = path.indexOf('/', at)
    const end = slash === -1 ? path.length : slash
    if (segment.kind === 'literal') {
      if (end - at !== segment.text.length || !path.startsWith(segment.text, at)) return null
    } else {
      if (end === at) return null
      captured[index] = path.slice(at, end)
    }
    at = slash === -1 ? -1 : slash + 1
  }
  if (at !== -1) return null

  let out = ''
  for (const segment of rewrite.to) {
    if (segment.kind === 'literal') { out += '/' + segment.text; continue }
    const value = captured[rewrite.slots.get(segment.name) as number]
    if (value === null || value === undefined) continue
    if (DOT_SEGMENT.test(value) || value.includes('\\')) return { refused: 'the rewritten path would leave the target\'s base path' }
    out += '/' + value
  }
  if (out === '') return '/'
  const normalized = normalizePath(out)
  if (!normalized.ok) return { refused: `the rewritten path is refused: ${normalized.reason}` }
  return normalized.path
}
