import { randomUUID } from 'node:crypto'
import { Type } from '@sinclair/typebox'
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import type { FastifyRequest } from 'fastify'
import { generateApiKey } from '../../lib/auth/api-key.js'
import { hashPassword } from '../../lib/auth/password.js'
import { applyConfigChange } from './apply-change.js'
import { ifMatchEntity } from './preconditions.js'
import { entityEtag } from '../../lib/etag.js'
import { GatewayError } from '../../lib/errors.js'
import {
  basicUsernameTaken, consumerNameTaken, deleteApiKey, deleteBasicCredential, deleteConsumer, findApiKey,
  findBasicCredential, findConsumer, insertApiKey, insertConsumer, listApiKeys, listConsumers, updateConsumer,
  upsertBasicCredential
} from '../../repositories/consumers.js'
import { ErrorSchema, IdParamsSchema, ListQuerySchema, listOf } from '../../schemas/common.js'
import {
  ApiKeySchema, BasicCredentialSchema, BasicInputSchema, type Consumer, type ConsumerInput, ConsumerInputSchema,
  ConsumerPatchSchema, ConsumerSchema, KeyParamsSchema, NewApiKeySchema
} from '../../schemas/consumer.js'

const tags = ['consumers']
const security = [{ bearerAuth: [] }]
const errors = { 400: ErrorSchema, 401: ErrorSchema, 404: ErrorSchema, 409: ErrorSchema, 412: ErrorSchema }

/**
 * /admin/consumers — docs/auth.md "Consumers". Every change goes
 * through applyConfigChange, so the credential store of this instance is rebuilt before the
 * answer is sent and other instances rebuild theirs on their next poll. Audit rows carry
 * references only: never a key, a key hash or a password.
 */
