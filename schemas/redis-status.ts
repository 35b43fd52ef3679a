import { Type } from '@sinclair/typebox'

/** The `redis` section of GET /admin/status (docs/observability.md "GET /admin/status", docs/policies.md "Redis outage"). */
export const RedisStatusSchema = Type.Object({
  configured: Type.Boolean({ description: 'REDIS_URL is set' }),
  up: Type.Boolean({ description: 'Redis is in use; false: bypassed (rate limits fail open) until a probe finds it back (gatehouse_redis_up)' }),
  since: Type.Union([Type.String({ format: 'date-time' }), Type.Null()], { description: 'when `up` last changed; null when not configured' }),
  consecutiveFailures: Type.Integer({ description: 'commands failed or timed out in a row (3 take Redis as down)' }),
  lastError: Type.Union([Type.String(), Type.Null()], { description: 'why Redis is taken as down; null while up' }),
  bypassed: Type.Integer({ description: 'commands not sent since start because Redis was taken as down' })
}, { description: 'the shared rate-limit store and config-change broadcast' })
