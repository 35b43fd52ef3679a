/**
 * The difference between two configuration states (docs/config-history.md "Diff"): what
 * GET /admin/config/diff, PUT /admin/config?dryRun=true and each revision's summary report, and
 * what `gatehouse config diff` prints. Items are paired by their section's identity (a route's
 * name …); ids and timestamps are not compared, so a document that differs only in them is no
 * change. A change of secrets only (a new password, a new JWT secret) shows as an update through
 * the item's fingerprint, without showing the secret.
 */

export interface SectionState {
  items: unknown[]
  /** identity → a keyed hash of the item's secrets. */
  fingerprints: Record<string, string>
}

/** Section name → its state. */
export type ConfigState = Record<string, SectionState>

export interface DiffSection {
  name: string
  kind: string
  identify: (item: never) => string
}

export interface CreatingEntry { kind: string, name: string, new: unknown }
export interface UpdatingEntry { kind: string, name: string, old: unknown, new: unknown }
export interface DeletingEntry { kind: string, name: string, old: unknown }

export interface ConfigDiff {
  changes: { creating: CreatingEntry[], updating: UpdatingEntry[], deleting: DeletingEntry[] }
  summary: { creating: number, updating: number, deleting: number }
}

/** Top-level fields that say where and when an item was stored, not what it is. */
const BOOKKEEPING = new Set(['id', 'createdAt', 'updatedAt'])

export function diffConfig (sections: readonly DiffSection[], before: ConfigState, after: ConfigState): ConfigDiff {
  const changes: ConfigDiff['changes'] = { creating: [], updating: [], deleting: [] }
  for (const section of sections) {
    const old = byIdentity(section, before[section.name]?.items ?? [])
    const now = byIdentity(section, after[section.name]?.items ?? [])
    const oldPrints = before[section.name]?.fingerprints ?? {}
    const newPrints = after[section.name]?.fingerprints ?? {}
    for (const [name, item] of old) {
      if (!now.has(name)) changes.deleting.push({ kind: section.kind, name, old: item })
    }
    for (const [name, item] of now) {
      const previous = old.get(name)
      if (previous === undefined) {
        changes.creating.push({ kind: section.kind, name, new: item })
      } else if (comparable(previous) !== comparable(item) || oldPrints[name] !== newPrints[name]) {
        changes.updating.push({ kind: section.kind, name, old: previous, new: item })
      }
    }
  }
  return {
    changes,
    summary: { creating: changes.creating.length, updating: changes.updating.length, deleting: changes.deleting.length }
  }
}

function byIdentity (section: DiffSection, items: unknown[]): Map<string, unknown> {
  const map = new Map<string, unknown>()
  for (const item of items) {
    const identity = section.identify(item as never)
    let name = identity
    // Two items with one identity (two filters with the same rule) stay apart, in order.
    for (let n = 2; map.has(name); n++) name = `${identity} #${n}`
    map.set(name, item)
  }
  return map
}

function comparable (item: unknown): string {
  if (item === null || typeof item !== 'object' || Array.isArray(item)) return canonicalJson(item)
  return canonicalJson(Object.fromEntries(Object.entries(item).filter(([key]) => !BOOKKEEPING.has(key))))
}

/** JSON with object keys sorted: equal values, equal text, whatever the order of keys. */
export function canonicalJson (value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(',')}]`
  if (value !== null && typeof value === 'object') {
    return `{${Object.keys(value).sort()
      .filter((key) => (value as Record<string, unknown>)[key] !== undefined)
      .map((key) => `${JSON.stringify(key)}:${canonicalJson((value as Record<string, unknown>)[key])}`).join(',')}}`
  }
  return JSON.stringify(value) ?? 'null'
}

export interface FieldChange { path: string, old: unknown, new: unknown }

/** The fields that differ between two versions of an item, by path ("targets/0/url"), bookkeeping left out. */
export function fieldChanges (old: unknown, now: unknown, path = ''): FieldChange[] {
  if (canonicalJson(old) === canonicalJson(now)) return []
  const objects = isPlainObject(old) && isPlainObject(now)
  const arrays = Array.isArray(old) && Array.isArray(now) && old.length === now.length
  if (!objects && !arrays) return [{ path, old, new: now }]
  const keys = objects
    ? [...new Set([...Object.keys(old), ...Object.keys(now)])].filter((key) => path !== '' || !BOOKKEEPING.has(key))
    : (old as unknown[]).map((_, index) => String(index))
  const found: FieldChange[] = []
  for (const key of keys) {
    const a = (old as Record<string, unknown>)[key]
    const b = (now as Record<string, unknown>)[key]
    found.push(...fieldChanges(a, b, path === '' ? key : `${path}.${key}`))
  }
  return found
}

function isPlainObject (value: unknown): value is Record<string, unknown> {
  return value !== null && typeof value === 'object' && !Array.isArray(value)
}

/** `creating route users`, `updating route orders: timeoutMs 5000 → 8000`, `deleting filter …`, then the summary. */
export function describeDiff (diff: ConfigDiff): string[] {
  const lines: string[] = []
  for (const entry of diff.changes.creating) lines.push(`creating ${entry.kind} ${entry.name}`)
  for (const entry of diff.changes.updating) {
    const fields = fieldChanges(entry.old, entry.new)
      .map((change) => `${change.path} ${show(change.old)} → ${show(change.new)}`)
    lines.push(`updating ${entry.kind} ${entry.name}: ${fields.length === 0 ? 'credentials' : fields.join(', ')}`)
  }
  for (const entry of diff.changes.deleting) lines.push(`deleting ${entry.kind} ${entry.name}`)
  const { creating, updating, deleting } = diff.summary
  lines.push(`Summary: created ${creating}, updated ${updating}, deleted ${deleting}`)
  return lines
}

function show (value: unknown): string {
  if (value === undefined) return '(unset)'
  return typeof value === 'string' ? JSON.stringify(value) : canonicalJson(value)
}