const consumersAdmin: FastifyPluginAsyncTypebox = async (app) => {
  const notFound = (id: string): GatewayError => new GatewayError(404, 'GW_NOT_FOUND', `consumer ${id} not found`)
  // If-Match (docs/config-history.md "ETag and If-Match"): the consumer as GET answers it, read inside the change.
  const unchanged = (request: FastifyRequest, before: Consumer) =>
    ({ precondition: ifMatchEntity(request, `consumer ${before.name}`, async (trx) => findConsumer(trx, before.id)) })

  async function load (id: string): Promise<Consumer> {
    const consumer = await findConsumer(app.db, id)
    if (consumer === undefined) throw notFound(id)
    return consumer
  }

  async function ensureNameFree (name: string, exceptId?: string): Promise<void> {
    if (await consumerNameTaken(app.db, name, exceptId)) throw new GatewayError(409, 'GW_CONFLICT', `consumer name "${name}" is already taken`)
  }

  function build (input: ConsumerInput, existing?: Consumer): Consumer {
    const now = new Date().toISOString()
    return {
      id: existing?.id ?? randomUUID(),
      name: input.name,
      rateLimit: input.rateLimit ?? null,
      createdAt: existing?.createdAt ?? now,
      updatedAt: now
    }
  }

  app.get('/', {
    schema: { tags, security, summary: 'List consumers', querystring: ListQuerySchema, response: { 200: listOf(ConsumerSchema), 401: ErrorSchema } }
  }, async (request) => listConsumers(app.db, request.query))

  app.post('/', {
    schema: { tags, security, summary: 'Create a consumer', body: ConsumerInputSchema, response: { 201: ConsumerSchema, ...errors } }
  }, async (request, reply) => {
    const consumer = build(request.body)
    await ensureNameFree(consumer.name)
    await applyConfigChange(app, request, { action: 'create', resource: 'consumer', resourceId: consumer.id, before: null, after: consumer },
      (trx) => insertConsumer(trx, consumer))
    return reply.code(201).header('location', `/admin/consumers/${consumer.id}`).header('etag', entityEtag(consumer)).send(consumer)
  })

  app.get('/:id', {
    schema: { tags, security, summary: 'Get a consumer by id or name', params: IdParamsSchema, response: { 200: ConsumerSchema, 401: ErrorSchema, 404: ErrorSchema } }
  }, async (request, reply) => {
    const consumer = await load(request.params.id)
    return reply.header('etag', entityEtag(consumer)).send(consumer)
  })

  app.put('/:id', {
    schema: { tags, security, summary: 'Replace a consumer (its credentials stay)', params: IdParamsSchema, body: ConsumerInputSchema, response: { 200: ConsumerSchema, ...errors } }
  }, async (request, reply) => {
    const before = await load(request.params.id)
    const after = build(request.body, before)
    await ensureNameFree(after.name, before.id)
    await applyConfigChange(app, request, { action: 'replace', resource: 'consumer', resourceId: before.id, before, after },
      (trx) => updateConsumer(trx, after), unchanged(request, before))
    return reply.header('etag', entityEtag(after)).send(after)
  })

  app.patch('/:id', {
    schema: { tags, security, summary: 'Merge fields into a consumer', params: IdParamsSchema, body: ConsumerPatchSchema, response: { 200: ConsumerSchema, ...errors } }
  }, async (request, reply) => {
    const before = await load(request.params.id)
    const after = build({ name: before.name, rateLimit: before.rateLimit, ...request.body }, before)
    await ensureNameFree(after.name, before.id)
    await applyConfigChange(app, request, { action: 'update', resource: 'consumer', resourceId: before.id, before, after },
      (trx) => updateConsumer(trx, after), unchanged(request, before))
    return reply.header('etag', entityEtag(after)).send(after)
  })

  app.delete('/:id', {
    schema: { tags, security, summary: 'Delete a consumer and every credential it has', params: IdParamsSchema, response: { 204: Type.Null(), 401: ErrorSchema, 404: ErrorSchema, 412: ErrorSchema } }
  }, async (request, reply) => {
    const before = await load(request.params.id)
    await applyConfigChange(app, request, { action: 'delete', resource: 'consumer', resourceId: before.id, before, after: null },
      async (trx) => { if (!await deleteConsumer(trx, before.id)) throw notFound(request.params.id) }, unchanged(request, before))
    return reply.code(204).send(null)
  })

  // ── API keys ─────────────────────────────────────────────────────────────

  app.post('/:id/keys', {
    schema: { tags, security, summary: 'Create an API key (shown only in this answer)', params: IdParamsSchema, response: { 201: NewApiKeySchema, 401: ErrorSchema, 404: ErrorSchema } }
  }, async (request, reply) => {
    const consumer = await load(request.params.id)
    const generated = generateApiKey()
    const key = { id: randomUUID(), consumerId: consumer.id, prefix: generated.prefix, createdAt: new Date().toISOString() }
    await applyConfigChange(app, request, { action: 'create', resource: 'api-key', resourceId: key.id, before: null, after: key },
      (trx) => insertApiKey(trx, { ...key, keyHash: generated.hash }))
    return reply.code(201)
      .header('location', `/admin/consumers/${consumer.id}/keys/${key.id}`)
      .header('cache-control', 'no-store')
      .send({ id: key.id, key: generated.key, prefix: key.prefix, consumerId: key.consumerId, createdAt: key.createdAt })
  })

  app.get('/:id/keys', {
    schema: { tags, security, summary: "List a consumer's API keys (no secrets)", params: IdParamsSchema, querystring: ListQuerySchema, response: { 200: listOf(ApiKeySchema), 400: ErrorSchema, 401: ErrorSchema, 404: ErrorSchema } }
  }, async (request) => {
    const consumer = await load(request.params.id)
    // A consumer holds a handful of keys: paged here rather than in SQL.
    const keys = await listApiKeys(app.db, consumer.id)
    const { limit, offset } = request.query
    return { items: keys.slice(offset, offset + limit), total: keys.length }
  })

  app.get('/:id/keys/:keyId', {
    schema: { tags, security, summary: 'Get one API key (no secret)', params: KeyParamsSchema, response: { 200: ApiKeySchema, 401: ErrorSchema, 404: ErrorSchema } }
  }, async (request, reply) => {
    const consumer = await load(request.params.id)
    const key = await findApiKey(app.db, consumer.id, request.params.keyId)
    if (key === undefined) throw new GatewayError(404, 'GW_NOT_FOUND', `key ${request.params.keyId} not found`)
    return reply.header('etag', entityEtag(key)).send(key)
  })

  app.delete('/:id/keys/:keyId', {
    schema: { tags, security, summary: 'Revoke an API key (stops working at once)', params: KeyParamsSchema, response: { 204: Type.Null(), 401: ErrorSchema, 404: ErrorSchema, 412: ErrorSchema } }
  }, async (request, reply) => {
    const consumer = await load(request.params.id)
    const key = await findApiKey(app.db, consumer.id, request.params.keyId)
    const keyNotFound = new GatewayError(404, 'GW_NOT_FOUND', `key ${request.params.keyId} not found`)
    if (key === undefined) throw keyNotFound
    await applyConfigChange(app, request, { action: 'delete', resource: 'api-key', resourceId: key.id, before: key, after: null },
      async (trx) => { if (!await deleteApiKey(trx, consumer.id, key.id)) throw keyNotFound },
      { precondition: ifMatchEntity(request, `key ${key.id}`, async (trx) => findApiKey(trx, consumer.id, key.id)) })
    return reply.code(204).send(null)
  })

  // ── basic credentials ───────────────────────────────────────────────────

  app.put('/:id/basic', {
    schema: { tags, security, summary: 'Set the basic username and password (stored as scrypt)', params: IdParamsSchema, body: BasicInputSchema, response: { 200: BasicCredentialSchema, ...errors } }
  }, async (request, reply) => {
    const consumer = await load(request.params.id)
    const { username, password } = request.body
    if (await basicUsernameTaken(app.db, username, consumer.id)) throw new GatewayError(409, 'GW_CONFLICT', `username "${username}" is already taken`)
    const before = await findBasicCredential(app.db, consumer.id) ?? null
    const passwordHash = await hashPassword(password)
    const now = new Date().toISOString()
    const after = { consumerId: consumer.id, username, createdAt: before?.createdAt ?? now, updatedAt: now }
    await applyConfigChange(app, request, { action: before === null ? 'create' : 'replace', resource: 'basic-credential', resourceId: consumer.id, before, after },
      (trx) => upsertBasicCredential(trx, { ...after, passwordHash }),
      { precondition: ifMatchEntity(request, `basic credentials of ${consumer.name}`, async (trx) => findBasicCredential(trx, consumer.id)) })
    return reply.header('etag', entityEtag(after)).send(after)
  })

  app.get('/:id/basic', {
    schema: { tags, security, summary: 'Get the basic username (never the password)', params: IdParamsSchema, response: { 200: BasicCredentialSchema, 401: ErrorSchema, 404: ErrorSchema } }
  }, async (request, reply) => {
    const consumer = await load(request.params.id)
    const basic = await findBasicCredential(app.db, consumer.id)
    if (basic === undefined) throw new GatewayError(404, 'GW_NOT_FOUND', `consumer ${request.params.id} has no basic credentials`)
    return reply.header('etag', entityEtag(basic)).send(basic)
  })

  app.delete('/:id/basic', {
    schema: { tags, security, summary: 'Remove the basic credentials', params: IdParamsSchema, response: { 204: Type.Null(), 401: ErrorSchema, 404: ErrorSchema, 412: ErrorSchema } }
  }, async (request, reply) => {
    const consumer = await load(request.params.id)
    const before = await findBasicCredential(app.db, consumer.id)
    const missing = new GatewayError(404, 'GW_NOT_FOUND', `consumer ${request.params.id} has no basic credentials`)
    if (before === undefined) throw missing
    await applyConfigChange(app, request, { action: 'delete', resource: 'basic-credential', resourceId: consumer.id, before, after: null },
      async (trx) => { if (!await deleteBasicCredential(trx, consumer.id)) throw missing },
      { precondition: ifMatchEntity(request, `basic credentials of ${consumer.name}`, async (trx) => findBasicCredential(trx, consumer.id)) })
    return reply.code(204).send(null)
  })
}

export default consumersAdmin
