import { randomUUID } from 'node:crypto'
import { type Cidr, parseCidr, parseIp, type ParsedIp } from '../ip.js'
import type { EgressRule, EgressRuleConfigItem } from '../../schemas/egress-rule.js'
import { specialRange } from './special-addresses.js'

/**
 * The compiled egress rules (docs/egress.md "Rules"). A rule matches a destination when its
 * host matches the requested name (exact, or "*.suffix" for every subdomain), its cidr contains
 * the address connected to, and its ports list the port (empty: every port) — all of those it
 * sets. The decision, for every address the name resolves to:
 * 1. a matching deny rule refuses (deny wins);
 * 2. a loopback/private/link-local/CGNAT/unspecified address is refused unless a matching allow
 *    rule with a cidr contains it;
 * 3. CONNECT to a port other than 443 needs a matching allow rule that lists the port;
 * 4. otherwise a matching allow rule admits, and EGRESS_DEFAULT decides the rest.
 * A destination is admitted only when every one of its addresses is. Expired rules are skipped
 * at lookup time.
 */
export type Refusal = { reason: RefusalReason, message: string, ruleId: string | null }
export type RefusalReason = 'deny_rule' | 'default_deny' | 'special_address' | 'port'

export interface DestinationCheck {
  /** The name asked for, or null when the client asked for an address. */
  name: string | null
  port: number
  /** true for CONNECT tunnels: the port rule applies. */
  tunnel: boolean
}

interface CompiledRule {
  rule: EgressRule
  /** Exact host, or the ".suffix" of a wildcard; null: any host. */
  host: string | null
  wildcard: boolean
  cidr: Cidr | null
  ports: ReadonlySet<number> | null
  expiresAt: number
}

export const CONNECT_DEFAULT_PORT = 443

export class EgressRuleSet {
  private readonly deny: CompiledRule[] = []
  private readonly allow: CompiledRule[] = []
  readonly size: number

  constructor (rules: readonly EgressRule[], private readonly defaultAction: 'allow' | 'deny') {
    for (const rule of rules) {
      const cidr = rule.cidr === null ? null : parseCidr(rule.cidr)
      if (rule.cidr !== null && cidr === null) continue // unreachable: validated on input
      const wildcard = rule.host !== null && rule.host.startsWith('*.')
      const compiled: CompiledRule = {
        rule,
        host: rule.host === null ? null : wildcard ? rule.host.slice(1) : rule.host,
        wildcard,
        cidr,
        ports: rule.ports.length === 0 ? null : new Set(rule.ports),
        expiresAt: rule.expiresAt === null ? Infinity : Date.parse(rule.expiresAt)
      }
      ;(rule.action === 'deny' ? this.deny : this.allow).push(compiled)
    }
    this.size = rules.length
  }

  /**
   * Whether a host name alone is refused, before any DNS lookup: a deny rule on the name that
   * needs no address (no cidr). Saves resolving names that are refused anyway.
   */
  checkName (check: DestinationCheck, now = Date.now()): Refusal | null {
    if (check.name === null) return null
    for (const rule of this.deny) {
      if (rule.cidr === null && live(rule, now) && hostMatches(rule, check.name) && portMatches(rule, check.port)) return denied(rule)
    }
    return null
  }

  /** The refusal of the first address that is refused, or null when every address may be connected to. */
  checkAddresses (check: DestinationCheck, addresses: readonly string[], now = Date.now()): Refusal | null {
    for (const text of addresses) {
      const address = parseIp(text)
      if (address === null) return { reason: 'special_address', message: `"${text}" is not an address the proxy can check`, ruleId: null }
      const refusal = this.checkAddress(check, text, address, now)
      if (refusal !== null) return refusal
    }
    return null
  }

  private checkAddress (check: DestinationCheck, text: string, address: ParsedIp, now: number): Refusal | null {
    for (const rule of this.deny) {
      if (matches(rule, check, address, now)) return denied(rule)
    }
    const special = specialRange(address)
    const needsPort = check.tunnel && check.port !== CONNECT_DEFAULT_PORT
    /** An allow rule matched but does not list the CONNECT port: the port is what refuses. */
    let onlyThePort = false
    for (const rule of this.allow) {
      if (!matches(rule, check, address, now)) continue
      if (special !== null && rule.cidr === null) continue
      if (needsPort && (rule.ports === null || !rule.ports.has(check.port))) {
        onlyThePort = true
        continue
      }
      return null
    }
    const shown = check.name === null ? text : `${check.name} (${text})`
    if (onlyThePort) {
      return { reason: 'port', message: `CONNECT to port ${check.port} is refused: only ${CONNECT_DEFAULT_PORT} unless an allow rule lists the port`, ruleId: null }
    }
    if (special !== null) {
      return { reason: 'special_address', message: `${shown} is a ${special} address; only an allow rule with a cidr containing it admits it`, ruleId: null }
    }
    if (needsPort) {
      return { reason: 'port', message: `CONNECT to port ${check.port} is refused: only ${CONNECT_DEFAULT_PORT} unless an allow rule lists the port`, ruleId: null }
    }
    if (this.defaultAction === 'deny') {
      return { reason: 'default_deny', message: `${shown}:${check.port} matches no allow rule and EGRESS_DEFAULT is deny`, ruleId: null }
    }
    return null
  }
}

