import { type Cidr, parseCidr, parseIp } from './ip.js'
import { IpTable } from './ip-table.js'
import { routePrefix } from './route-matcher.js'
import type { Filter } from '../schemas/filter.js'

/**
 * The compiled allow/deny lists (docs/policies.md "Filters"). Semantics:
 * 1. deny wins: a request matching any deny rule (its ip contains the client, its path
 *    prefix covers the request path, or both when the rule sets both) is refused;
 * 2. allow lists: the most specific path prefix that has allow rules decides (an ip-only
 *    allow rule covers "/"); only clients matching one of that prefix's rules reach it, and
 *    a path-only allow rule there admits everyone (an exception inside a stricter parent),
 *    as the most specific nginx location's allow/deny applies.
 * An expired rule is skipped at lookup time, so it stops applying at its expiresAt to the
 * millisecond, without waiting for a recompile.
 *
 * Lookup cost: one Map lookup per request-path segment plus IpTable lookups whose count
 * depends on the distinct prefix lengths in use, not on the number of rules.
 */
export class FilterSet {
  readonly size: number
  /** Deny rules with an ip (and maybe a path). */
  private readonly denyByIp = new IpTable<Rule>()
  /** Path-only deny rules: prefix → latest expiry. */
  private readonly denyByPath = new Map<string, number>()
  private readonly allowByPath = new Map<string, AllowGroup>()
  /** Nothing to check: the common case costs one property read. */
  readonly empty: boolean

  constructor (filters: readonly Filter[]) {
    for (const filter of filters) {
      const expiresAt = filter.expiresAt === null ? Infinity : Date.parse(filter.expiresAt)
      const prefix = filter.path === null ? null : routePrefix(filter.path)
      const cidr = filter.ip === null ? null : parseCidr(filter.ip)
      if (filter.ip !== null && cidr === null) continue // unreachable: validated on input
      if (filter.action === 'deny') {
        if (cidr !== null) this.denyByIp.add(cidr, { prefix, prefixSlash: prefix === null ? null : prefix + '/', expiresAt })
        else if (prefix !== null) this.denyByPath.set(prefix, Math.max(expiresAt, this.denyByPath.get(prefix) ?? -Infinity))
      } else {
        const key = prefix ?? '/'
        let group = this.allowByPath.get(key)
        if (group === undefined) {
          group = { anyoneUntil: -Infinity, ips: new IpTable(), until: -Infinity }
          this.allowByPath.set(key, group)
        }
        group.until = Math.max(group.until, expiresAt)
        if (cidr === null) group.anyoneUntil = Math.max(group.anyoneUntil, expiresAt)
        else group.ips.add(cidr, expiresAt)
      }
    }
    this.size = filters.length
    this.empty = this.denyByIp.size === 0 && this.denyByPath.size === 0 && this.allowByPath.size === 0
  }

  /** Why the request is refused, or null when it may pass. `path` is normalised. */
  check (clientIp: string, path: string, now: number): string | null {
    if (this.empty) return null
    const address = parseIp(clientIp)
    const lookup: Lookup = { path, now }

    if (this.denyByPath.size > 0) {
      for (let prefix = trimSlash(path); ; prefix = parent(prefix)) {
        const until = this.denyByPath.get(prefix)
        if (until !== undefined && until > now) return 'denied by a path filter'
        if (prefix === '/') break
      }
    }
    if (address !== null && this.denyByIp.some(address, denies, lookup)) return 'denied by an IP filter'

    if (this.allowByPath.size > 0) {
      for (let prefix = trimSlash(path); ; prefix = parent(prefix)) {
        const group = this.allowByPath.get(prefix)
        if (group !== undefined && group.until > now) {
          if (group.anyoneUntil > now || (address !== null && group.ips.some(address, unexpired, now))) return null
          return 'not on the allow list for this path'
        }
        if (prefix === '/') break
      }
    }
    return null
  }
}

interface Rule {
  prefix: string | null
  prefixSlash: string | null
  expiresAt: number
}

interface AllowGroup {
  /** Latest expiry of a path-only allow rule here (everyone admitted until then). */
  anyoneUntil: number
  ips: IpTable<number>
  /** Latest expiry of any rule here: after it, the group no longer exists. */
  until: number
}

interface Lookup { path: string, now: number }

function denies (rule: Rule, lookup: Lookup): boolean {
  if (rule.expiresAt <= lookup.now) return false
  if (rule.prefix === null || rule.prefix === '/') return true
  return lookup.path === rule.prefix || lookup.path.startsWith(rule.prefixSlash as string)
}

function unexpired (expiresAt: number, now: number): boolean {
  return expiresAt > now
}

function trimSlash (path: string): string {
  return path.length > 1 && path.endsWith('/') ? path.slice(0, -1) : path
}

function parent (prefix: string): string {
  const cut = prefix.lastIndexOf('/')
  return cut <= 0 ? '/' : prefix.slice(0, cut)
}

/** Input rules a JSON schema cannot express; a message naming the field, or null. */
export function filterProblem (input: { ip: string | null, path: string | null, expiresAt: string | null }, prefix = 'body'): string | null {
  if (input.ip === null && input.path === null) return `${prefix} must set at least one of ip or path`
  if (input.ip !== null && parseCidr(input.ip) === null) return `${prefix}/ip must be an IPv4/IPv6 address or CIDR block, got "${input.ip}"`
  if (input.path !== null) {
    if (input.path.includes('//')) return `${prefix}/path must not contain "//"`
    if (/(^|\/)\.\.?(\/|$)/.test(input.path)) return `${prefix}/path must not contain "." or ".." segments`
    if (input.path.includes('%')) return `${prefix}/path must not contain percent-escapes`
  }
  if (input.expiresAt !== null && Number.isNaN(Date.parse(input.expiresAt))) return `${prefix}/expiresAt must be an ISO-8601 date-time`
  return null
}

/** The stored spelling: canonical CIDR ("10.1.2.3/8" → "10.0.0.0/8", "::ffff:10.0.0.1" → "10.0.0.1"), path without trailing slash. */
export function canonicalFilter<T extends { ip: string | null, path: string | null, expiresAt: string | null }> (input: T): T {
  const cidr: Cidr | null = input.ip === null ? null : parseCidr(input.ip)
  return {
    ...input,
    ip: cidr === null ? input.ip : cidr.text,
    path: input.path === null ? null : routePrefix(input.path),
    expiresAt: input.expiresAt === null ? null : new Date(Date.parse(input.expiresAt)).toISOString()
  }
}
