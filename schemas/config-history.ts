import { type Static, Type } from '@sinclair/typebox'

export const RevisionSummarySchema = Type.Object({
  created: Type.Integer(),
  updated: Type.Integer(),
  deleted: Type.Integer()
}, { description: 'items of the configuration document created, updated and deleted by this revision' })

export const RevisionSchema = Type.Object({
  revision: Type.Integer({ minimum: 1 }),
  ts: Type.String({ format: 'date-time' }),
  actor: Type.String({ description: '"admin-token" for admin API calls; "system" for CONFIG_FILE applied at start or on SIGHUP' }),
  source: Type.Union([Type.Literal('admin-api'), Type.Literal('config-import'), Type.Literal('rollback'), Type.Literal('config-file')]),
  summary: RevisionSummarySchema
}, {
  examples: [{ revision: 12, ts: '2026-01-05T10:00:00.000Z', actor: 'admin-token', source: 'admin-api', summary: { created: 1, updated: 0, deleted: 0 } }]
})
export type Revision = Static<typeof RevisionSchema>

const Entry = (fields: string[]) => Type.Object({
  kind: Type.String({ description: 'route, filter, consumer …' }),
  name: Type.String({ description: 'the name; for a filter its rule ("deny 10.0.0.0/8 any-path")' }),
  ...Object.fromEntries(fields.map((field) => [field, Type.Unknown({ description: `the item ${field === 'old' ? 'before' : 'after'} (no secrets)` })]))
})

export const ConfigDiffSchema = Type.Object({
  changes: Type.Object({
    creating: Type.Array(Entry(['new'])),
    updating: Type.Array(Entry(['old', 'new'])),
    deleting: Type.Array(Entry(['old']))
  }),
  summary: Type.Object({ creating: Type.Integer(), updating: Type.Integer(), deleting: Type.Integer() })
}, {
  examples: [{
    changes: { creating: [], updating: [{ kind: 'route', name: 'orders', old: { timeoutMs: 5000 }, new: { timeoutMs: 8000 } }], deleting: [] },
    summary: { creating: 0, updating: 1, deleting: 0 }
  }]
})

export const RevisionParamsSchema = Type.Object({ n: Type.Integer({ minimum: 1, description: 'revision number' }) })

export const DiffQuerySchema = Type.Object({
  from: Type.Integer({ minimum: 0, description: 'revision to compare from (0: the empty configuration)' }),
  to: Type.Optional(Type.Integer({ minimum: 1, description: 'revision to compare to; default the newest' }))
}, { additionalProperties: false })

export const RollbackBodySchema = Type.Object({
  revision: Type.Integer({ minimum: 1, description: 'the revision whose configuration becomes the current one' })
}, { additionalProperties: false, examples: [{ revision: 12 }] })

export const RollbackAnswerSchema = Type.Object({
  revision: Type.Integer({ description: 'the new revision the rollback wrote (the current one when nothing changed)' }),
  rolledBackTo: Type.Integer(),
  summary: RevisionSummarySchema
})