function live (rule: CompiledRule, now: number): boolean {
  return rule.expiresAt > now
}

function hostMatches (rule: CompiledRule, name: string | null): boolean {
  if (rule.host === null) return true
  if (name === null) return false
  return rule.wildcard ? name.length > rule.host.length && name.endsWith(rule.host) : name === rule.host
}

function portMatches (rule: CompiledRule, port: number): boolean {
  return rule.ports === null || rule.ports.has(port)
}

function cidrContains (cidr: Cidr, address: ParsedIp): boolean {
  if (cidr.address.family !== address.family) return false
  if (address.family === 4) {
    const network = (cidr.address as { value: number }).value
    const mask = cidr.bits === 0 ? 0 : (0xffffffff << (32 - cidr.bits)) >>> 0
    return ((address.value & mask) >>> 0) === network
  }
  const network = (cidr.address as { words: number[] }).words
  for (let i = 0; i < 4; i++) {
    const bits = Math.min(32, Math.max(0, cidr.bits - i * 32))
    const mask = bits === 0 ? 0 : (0xffffffff << (32 - bits)) >>> 0
    if (((address.words[i] & mask) >>> 0) !== network[i]) return false
  }
  return true
}

function matches (rule: CompiledRule, check: DestinationCheck, address: ParsedIp, now: number): boolean {
  return live(rule, now) && hostMatches(rule, check.name) && portMatches(rule, check.port) &&
    (rule.cidr === null || cidrContains(rule.cidr, address))
}

function denied (rule: CompiledRule): Refusal {
  const what = [rule.rule.host, rule.rule.cidr].filter((part) => part !== null).join(' ')
  const why = rule.rule.reason === '' ? '' : `: ${rule.rule.reason}`
  return { reason: 'deny_rule', message: `denied by egress rule ${rule.rule.id} (${what})${why}`, ruleId: rule.rule.id }
}

const HOST_RULE = /^(\*\.)?(?=.{1,253}$)[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?(\.[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?)*$/

interface RuleFields { host: string | null, cidr: string | null, expiresAt: string | null }

/** Input rules a JSON schema cannot express; a message naming the field, or null. */
export function egressRuleProblem (input: RuleFields, prefix = 'body'): string | null {
  if (input.host === null && input.cidr === null) return `${prefix} must set at least one of host or cidr`
  if (input.host !== null) {
    const host = input.host.toLowerCase().replace(/\.$/, '')
    if (parseIp(host.replace(/^\[|\]$/g, '')) !== null || /^[\d.]+$/.test(host)) return `${prefix}/host must be a host name; use cidr for addresses, got "${input.host}"`
    if (!HOST_RULE.test(host)) return `${prefix}/host must be a host name like "example.com" or "*.example.com", got "${input.host}"`
  }
  if (input.cidr !== null && parseCidr(input.cidr) === null) return `${prefix}/cidr must be an IPv4/IPv6 address or CIDR block, got "${input.cidr}"`
  if (input.expiresAt !== null && Number.isNaN(Date.parse(input.expiresAt))) return `${prefix}/expiresAt must be an ISO-8601 date-time`
  return null
}

/** The stored spelling: lower-case host without trailing dot, canonical CIDR, sorted unique ports, ISO expiry. */
export function canonicalEgressRule<T extends RuleFields & { ports: number[] }> (input: T): T {
  const cidr = input.cidr === null ? null : parseCidr(input.cidr)
  return {
    ...input,
    host: input.host === null ? null : input.host.toLowerCase().replace(/\.$/, ''),
    cidr: cidr === null ? input.cidr : cidr.text,
    ports: [...new Set(input.ports)].sort((a, b) => a - b),
    expiresAt: input.expiresAt === null ? null : new Date(Date.parse(input.expiresAt)).toISOString()
  }
}

/** A validated input (or config item) → the stored rule. */
export function buildEgressRule (input: EgressRuleConfigItem, now = new Date().toISOString()): EgressRule {
  const canonical = canonicalEgressRule(egressRuleWithDefaults(input))
  return {
    id: input.id ?? randomUUID(),
    action: canonical.action,
    host: canonical.host,
    cidr: canonical.cidr,
    ports: canonical.ports,
    expiresAt: canonical.expiresAt,
    reason: canonical.reason,
    createdAt: input.createdAt ?? now
  }
}

/** Config documents may omit the nullable fields; Ajv does not fill defaults inside unions. */
export function egressRuleWithDefaults (item: EgressRuleConfigItem): EgressRuleConfigItem & RuleFields & { ports: number[], reason: string } {
  return { ...item, host: item.host ?? null, cidr: item.cidr ?? null, ports: item.ports ?? [], expiresAt: item.expiresAt ?? null, reason: item.reason ?? '' }
}
