import { createPrivateKey, randomUUID } from 'node:crypto'
import { createSecureContext } from 'node:tls'
import fp from 'fastify-plugin'
import type { FastifyPluginAsync } from 'fastify'
import { Gauge } from 'prom-client'
import { type CertificateFacts, certificateFacts, CertificateProblem, checkCertificatePair, sniProblem } from '../lib/certificate-pem.js'
import type { ConfigSection } from '../lib/config-section.js'
import { GatewayError } from '../lib/errors.js'
import { SecretBox } from '../lib/secret-box.js'
import { SniTable } from '../lib/sni-table.js'
import { deleteAllCertificates, insertCertificate, listAllCertificates, type StoredCertificate } from '../repositories/certificates.js'
import { type Certificate, type CertificateConfigItem, CertificateConfigItemSchema } from '../schemas/certificate.js'

/**
 * Certificates of the HTTPS listener (docs/tls.md): loaded from the database on every
 * configuration change (so every instance serves a change within the poll interval), their
 * keys opened with SECRET_KEY, installed into the SNI table that each handshake reads.
 * Also the expiry gauge, the 14-day expiry warning and the `certificates` section of
 * /admin/config.
 */
export interface Certificates {
  /** The SNI table of the HTTPS listener; null without TLS_PORT (certificates are still stored and checked). */
  readonly sniTable: SniTable | null
  /** A private key as it is stored: sealed with SECRET_KEY when it is set. */
  seal: (key: string) => string
  /** A stored key in clear; throws when it was sealed with another SECRET_KEY. */
  open: (storedKey: string) => string
  /** What answers show of a stored certificate (never its key). */
  view: (stored: StoredCertificate) => Certificate
}

declare module 'fastify' {
  interface FastifyInstance {
    certificates: Certificates
  }
}

/** Warned about in the log this long before a certificate expires. */
export const EXPIRY_WARNING_MS = 14 * 86_400_000
const EXPIRY_CHECK_MS = 3_600_000
/** A certificate close to expiry is warned about again after this long. */
const EXPIRY_REWARN_MS = 86_400_000
/** The label of the default certificate (TLS_CERT_FILE) in gatehouse_certificate_expiry_seconds. */
export const DEFAULT_CERTIFICATE_LABEL = 'TLS_CERT_FILE'

