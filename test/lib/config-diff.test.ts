import t from 'tap'
import { describeDiff, diffConfig, fieldChanges } from '../../lib/config-diff.js'

const sections = [
  { name: 'routes', kind: 'route', identify: (item: { name: string }) => item.name },
  { name: 'filters', kind: 'filter', identify: (item: { action: string, ip: string | null, path: string | null }) => `${item.action} ${item.ip ?? 'any-ip'} ${item.path ?? 'any-path'}` }
]

t.test('pairs items by identity, ignores ids and timestamps, sees secrets change through fingerprints', async (t) => {
  const before = {
    routes: { items: [{ id: '1', name: 'orders', timeoutMs: 5000, updatedAt: 'a' }, { id: '2', name: 'old' }, { id: '3', name: 'same', createdAt: 'x' }, { id: '4', name: 'signed' }], fingerprints: { signed: 'aaa' } },
    filters: { items: [{ id: 'f1', action: 'deny', ip: '203.0.113.7', path: null }], fingerprints: {} }
  }
  const after = {
    routes: { items: [{ id: '9', name: 'orders', timeoutMs: 8000, updatedAt: 'b' }, { id: '3b', name: 'same', createdAt: 'y' }, { name: 'users' }, { id: '4', name: 'signed' }], fingerprints: { signed: 'bbb' } },
    filters: { items: [], fingerprints: {} }
  }
  const diff = diffConfig(sections as never, before, after)
  t.same(diff.summary, { creating: 1, updating: 2, deleting: 2 })
  t.same(describeDiff(diff), [
    'creating route users',
    'updating route orders: timeoutMs 5000 → 8000',
    'updating route signed: credentials',
    'deleting route old',
    'deleting filter deny 203.0.113.7 any-path',
    'Summary: created 1, updated 2, deleted 2'
  ])
})

t.test('fieldChanges names nested paths and leaves bookkeeping out', async (t) => {
  t.same(fieldChanges({ id: 'a', targets: [{ url: 'x' }], auth: { type: 'none' } }, { id: 'b', targets: [{ url: 'y' }], auth: { type: 'api-key' } }), [
    { path: 'targets.0.url', old: 'x', new: 'y' },
    { path: 'auth.type', old: 'none', new: 'api-key' }
  ])
  t.same(fieldChanges({ hosts: ['a'] }, { hosts: ['a', 'b'] }), [{ path: 'hosts', old: ['a'], new: ['a', 'b'] }])
  t.same(fieldChanges({ rateLimit: null }, { rateLimit: null }), [])
})
