import { readFileSync } from 'node:fs'

/** package.json's version, read once (the file sits beside app.ts, or one level above dist/). */
function readVersion (): string {
  for (const relative of ['../package.json', '../../package.json']) {
    try {
      const pkg = JSON.parse(readFileSync(new URL(relative, import.meta.url), 'utf8')) as { name?: string, version?: string }
      if (pkg.name === 'gatehouse' && typeof pkg.version === 'string') return pkg.version
    } catch {}
  }
  return '0.0.0'
}

export const version = readVersion()
