import { type Cidr, parseCidr, type ParsedIp } from '../ip.js'
import { IpTable } from '../ip-table.js'

/**
 * Destinations the forward proxy refuses whatever the rules say, unless an allow rule's cidr
 * names them (docs/egress.md "Private addresses"): reaching them through the gateway would
 * open the gateway's own network (and its admin API on loopback) to every proxy client.
 * IPv4-mapped IPv6 addresses are already IPv4 here (lib/ip.ts), so ::ffff:127.0.0.1 is loopback.
 */
const RANGES: ReadonlyArray<[string, string]> = [
  ['0.0.0.0/8', 'unspecified'],
  ['10.0.0.0/8', 'private'],
  ['100.64.0.0/10', 'CGNAT'],
  ['127.0.0.0/8', 'loopback'],
  ['169.254.0.0/16', 'link-local'],
  ['172.16.0.0/12', 'private'],
  ['192.0.0.0/24', 'IETF protocol assignments'],
  ['192.168.0.0/16', 'private'],
  ['198.18.0.0/15', 'benchmarking'],
  ['224.0.0.0/4', 'multicast'],
  ['240.0.0.0/4', 'reserved'],
  ['::/128', 'unspecified'],
  ['::1/128', 'loopback'],
  // IPv4-compatible (deprecated) and NAT64 spellings of IPv4 addresses.
  ['::/96', 'IPv4-compatible'],
  ['64:ff9b::/96', 'NAT64'],
  ['fc00::/7', 'private (unique local)'],
  ['fe80::/10', 'link-local'],
  ['ff00::/8', 'multicast']
]

const table = new IpTable<string>()
for (const [block, kind] of RANGES) table.add(parseCidr(block) as Cidr, kind)

/** The kind of special range `address` is in ("loopback", "private" …), or null for a public address. */
export function specialRange (address: ParsedIp): string | null {
  let found: string | null = null
  table.some(address, (kind: string) => { found = kind; return true }, null)
  return found
}
