import { useEffect, useRef, useState } from 'preact/hooks'
import UPlot from 'uplot'
import { api, query } from './api.js'
import { formatNumber, html, Notice } from './ui.js'

/** How often the Overview polls (three admin calls per refresh). */
export const REFRESH_MS = 5000
const WINDOW = 900
const STEP = 10
const PALETTE = ['#2563eb', '#16a34a', '#d97706', '#dc2626', '#7c3aed', '#0891b2', '#db2777', '#65a30d']

function cssVar (name) { return getComputedStyle(document.documentElement).getPropertyValue(name).trim() }

/** A uPlot line chart that follows its container's width; `data` updates it in place. */
function Chart ({ title, labels, data, unit, testId }) {
  const box = useRef(null)
  const plot = useRef(null)
  const shape = labels.join('|')
  useEffect(() => {
    const fg = cssVar('--fg')
    const grid = cssVar('--line')
    const axis = { stroke: fg, grid: { stroke: grid, width: 1 }, ticks: { stroke: grid, width: 1 } }
    const options = {
      width: Math.max(200, box.current.clientWidth),
      height: 200,
      scales: { x: { time: true } },
      series: [{}, ...labels.map((label, index) => ({ label, stroke: PALETTE[index % PALETTE.length], width: 2, spanGaps: false, points: { show: true, size: 4 }, value: (_u, v) => v === null || v === undefined ? '–' : `${formatNumber(v, 2)}${unit}` }))],
      axes: [axis, { ...axis, size: 60 }]
    }
    plot.current = new UPlot(options, data, box.current)
    const observer = new ResizeObserver(() => {
      if (plot.current !== null && box.current !== null) plot.current.setSize({ width: Math.max(200, box.current.clientWidth), height: 200 })
    })
    observer.observe(box.current)
    return () => { observer.disconnect(); plot.current.destroy(); plot.current = null }
  }, [shape])
  useEffect(() => { plot.current?.setData(data) }, [data])
  const last = data[1]?.length > 1 ? data.slice(1).map((series, index) => `${labels[index]} ${formatNumber(series[series.length - 2], 2)}${unit}`).join(', ') : ''
  return html`<figure class="chart" data-testid=${testId}>
    <figcaption>${title}</figcaption>
    <div class="chart-box" ref=${box} role="img" aria-label=${`${title}, last 15 minutes. Last complete 10 s: ${last}`}></div>
  </figure>`
}

const sum = (items, pick) => items.reduce((total, item) => total + (pick(item) ?? 0), 0)

