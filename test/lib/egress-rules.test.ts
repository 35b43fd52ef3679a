import t from 'tap'
import { parseAbsoluteTarget, parseConnectTarget } from '../../lib/egress/destination.js'
import { EgressRuleSet } from '../../lib/egress/rules.js'
import type { EgressRule } from '../../schemas/egress-rule.js'

function rule (fields: Partial<EgressRule>): EgressRule {
  return { id: fields.id ?? 'r', action: 'allow', host: null, cidr: null, ports: [], expiresAt: null, reason: '', createdAt: '2026-01-01T00:00:00.000Z', ...fields }
}

t.test('destinations: IP spellings become one address, names are lower-cased, bad shapes are refused', async (t) => {
  for (const spelling of ['2130706433', '0x7f000001', '0x7f.1', '0177.0.0.1', '127.1', '127.0.0.1']) {
    t.match(parseConnectTarget(`${spelling}:443`), { ok: true, value: { host: '127.0.0.1', isIp: true, port: 443 } }, spelling)
  }
  t.match(parseConnectTarget('[::FFFF:7f00:1]:443'), { ok: true, value: { host: '::ffff:7f00:1', isIp: true } })
  t.match(parseConnectTarget('Example.COM.:8443'), { ok: true, value: { host: 'example.com', isIp: false, port: 8443 } })
  t.match(parseAbsoluteTarget('http://Example.com/a?b=1#frag'), { ok: true, value: { host: 'example.com', port: 80, authority: 'example.com', path: '/a?b=1' } })
  t.match(parseAbsoluteTarget('HTTP://example.com:8080?x'), { ok: true, value: { port: 8080, authority: 'example.com:8080', path: '/?x' } })
  for (const bad of ['example.com', 'example.com:', 'example.com:0', 'example.com:65536', 'a@example.com:443', '::1:443', '[::1', 'exa mple.com:443', 'ex%41.com:443', '999.0.0.1:443']) {
    t.equal(parseConnectTarget(bad).ok, false, bad)
  }
  for (const bad of ['/relative', 'https://example.com/', 'ftp://example.com/', 'http://u:p@example.com/', 'http:///x', `http://${'a'.repeat(300)}/`]) {
    t.equal(parseAbsoluteTarget(bad).ok, false, bad)
  }
})

t.test('special addresses are refused unless an allow rule with a cidr names them, IPv6 included', async (t) => {
  const open = new EgressRuleSet([], 'allow')
  const check = { name: null, port: 80, tunnel: false }
  for (const address of ['10.1.2.3', '172.16.0.1', '192.168.1.1', '100.64.0.1', '169.254.169.254', '0.0.0.0', '127.0.0.1', '::1', '::', 'fc00::1', 'fd12::1', 'fe80::1', '::ffff:10.0.0.1', '64:ff9b::a00:1', '224.0.0.1']) {
    t.match(open.checkAddresses(check, [address]), { reason: 'special_address' }, address)
  }
  t.equal(open.checkAddresses(check, ['93.184.216.34', '2606:2800:220:1::']), null, 'public addresses pass')
  t.match(open.checkAddresses(check, ['93.184.216.34', '127.0.0.1']), { reason: 'special_address' }, 'one private answer refuses the name')
  const byHost = new EgressRuleSet([rule({ host: 'intranet.example' })], 'allow')
  t.match(byHost.checkAddresses({ name: 'intranet.example', port: 80, tunnel: false }, ['10.0.0.5']), { reason: 'special_address' }, 'a host allow rule does not open a private address')
  const byCidr = new EgressRuleSet([rule({ cidr: '10.0.0.0/8' })], 'allow')
  t.equal(byCidr.checkAddresses(check, ['10.0.0.5']), null)
  t.equal(byCidr.checkAddresses(check, ['::ffff:10.0.0.5']), null, 'the IPv4-mapped spelling is the same address')
})

t.test('deny wins, wildcards match subdomains only, ports, expiry and the default', async (t) => {
  const now = Date.parse('2026-06-01T00:00:00Z')
  const set = new EgressRuleSet([
    rule({ id: 'allow-all', cidr: '0.0.0.0/0' }),
    rule({ id: 'deny-sub', action: 'deny', host: '*.example.com' }),
    rule({ id: 'deny-net', action: 'deny', cidr: '203.0.113.0/24', ports: [25] }),
    rule({ id: 'old', action: 'deny', host: 'old.test', expiresAt: '2026-01-01T00:00:00Z' })
  ], 'deny')
  t.match(set.checkName({ name: 'a.example.com', port: 443, tunnel: true }, now), { reason: 'deny_rule', ruleId: 'deny-sub' })
  t.equal(set.checkName({ name: 'example.com', port: 443, tunnel: true }, now), null)
  t.equal(set.checkName({ name: 'old.test', port: 80, tunnel: false }, now), null, 'expired')
  t.match(set.checkAddresses({ name: null, port: 25, tunnel: false }, ['203.0.113.9'], now), { ruleId: 'deny-net' })
  t.equal(set.checkAddresses({ name: null, port: 80, tunnel: false }, ['203.0.113.9'], now), null, 'the deny rule is for port 25 only')
  t.match(set.checkAddresses({ name: null, port: 8443, tunnel: true }, ['198.51.100.1'], now), { reason: 'port' }, 'CONNECT beyond 443 needs a rule listing the port')
  t.equal(set.checkAddresses({ name: null, port: 443, tunnel: true }, ['198.51.100.1'], now), null)
  const closed = new EgressRuleSet([], 'deny')
  t.match(closed.checkAddresses({ name: 'example.org', port: 80, tunnel: false }, ['198.51.100.1'], now), { reason: 'default_deny' })
})
