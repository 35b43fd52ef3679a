import { readFile } from 'node:fs/promises'
import { createRequire } from 'node:module'
import fp from 'fastify-plugin'
import type { FastifyPluginAsync } from 'fastify'

/** ReDoc's self-contained browser bundle, served from the installed package: no CDN. */
const BUNDLE_FILE = createRequire(import.meta.url).resolve('redoc/bundles/redoc.standalone.js')
export const REDOC_SCRIPT_URL = '/redoc/redoc.standalone.js'

/**
 * Nothing leaves the gateway: scripts, the document (fetched by the bundle) and the search
 * worker come from here. styled-components, which ReDoc renders with, injects <style>
 * elements ('unsafe-inline' for styles only); the search worker is built from a Blob. The
 * one external reference inside the bundle, a "Redocly" logo image, is refused by img-src
 * and ReDoc hides it (its onError handler).
 */
export const REDOC_CSP = [
  "default-src 'none'",
  "script-src 'self'",
  "style-src 'self' 'unsafe-inline'",
  "img-src 'self' data:",
  "font-src 'self' data:",
  "connect-src 'self'",
  "worker-src 'self' blob:",
  "base-uri 'none'",
  "form-action 'none'",
  "frame-ancestors 'none'"
].join('; ')

const PAGE = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Gatehouse API reference</title>
</head>
<body>
<redoc spec-url="/docs/json"></redoc>
<script src="${REDOC_SCRIPT_URL}"></script>
</body>
</html>
`

const pageResponse = { 200: { description: 'HTML page', content: { 'text/html': { schema: { type: 'string' } } } } }

/** GET /redoc: ReDoc rendering the same OpenAPI document as /docs/json (docs/admin-api.md). */
const redocPlugin: FastifyPluginAsync = async (app) => {
  let bundle: Promise<Buffer> | undefined

  for (const url of ['/redoc', '/redoc/']) {
    app.get(url, {
      schema: { tags: ['docs'], summary: 'ReDoc: the API reference, rendered from /docs/json', response: pageResponse, hide: url.endsWith('/') }
    }, async (_request, reply) => reply
      .type('text/html; charset=utf-8')
      .header('content-security-policy', REDOC_CSP)
      .header('x-content-type-options', 'nosniff')
      .header('referrer-policy', 'no-referrer')
      .send(PAGE))
  }

  app.get(REDOC_SCRIPT_URL, { schema: { hide: true } }, async (_request, reply) => {
    // Read once, on first use (1.1 MB): instances that never serve the page never load it.
    bundle ??= readFile(BUNDLE_FILE)
    return reply
      .type('application/javascript; charset=utf-8')
      .header('cache-control', 'public, max-age=3600')
      .header('x-content-type-options', 'nosniff')
      .send(await bundle)
  })
}

export default fp(redocPlugin, { name: 'redoc', dependencies: ['swagger'] })
