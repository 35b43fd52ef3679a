// `node --import tsx bench/cluster-ipc-cost.mjs`: the cost of one host-wide rate-limit hit over
// node:cluster IPC (lib/cluster-ipc.ts, lib/sliding-window-cluster.ts), without HTTP around it:
// two workers each make `HITS` calls one after another (round-trip latency), then with 64 in
// flight (throughput, and the worker's CPU per hit); the primary reports the CPU it spent per hit.
import cluster from 'node:cluster'
import { PrimaryLink, servePrimaryOperations } from '../lib/cluster-ipc.ts'
import { rateLimitOperations } from '../lib/sliding-window-cluster.ts'

const HITS = Number(process.env.HITS ?? 20_000)
const WORKERS = 2

if (cluster.isPrimary) {
  servePrimaryOperations(rateLimitOperations())
  const before = process.cpuUsage()
  let finished = 0
  const reports = []
  for (let i = 0; i < WORKERS; i++) {
    cluster.fork().on('message', (message) => {
      if (message?.report === undefined) return
      reports.push(message.report)
      if (++finished < WORKERS) return
      const cpu = process.cpuUsage(before)
      for (const report of reports) console.log(report)
      const hits = WORKERS * HITS * 2
      console.log(`primary CPU: ${((cpu.user + cpu.system) / hits).toFixed(1)} µs per hit (${hits} hits)`)
      for (const worker of Object.values(cluster.workers)) worker.kill()
    })
  }
} else {
  const link = new PrimaryLink()
  const hit = async (i) => await link.call('rl.hit', [`k:${process.pid}:${i % 1000}`, 1e9, 60_000], 1000)
  let started = process.hrtime.bigint()
  for (let i = 0; i < HITS; i++) await hit(i)
  const sequentialUs = Number(process.hrtime.bigint() - started) / 1000 / HITS
  started = process.hrtime.bigint()
  const cpuBefore = process.cpuUsage()
  let next = 0
  await Promise.all(Array.from({ length: 64 }, async () => { while (next < HITS) await hit(next++) }))
  const perSecond = HITS / (Number(process.hrtime.bigint() - started) / 1e9)
  const cpu = process.cpuUsage(cpuBefore)
  const workerCpuUs = (cpu.user + cpu.system) / HITS
  process.send({ report: `worker ${process.pid}: ${sequentialUs.toFixed(1)} µs per sequential round trip; ${Math.round(perSecond)} hits/s with 64 in flight (both workers at once), ${workerCpuUs.toFixed(1)} µs of worker CPU per hit` })
}