export function OverviewPage () {
  const [cluster, setCluster] = useState(null)
  const [status, setStatus] = useState(null)
  const [stats, setStats] = useState(null)
  const [routeNames, setRouteNames] = useState(new Map())
  const [message, setMessage] = useState(null)
  const [updatedAt, setUpdatedAt] = useState(null)
  const [route, setRoute] = useState('')
  const [latencyOf, setLatencyOf] = useState('cluster')

  useEffect(() => {
    let stopped = false
    async function refresh () {
      if (document.hidden) return
      try {
        const since = new Date(Date.now() - WINDOW * 1000).toISOString()
        const [series, live, top] = await Promise.all([
          api('GET', `/admin/metrics/timeseries${query({ window: WINDOW, step: STEP, scope: 'cluster', route })}`),
          api('GET', '/admin/status'),
          api('GET', `/admin/audit/stats${query({ since, top: 5 })}`)
        ])
        if (stopped) return
        setCluster(series)
        setStatus(live)
        setStats(top)
        setUpdatedAt(new Date())
        setMessage(null)
      } catch (err) {
        if (!stopped) setMessage({ error: true, text: err.message })
      }
    }
    api('GET', '/admin/routes?limit=1000').then((page) => { if (!stopped) setRouteNames(new Map(page.items.map((route) => [route.id, route.name]))) }, () => {})
    refresh()
    const timer = setInterval(refresh, REFRESH_MS)
    return () => { stopped = true; clearInterval(timer) }
  }, [route])

  if (cluster === null) return html`<h1 tabindex="-1">Overview</h1><${Notice} message=${message} /><p>Loading…</p>`

  const items = cluster.items
  const xs = items.map((point) => Date.parse(point.ts) / 1000)
  const perSecond = (point) => point.requests / STEP
  const lastComplete = items.length > 1 ? items[items.length - 2] : items[0]
  const instances = cluster.instances ?? []
  const rpsData = [xs, items.map(perSecond), ...instances.map((instance) => instance.items.map(perSecond))]
  const rpsLabels = ['cluster', ...instances.map((instance) => instance.instanceId)]
  const latencySource = instances.find((instance) => instance.instanceId === latencyOf)?.items ?? items
  const latencyData = [xs, latencySource.map((p) => p.p50), latencySource.map((p) => p.p95), latencySource.map((p) => p.p99)]
  const classes = ['1xx', '2xx', '3xx', '4xx', '5xx']
  const statusData = [xs, ...classes.map((c) => items.map((p) => p.byStatusClass[c] / STEP))]

  return html`
    <h1 tabindex="-1">Overview</h1>
    <${Notice} message=${message} />
    <p class="hint" aria-live="polite">Last 15 minutes, whole cluster (${instances.length} instance${instances.length === 1 ? '' : 's'}); refreshed every ${REFRESH_MS / 1000} s${updatedAt ? `, last at ${updatedAt.toLocaleTimeString()}` : ''}.</p>
    <div class="row">
      <div class="field"><label for="overview-route">Traffic of</label>
        <select id="overview-route" value=${route} onChange=${(e) => setRoute(e.currentTarget.value)}>
          <option value="">all routes</option>
          ${[...routeNames].map(([id, name]) => html`<option value=${id}>route ${name}</option>`)}
        </select></div>
      <div class="field"><label for="overview-latency">Latency of</label>
        <select id="overview-latency" value=${latencyOf} onChange=${(e) => setLatencyOf(e.currentTarget.value)}>
          <option value="cluster">the whole cluster</option>
          ${instances.map((instance) => html`<option value=${instance.instanceId}>instance ${instance.instanceId}</option>`)}
        </select></div>
    </div>
    <section aria-label="Totals" class="tiles">
      <div class="tile"><div class="value" data-testid="rps">${formatNumber(perSecond(lastComplete), 1)}</div><div class="label">requests/s (last 10 s)</div></div>
      <div class="tile"><div class="value" data-testid="requests-15m">${formatNumber(sum(items, (p) => p.requests))}</div><div class="label">requests (15 min)</div></div>
      <div class="tile"><div class="value">${formatNumber(sum(items, (p) => p.byStatusClass['5xx']))}</div><div class="label">5xx (15 min)</div></div>
      <div class="tile"><div class="value" data-testid="rate-limited">${formatNumber(sum(items, (p) => p.rateLimited))}</div><div class="label">rate-limited (15 min)</div></div>
      <div class="tile"><div class="value" data-testid="blocked">${formatNumber(sum(items, (p) => p.blocked))}</div><div class="label">blocked (15 min)</div></div>
      ${status ? html`<div class="tile"><div class="value">${formatNumber(status.rateLimited)} / ${formatNumber(status.blocked)}</div><div class="label">rate-limited / blocked since start (this ${status.workers ? 'host' : 'instance'})</div></div>` : null}
    </section>
    <section aria-label="Charts" class="charts">
      <${Chart} testId="chart-rps" title="Requests per second" labels=${rpsLabels} data=${rpsData} unit="/s" />
      <${Chart} testId="chart-latency" title=${latencyOf === 'cluster' ? 'Latency (ms), cluster' : `Latency (ms), ${latencyOf}`} labels=${['p50', 'p95', 'p99']} data=${latencyData} unit=" ms" />
      <${Chart} testId="chart-status" title="Status classes per second" labels=${classes} data=${statusData} unit="/s" />
    </section>
    <h2>Per instance</h2>
    <div class="table-wrap"><table>
      <thead><tr><th scope="col">instance</th><th scope="col">requests (15 min)</th><th scope="col">requests/s (last 10 s)</th><th scope="col">p99 (last 10 s)</th><th scope="col">4xx</th><th scope="col">5xx</th><th scope="col">rate-limited</th><th scope="col">blocked</th></tr></thead>
      <tbody>${instances.map((instance) => {
        const last = instance.items.length > 1 ? instance.items[instance.items.length - 2] : instance.items[0]
        return html`<tr key=${instance.instanceId}><td>${instance.instanceId}</td>
          <td>${formatNumber(sum(instance.items, (p) => p.requests))}</td><td>${formatNumber(perSecond(last), 1)}</td><td>${last.p99 === null ? '–' : `${formatNumber(last.p99, 2)} ms`}</td>
          <td>${formatNumber(sum(instance.items, (p) => p.byStatusClass['4xx']))}</td><td>${formatNumber(sum(instance.items, (p) => p.byStatusClass['5xx']))}</td>
          <td>${formatNumber(sum(instance.items, (p) => p.rateLimited))}</td><td>${formatNumber(sum(instance.items, (p) => p.blocked))}</td></tr>`
      })}</tbody>
    </table></div>
    <div class="charts">
      <section aria-labelledby="top-routes">
        <h2 id="top-routes">Top routes (15 min)</h2>
        <div class="table-wrap"><table><thead><tr><th scope="col">route</th><th scope="col">requests</th></tr></thead>
          <tbody>${(stats?.byRoute ?? []).slice(0, 10).map((entry) => html`<tr><td>${entry.routeName ?? (entry.routeId === null ? '(no route)' : entry.routeId)}</td><td>${formatNumber(entry.count)}</td></tr>`)}</tbody></table></div>
      </section>
      <section aria-labelledby="top-ips">
        <h2 id="top-ips">Top client IPs (15 min)</h2>
        <div class="table-wrap"><table><thead><tr><th scope="col">client IP</th><th scope="col">requests</th></tr></thead>
          <tbody>${(stats?.topClientIps ?? []).map((entry) => html`<tr><td>${entry.clientIp}</td><td>${formatNumber(entry.count)}</td></tr>`)}</tbody></table></div>
      </section>
    </div>
    <h2>Targets</h2>
    <div class="table-wrap"><table>
      <thead><tr><th scope="col">route</th><th scope="col">target</th><th scope="col">health</th><th scope="col">in flight</th></tr></thead>
      <tbody>${(status?.targets ?? []).map((target) => html`<tr key=${`${target.routeId} ${target.url}`}>
        <td>${routeNames.get(target.routeId) ?? target.routeId}</td><td>${target.url}</td>
        <td class=${target.healthy ? 'ok' : 'bad'}>${target.healthy ? 'healthy' : 'unhealthy'}</td><td>${target.inFlight}</td></tr>`)}</tbody>
    </table></div>
  `
}
