/* eslint-disable no-template-curly-in-string -- ${…} are the gateway's template variables */
import t from 'tap'
import { applyToHead, applyToHeaderList, compileHeaderRules, headerRulesProblem, renderValue, type TemplateValues } from '../../lib/header-rules.js'

const values: TemplateValues = { clientIp: '203.0.113.9', requestId: 'req-1', consumerId: 'c-1', consumerName: 'alice' }
const rules = (part: Partial<{ remove: string[], set: Record<string, string>, add: Record<string, string> }>) => ({ remove: [], set: {}, add: {}, ...part })

t.test('the substitution check: a variable that brings a control or non-Latin-1 character makes the value unsendable', async (t) => {
  const template = compileHeaderRules(rules({ set: { 'x-who': 'name=${consumerName};ip=${clientIp}' } }), 'r').set[0][1]
  t.equal(renderValue(template, values), 'name=alice;ip=203.0.113.9')
  for (const bad of ['a\r\nx-injected: 1', 'a\nb', 'a\rb', 'a\u0000b', 'a\tb', 'a\u007fb', 'a\u0001b', 'a\u2028b', '日本']) {
    // Named by code points: a raw U+2028 in a test name would break the TAP stream itself.
    t.equal(renderValue(template, { ...values, consumerName: bad }), null, [...bad].map((c) => `U+${c.codePointAt(0)?.toString(16)}`).join(' '))
  }
  t.equal(renderValue(template, { ...values, consumerName: 'Zoë' }), 'name=Zoë;ip=203.0.113.9', 'Latin-1 (obs-text) passes')
  t.equal(renderValue(template, { ...values, consumerName: '' }), 'name=;ip=203.0.113.9', 'no consumer: empty')
})

t.test('routeName is filled in when the route compiles; text without variables stays one string', async (t) => {
  const compiled = compileHeaderRules(rules({ set: { 'x-route': 'via ${routeName}', 'x-plain': 'static' } }), 'orders')
  t.same(compiled.set, [['x-route', 'via orders'], ['x-plain', 'static']])
})

t.test('on a header list: remove, then set (replace), then add (append)', async (t) => {
  const compiled = compileHeaderRules(rules({ remove: ['X-Debug'], set: { 'X-Env': 'prod', 'x-id': '${requestId}' }, add: { 'x-seen-by': 'gatehouse' } }), 'r')
  const headers = ['X-Debug', '1', 'x-env', 'dev', 'X-ENV', 'staging', 'x-seen-by', 'edge', 'accept', '*/*']
  t.same(applyToHeaderList(compiled, headers, values), null)
  t.same(headers, ['x-seen-by', 'edge', 'accept', '*/*', 'x-env', 'prod', 'x-id', 'req-1', 'x-seen-by', 'gatehouse'])
  const withBad = ['a', 'b']
  const dropping = compileHeaderRules(rules({ set: { 'x-user': '${consumerName}' } }), 'r')
  t.same(applyToHeaderList(dropping, withBad, { ...values, consumerName: 'x\r\nevil: 1' }), ['x-user'])
  t.same(withBad, ['a', 'b'], 'the unsafe header is not sent')
})

t.test('on a response head', async (t) => {
  const compiled = compileHeaderRules(rules({ remove: ['server'], set: { 'x-frame-options': 'SAMEORIGIN' }, add: { 'set-cookie': 'b=2', 'x-one': '1' } }), 'r')
  const head: Record<string, string | number | string[] | undefined> = { server: 'nginx', 'x-frame-options': 'DENY', 'set-cookie': ['a=1'] }
  t.same(applyToHead(compiled, head, values), null)
  t.same(head, { server: undefined, 'x-frame-options': 'SAMEORIGIN', 'set-cookie': ['a=1', 'b=2'], 'x-one': '1' })
})

t.test('admin validation names the field', async (t) => {
  const cases: Array<[object, RegExp]> = [
    [rules({ set: { 'x bad': 'v' } }), /^f\/set\/x bad is not an HTTP header name/],
    [rules({ set: { 'x\r\ny': 'v' } }), /is not an HTTP header name/],
    [rules({ remove: ['ok', 'bad:name'] }), /^f\/remove\/1 is not an HTTP header name/],
    [rules({ set: { 'x-a': 'a\r\nb' } }), /^f\/set\/x-a holds control character 0x0d/],
    [rules({ add: { 'x-a': 'a\nb' } }), /^f\/add\/x-a holds control character 0x0a/],
    [rules({ set: { 'x-a': 'a\u0000' } }), /0x00/],
    [rules({ set: { 'x-a': 'a\tb' } }), /0x09/],
    [rules({ set: { 'x-a': '日本' } }), /outside Latin-1/],
    [rules({ set: { 'x-a': '${nope}' } }), /^f\/set\/x-a uses unknown variable \$\{nope\}/],
    [rules({ set: { 'x-a': 'a ${clientIp' } }), /without a closing/],
    [rules({ set: { 'X-A': '1', 'x-a': '2' } }), /listed twice/],
    [rules({ set: { x_a: '1' } }), /must not contain "_"/],
    ...['host', 'Content-Length', 'expect', 'transfer-encoding', 'connection', 'upgrade', 'te', 'keep-alive', 'trailer', 'proxy-authorization', 'via', 'x-request-id', 'x-forwarded-for', 'X-Forwarded-Proto', 'x-consumer-id', 'x-consumer-name', 'x-real-ip', 'forwarded']
      .map((name): [object, RegExp] => [rules({ set: { [name]: 'x' } }), /cannot be changed by a rule/]),
    [rules({ remove: ['x-forwarded-host'] }), /^f\/remove\/0 is set by the gateway/]
  ]
  for (const [input, expected] of cases) t.match(headerRulesProblem(input as never, 'f'), expected, JSON.stringify(input))
  t.equal(headerRulesProblem(rules({ remove: ['x-debug'], set: { 'x-env': 'prod ${routeName}' }, add: { 'X-Seen-By': '${clientIp}, ${requestId} ${consumerId}/${consumerName}' } }), 'f'), null)
})
