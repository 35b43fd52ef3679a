import { type Cidr, maskWord, type ParsedIp } from './ip.js'

/**
 * CIDR blocks → values, answering "which blocks contain this address". One hash map per
 * prefix length that occurs (at most 33 for IPv4, 129 for IPv6); a lookup masks the address
 * once per such length and does one Map lookup each. Its cost therefore depends on how many
 * distinct prefix lengths the rules use, never on how many rules there are: 100,000 single
 * addresses cost one lookup, like one. (The same idea as a level-compressed prefix trie, with
 * less memory: a binary trie of 100,000 IPv6 rules would hold millions of nodes.)
 */
export class IpTable<T> {
  private readonly v4 = new Map<number, Map<number, T[]>>()
  private readonly v6 = new Map<number, Map<string, T[]>>()
  /** Prefix lengths present, longest first. */
  private v4Lengths: number[] = []
  private v6Lengths: number[] = []
  size = 0

  add (cidr: Cidr, value: T): void {
    const { address, bits } = cidr
    if (address.family === 4) {
      let byKey = this.v4.get(bits)
      if (byKey === undefined) {
        byKey = new Map()
        this.v4.set(bits, byKey)
        this.v4Lengths = [...this.v4.keys()].sort((a, b) => b - a)
      }
      push(byKey, address.value, value)
    } else {
      let byKey = this.v6.get(bits)
      if (byKey === undefined) {
        byKey = new Map()
        this.v6.set(bits, byKey)
        this.v6Lengths = [...this.v6.keys()].sort((a, b) => b - a)
      }
      push(byKey, v6Key(address.words, bits), value)
    }
    this.size++
  }

  /**
   * Calls `visit(value, arg)` for every value whose block contains `address`, most specific
   * block first, until a visit returns true; returns whether one did. `arg` lets callers pass
   * per-request data without allocating a closure per request.
   */
  some<A> (address: ParsedIp, visit: (value: T, arg: A) => boolean, arg: A): boolean {
    if (address.family === 4) {
      for (const bits of this.v4Lengths) {
        const values = (this.v4.get(bits) as Map<number, T[]>).get(maskWord(address.value, bits))
        if (values !== undefined && someOf(values, visit, arg)) return true
      }
      return false
    }
    for (const bits of this.v6Lengths) {
      const values = (this.v6.get(bits) as Map<string, T[]>).get(v6Key(address.words, bits))
      if (values !== undefined && someOf(values, visit, arg)) return true
    }
    return false
  }
}

function push<K, T> (map: Map<K, T[]>, key: K, value: T): void {
  const list = map.get(key)
  if (list === undefined) map.set(key, [value])
  else list.push(value)
}

function someOf<T, A> (values: T[], visit: (value: T, arg: A) => boolean, arg: A): boolean {
  for (const value of values) if (visit(value, arg)) return true
  return false
}

/** The first `bits` bits of an IPv6 address as a compact string key. */
function v6Key (words: readonly number[], bits: number): string {
  let key = ''
  for (let i = 0; i * 32 < bits; i++) key += maskWord(words[i], bits - i * 32).toString(36) + ','
  return key
}
