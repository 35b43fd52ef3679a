import fp from 'fastify-plugin'
import type { FastifyInstance, FastifyPluginAsync, FastifyRequest } from 'fastify'
import type { Kysely, Transaction } from 'kysely'
import { canonicalJson, type ConfigDiff, type ConfigState, diffConfig } from '../lib/config-diff.js'
import type { SectionSecrets } from '../lib/config-section.js'
import { GatewayError } from '../lib/errors.js'
import { RevisionCodec } from '../lib/revision-codec.js'
import { SecretBox } from '../lib/secret-box.js'
import {
  existingBlobIds, findBlobs, findRevision, insertRevision, latestRevisionNumber, listRevisions, pruneRevisions,
  type RevisionBlob, type RevisionRecord, type RevisionSource, revisionBlobIds
} from '../repositories/config-revisions.js'
import type { Database } from '../repositories/database.js'
import type { AdminChange } from './audit.js'
import type { ConfigDocument } from './config-sections.js'

export type { RevisionRecord, RevisionSource } from '../repositories/config-revisions.js'

/** The state a change starts from, taken inside its transaction before it writes. */
export interface ChangeBaseline {
  state: ConfigState
  blobIds: Map<string, string>
  /** false before the first revision: the baseline was exported, its blobs are stored nowhere yet. */
  stored: boolean
}

/**
 * Configuration revisions (docs/config-history.md): every change of the configuration document
 * — one admin call, one whole-document import, a rollback, the CONFIG_FILE — is one numbered
 * revision, written in the change's own transaction (applyConfigChangeWithRevision below), so a change
 * that fails leaves none. A revision keeps every section of app.configSections whole, with the
 * secrets a rollback needs (sealed with SECRET_KEY when set); a section unchanged since the
 * previous revision shares its stored blob. A change that changes nothing records nothing.
 */
export interface ConfigHistory {
  begin: (trx: Transaction<Database>) => Promise<ChangeBaseline>
  /**
   * After the change's writes, in its transaction: the new revision, or null when nothing changed.
   * `touched`: the only sections the change can have changed (an entity endpoint knows); default all.
   */
  record: (trx: Transaction<Database>, baseline: ChangeBaseline, source: RevisionSource, actor: string, touched?: readonly string[]) => Promise<RevisionRecord | null>
  /** The newest revision's number, 0 before the first. */
  latest: (db?: Kysely<Database> | Transaction<Database>) => Promise<number>
  list: (page: { limit: number, offset: number }) => Promise<{ items: RevisionRecord[], total: number }>
  find: (revision: number) => Promise<RevisionRecord | undefined>
  /** A kept revision's document and fingerprints; null when it is unknown or pruned. */
  stateOf: (revision: number) => Promise<ConfigState | null>
  /** The stored configuration now, as a revision would keep it. */
  currentState: (db: Kysely<Database> | Transaction<Database>) => Promise<ConfigState>
  /** A kept revision's secrets, for a rollback: a 409 naming the reason when they cannot be opened. */
  secretsOf: (revision: number) => Promise<Record<string, SectionSecrets>>
  diff: (before: ConfigState, after: ConfigState) => ConfigDiff
  documentOf: (state: ConfigState) => ConfigDocument
}

declare module 'fastify' {
  interface FastifyInstance {
    configHistory: ConfigHistory
  }
}

/** Decoded section states kept in memory: the newest revision's are read on every change. */
const CACHED_BLOBS = 32

