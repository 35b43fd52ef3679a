import { isIP } from 'node:net'

/**
 * IP addresses and CIDR blocks as numbers, for filters (lib/ip-table.ts) and rate-limit keys.
 * IPv4 is one uint32; IPv6 is four uint32 words, most significant first. An IPv4-mapped
 * IPv6 address (::ffff:a.b.c.d, and ::ffff:0:0/96 blocks) is treated as the IPv4 address,
 * so a rule or a limit cannot be dodged by spelling the same client differently.
 */
export type ParsedIp =
  | { family: 4, value: number }
  | { family: 6, words: [number, number, number, number] }

export interface Cidr {
  /** The network with host bits cleared. */
  address: ParsedIp
  bits: number
  /** Canonical spelling: "10.0.0.0/8", "2001:db8::/32", a single address without "/bits". */
  text: string
}

/** Parses a literal IPv4/IPv6 address (no zone id); IPv4-mapped IPv6 becomes IPv4. null if invalid. */
export function parseIp (text: string): ParsedIp | null {
  const family = isIP(text)
  if (family === 4) return { family: 4, value: parseIPv4(text) }
  if (family !== 6 || text.includes('%')) return null
  const words = parseIPv6(text)
  if (words === null) return null
  if (isMappedIPv4(words)) return { family: 4, value: words[3] }
  return { family: 6, words }
}

/** "10.0.0.0/8", "2001:db8::/32", "203.0.113.7" (a host). Host bits are cleared. null if invalid. */
export function parseCidr (text: string): Cidr | null {
  const slash = text.indexOf('/')
  const addressText = slash === -1 ? text : text.slice(0, slash)
  const family = isIP(addressText)
  if (family === 0 || addressText.includes('%')) return null
  let bits: number
  if (slash === -1) {
    bits = family === 4 ? 32 : 128
  } else {
    const bitsText = text.slice(slash + 1)
    if (!/^\d{1,3}$/.test(bitsText)) return null
    bits = Number(bitsText)
    if (bits > (family === 4 ? 32 : 128)) return null
  }
  if (family === 4) return cidrOf({ family: 4, value: parseIPv4(addressText) }, bits)
  const words = parseIPv6(addressText)
  if (words === null) return null
  if (isMappedIPv4(words) && bits >= 96) return cidrOf({ family: 4, value: words[3] }, bits - 96)
  return cidrOf({ family: 6, words }, bits)
}

function cidrOf (address: ParsedIp, bits: number): Cidr {
  const network = maskIp(address, bits)
  const full = network.family === 4 ? 32 : 128
  const text = formatIp(network) + (bits === full ? '' : `/${bits}`)
  return { address: network, bits, text }
}

export function maskIp (address: ParsedIp, bits: number): ParsedIp {
  if (address.family === 4) return { family: 4, value: maskWord(address.value, bits) }
  const words = address.words.map((word, i) => maskWord(word, bits - i * 32)) as [number, number, number, number]
  return { family: 6, words }
}

/** The top `bits` bits of a uint32 (bits ≤ 0: none, ≥ 32: all). */
export function maskWord (word: number, bits: number): number {
  if (bits <= 0) return 0
  if (bits >= 32) return word >>> 0
  return (word & (0xffffffff << (32 - bits))) >>> 0
}

export function formatIp (address: ParsedIp): string {
  if (address.family === 4) {
    const v = address.value
    return `${v >>> 24}.${(v >>> 16) & 255}.${(v >>> 8) & 255}.${v & 255}`
  }
  const hextets: number[] = []
  for (const word of address.words) hextets.push(word >>> 16, word & 0xffff)
  // RFC 5952: the longest run (≥ 2) of zero hextets becomes "::".
  let bestStart = -1
  let bestLength = 1
  for (let i = 0; i < 8;) {
    if (hextets[i] !== 0) { i++; continue }
    let j = i
    while (j < 8 && hextets[j] === 0) j++
    if (j - i > bestLength) { bestStart = i; bestLength = j - i }
    i = j
  }
  const hex = hextets.map((h) => h.toString(16))
  if (bestStart === -1) return hex.join(':')
  return `${hex.slice(0, bestStart).join(':')}::${hex.slice(bestStart + bestLength).join(':')}`
}

/**
 * The rate-limit identity of a client address: IPv4 as is; IPv6 by its /64, the smallest
 * block an ISP hands out, so rotating addresses inside one subnet does not reset a limit.
 */
export function clientKey (ip: string): string {
  if (!ip.includes(':')) return ip
  const parsed = parseIp(ip)
  if (parsed === null) return ip
  if (parsed.family === 4) return formatIp(parsed)
  return `${formatIp(maskIp(parsed, 64))}/64`
}

function parseIPv4 (text: string): number {
  let value = 0
  let octet = 0
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i)
    if (c === 46 /* . */) {
      value = value * 256 + octet
      octet = 0
    } else {
      octet = octet * 10 + (c - 48)
    }
  }
  return (value * 256 + octet) >>> 0
}

/** Only called on text net.isIP accepted as IPv6. */
function parseIPv6 (text: string): [number, number, number, number] | null {
  let head = text
  let ipv4Tail: number | null = null
  const lastColon = text.lastIndexOf(':')
  if (text.indexOf('.', lastColon) !== -1) {
    ipv4Tail = parseIPv4(text.slice(lastColon + 1))
    head = text.slice(0, lastColon + 1) + '0:0'
  }
  const doubleColon = head.indexOf('::')
  let groups: string[]
  if (doubleColon === -1) {
    groups = head.split(':')
  } else {
    const left = head.slice(0, doubleColon) === '' ? [] : head.slice(0, doubleColon).split(':')
    const right = head.slice(doubleColon + 2) === '' ? [] : head.slice(doubleColon + 2).split(':')
    groups = [...left, ...new Array<string>(8 - left.length - right.length).fill('0'), ...right]
  }
  if (groups.length !== 8) return null
  const words: [number, number, number, number] = [0, 0, 0, 0]
  for (let i = 0; i < 4; i++) {
    words[i] = ((parseInt(groups[2 * i], 16) << 16) | parseInt(groups[2 * i + 1], 16)) >>> 0
  }
  if (ipv4Tail !== null) words[3] = ipv4Tail
  return words
}

function isMappedIPv4 (words: readonly number[]): boolean {
  return words[0] === 0 && words[1] === 0 && words[2] === 0xffff
}

/** "::ffff:10.1.2.3" → "10.1.2.3": IPv4 clients look the same on dual-stack listeners. */
export function unmapIPv4 (address: string): string {
  return address.startsWith('::ffff:') && address.includes('.') ? address.slice(7) : address
}
