import t from 'tap'
import { clientKey, formatIp, parseCidr, parseIp } from '../../lib/ip.js'
import { IpTable } from '../../lib/ip-table.js'
import { canonicalFilter, FilterSet, filterProblem } from '../../lib/ip-filters.js'
import type { Filter } from '../../schemas/filter.js'

t.test('parses IPv4 and IPv6 addresses; IPv4-mapped IPv6 becomes IPv4', async (t) => {
  t.same(parseIp('203.0.113.7'), { family: 4, value: 0xcb007107 })
  t.same(parseIp('::ffff:203.0.113.7'), { family: 4, value: 0xcb007107 })
  t.same(parseIp('::ffff:cb00:7107'), { family: 4, value: 0xcb007107 })
  t.same(parseIp('2001:db8::1'), { family: 6, words: [0x20010db8, 0, 0, 1] })
  t.same(parseIp('::'), { family: 6, words: [0, 0, 0, 0] })
  t.same(parseIp('1:2:3:4:5:6:7:8'), { family: 6, words: [0x00010002, 0x00030004, 0x00050006, 0x00070008] })
  t.same(parseIp('64:ff9b::192.0.2.33'), { family: 6, words: [0x0064ff9b, 0, 0, 0xc0000221] })
  t.equal(parseIp('256.1.1.1'), null)
  t.equal(parseIp('1.2.3'), null)
  t.equal(parseIp('fe80::1%eth0'), null)
  t.equal(parseIp('not-an-ip'), null)
  t.equal(parseIp(''), null)
})

t.test('parses CIDR blocks into their canonical network spelling', async (t) => {
  t.equal(parseCidr('10.1.2.3/8')?.text, '10.0.0.0/8')
  t.equal(parseCidr('203.0.113.7')?.text, '203.0.113.7')
  t.equal(parseCidr('203.0.113.7/32')?.text, '203.0.113.7')
  t.equal(parseCidr('0.0.0.0/0')?.text, '0.0.0.0/0')
  t.equal(parseCidr('2001:DB8:0:0:1::/32')?.text, '2001:db8::/32')
  t.equal(parseCidr('2001:db8::1')?.text, '2001:db8::1')
  t.equal(parseCidr('::ffff:10.0.0.0/104')?.text, '10.0.0.0/8')
  t.equal(parseCidr('::/0')?.text, '::/0')
  t.equal(parseCidr('10.0.0.0/33'), null)
  t.equal(parseCidr('2001:db8::/129'), null)
  t.equal(parseCidr('10.0.0.0/'), null)
  t.equal(parseCidr('10.0.0.0/8/1'), null)
  t.equal(parseCidr('10.0.0.0/-1'), null)
  t.equal(parseCidr('10.0.0.0/ 8'), null)
  t.equal(parseCidr('example.com/8'), null)
})

t.test('formats IPv6 per RFC 5952 (longest zero run compressed, lower case)', async (t) => {
  t.equal(formatIp(parseIp('2001:0db8:0000:0000:0001:0000:0000:0001')!), '2001:db8::1:0:0:1')
  t.equal(formatIp(parseIp('2001:db8:0:1:1:1:1:1')!), '2001:db8:0:1:1:1:1:1')
  t.equal(formatIp(parseIp('::1')!), '::1')
})

t.test('keys IPv6 clients by their /64 and IPv4 clients by address', async (t) => {
  t.equal(clientKey('203.0.113.7'), '203.0.113.7')
  t.equal(clientKey('::ffff:203.0.113.7'), '203.0.113.7')
  t.equal(clientKey('2001:db8:1:2:aaaa:bbbb:cccc:dddd'), '2001:db8:1:2::/64')
  t.equal(clientKey('2001:db8:1:2::9'), '2001:db8:1:2::/64')
  t.not(clientKey('2001:db8:1:3::9'), clientKey('2001:db8:1:2::9'))
})

t.test('IpTable finds every containing block, most specific first', async (t) => {
  const table = new IpTable<string>()
  table.add(parseCidr('10.0.0.0/8')!, 'ten')
  table.add(parseCidr('10.1.0.0/16')!, 'ten-one')
  table.add(parseCidr('10.1.2.3')!, 'host')
  table.add(parseCidr('2001:db8::/32')!, 'doc')
  table.add(parseCidr('2001:db8:1::/48')!, 'doc-1')
  const seen = (ip: string): string[] => {
    const out: string[] = []
    table.some(parseIp(ip)!, (value, list) => { list.push(value); return false }, out)
    return out
  }
  t.same(seen('10.1.2.3'), ['host', 'ten-one', 'ten'])
  t.same(seen('10.2.0.1'), ['ten'])
  t.same(seen('11.0.0.1'), [])
  t.same(seen('2001:db8:1::5'), ['doc-1', 'doc'])
  t.same(seen('2001:db9::1'), [])
  t.same(seen('::ffff:10.9.9.9'), ['ten'])
})

