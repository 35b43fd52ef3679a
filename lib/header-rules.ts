import type { HeaderRules } from '../schemas/transforms.js'
import type { ResponseHead } from './proxy-headers.js'

/**
 * Route `requestHeaders` / `responseHeaders` (docs/transforms.md "Header rules"): remove, then
 * set (replace or create), then add (append another value). Checked at the admin API, compiled
 * once per route: templates are split into text and variables then, so a request only joins
 * strings — and checks what it joined, since a variable's value comes from the request.
 */

const TOKEN = /^[A-Za-z0-9!#$%&'*+.^_`|~-]+$/
/** What a header value may hold: visible ASCII, space and obs-text. No control character (HTAB included), nothing above U+00FF. */
const UNSAFE_VALUE = /[^\x20-\x7e\x80-\xff]/

/**
 * Names no rule may touch: hop-by-hop, framing (Expect too: undici refuses to send it), and what
 * the gateway sets itself, so a rule can neither break the message nor forge the request id, the
 * client address or the consumer.
 */
const PROTECTED = new Set([
  'connection', 'keep-alive', 'proxy-connection', 'te', 'trailer', 'transfer-encoding', 'upgrade', 'http2-settings',
  'host', 'content-length', 'expect', 'via', 'x-request-id', 'forwarded',
  'x-real-ip', 'true-client-ip', 'cf-connecting-ip', 'x-client-ip', 'x-cluster-client-ip',
  // The upstream gets exactly one, the gateway's (docs/logging.md "Tracing").
  'traceparent'
])
const PROTECTED_PREFIXES = ['proxy-', 'x-forwarded-', 'x-consumer-']

export const TEMPLATE_VARIABLES = ['clientIp', 'requestId', 'routeName', 'consumerId', 'consumerName'] as const
type VariableName = typeof TEMPLATE_VARIABLES[number]
/** Filled per request; routeName is known when the route compiles. */
type RequestVariable = Exclude<VariableName, 'routeName'>

/** The per-request values of the variables; consumerId and consumerName are '' without a consumer. */
export type TemplateValues = Readonly<Record<RequestVariable, string>>

/** A compiled value: plain text, or text and variables to join. */
export type ValueTemplate = string | ReadonlyArray<string | { readonly variable: RequestVariable }>

export interface CompiledHeaderRules {
  /** Lower-case names removed before set and add: those of `remove` and `set`. */
  readonly removed: ReadonlySet<string>
  /** Their lengths: most headers of a request are passed over without lower-casing their names. */
  readonly removedLengths: ReadonlySet<number>
  readonly set: ReadonlyArray<readonly [string, ValueTemplate]>
  readonly add: ReadonlyArray<readonly [string, ValueTemplate]>
}

/** Why a header rule is refused, or null. `field` names it, e.g. "body/requestHeaders". */
export function headerRulesProblem (rules: HeaderRules, field: string): string | null {
  const seen = new Map<string, string>()
  for (const [index, name] of rules.remove.entries()) {
    const problem = nameProblem(name)
    if (problem !== null) return `${field}/remove/${index} ${problem}`
  }
  for (const part of ['set', 'add'] as const) {
    for (const [name, value] of Object.entries(rules[part])) {
      const problem = nameProblem(name)
      if (problem !== null) return `${field}/${part}/${name} ${problem}`
      const lower = name.toLowerCase()
      const twice = seen.get(lower)
      if (twice !== undefined && twice === part) return `${field}/${part}/${name} is listed twice (names are case-insensitive)`
      seen.set(lower, part)
      const valueProblem = templateProblem(value)
      if (valueProblem !== null) return `${field}/${part}/${name} ${valueProblem}`
    }
  }
  return null
}

function nameProblem (name: string): string | null {
  if (!TOKEN.test(name)) return 'is not an HTTP header name (a token: letters, digits and !#$%&\'*+.^`|~-)'
  if (name.includes('_')) return 'must not contain "_" (the gateway drops such headers, docs/routing.md)'
  const lower = name.toLowerCase()
  if (PROTECTED.has(lower) || PROTECTED_PREFIXES.some((prefix) => lower.startsWith(prefix))) {
    return `is set by the gateway or hop-by-hop and cannot be changed by a rule (${lower})`
  }
  return null
}

function templateProblem (value: string): string | null {
  const unsafe = UNSAFE_VALUE.exec(value)
  if (unsafe !== null) {
    const code = unsafe[0].charCodeAt(0)
    return code > 0xff
      ? 'holds a character outside Latin-1, which a header cannot carry'
      : `holds control character 0x${code.toString(16).padStart(2, '0')} (CR, LF, NUL, TAB and other controls are refused)`
  }
  const parsed = parseTemplate(value, '')
  return typeof parsed === 'object' && 'problem' in parsed ? parsed.problem : null
}

/** `${name}` → its variable; routeName is filled in now. Text outside `${…}` is kept as written. */
function parseTemplate (value: string, routeName: string): ValueTemplate | { problem: string } {
  if (!value.includes('${')) return value
  const parts: Array<string | { variable: RequestVariable }> = []
  let text = ''
  let at = 0
  while (at < value.length) {
    const open = value.indexOf('${', at)
    if (open === -1) { text += value.slice(at); break }
    const close = value.indexOf('}', open + 2)
    // eslint-disable-next-line no-template-curly-in-string -- the literal text the user wrote
    if (close === -1) return { problem: 'has "${" without a closing "}"' }
    const name = value.slice(open + 2, close)
    text += value.slice(at, open)
    at = close + 1
    if (!(TEMPLATE_VARIABLES as readonly string[]).includes(name)) {
      return { problem: `uses unknown variable \${${name}} (known: ${TEMPLATE_VARIABLES.map((known) => `\${${known}}`).join(', ')})` }
    }
    if (name === 'routeName') { text += routeName; continue }
    if (text !== '') parts.push(text)
    text = ''
    parts.push({ variable: name as RequestVariable })
  }
  if (text !== '') parts.push(text)
  if (parts.every((part) => typeof part === 'string')) return parts.join('')
  return parts
}

/** Compiles rules that headerRulesProblem accepted. */
export function compileHeaderRules (rules: HeaderRules, routeName: string): CompiledHeaderRules {
  const compile = (values: Record<string, string>): Array<readonly [string, ValueTemplate]> => Object.entries(values).map(([name, value]) => {
    const template = parseTemplate(value, routeName)
    if (typeof template === 'object' && 'problem' in template) throw new Error(`header ${name}: ${template.problem}`)
    return [name.toLowerCase(), template] as const
  })
  const set = compile(rules.set)
  const removed = new Set([...rules.remove.map((name) => name.toLowerCase()), ...set.map(([name]) => name)])
  return {
    removed,
    removedLengths: new Set([...removed].map((name) => name.length)),
    set,
    add: compile(rules.add)
  }
}

/**
 * The value to send, or null when it must not be sent: a variable brought a character a header
 * cannot carry (a control character would split the header; the caller drops it and logs).
 */
export function renderValue (template: ValueTemplate, values: TemplateValues): string | null {
  if (typeof template === 'string') return template
  let out = ''
  for (const part of template) out += typeof part === 'string' ? part : values[part.variable]
  return UNSAFE_VALUE.test(out) ? null : out
}

/**
 * Applies the rules to the flat [name, value, …] list going upstream, in place. Returns the
 * names of headers dropped because their value was unsafe after substitution (usually none).
 */
export function applyToHeaderList (rules: CompiledHeaderRules, headers: string[], values: TemplateValues): string[] | null {
  if (rules.removed.size > 0) {
    let kept = 0
    for (let i = 0; i < headers.length; i += 2) {
      if (rules.removedLengths.has(headers[i].length) && rules.removed.has(headers[i].toLowerCase())) continue
      headers[kept++] = headers[i]
      headers[kept++] = headers[i + 1]
    }
    headers.length = kept
  }
  let dropped: string[] | null = null
  for (const list of [rules.set, rules.add]) {
    for (const [name, template] of list) {
      const value = renderValue(template, values)
      if (value === null) (dropped ??= []).push(name)
      else headers.push(name, value)
    }
  }
  return dropped
}

/** Applies the rules to a response head (lower-case names; undefined = removed). Returns the dropped names, as above. */
export function applyToHead (rules: CompiledHeaderRules, head: ResponseHead, values: TemplateValues): string[] | null {
  for (const name of rules.removed) {
    if (head[name] !== undefined) head[name] = undefined
  }
  let dropped: string[] | null = null
  for (const [name, template] of rules.set) {
    const value = renderValue(template, values)
    if (value === null) (dropped ??= []).push(name)
    else head[name] = value
  }
  for (const [name, template] of rules.add) {
    const value = renderValue(template, values)
    if (value === null) { (dropped ??= []).push(name); continue }
    const existing = head[name]
    head[name] = existing === undefined ? value : Array.isArray(existing) ? [...existing, value] : [String(existing), value]
  }
  return dropped
}