const certificatesPlugin: FastifyPluginAsync = async (app) => {
  const { secretKey, tlsDefault } = app.config
  const box = secretKey === null ? null : new SecretBox(secretKey)
  if (box === null) {
    app.log.warn('SECRET_KEY is unset: certificate private keys are stored in the database in clear; set SECRET_KEY (at least 16 characters) to encrypt them')
  }
  const sniTable = tlsDefault === null ? null : new SniTable(createSecureContext({ cert: tlsDefault.cert, key: tlsDefault.key }), createPrivateKey(tlsDefault.key).asymmetricKeyType)
  const defaultFacts = tlsDefault === null ? null : certificateFacts(tlsDefault.cert)
  /** The certificates served now, with their facts. */
  let served: Array<{ name: string, facts: CertificateFacts }> = []
  const warnedAt = new Map<string, number>()

  function seal (key: string): string { return box === null ? key : box.seal(key) }
  function open (storedKey: string): string {
    // A key stored in clear (before SECRET_KEY was set) is still read; it is sealed on its next write.
    if (storedKey.startsWith('-----')) return storedKey
    if (box === null) throw new Error('the key is encrypted and SECRET_KEY is unset')
    return box.open(storedKey)
  }
  function view (stored: StoredCertificate): Certificate {
    const { storedKey: _key, ...rest } = stored
    return { ...rest, ...certificateFacts(stored.cert) }
  }

  function install (stored: readonly StoredCertificate[]): void {
    const servable = []
    const facts = []
    for (const certificate of stored) {
      try {
        servable.push({ name: certificate.name, cert: certificate.cert, key: open(certificate.storedKey), snis: certificate.snis })
        facts.push({ name: certificate.name, facts: certificateFacts(certificate.cert) })
      } catch (err) {
        app.log.error({ err, certificate: certificate.name }, 'certificate left out: its key cannot be opened (is SECRET_KEY the one it was stored with?)')
      }
    }
    sniTable?.swap(servable,
      (name, err) => { app.log.error({ err, certificate: name }, 'certificate left out: it cannot be loaded') },
      (name, keyType) => {
        app.log.warn({ certificate: name, keyType }, 'certificate key type differs from the default certificate\'s (TLS_KEY_FILE): clients that accept both may get the default certificate instead; use the same key type (docs/tls.md)')
      })
    served = facts
    warnExpiring()
  }

  function warnExpiring (): void {
    const now = Date.now()
    const all = defaultFacts === null ? served : [{ name: DEFAULT_CERTIFICATE_LABEL, facts: defaultFacts }, ...served]
    for (const { name, facts } of all) {
      const left = Date.parse(facts.notAfter) - now
      if (left > EXPIRY_WARNING_MS) continue
      const key = `${name} ${facts.fingerprint}`
      if (now - (warnedAt.get(key) ?? -Infinity) < EXPIRY_REWARN_MS) continue
      warnedAt.set(key, now)
      app.log.warn({ certificate: name, notAfter: facts.notAfter, daysLeft: Math.floor(left / 86_400_000) },
        left <= 0 ? 'certificate has expired: replace it' : 'certificate expires within 14 days: replace it')
    }
  }

  // eslint-disable-next-line no-new -- prom-client registers the metric when it is built
  new Gauge({
    name: 'gatehouse_certificate_expiry_seconds',
    help: 'Seconds until the certificate expires (negative once expired); name="TLS_CERT_FILE" is the default certificate',
    labelNames: ['name'],
    registers: [app.metrics.registry],
    collect () {
      this.reset()
      const now = Date.now()
      if (defaultFacts !== null) this.set({ name: DEFAULT_CERTIFICATE_LABEL }, Math.round((Date.parse(defaultFacts.notAfter) - now) / 1000))
      for (const { name, facts } of served) this.set({ name }, Math.round((Date.parse(facts.notAfter) - now) / 1000))
    }
  })

  app.decorate('certificates', { sniTable, seal, open, view } satisfies Certificates)

  await app.configChanges.track('certificates', async () => {
    const loaded = await listAllCertificates(app.db)
    install(loaded)
    return loaded
  }, install)

  const timer = setInterval(warnExpiring, EXPIRY_CHECK_MS)
  timer.unref()
  app.addHook('onClose', async () => { clearInterval(timer) })

  const section: ConfigSection<CertificateConfigItem> = {
    name: 'certificates',
    kind: 'certificate',
    itemSchema: CertificateConfigItemSchema,
    identify: (item) => item.name,
    exportItems: async (db) => (await listAllCertificates(db)).map(view),
    problem: (items) => certificateItemsProblem(items),
    // Configuration revisions keep each certificate's key as stored (sealed when SECRET_KEY is set),
    // so a rollback brings back the key a certificate had (docs/config-history.md).
    async exportSecrets (db) {
      return Object.fromEntries((await listAllCertificates(db)).map((certificate) => [certificate.name, certificate.storedKey]))
    },
    async restore (trx, items, secrets) {
      await section.replaceAll(trx, items.map((item) => {
        const storedKey = secrets[item.name]
        return item.key === undefined && typeof storedKey === 'string' ? { ...item, key: open(storedKey) } : item
      }))
    },
    async replaceAll (trx, items) {
      const existing = new Map((await listAllCertificates(trx)).map((certificate) => [certificate.name, certificate]))
      await deleteAllCertificates(trx)
      const now = new Date().toISOString()
      for (const [index, item] of items.entries()) {
        const before = existing.get(item.name)
        let storedKey: string
        if (item.key !== undefined) {
          storedKey = seal(item.key)
        } else if (before !== undefined) {
          // A certificate that stays keeps its key; a new certificate must still match it.
          try {
            checkCertificatePair(item.cert, open(before.storedKey))
          } catch (err) {
            throw new GatewayError(400, 'GW_VALIDATION', `body/certificates/${index}/key is required: ${(err as Error).message}`)
          }
          storedKey = before.storedKey
        } else {
          throw new GatewayError(400, 'GW_VALIDATION', `body/certificates/${index}/key is required for a new certificate ("${item.name}")`)
        }
        const unchanged = before !== undefined && before.cert === item.cert && item.key === undefined && sameSnis(before.snis, item.snis)
        await insertCertificate(trx, {
          id: before?.id ?? item.id ?? randomUUID(),
          name: item.name,
          cert: item.cert,
          storedKey,
          snis: normalizeSnis(item.snis),
          createdAt: before?.createdAt ?? now,
          updatedAt: unchanged ? before.updatedAt : now
        })
      }
    }
  }
  app.configSections.add(section)
}

export function normalizeSnis (snis: readonly string[] | undefined): string[] {
  return [...new Set((snis ?? []).map((sni) => sni.toLowerCase()))]
}

function sameSnis (a: readonly string[], b: readonly string[] | undefined): boolean {
  const left = [...a].sort().join(',')
  const right = normalizeSnis(b).sort().join(',')
  return left === right
}

/** Checks of a certificates section beyond its schema; the first problem, naming the field. */
function certificateItemsProblem (items: CertificateConfigItem[]): string | null {
  const names = new Set<string>()
  const owners = new Map<string, string>()
  for (const [index, item] of items.entries()) {
    const at = `certificates/${index}`
    if (names.has(item.name)) return `${at}/name "${item.name}" appears twice`
    names.add(item.name)
    for (const sni of normalizeSnis(item.snis)) {
      const problem = sniProblem(sni)
      if (problem !== null) return `${at}/snis "${sni}" ${problem}`
      const owner = owners.get(sni)
      if (owner !== undefined) return `${at}/snis "${sni}" is already taken by certificate "${owner}"`
      owners.set(sni, item.name)
    }
    try {
      if (item.key !== undefined) checkCertificatePair(item.cert, item.key)
      else certificateFacts(item.cert)
    } catch (err) {
      if (err instanceof CertificateProblem) return `${at}/${err.message}`
      return `${at}/cert does not parse: ${(err as Error).message}`
    }
  }
  return null
}

export default fp(certificatesPlugin, { name: 'certificates', dependencies: ['db', 'metrics', 'config-changes', 'config-sections'] })
