import { randomUUID } from 'node:crypto'
import { Type } from '@sinclair/typebox'
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { applyConfigChange } from './apply-change.js'
import { CertificateProblem, checkCertificatePair, sniProblem } from '../../lib/certificate-pem.js'
import { GatewayError } from '../../lib/errors.js'
import { normalizeSnis } from '../../plugins/certificates.js'
import {
  certificateNameTaken, deleteCertificate, findCertificate, insertCertificate, listCertificates, type StoredCertificate,
  takenSnis, updateCertificate
} from '../../repositories/certificates.js'
import { ErrorSchema, IdParamsSchema, ListQuerySchema, listOf } from '../../schemas/common.js'
import { type Certificate, type CertificateInput, CertificateInputSchema, CertificateSchema } from '../../schemas/certificate.js'

const tags = ['certificates']
const security = [{ bearerAuth: [] }]
const errors = { 400: ErrorSchema, 401: ErrorSchema, 404: ErrorSchema, 409: ErrorSchema }

/**
 * /admin/certificates — docs/tls.md "Certificates". The key is checked against the
 * certificate, stored sealed with SECRET_KEY, and never answered nor audited; every change
 * reaches the HTTPS listener of every instance through the configuration change (plugins/certificates.ts).
 */
const certificatesAdmin: FastifyPluginAsyncTypebox = async (app) => {
  const { certificates } = app
  const notFound = (id: string): GatewayError => new GatewayError(404, 'GW_NOT_FOUND', `certificate ${id} not found`)

  async function load (id: string): Promise<StoredCertificate> {
    const certificate = await findCertificate(app.db, id)
    if (certificate === undefined) throw notFound(id)
    return certificate
  }

  /** 400 for a bad PEM, a key that does not match, a bad SNI; 409 for a taken name or SNI. */
  async function build (input: CertificateInput, existing?: StoredCertificate): Promise<StoredCertificate> {
    const snis = normalizeSnis(input.snis)
    for (const [index, sni] of snis.entries()) {
      const problem = sniProblem(sni)
      if (problem !== null) throw new GatewayError(400, 'GW_VALIDATION', `body/snis/${index} "${sni}" ${problem}`)
    }
    try {
      checkCertificatePair(input.cert, input.key)
    } catch (err) {
      if (err instanceof CertificateProblem) throw new GatewayError(400, 'GW_VALIDATION', `body/${err.message}`)
      throw err
    }
    if (await certificateNameTaken(app.db, input.name, existing?.id)) {
      throw new GatewayError(409, 'GW_CONFLICT', `certificate name "${input.name}" is already taken`)
    }
    const taken = await takenSnis(app.db, snis, existing?.id)
    if (taken.length > 0) {
      throw new GatewayError(409, 'GW_CONFLICT', `SNI "${taken[0].sni}" is already taken by certificate "${taken[0].name}"`)
    }
    const now = new Date().toISOString()
    return {
      id: existing?.id ?? randomUUID(),
      name: input.name,
      cert: input.cert,
      storedKey: certificates.seal(input.key),
      snis,
      createdAt: existing?.createdAt ?? now,
      updatedAt: now
    }
  }

  /** The audit row's view: the key is recorded as set, never its value. */
  function audited (certificate: StoredCertificate | null): (Certificate & { key: string }) | null {
    return certificate === null ? null : { ...certificates.view(certificate), key: '[redacted]' }
  }

  app.get('/', {
    schema: { tags, security, summary: 'List certificates (never their keys)', querystring: ListQuerySchema, response: { 200: listOf(CertificateSchema), 400: ErrorSchema, 401: ErrorSchema } }
  }, async (request) => {
    const { items, total } = await listCertificates(app.db, request.query)
    return { items: items.map(certificates.view), total }
  })

  app.post('/', {
    schema: {
      tags,
      security,
      summary: 'Add a certificate and the SNIs it serves',
      description: '400 when the PEM does not parse, the key does not match the certificate or an SNI is invalid; 409 when the name or an SNI is taken. The key is stored encrypted when SECRET_KEY is set and never shown again.',
      body: CertificateInputSchema,
      response: { 201: CertificateSchema, ...errors }
    }
  }, async (request, reply) => {
    const certificate = await build(request.body)
    await applyConfigChange(app, request, { action: 'create', resource: 'certificate', resourceId: certificate.id, before: null, after: audited(certificate) },
      (trx) => insertCertificate(trx, certificate))
    return reply.code(201).header('location', `/admin/certificates/${certificate.id}`).send(certificates.view(certificate))
  })

  app.get('/:id', {
    schema: { tags, security, summary: 'Get a certificate by id or name (never its key)', params: IdParamsSchema, response: { 200: CertificateSchema, 401: ErrorSchema, 404: ErrorSchema } }
  }, async (request) => certificates.view(await load(request.params.id)))

  app.put('/:id', {
    schema: {
      tags,
      security,
      summary: 'Replace a certificate (rotation): new handshakes get it within a second on every instance',
      params: IdParamsSchema,
      body: CertificateInputSchema,
      response: { 200: CertificateSchema, ...errors }
    }
  }, async (request) => {
    const before = await load(request.params.id)
    const after = await build(request.body, before)
    await applyConfigChange(app, request, { action: 'replace', resource: 'certificate', resourceId: before.id, before: audited(before), after: audited(after) },
      (trx) => updateCertificate(trx, after))
    return certificates.view(after)
  })

  app.delete('/:id', {
    schema: { tags, security, summary: 'Delete a certificate; its SNIs fall back to the default certificate', params: IdParamsSchema, response: { 204: Type.Null(), 401: ErrorSchema, 404: ErrorSchema } }
  }, async (request, reply) => {
    const before = await load(request.params.id)
    await applyConfigChange(app, request, { action: 'delete', resource: 'certificate', resourceId: before.id, before: audited(before), after: null },
      async (trx) => { if (!await deleteCertificate(trx, before.id)) throw notFound(request.params.id) })
    return reply.code(204).send(null)
  })
}

export default certificatesAdmin
