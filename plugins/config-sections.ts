import fp from 'fastify-plugin'
import type { FastifyPluginAsync } from 'fastify'
import { Type, type TObject, type TSchema } from '@sinclair/typebox'
import type { Kysely, Transaction } from 'kysely'
import type { ConfigSection, SectionSecrets } from '../lib/config-section.js'
import { GatewayError } from '../lib/errors.js'
import type { Database } from '../repositories/database.js'
import { checkValue } from '../schemas/defaults.js'

export type { ConfigSection } from '../lib/config-section.js'

/** The `/admin/config` document: one array per section. */
export type ConfigDocument = Record<string, unknown[]>

/**
 * The sections of the configuration document (docs/admin-api.md "Whole configuration"). Each
 * plugin adds the section of the data it owns when it is registered (routes: the route table,
 * filters, consumers: auth …); the admin API takes the document's schema once, after them, and
 * from then on the registry is closed.
 */
export interface ConfigSections {
  add: <Item>(section: ConfigSection<Item>) => void
  readonly all: readonly ConfigSection[]
  /** The document's schema; sections can no longer be added once it has been taken. */
  documentSchema: () => TObject
  exportDocument: (db: Kysely<Database>) => Promise<ConfigDocument>
  exportSecrets: (db: Kysely<Database>) => Promise<Record<string, SectionSecrets>>
  /** Validated whole (schema, then each section's rules): a 400 naming the field under `where` ("body/routes/2/path …"). */
  check: (value: unknown, where: string) => ConfigDocument
  /** Every section replaced by the document's, inside the caller's transaction. */
  replace: (trx: Transaction<Database>, document: ConfigDocument) => Promise<void>
  /** A rollback: every section as the document has it, with the secrets it kept. */
  restore: (trx: Transaction<Database>, document: ConfigDocument, secrets: Record<string, SectionSecrets>) => Promise<void>
}

declare module 'fastify' {
  interface FastifyInstance {
    configSections: ConfigSections
  }
}

const configSectionsPlugin: FastifyPluginAsync = async (app) => {
  const sections: ConfigSection[] = []
  let schema: TObject | null = null

  function documentSchema (): TObject {
    if (schema === null) {
      const properties: Record<string, TSchema> = {}
      // A section left out is an empty one: "what it omits is deleted" (docs/admin-api.md).
      for (const section of sections) properties[section.name] = Type.Optional(Type.Array(section.itemSchema))
      schema = Type.Object(properties, {
        additionalProperties: false,
        description: `One array per section: ${sections.map((section) => section.name).join(', ')} (no secrets). PUT replaces the whole state.`
      })
    }
    return schema
  }

  app.decorate('configSections', {
    add (section) {
      if (schema !== null) throw new Error(`config section ${section.name} added after the configuration document was built: add it from a plugin registered before the admin routes`)
      if (sections.some((existing) => existing.name === section.name)) throw new Error(`config section ${section.name} added twice`)
      sections.push(section as ConfigSection)
    },
    get all () { return sections },
    documentSchema,

    async exportDocument (db) {
      const document: ConfigDocument = {}
      for (const section of sections) document[section.name] = await section.exportItems(db)
      return document
    },

    async exportSecrets (db) {
      const secrets: Record<string, SectionSecrets> = {}
      for (const section of sections) secrets[section.name] = section.exportSecrets === undefined ? {} : await section.exportSecrets(db)
      return secrets
    },

    check (value, where) {
      const checked = checkValue(documentSchema(), value, where)
      if (!checked.ok) throw new GatewayError(400, 'GW_VALIDATION', checked.message)
      const given = checked.value as Partial<ConfigDocument>
      const document: ConfigDocument = Object.fromEntries(sections.map((section) => [section.name, given[section.name] ?? []]))
      for (const section of sections) {
        const problem = section.problem(document[section.name])
        if (problem !== null) throw new GatewayError(400, 'GW_VALIDATION', `${where}/${problem}`)
      }
      return document
    },

    async replace (trx, document) {
      for (const section of sections) await section.replaceAll(trx, document[section.name] ?? [])
    },

    async restore (trx, document, secrets) {
      for (const section of sections) {
        const items = document[section.name] ?? []
        if (section.restore === undefined) await section.replaceAll(trx, items)
        else await section.restore(trx, items, secrets[section.name] ?? {})
      }
    }
  } satisfies ConfigSections)
}

export default fp(configSectionsPlugin, { name: 'config-sections' })
