import { Type, type Static } from '@sinclair/typebox'
import { defaultsOptional } from './defaults.js'

const Action = Type.Union([Type.Literal('allow'), Type.Literal('deny')], { description: 'deny wins over allow; EGRESS_DEFAULT decides what no rule matches' })

/** Fields a client sends to POST /admin/egress-rules (docs/egress.md "Rules"). */
export const EgressRuleInputSchema = defaultsOptional(Type.Object({
  action: Action,
  host: Type.Union([Type.String({ minLength: 1, maxLength: 255 }), Type.Null()], {
    default: null, description: 'an exact host name ("example.com") or "*.example.com" (every subdomain, not example.com itself)'
  }),
  cidr: Type.Union([Type.String({ minLength: 2, maxLength: 64 }), Type.Null()], {
    default: null, description: 'an IPv4/IPv6 address or CIDR block, matched against the address actually connected to'
  }),
  ports: Type.Array(Type.Integer({ minimum: 1, maximum: 65535 }), {
    default: [], maxItems: 100, description: 'ports the rule applies to; empty: every port. CONNECT to a port other than 443 needs an allow rule listing it'
  }),
  expiresAt: Type.Union([Type.String({ format: 'date-time' }), Type.Null()], { default: null }),
  reason: Type.String({ maxLength: 500, default: '' })
}, {
  additionalProperties: false,
  $id: 'EgressRuleInput',
  examples: [
    { action: 'deny', host: '*.example.net', reason: 'no file sharing' },
    { action: 'allow', cidr: '10.20.0.0/16', ports: [443, 8443], reason: 'internal services' }
  ]
}))
export type EgressRuleInput = Static<typeof EgressRuleInputSchema>

export const EgressRuleSchema = Type.Object({
  id: Type.String(),
  action: Action,
  host: Type.Union([Type.String(), Type.Null()]),
  cidr: Type.Union([Type.String(), Type.Null()]),
  ports: Type.Array(Type.Integer()),
  expiresAt: Type.Union([Type.String({ format: 'date-time' }), Type.Null()]),
  reason: Type.String(),
  createdAt: Type.String({ format: 'date-time' })
}, { $id: 'EgressRule' })
export type EgressRule = Static<typeof EgressRuleSchema>

/** One rule in the /admin/config document: as exported, id and createdAt optional on import. */
export const EgressRuleConfigItemSchema = defaultsOptional(Type.Object({
  ...EgressRuleInputSchema.properties,
  id: Type.Optional(Type.String({ minLength: 1, maxLength: 200 })),
  createdAt: Type.Optional(Type.String({ format: 'date-time' }))
}, { additionalProperties: false }))
export type EgressRuleConfigItem = Static<typeof EgressRuleConfigItemSchema>