const configHistoryPlugin: FastifyPluginAsync = async (app) => {
  const codec = new RevisionCodec(app.config.secretKey === null ? null : new SecretBox(app.config.secretKey), app.config.secretKey)
  const keep = app.config.configRevisionsKeep
  const cache = new Map<string, ConfigState[string]>()
  const sections = (): typeof app.configSections.all => app.configSections.all

  function remember (id: string, state: ConfigState[string]): void {
    cache.delete(id)
    cache.set(id, state)
    if (cache.size > CACHED_BLOBS) cache.delete(cache.keys().next().value as string)
  }

  async function exportState (db: Kysely<Database> | Transaction<Database>, only?: ReadonlySet<string>): Promise<{ state: ConfigState, secrets: Record<string, SectionSecrets>, blobIds: Map<string, string> }> {
    const state: ConfigState = {}
    const secrets: Record<string, SectionSecrets> = {}
    const blobIds = new Map<string, string>()
    for (const section of sections()) {
      if (only !== undefined && !only.has(section.name)) continue
      const items = await section.exportItems(db)
      const sectionSecrets = section.exportSecrets === undefined ? {} : await section.exportSecrets(db)
      const fingerprints: Record<string, string> = {}
      for (const [identity, secret] of Object.entries(sectionSecrets)) fingerprints[identity] = codec.fingerprint(secret)
      state[section.name] = { items, fingerprints }
      secrets[section.name] = sectionSecrets
      blobIds.set(section.name, codec.hash(`${section.name}\n${canonicalJson(items)}\n${canonicalJson(sectionSecrets)}`))
    }
    return { state, secrets, blobIds }
  }

  async function loadBlobs (db: Kysely<Database> | Transaction<Database>, blobIds: Map<string, string>): Promise<ConfigState> {
    const missing = [...blobIds.values()].filter((id) => !cache.has(id))
    for (const blob of await findBlobs(db, missing)) remember(blob.id, codec.unpack(blob.document) as ConfigState[string])
    const state: ConfigState = {}
    for (const [section, id] of blobIds) {
      const loaded = cache.get(id)
      if (loaded !== undefined) state[section] = loaded
    }
    return state
  }

  function sameBlobs (a: Map<string, string>, b: Map<string, string>): boolean {
    if (a.size !== b.size) return false
    for (const [section, id] of a) if (b.get(section) !== id) return false
    return true
  }

  const history: ConfigHistory = {
    async begin (trx) {
      const latest = await latestRevisionNumber(trx)
      if (latest === 0) {
        const { state, blobIds } = await exportState(trx)
        return { state, blobIds, stored: false }
      }
      const blobIds = await revisionBlobIds(trx, latest)
      return { state: await loadBlobs(trx, blobIds), blobIds, stored: true }
    },

    async record (trx, baseline, source, actor, touched) {
      // Sections the change cannot have touched are the baseline's: with 10,000 consumers, a
      // route change does not export them all again.
      const only = touched === undefined || !baseline.stored || !sections().every((section) => baseline.blobIds.has(section.name) && baseline.state[section.name] !== undefined)
        ? undefined
        : new Set(touched)
      const exported = await exportState(trx, only)
      const state: ConfigState = { ...(only === undefined ? {} : baseline.state), ...exported.state }
      const blobIds = new Map(only === undefined ? exported.blobIds : [...baseline.blobIds].map(([name, id]) => [name, exported.blobIds.get(name) ?? id]))
      const secrets = exported.secrets
      if (sameBlobs(blobIds, baseline.blobIds)) return null
      const changed = sections().filter((section) => blobIds.get(section.name) !== baseline.blobIds.get(section.name))
      const { summary } = diffConfig(changed, baseline.state, state)
      const revision = await latestRevisionNumber(trx) + 1
      const existing = await existingBlobIds(trx, [...blobIds.values()])
      const newBlobs: RevisionBlob[] = []
      for (const [section, id] of blobIds) {
        if (existing.has(id) || newBlobs.some((blob) => blob.id === id)) continue
        newBlobs.push({ id, section, document: codec.pack(state[section]), secrets: codec.packSecrets(secrets[section]) })
      }
      const record: RevisionRecord = {
        revision,
        ts: new Date().toISOString(),
        actor,
        source,
        summary: { created: summary.creating, updated: summary.updating, deleted: summary.deleting }
      }
      await insertRevision(trx, record, blobIds, newBlobs)
      await pruneRevisions(trx, revision, keep)
      for (const [section, id] of blobIds) remember(id, state[section])
      return record
    },

    latest: async (db = app.db) => latestRevisionNumber(db),
    list: async (page) => listRevisions(app.db, page),
    find: async (revision) => findRevision(app.db, revision),

    async stateOf (revision) {
      const blobIds = await revisionBlobIds(app.db, revision)
      if (blobIds.size === 0) return null
      return loadBlobs(app.db, blobIds)
    },

    currentState: async (db) => (await exportState(db)).state,

    async secretsOf (revision) {
      const blobIds = await revisionBlobIds(app.db, revision)
      const blobs = new Map((await findBlobs(app.db, [...blobIds.values()])).map((blob) => [blob.id, blob]))
      const secrets: Record<string, SectionSecrets> = {}
      for (const [section, id] of blobIds) {
        const blob = blobs.get(id)
        if (blob === undefined) continue
        try {
          secrets[section] = codec.unpackSecrets(blob.secrets) as SectionSecrets
        } catch (err) {
          throw new GatewayError(409, 'GW_REVISION_SEALED', `revision ${revision} cannot be restored: ${(err as Error).message}`)
        }
      }
      return secrets
    },

    diff: (before, after) => diffConfig(sections(), before, after),

    documentOf (state) {
      const document: ConfigDocument = {}
      for (const section of sections()) document[section.name] = state[section.name]?.items ?? []
      return document
    }
  }
  app.decorate('configHistory', history)
}

