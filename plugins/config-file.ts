import cluster from 'node:cluster'
import fp from 'fastify-plugin'
import type { FastifyPluginAsync, FastifyRequest } from 'fastify'
import { readConfigDocumentFile } from '../lib/config-file.js'
import { GatewayError } from '../lib/errors.js'
import { applyConfigChangeWithRevision, type RevisionRecord } from './config-history.js'

/**
 * CONFIG_FILE (docs/config-history.md "Configuration file"): a YAML or JSON configuration
 * document applied as a whole-document import (source config-file) at start, on SIGHUP
 * (server.ts) and on POST /admin/reload. Invalid at start: start-up stops with the problem and
 * the field. Invalid later: refused (400 on reload, logged on SIGHUP), the running configuration
 * stays. With WORKERS > 1 the primary applies it (server.ts), not each worker.
 */
export interface ConfigFile {
  readonly path: string | null
  /** Reads, validates and applies the file; a 400 naming the file and the field when it is invalid. */
  apply: (request: FastifyRequest | null) => Promise<RevisionRecord | null>
}

declare module 'fastify' {
  interface FastifyInstance {
    configFile: ConfigFile
  }
}

export interface ConfigFileOptions {
  /** Apply the file when the app is ready (default: unless this is a cluster worker, whose primary does it). */
  applyAtStart?: boolean
}

const configFilePlugin: FastifyPluginAsync<ConfigFileOptions> = async (app, options) => {
  const path = app.config.configFile

  async function apply (request: FastifyRequest | null): Promise<RevisionRecord | null> {
    if (path === null) return null
    let parsed: unknown
    try {
      parsed = await readConfigDocumentFile(path)
    } catch (err) {
      throw new GatewayError(400, 'GW_CONFIG_FILE', `CONFIG_FILE ${(err as Error).message}`)
    }
    const document = app.configSections.check(parsed ?? {}, `CONFIG_FILE ${path}: `)
    const { revision } = await applyConfigChangeWithRevision(app, request,
      { action: 'import', resource: 'config', resourceId: null, before: null, after: { file: path } },
      async (trx) => { await app.configSections.replace(trx, document) },
      { source: 'config-file' })
    app.log.info({ configFile: path, revision: revision?.revision ?? null, summary: revision?.summary ?? null },
      revision === null ? 'CONFIG_FILE applied: nothing changed' : 'CONFIG_FILE applied')
    return revision
  }

  app.decorate('configFile', { path, apply } satisfies ConfigFile)

  if (path !== null && (options.applyAtStart ?? !cluster.isWorker)) {
    app.addHook('onReady', async () => {
      // Started without its database (docs/faults.md "Starting without the database"): there is
      // nothing to apply the file to yet; SIGHUP or POST /admin/reload applies it later.
      if (!app.configChanges.loaded) {
        app.log.warn({ configFile: path }, 'CONFIG_FILE not applied at start: the database is unreachable; send SIGHUP or POST /admin/reload once it answers')
        return
      }
      await apply(null)
    })
  }
}

export default fp(configFilePlugin, { name: 'config-file', dependencies: ['config-changes', 'config-sections', 'config-history'] })
