import type { Gathered } from './cluster-ipc.js'
import type { ProcessStatus, Status } from '../schemas/status.js'

type Target = ProcessStatus['targets'][number]

/** Fields that describe a process rather than count something: never summed. */
const NOT_SUMMED = new Set(['version', 'instanceId', 'uptimeSeconds', 'routes', 'targets', 'logSinks'])

/**
 * The host's /admin/status with WORKERS > 1, from every worker's own status:
 * - counters (requests, bytes, connections, audit queue …) are summed over the workers that
 *   answered, and so is any numeric field added later, at any depth;
 * - version and routes are the answering worker's (workers converge on one route table within
 *   the configuration poll); instanceId and uptimeSeconds are the primary's (the host's);
 * - targets are merged by route and URL: inFlight and ejectionsTotal summed,
 *   consecutiveFailures the highest, healthy only when every worker finds it healthy,
 *   ejectedUntil the latest, activeHealthy false when any worker's check says so;
 * - workers lists each worker's own numbers, unresponsiveWorkers those that did not answer.
 */
export function hostStatus (own: ProcessStatus, gathered: Gathered<ProcessStatus>, hostInstanceId: string): Omit<Status, 'configRevision'> {
  const statuses = gathered.answers.map((answer) => answer.value)
  const host: Record<string, unknown> = {
    ...own,
    instanceId: hostInstanceId,
    uptimeSeconds: gathered.primary.uptimeSeconds,
    targets: mergeTargets(own.targets, statuses.map((status) => status.targets))
  }
  for (const [field, value] of Object.entries(own)) {
    if (NOT_SUMMED.has(field)) continue
    host[field] = statuses.reduce<unknown>((sum, status) => add(sum, (status as Record<string, unknown>)[field]), zeroed(value))
  }
  const workers = gathered.answers.map(({ workerId, pid, value }) => {
    const { version, targets, ...numbers } = value
    return { workerId, pid, ...numbers }
  })
  return { ...(host as ProcessStatus), workers, unresponsiveWorkers: gathered.unresponsive }
}

/** The same shape with every number 0; anything else kept as is. */
function zeroed (value: unknown): unknown {
  if (typeof value === 'number') return 0
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return value
  return Object.fromEntries(Object.entries(value).map(([key, inner]) => [key, zeroed(inner)]))
}

function add (sum: unknown, value: unknown): unknown {
  if (typeof sum === 'number') return typeof value === 'number' ? sum + value : sum
  if (typeof sum !== 'object' || sum === null || Array.isArray(sum)) return sum
  const part = (typeof value === 'object' && value !== null ? value : {}) as Record<string, unknown>
  return Object.fromEntries(Object.entries(sum).map(([key, inner]) => [key, add(inner, part[key])]))
}

function mergeTargets (order: Target[], perWorker: Target[][]): Target[] {
  const merged = new Map<string, Target>()
  const keyOf = (target: Target): string => `${target.routeId} ${target.url}`
  // Every worker's list is walked, so a target only some workers know yet still appears.
  for (const target of [...order, ...perWorker.flat()]) {
    if (!merged.has(keyOf(target))) merged.set(keyOf(target), { routeId: target.routeId, url: target.url, healthy: true, inFlight: 0 })
  }
  for (const targets of perWorker) {
    for (const target of targets) {
      const into = merged.get(keyOf(target)) as Target
      into.healthy &&= target.healthy
      into.inFlight += target.inFlight
      if (target.consecutiveFailures !== undefined) into.consecutiveFailures = Math.max(into.consecutiveFailures ?? 0, target.consecutiveFailures)
      if (target.ejectionsTotal !== undefined) into.ejectionsTotal = (into.ejectionsTotal ?? 0) + target.ejectionsTotal
      if (target.ejectedUntil !== undefined) {
        const latest = into.ejectedUntil ?? null
        into.ejectedUntil = latest === null || (target.ejectedUntil !== null && target.ejectedUntil > latest) ? target.ejectedUntil : latest
      }
      if (target.activeHealthy !== undefined) {
        const verdict = into.activeHealthy ?? null
        into.activeHealthy = target.activeHealthy === null ? verdict : (verdict ?? true) && target.activeHealthy
      }
    }
  }
  return [...merged.values()]
}
