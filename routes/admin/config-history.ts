import { Type } from '@sinclair/typebox'
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { applyConfigChangeWithRevision } from './apply-change.js'
import { GatewayError } from '../../lib/errors.js'
import { ErrorSchema, ListQuerySchema, listOf } from '../../schemas/common.js'
import {
  ConfigDiffSchema, DiffQuerySchema, RevisionParamsSchema, RevisionSchema, RollbackAnswerSchema, RollbackBodySchema
} from '../../schemas/config-history.js'

const tags = ['config history']
const security = [{ bearerAuth: [] }]

/**
 * /admin/config/revisions, /admin/config/diff, /admin/config/rollback — docs/config-history.md.
 * Revisions are written by every configuration change (plugins/config-history.ts); these read
 * them, compare two of them, and make an old one current again as a new revision.
 */
const configHistoryAdmin: FastifyPluginAsyncTypebox = async (app) => {
  const history = app.configHistory
  const documentSchema = app.configSections.documentSchema()
  const notKept = (revision: number): GatewayError =>
    new GatewayError(404, 'GW_NOT_FOUND', `revision ${revision} not found (never written, or older than the CONFIG_REVISIONS_KEEP newest kept)`)

  app.get('/revisions', {
    schema: { tags, security, summary: 'Configuration revisions, newest first', querystring: ListQuerySchema, response: { 200: listOf(RevisionSchema), 400: ErrorSchema, 401: ErrorSchema } }
  }, async (request) => history.list(request.query))

  app.get('/revisions/:n', {
    schema: {
      tags,
      security,
      summary: 'One revision: its record and the whole configuration document as it was (no secrets)',
      params: RevisionParamsSchema,
      response: { 200: Type.Object({ ...RevisionSchema.properties, ...documentSchema.properties }), 400: ErrorSchema, 401: ErrorSchema, 404: ErrorSchema }
    }
  }, async (request) => {
    const { n } = request.params
    const [record, state] = await Promise.all([history.find(n), history.stateOf(n)])
    if (record === undefined || state === null) throw notKept(n)
    return { ...record, ...history.documentOf(state) }
  })

  app.get('/diff', {
    schema: {
      tags,
      security,
      summary: 'What changed from one revision to another',
      description: '`to` defaults to the newest revision; `from=0` compares with the empty configuration.',
      querystring: DiffQuerySchema,
      response: { 200: ConfigDiffSchema, 400: ErrorSchema, 401: ErrorSchema, 404: ErrorSchema }
    }
  }, async (request, reply) => {
    const to = request.query.to ?? await history.latest()
    if (to === 0) throw new GatewayError(404, 'GW_NOT_FOUND', 'no revision yet: the configuration has not changed since the history began')
    const from = request.query.from
    const [before, after] = await Promise.all([from === 0 ? {} : history.stateOf(from), history.stateOf(to)])
    if (before === null) throw notKept(from)
    if (after === null) throw notKept(to)
    // Items are shown as they were stored; serialized as they are rather than through a schema of unknowns.
    return reply.serializer(JSON.stringify).send(history.diff(before, after))
  })

  app.post('/rollback', {
    schema: {
      tags,
      security,
      summary: "Make a revision's configuration the current one again, all-or-nothing, as a new revision",
      description: 'The revision\'s document is validated whole under today\'s rules, then applied in one transaction with the credentials, keys and secrets it had (source rollback).',
      body: RollbackBodySchema,
      response: { 200: RollbackAnswerSchema, 400: ErrorSchema, 401: ErrorSchema, 404: ErrorSchema, 409: ErrorSchema }
    }
  }, async (request) => {
    const target = request.body.revision
    const state = await history.stateOf(target)
    if (state === null) throw notKept(target)
    const where = `revision ${target}`
    const document = app.configSections.check(history.documentOf(state), where)
    const secrets = await history.secretsOf(target)
    const current = await history.latest()
    let written
    try {
      written = await applyConfigChangeWithRevision(app, request,
        { action: 'rollback', resource: 'config', resourceId: null, before: { revision: current }, after: { revision: target } },
        async (trx) => { await app.configSections.restore(trx, document, secrets) },
        { source: 'rollback' })
    } catch (err) {
      // A section's own check names the field under "body/"; here the document is the revision's.
      if (err instanceof GatewayError && err.statusCode === 400) throw new GatewayError(400, err.code, err.message.replace(/^body\//, `${where}: `))
      throw err
    }
    const revision = written.revision
    return {
      revision: revision?.revision ?? current,
      rolledBackTo: target,
      summary: revision?.summary ?? { created: 0, updated: 0, deleted: 0 }
    }
  })
}

export default configHistoryAdmin
