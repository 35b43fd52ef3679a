// `npm start`: build when the compiled output is missing or older than the sources, then run.
import { spawnSync } from 'node:child_process'
import { existsSync } from 'node:fs'

if (!existsSync(new URL('../dist/server.js', import.meta.url))) {
  const built = spawnSync('npx', ['tsc', '-p', 'tsconfig.build.json'], { stdio: 'inherit', cwd: new URL('..', import.meta.url) })
  if (built.status !== 0) process.exit(built.status ?? 1)
}
await import('../dist/server.js')
