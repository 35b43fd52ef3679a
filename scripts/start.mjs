// `npm start`: builds dist/ when it is missing or older than any source (so a fresh clone, a
// `git pull` or `npm start --ignore-scripts` never runs stale code), then runs the server.
import { spawnSync } from 'node:child_process'
import { existsSync, readdirSync, rmSync, statSync } from 'node:fs'
import { createRequire } from 'node:module'
import path from 'node:path'
import { fileURLToPath } from 'node:url'

const root = fileURLToPath(new URL('..', import.meta.url))
const built = path.join(root, 'dist', 'server.js')
// The folders tsconfig.build.json compiles, plus the root's own .ts files and the build config.
const SOURCE_DIRS = ['plugins', 'policies', 'routes', 'schemas', 'migrations', 'repositories', 'lib']

function newestSource () {
  let newest = 0
  const visit = (dir, recurse) => {
    for (const entry of readdirSync(dir, { withFileTypes: true })) {
      const file = path.join(dir, entry.name)
      if (entry.isDirectory()) {
        if (recurse) visit(file, true)
      } else if (entry.name.endsWith('.ts') || entry.name.startsWith('tsconfig')) {
        newest = Math.max(newest, statSync(file).mtimeMs)
      }
    }
  }
  visit(root, false)
  for (const dir of SOURCE_DIRS) if (existsSync(path.join(root, dir))) visit(path.join(root, dir), true)
  return newest
}

if (!existsSync(built) || statSync(built).mtimeMs < newestSource()) {
  let tsc
  try {
    tsc = createRequire(import.meta.url).resolve('typescript/bin/tsc')
  } catch {
    console.error('gatehouse: dist/ is missing or stale and TypeScript is not installed: run `npm install` (with dev dependencies)')
    process.exit(1)
  }
  console.error('gatehouse: building dist/ …')
  // A clean build: a source deleted or renamed (a migration!) must not live on in dist/.
  rmSync(path.join(root, 'dist'), { recursive: true, force: true })
  const result = spawnSync(process.execPath, [tsc, '-p', 'tsconfig.build.json'], { stdio: 'inherit', cwd: root })
  if (result.status !== 0) {
    console.error('gatehouse: the build failed (see above)')
    process.exit(result.status ?? 1)
  }
}
await import(new URL('../dist/server.js', import.meta.url).href)