export interface ChangeOptions {
  /** What the revision says made the change (default "admin-api"). */
  source?: RevisionSource
  /** If-Match and the like: checked inside the transaction, once no other change can run (docs/config-history.md "ETag and If-Match"). */
  precondition?: (trx: Transaction<Database>) => Promise<void>
  /** The only configuration sections the write can change ("routes" …); default: all. */
  sections?: readonly string[]
}

/**
 * The one way configuration changes: the config_version bump, the write and its revision commit
 * together, the running gateway reloads before the response is sent, the change is audited,
 * and other instances see the new version on their next poll (docs/architecture.md "One admin
 * change"). `request` null: a change the gateway makes itself (CONFIG_FILE at start, SIGHUP).
 */
export async function applyConfigChangeWithRevision<T> (
  app: FastifyInstance,
  request: FastifyRequest | null,
  change: AdminChange | ((result: T) => AdminChange),
  write: (trx: Transaction<Database>) => Promise<T>,
  options: ChangeOptions = {}
): Promise<{ result: T, revision: RevisionRecord | null }> {
  let outcome: { result: T, revision: RevisionRecord | null }
  try {
    outcome = await app.db.transaction().execute(async (trx) => {
      // The bump comes first: it takes the lock every change takes (SQLite's write lock, the
      // config_version row in PostgreSQL), so preconditions, the write and the revision number
      // see no concurrent change.
      await app.configChanges.bump(trx)
      if (options.precondition !== undefined) await options.precondition(trx)
      const baseline = await app.configHistory.begin(trx)
      const result = await write(trx)
      const revision = await app.configHistory.record(trx, baseline, options.source ?? 'admin-api', request === null ? 'system' : 'admin-token', options.sections)
      return { result, revision }
    })
  } catch (err) {
    if (isUniqueViolation(err)) throw new GatewayError(409, 'GW_CONFLICT', 'name already taken')
    throw err
  }
  await app.configChanges.refresh()
  app.audit.recordAdmin(request, typeof change === 'function' ? change(outcome.result) : change)
  return outcome
}

export function isUniqueViolation (err: unknown): boolean {
  const { code, message } = err as { code?: string, message?: string }
  return code === '23505' || code === 'SQLITE_CONSTRAINT_UNIQUE' || (message ?? '').includes('UNIQUE constraint failed')
}

export default fp(configHistoryPlugin, { name: 'config-history', dependencies: ['db', 'config-sections'] })
