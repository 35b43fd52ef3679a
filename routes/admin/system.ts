import { Type, type TObject, type TSchema } from '@sinclair/typebox'
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import type { Kysely } from 'kysely'
import { applyConfigChange } from './apply-change.js'
import { GatewayError } from '../../lib/errors.js'
import type { Database } from '../../repositories/database.js'
import { ErrorSchema } from '../../schemas/common.js'
import { checkValue } from '../../schemas/defaults.js'

const security = [{ bearerAuth: [] }]

export type ConfigDocument = Record<string, unknown[]>

/**
 * POST /admin/reload, GET and PUT /admin/config (docs/admin-api.md "Reload", "Whole configuration").
 * The document has one array per section of app.configSections (routes, filters, consumers).
 */
const systemAdmin: FastifyPluginAsyncTypebox = async (app) => {
  // Sections are added by plugins that may be registered after this one, so the document's
  // schema is completed once everything is loaded (onReady): the body is checked against it in
  // the handler, and /docs/json, generated on first request, shows it whole.
  const documentSchema: TObject = Type.Object({}, {
    additionalProperties: true,
    description: 'One array per section: routes, filters, consumers, certificates (no secrets). PUT replaces the whole state.'
  })
  let completed = false
  function completeDocumentSchema (): TObject {
    if (!completed) {
      const properties: Record<string, TSchema> = {}
      // A section left out is an empty one: "what it omits is deleted" (docs/admin-api.md).
      for (const section of app.configSections.all) properties[section.name] = Type.Optional(Type.Array(section.itemSchema))
      Object.assign(documentSchema, Type.Object(properties, { additionalProperties: false }), { description: documentSchema.description })
      completed = true
    }
    return documentSchema
  }
  app.addHook('onReady', async () => { completeDocumentSchema() })

  async function exportDocument (db: Kysely<Database>): Promise<ConfigDocument> {
    const document: ConfigDocument = {}
    for (const section of app.configSections.all) document[section.name] = await section.exportItems(db)
    return document
  }

  app.post('/reload', {
    schema: {
      tags: ['system'],
      security,
      summary: 'Reread routes from the database',
      description: '`routes` is the number of stored routes now loaded, `version` the configuration version.',
      response: { 200: Type.Object({ routes: Type.Integer(), version: Type.Integer() }), 401: ErrorSchema }
    }
  }, async (request) => {
    await app.configChanges.refresh()
    await app.routeTable.reload()
    const result = { routes: app.routeTable.routes.length, version: app.configChanges.version }
    app.audit.recordAdmin(request, { action: 'reload', resource: 'routes', resourceId: null, before: null, after: result })
    return result
  })

  app.get('/config', {
    schema: {
      tags: ['system'],
      security,
      summary: 'Every route, filter, consumer and certificate as one document (no secrets)',
      response: { 200: documentSchema, 401: ErrorSchema }
    }
  }, async () => exportDocument(app.db))

  app.put('/config', {
    schema: {
      tags: ['system'],
      security,
      summary: 'Replace the whole configuration, all-or-nothing',
      description: 'Validated whole first; then every section is replaced in one transaction. What the document omits is deleted; consumers that stay (matched by name) keep their credentials, certificates that stay keep their private key.',
      body: documentSchema,
      response: { 200: documentSchema, 400: ErrorSchema, 401: ErrorSchema, 409: ErrorSchema }
    }
  }, async (request) => {
    const checked = checkValue(completeDocumentSchema(), request.body, 'body')
    if (!checked.ok) throw new GatewayError(400, 'GW_VALIDATION', checked.message)
    const sections = app.configSections.all
    const given = checked.value as Partial<ConfigDocument>
    const document: ConfigDocument = Object.fromEntries(sections.map((section) => [section.name, given[section.name] ?? []]))
    for (const section of sections) {
      const problem = section.problem(document[section.name])
      if (problem !== null) throw new GatewayError(400, 'GW_VALIDATION', `body/${problem}`)
    }
    const before = await exportDocument(app.db)
    return applyConfigChange(app, request,
      (after: ConfigDocument) => ({ action: 'import', resource: 'config', resourceId: null, before, after }),
      async (trx) => {
        for (const section of sections) await section.replaceAll(trx, document[section.name])
        return exportDocument(trx)
      })
  })
}

export default systemAdmin
