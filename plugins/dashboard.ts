import { createHash } from 'node:crypto'
import { existsSync, readdirSync, readFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { gzipSync } from 'node:zlib'
import fp from 'fastify-plugin'
import type { FastifyPluginAsync, FastifyReply, FastifyRequest } from 'fastify'
import { errorBody } from '../lib/errors.js'

/**
 * GET /dashboard: the web UI (docs/dashboard.md). No build step: the page's own modules in
 * dashboard/ and three packages' browser builds (Preact, htm, uPlot) straight from
 * node_modules, tied together by an import map. Everything is read and gzipped once at start
 * and served from memory; nothing is fetched from anywhere but this origin.
 */
const PREFIX = '/dashboard'
const require = createRequire(import.meta.url)

/** Browser builds of the packages, under /dashboard/vendor/. */
const VENDOR: Record<string, { pkg: string, file: string, specifier: string | null }> = {
  'preact.js': { pkg: 'preact', file: 'dist/preact.mjs', specifier: 'preact' },
  'hooks.js': { pkg: 'preact', file: 'hooks/dist/hooks.mjs', specifier: 'preact/hooks' },
  'htm.js': { pkg: 'htm', file: 'dist/htm.module.js', specifier: 'htm' },
  'uplot.js': { pkg: 'uplot', file: 'dist/uPlot.esm.js', specifier: 'uplot' },
  'uplot.css': { pkg: 'uplot', file: 'dist/uPlot.min.css', specifier: null }
}

/** The installed package's directory (their "exports" hide the files the browser needs). */
function packageDirectory (name: string): string {
  let dir = path.dirname(require.resolve(name))
  for (;;) {
    const manifest = path.join(dir, 'package.json')
    if (existsSync(manifest) && (JSON.parse(readFileSync(manifest, 'utf8')) as { name?: string }).name === name) return dir
    const parent = path.dirname(dir)
    if (parent === dir) throw new Error(`cannot find the ${name} package`)
    dir = parent
  }
}

/** A vendored file without its source-map comment: the maps are not served. */
function vendorFile (pkg: string, file: string): Buffer {
  const text = readFileSync(path.join(packageDirectory(pkg), file), 'utf8')
  return Buffer.from(text.replace(/\n?\/[/*]# sourceMappingURL=[^\n]*\s*$/, '\n'))
}

/** dashboard/ beside app.ts, or one level above dist/. */
function sourceDirectory (): string {
  for (const relative of ['../dashboard/', '../../dashboard/']) {
    const dir = fileURLToPath(new URL(relative, import.meta.url))
    if (existsSync(`${dir}index.html`)) return dir
  }
  throw new Error('the dashboard/ directory is missing from the installation')
}

const TYPES: Record<string, string> = {
  js: 'text/javascript; charset=utf-8',
  css: 'text/css; charset=utf-8',
  svg: 'image/svg+xml',
  html: 'text/html; charset=utf-8'
}

interface Asset { type: string, body: Buffer, gzipped: Buffer, etag: string }

function asset (name: string, body: Buffer): Asset {
  const type = TYPES[name.slice(name.lastIndexOf('.') + 1)] ?? 'application/octet-stream'
  return { type, body, gzipped: gzipSync(body, { level: 9 }), etag: `"${createHash('sha256').update(body).digest('base64url').slice(0, 22)}"` }
}

export interface DashboardAssets {
  /** Path under /dashboard → asset. */
  files: Map<string, Asset>
  csp: string
}

/** Reads every asset once; the page's CSP allows only this origin and the import map's own hash. */
export function loadDashboardAssets (): DashboardAssets {
  const dir = sourceDirectory()
  const files = new Map<string, Asset>()
  for (const name of readdirSync(dir)) {
    if (!/\.(js|css|svg)$/.test(name)) continue
    files.set(`/${name}`, asset(name, readFileSync(`${dir}${name}`)))
  }
  const imports: Record<string, string> = {}
  for (const [name, { pkg, file, specifier }] of Object.entries(VENDOR)) {
    files.set(`/vendor/${name}`, asset(name, vendorFile(pkg, file)))
    if (specifier !== null) imports[specifier] = `${PREFIX}/vendor/${name}`
  }
  const importMap = JSON.stringify({ imports })
  const hash = createHash('sha256').update(importMap).digest('base64')
  const page = readFileSync(`${dir}index.html`, 'utf8').replace('<!--importmap-->', `<script type="importmap">${importMap}</script>`)
  files.set('/', asset('index.html', Buffer.from(page)))
  const csp = [
    "default-src 'none'",
    `script-src 'self' 'sha256-${hash}'`,
    "style-src 'self'",
    "img-src 'self' data:",
    "connect-src 'self'",
    "base-uri 'none'",
    "form-action 'none'",
    "frame-ancestors 'none'"
  ].join('; ')
  return { files, csp }
}

const dashboardPlugin: FastifyPluginAsync = async (app) => {
  const { files, csp } = loadDashboardAssets()

  function send (request: FastifyRequest, reply: FastifyReply, file: Asset): FastifyReply {
    reply
      .header('content-security-policy', csp)
      .header('x-content-type-options', 'nosniff')
      .header('referrer-policy', 'no-referrer')
      .header('cache-control', 'no-cache')
      .header('etag', file.etag)
      .header('vary', 'accept-encoding')
      .type(file.type)
    if (request.headers['if-none-match'] === file.etag) return reply.code(304).send()
    if (/\bgzip\b/.test(request.headers['accept-encoding'] ?? '')) return reply.header('content-encoding', 'gzip').send(file.gzipped)
    return reply.send(file.body)
  }

  const pageResponse = { 200: { description: 'HTML page', content: { 'text/html': { schema: { type: 'string' } } } } }
  app.get(PREFIX, {
    schema: { tags: ['docs'], summary: 'The dashboard: a web UI over the admin API (asks for the admin token in the page)', response: pageResponse }
  }, async (request, reply) => send(request, reply, files.get('/')!))
  app.get(`${PREFIX}/*`, { schema: { hide: true } }, async (request, reply) => {
    const path = request.url.slice(PREFIX.length).split('?')[0]
    const file = files.get(path)
    if (file === undefined) return reply.code(404).send(errorBody(404, `no dashboard file at ${PREFIX}${path}`, request.id))
    return send(request, reply, file)
  })
}

export default fp(dashboardPlugin, { name: 'dashboard' })