function rule (fields: Partial<Filter>): Filter {
  return { id: 'x', action: 'deny', ip: null, path: null, expiresAt: null, reason: '', createdAt: new Date().toISOString(), ...fields }
}

t.test('FilterSet: deny by ip, path, both; allow lists by most specific prefix; expiry', async (t) => {
  const now = Date.now()
  const set = new FilterSet([
    rule({ ip: '198.51.100.0/24' }),
    rule({ path: '/secret' }),
    rule({ ip: '192.0.2.1', path: '/api/orders' }),
    rule({ action: 'allow', ip: '10.0.0.0/8', path: '/internal' }),
    rule({ action: 'allow', path: '/internal/public' }),
    rule({ ip: '203.0.113.9', expiresAt: new Date(now + 1000).toISOString() })
  ])
  t.equal(set.check('198.51.100.77', '/anything', now), 'denied by an IP filter')
  t.equal(set.check('198.51.101.1', '/anything', now), null)
  t.equal(set.check('1.1.1.1', '/secret', now), 'denied by a path filter')
  t.equal(set.check('1.1.1.1', '/secret/x', now), 'denied by a path filter')
  t.equal(set.check('1.1.1.1', '/secretary', now), null)
  t.equal(set.check('192.0.2.1', '/api/orders/1', now), 'denied by an IP filter')
  t.equal(set.check('192.0.2.1', '/api/users', now), null)
  t.equal(set.check('192.0.2.2', '/api/orders', now), null)
  t.equal(set.check('10.3.4.5', '/internal/x', now), null)
  t.equal(set.check('11.3.4.5', '/internal/x', now), 'not on the allow list for this path')
  t.equal(set.check('11.3.4.5', '/internal', now), 'not on the allow list for this path')
  t.equal(set.check('11.3.4.5', '/internal/public/x', now), null, 'a path-only allow rule opens a more specific prefix to everyone')
  t.equal(set.check('11.3.4.5', '/internals', now), null)
  t.equal(set.check('203.0.113.9', '/', now), 'denied by an IP filter')
  t.equal(set.check('203.0.113.9', '/', now + 1000), null, 'an expired rule stops applying at expiresAt')
})

t.test('FilterSet: an ip-only allow rule makes a gateway-wide allow list', async (t) => {
  const set = new FilterSet([rule({ action: 'allow', ip: '2001:db8::/32' })])
  t.equal(set.check('2001:db8:5::1', '/x', Date.now()), null)
  t.equal(set.check('2001:db9::1', '/x', Date.now()), 'not on the allow list for this path')
  t.equal(set.check('127.0.0.1', '/', Date.now()), 'not on the allow list for this path')
})

t.test('FilterSet lookup time does not grow with 100,000 rules', async (t) => {
  const rules: Filter[] = []
  for (let i = 0; i < 100_000; i++) {
    rules.push(rule({ ip: `10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}` }))
    if (i % 2 === 0) rules.push(rule({ ip: `2001:db8:${(i & 0xffff).toString(16)}::/48` }))
  }
  const big = new FilterSet(rules)
  const small = new FilterSet([rule({ ip: '10.0.0.1' }), rule({ ip: '2001:db8:1::/48' })])
  const time = (set: FilterSet): number => {
    const start = process.hrtime.bigint()
    for (let i = 0; i < 200_000; i++) set.check(i % 2 === 0 ? '192.0.2.1' : '2001:db9::1', '/api/x', 0)
    return Number(process.hrtime.bigint() - start) / 200_000
  }
  time(big); time(small)
  const bigNs = time(big)
  const smallNs = time(small)
  t.equal(big.check('10.1.134.159', '/', 0), 'denied by an IP filter')
  t.equal(big.check('2001:db8:86a0::7', '/', 0), 'denied by an IP filter')
  t.ok(bigNs < smallNs * 3 + 500, `lookup with 150,000 rules ${bigNs.toFixed(0)} ns vs 2 rules ${smallNs.toFixed(0)} ns`)
})

t.test('filterProblem names the field; canonicalFilter normalises ip, path and expiresAt', async (t) => {
  t.equal(filterProblem({ ip: null, path: null, expiresAt: null }), 'body must set at least one of ip or path')
  t.equal(filterProblem({ ip: '10.0.0.0/40', path: null, expiresAt: null }), 'body/ip must be an IPv4/IPv6 address or CIDR block, got "10.0.0.0/40"')
  t.equal(filterProblem({ ip: null, path: '/a/../b', expiresAt: null }), 'body/path must not contain "." or ".." segments')
  t.equal(filterProblem({ ip: '10.0.0.1', path: '/a', expiresAt: null }), null)
  t.same(canonicalFilter({ ip: '::ffff:10.1.2.3', path: '/api/', expiresAt: '2030-01-01T00:00:00+02:00' }),
    { ip: '10.1.2.3', path: '/api', expiresAt: '2029-12-31T22:00:00.000Z' })
})
