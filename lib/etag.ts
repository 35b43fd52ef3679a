import { createHash } from 'node:crypto'
import { canonicalJson } from './config-diff.js'

/**
 * Optimistic concurrency on the admin API (docs/config-history.md "ETag and If-Match"). An
 * entity's ETag is a hash of the JSON it is answered with (keys sorted: the stored JSON keeps its own order), so any change to it (updatedAt
 * included) changes the tag; the whole configuration's is its revision number.
 */
export function entityEtag (body: unknown): string {
  return `"${createHash('sha256').update(canonicalJson(body)).digest('base64url').slice(0, 27)}"`
}

export function configEtag (revision: number): string {
  return `"config-${revision}"`
}

/**
 * RFC 9110 If-Match: `*` matches anything that exists; otherwise one of the listed tags must
 * equal the current one (strong comparison: a weak tag W/"…" never matches). No header: true.
 */
export function ifMatchPasses (header: string | undefined, current: string | null): boolean {
  if (header === undefined) return true
  if (current === null) return false
  const wanted = header.trim()
  if (wanted === '*') return true
  return splitTags(wanted).includes(current)
}

function splitTags (header: string): string[] {
  return header.match(/(W\/)?"[^"]*"/g)?.filter((tag) => !tag.startsWith('W/')) ?? []
}
