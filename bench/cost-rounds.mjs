// What the "what does X cost" benches share: start-up checks, the gateway's CPU time from /proc,
// and the measurement itself — the same fixed number of requests sent to each gateway in turn,
// round after round, so a machine whose speed drifts affects all of them alike.
import { readFileSync } from 'node:fs'
import autocannon from 'autocannon'

export async function ready (url) {
  for (let i = 0; i < 600; i++) {
    try { if ((await fetch(url)).ok) return } catch {}
    await new Promise((resolve) => setTimeout(resolve, 100))
  }
  throw new Error(`${url} never answered`)
}

/** utime + stime of a process, all its threads, in ms (Linux /proc; clock ticks are 100 Hz). */
export function cpuMs (pid) {
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ')
  return (Number(fields[11]) + Number(fields[12])) * 10
}

export const median = (list) => [...list].sort((a, b) => a - b)[Math.floor(list.length / 2)]

/** Exactly `amount` GETs of `url` over `connections` keep-alive connections (autocannon's result). */
export const sendRequests = (url, amount, connections) => autocannon({ url, connections, amount, pipelining: 1 })

/** The route every cost bench sends its requests through: /api/bench → the upstream. */
export async function createBenchRoute (base, adminToken, upstreamUrl, label) {
  const created = await fetch(`${base}/admin/routes`, {
    method: 'POST',
    headers: { authorization: `Bearer ${adminToken}`, 'content-type': 'application/json' },
    body: JSON.stringify({ name: 'bench', path: '/api/bench', targets: [{ url: upstreamUrl, weight: 1 }] })
  })
  if (created.status !== 201) throw new Error(`creating the route on ${label}: ${created.status}`)
}

/**
 * Warms every target up, then sends each `requests` GETs per round, in turn. After each, waits
 * `settleMs` so work the requests left behind (audit rows, shipped lines) is counted with them.
 * Fills each target's `rps` and `cpu` (µs per request) lists and prints a line per measurement.
 */
export async function measureInRounds (targets, { rounds, requests, connections, settleMs }) {
  const run = (url, amount) => sendRequests(url, amount, connections)
  for (const target of targets) await run(`${target.base}/api/bench/items/42`, Math.min(5000, requests))
  for (let round = 1; round <= rounds; round++) {
    for (const target of targets) {
      const before = cpuMs(target.child.pid)
      const result = await run(`${target.base}/api/bench/items/42`, requests)
      await new Promise((resolve) => setTimeout(resolve, settleMs))
      const cpuPerRequestUs = (cpuMs(target.child.pid) - before) * 1000 / result.requests.total
      if (result.non2xx > 0 || result.errors > 0) throw new Error(`${target.name}: ${result.non2xx} non-2xx, ${result.errors} errors`)
      target.rps.push(result.requests.average)
      target.cpu.push(cpuPerRequestUs)
      console.log(`round ${round}  ${target.name.padEnd(9)}  ${result.requests.average.toFixed(0)} req/s  ${cpuPerRequestUs.toFixed(1)} µs CPU/request`)
    }
  }
}
