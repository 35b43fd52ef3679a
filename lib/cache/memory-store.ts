import type { IncomingHttpHeaders } from 'node:http'
import { type CacheEntry, type CacheKey, ENTRY_OVERHEAD_BYTES, entrySize, variantKey } from './entry.js'
import { type CacheStore, underPrefix } from './store.js'

interface Item {
  readonly routeId: string
  readonly url: string
  readonly path: string
  /** null for the record that only says which request headers the answer varies on. */
  readonly entry: CacheEntry | null
  readonly varyNames: readonly string[] | null
  readonly size: number
}

/**
 * The per-process store: a Map in least-recently-used order (a hit moves its key to the end),
 * bounded by bytes counted as entrySize() does — body, headers, key and a measured overhead —
 * and evicting from the front. An answer whose Vary names request headers is kept as one
 * record naming them under the primary key and one entry per variant.
 */
export class MemoryCacheStore implements CacheStore {
  readonly kind = 'memory'
  private readonly items = new Map<string, Item>()
  private readonly byUrl = new Map<string, Set<string>>()
  private used = 0
  private stored = 0

  constructor (private readonly maxBytes: number) {}

  /** Entries held (variant records not counted). */
  get entries (): number { return this.stored }
  get bytes (): number { return this.used }

  get (key: CacheKey, request: IncomingHttpHeaders, now: number): CacheEntry | null {
    const primary = this.items.get(key.primary)
    if (primary === undefined) return null
    let found = primary
    let foundKey = key.primary
    if (primary.varyNames !== null) {
      foundKey = variantKey(key.primary, primary.varyNames, request)
      const variant = this.items.get(foundKey)
      if (variant === undefined) return null
      found = variant
    }
    const entry = found.entry as CacheEntry
    if (entry.keepUntil <= now) {
      this.delete(foundKey)
      return null
    }
    this.touch(foundKey, found)
    if (found !== primary) this.touch(key.primary, primary)
    return entry
  }

  set (key: CacheKey, request: IncomingHttpHeaders, entry: CacheEntry): void {
    if (entry.varyNames.length === 0) {
      this.put(key.primary, { routeId: key.routeId, url: key.url, path: key.path, entry, varyNames: null, size: entrySize(entry, key.primary) })
    } else {
      const variant = variantKey(key.primary, entry.varyNames, request)
      const existing = this.items.get(key.primary)
      // The answer now varies on other headers: the variants kept for the old list can no longer be found.
      if (existing !== undefined && (existing.varyNames === null || existing.varyNames.join() !== entry.varyNames.join())) this.dropVariants(key)
      this.put(key.primary, { routeId: key.routeId, url: key.url, path: key.path, entry: null, varyNames: entry.varyNames, size: ENTRY_OVERHEAD_BYTES + key.primary.length * 2 })
      this.put(variant, { routeId: key.routeId, url: key.url, path: key.path, entry, varyNames: null, size: entrySize(entry, variant) })
    }
    this.evict()
  }

  remove (key: CacheKey): void {
    this.dropVariants(key)
    this.delete(key.primary)
  }

  invalidateUrl (routeId: string, url: string): number {
    const keys = this.byUrl.get(`${routeId}\u0000${url}`)
    if (keys === undefined) return 0
    let removed = 0
    for (const key of [...keys]) removed += this.delete(key)
    return removed
  }

  async purge (routeId: string | null, pathPrefix: string | null): Promise<number> {
    let removed = 0
    for (const [key, item] of [...this.items]) {
      if (routeId !== null && item.routeId !== routeId) continue
      if (!underPrefix(item.path, pathPrefix)) continue
      removed += this.delete(key)
    }
    return removed
  }

  private dropVariants (key: CacheKey): void {
    const keys = this.byUrl.get(`${key.routeId}\u0000${key.url}`)
    if (keys === undefined) return
    const prefix = `${key.primary}\u0000`
    for (const other of [...keys]) if (other.startsWith(prefix)) this.delete(other)
  }

  private put (key: string, item: Item): void {
    this.delete(key)
    // An entry larger than the whole store would only evict everything else and then itself.
    if (item.size > this.maxBytes) return
    this.items.set(key, item)
    this.used += item.size
    if (item.entry !== null) this.stored++
    const urlKey = `${item.routeId}\u0000${item.url}`
    let keys = this.byUrl.get(urlKey)
    if (keys === undefined) this.byUrl.set(urlKey, keys = new Set())
    keys.add(key)
  }

  /** 1 when an entry was removed, 0 for a variant record or nothing. */
  private delete (key: string): number {
    const item = this.items.get(key)
    if (item === undefined) return 0
    this.items.delete(key)
    this.used -= item.size
    const urlKey = `${item.routeId}\u0000${item.url}`
    const keys = this.byUrl.get(urlKey)
    if (keys !== undefined) {
      keys.delete(key)
      if (keys.size === 0) this.byUrl.delete(urlKey)
    }
    if (item.entry === null) return 0
    this.stored--
    return 1
  }

  private touch (key: string, item: Item): void {
    this.items.delete(key)
    this.items.set(key, item)
  }

  private evict (): void {
    for (const key of this.items.keys()) {
      if (this.used <= this.maxBytes) return
      this.delete(key)
    }
  }
}
