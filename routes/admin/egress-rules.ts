import { Type } from '@sinclair/typebox'
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { applyConfigChange } from './apply-change.js'
import { GatewayError } from '../../lib/errors.js'
import { buildEgressRule, egressRuleProblem } from '../../lib/egress/rules.js'
import { deleteEgressRule, findEgressRule, insertEgressRules, listEgressRules } from '../../repositories/egress-rules.js'
import { ErrorSchema, IdParamsSchema, ListQuerySchema, listOf } from '../../schemas/common.js'
import { fillBodyDefaults } from '../../schemas/defaults.js'
import { EgressRuleInputSchema, EgressRuleSchema } from '../../schemas/egress-rule.js'

const tags = ['egress']
const security = [{ bearerAuth: [] }]

/** /admin/egress-rules — docs/egress.md "Rules". */
const egressRulesAdmin: FastifyPluginAsyncTypebox = async (app) => {
  const notFound = (id: string): GatewayError => new GatewayError(404, 'GW_NOT_FOUND', `egress rule ${id} not found`)

  app.get('/', {
    schema: { tags, security, summary: 'List egress rules (expired ones included until deleted)', querystring: ListQuerySchema, response: { 200: listOf(EgressRuleSchema), 401: ErrorSchema } }
  }, async (request) => listEgressRules(app.db, request.query))

  app.post('/', {
    schema: {
      tags,
      security,
      summary: 'Create an allow or deny rule for the forward proxy',
      description: 'At least one of host and cidr. Deny wins over allow; EGRESS_DEFAULT decides what no rule matches. ' +
        'Loopback, private, link-local, CGNAT and unspecified addresses are refused unless an allow rule\'s cidr contains them; ' +
        'CONNECT goes to port 443 only, unless an allow rule lists other ports.',
      body: EgressRuleInputSchema,
      response: { 201: EgressRuleSchema, 400: ErrorSchema, 401: ErrorSchema }
    },
    preValidation: fillBodyDefaults(EgressRuleInputSchema)
  }, async (request, reply) => {
    const problem = egressRuleProblem(request.body)
    if (problem !== null) throw new GatewayError(400, 'GW_VALIDATION', problem)
    const rule = buildEgressRule(request.body)
    await applyConfigChange(app, request, { action: 'create', resource: 'egress-rule', resourceId: rule.id, before: null, after: rule },
      (trx) => insertEgressRules(trx, [rule]))
    return reply.code(201).header('location', `/admin/egress-rules/${rule.id}`).send(rule)
  })

  app.get('/:id', {
    schema: { tags, security, summary: 'Get an egress rule', params: IdParamsSchema, response: { 200: EgressRuleSchema, 401: ErrorSchema, 404: ErrorSchema } }
  }, async (request) => {
    const rule = await findEgressRule(app.db, request.params.id)
    if (rule === undefined) throw notFound(request.params.id)
    return rule
  })

  app.delete('/:id', {
    schema: { tags, security, summary: 'Delete an egress rule; it stops applying before the response', params: IdParamsSchema, response: { 204: Type.Null(), 401: ErrorSchema, 404: ErrorSchema } }
  }, async (request, reply) => {
    const before = await findEgressRule(app.db, request.params.id)
    if (before === undefined) throw notFound(request.params.id)
    await applyConfigChange(app, request, { action: 'delete', resource: 'egress-rule', resourceId: before.id, before, after: null },
      async (trx) => { if (!await deleteEgressRule(trx, before.id)) throw notFound(request.params.id) })
    return reply.code(204).send(null)
  })
}

export default egressRulesAdmin
