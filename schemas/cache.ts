import { type Static, Type } from '@sinclair/typebox'

/** DELETE /admin/cache query (docs/cache.md "Purging"). */
export const CachePurgeQuerySchema = Type.Object({
  route: Type.Optional(Type.String({ minLength: 1, maxLength: 200, description: 'a route id or name: purge only its entries' })),
  path: Type.Optional(Type.String({ minLength: 1, maxLength: 2048, pattern: '^/', description: 'with route: only entries whose normalised path is this prefix or below it (segment boundary)' }))
}, { additionalProperties: false, examples: [{ route: 'users', path: '/api/users/42' }] })
export type CachePurgeQuery = Static<typeof CachePurgeQuerySchema>

export const CachePurgeResultSchema = Type.Object({
  purged: Type.Integer({ description: 'entries removed by this instance from its memory store and from the shared Redis store; other instances purge theirs within a second' })
}, { examples: [{ purged: 12 }] })

/** The `cache` section of GET /admin/status. */
export const CacheStatusSchema = Type.Object({
  entries: Type.Integer({ description: 'answers held by the memory store' }),
  bytes: Type.Integer({ description: 'bytes the memory store holds: bodies, headers, keys and per-entry overhead (at most CACHE_MEMORY_BYTES)' }),
  hits: Type.Integer({ description: 'answers X-Cache-Status HIT since start' }),
  misses: Type.Integer(),
  stale: Type.Integer(),
  bypass: Type.Integer(),
  revalidated: Type.Integer()
}, { description: 'the response cache of this process (docs/cache.md)', examples: [{ entries: 120, bytes: 483210, hits: 9032, misses: 131, stale: 4, bypass: 57, revalidated: 2 }] })
