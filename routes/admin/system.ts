import { Type } from '@sinclair/typebox'
import type { Transaction } from 'kysely'
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { applyConfigChangeWithRevision } from './apply-change.js'
import { preconditionFailed } from './preconditions.js'
import { configEtag, ifMatchPasses } from '../../lib/etag.js'
import { ErrorSchema } from '../../schemas/common.js'
import { ConfigDiffSchema } from '../../schemas/config-history.js'
import type { ConfigDocument } from '../../plugins/config-sections.js'
import type { Database } from '../../repositories/database.js'

const security = [{ bearerAuth: [] }]

/** Thrown inside a dry run's transaction so that it rolls back. */
class DryRunDone extends Error {}

/**
 * POST /admin/reload, GET and PUT /admin/config (docs/admin-api.md "Reload", "Whole configuration";
 * docs/config-history.md for ETag/If-Match and dryRun). The document has one array per section of
 * app.configSections, all registered by the plugins before this one.
 */
const systemAdmin: FastifyPluginAsyncTypebox = async (app) => {
  const documentSchema = app.configSections.documentSchema()

  app.post('/reload', {
    schema: {
      tags: ['system'],
      security,
      summary: 'Reread routes from the database (and apply CONFIG_FILE when set)',
      description: '`routes` is the number of stored routes now loaded, `version` the configuration version, `configRevision` the newest configuration revision. ' +
        'With CONFIG_FILE set, the file is read and applied first (source config-file); an invalid file is refused with 400 and the running configuration stays.',
      response: { 200: Type.Object({ routes: Type.Integer(), version: Type.Integer(), configRevision: Type.Integer() }), 400: ErrorSchema, 401: ErrorSchema, 409: ErrorSchema }
    }
  }, async (request) => {
    if (app.configFile.path !== null) await app.configFile.apply(request)
    await app.configChanges.refresh()
    await app.routeTable.reload()
    const result = { routes: app.routeTable.routes.length, version: app.configChanges.version, configRevision: await app.configHistory.latest() }
    app.audit.recordAdmin(request, { action: 'reload', resource: 'routes', resourceId: null, before: null, after: result })
    return result
  })

  app.get('/config', {
    schema: {
      tags: ['system'],
      security,
      summary: 'Every route, filter, consumer, certificate and egress rule as one document (no secrets)',
      description: 'Answered with an ETag naming the configuration revision; send it back in If-Match on PUT.',
      response: { 200: documentSchema, 401: ErrorSchema }
    }
  }, async (_request, reply) => {
    // The revision is read first: a change landing in between makes the tag older than the
    // document, so a PUT based on it is refused (412) rather than accepted on stale ground.
    const revision = await app.configHistory.latest()
    const document = await app.configSections.exportDocument(app.db)
    return reply.header('etag', configEtag(revision)).send(document)
  })

  app.put('/config', {
    schema: {
      tags: ['system'],
      security,
      summary: 'Replace the whole configuration, all-or-nothing (or preview it with dryRun=true)',
      description: 'Validated whole first; then every section is replaced in one transaction, recorded as one revision (source config-import). ' +
        'What the document omits is deleted; consumers that stay (matched by name) keep their credentials, certificates that stay keep their private key. ' +
        'If-Match: the ETag of GET /admin/config; 412 when the configuration changed since. ' +
        '`dryRun=true`: answers the diff it would apply (with the ETag it was computed against) and changes nothing.',
      querystring: Type.Object({ dryRun: Type.Optional(Type.Boolean({ default: false, description: 'true: answer the diff, change nothing' })) }, { additionalProperties: false }),
      body: documentSchema,
      response: { 200: Type.Union([ConfigDiffSchema, documentSchema]), 400: ErrorSchema, 401: ErrorSchema, 409: ErrorSchema, 412: ErrorSchema }
    }
  }, async (request, reply) => {
    const document = app.configSections.check(request.body, 'body')
    const ifMatch = request.headers['if-match']
    // Inside the transaction: with SQLite, a query on app.db would wait for the connection the transaction holds.
    const checkIfMatch = async (trx: Transaction<Database>): Promise<number> => {
      const revision = await app.configHistory.latest(trx)
      if (!ifMatchPasses(ifMatch, configEtag(revision))) throw preconditionFailed('the configuration', configEtag(revision))
      return revision
    }

    if (request.query.dryRun === true) {
      let answer: { diff: ReturnType<typeof app.configHistory.diff>, revision: number } | null = null
      await app.db.transaction().execute(async (trx) => {
        const revision = await checkIfMatch(trx)
        const before = await app.configHistory.currentState(trx)
        await app.configSections.replace(trx, document)
        answer = { diff: app.configHistory.diff(before, await app.configHistory.currentState(trx)), revision }
        throw new DryRunDone()
      }).catch((err: unknown) => { if (!(err instanceof DryRunDone)) throw err })
      const { diff, revision } = answer as unknown as { diff: ReturnType<typeof app.configHistory.diff>, revision: number }
      return reply.header('etag', configEtag(revision)).serializer(JSON.stringify).send(diff)
    }

    const before = await app.configSections.exportDocument(app.db)
    const { result, revision } = await applyConfigChangeWithRevision(app, request,
      (after: ConfigDocument) => ({ action: 'import', resource: 'config', resourceId: null, before, after }),
      async (trx) => {
        await app.configSections.replace(trx, document)
        return app.configSections.exportDocument(trx)
      },
      { source: 'config-import', precondition: async (trx) => { await checkIfMatch(trx) } })
    return reply.header('etag', configEtag(revision?.revision ?? await app.configHistory.latest())).serializer(JSON.stringify).send(result)
  })
}

export default systemAdmin
