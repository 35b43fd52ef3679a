import { spawn, spawnSync } from 'node:child_process'
import { readFileSync } from 'node:fs'
import t from 'tap'
import { freePort, spawnGateway, tempDir } from './helper.js'

/**
 * The README's shell examples, from the quick start to the clean-up, run top to bottom against
 * a real gateway process started without ADMIN_TOKEN (the generated one is taken from its log,
 * as the quick start says) and the README's own node upstreams, on free ports. Every admin
 * call must answer 2xx: `adm` gets --fail-with-body, and the script runs with -e and pipefail.
 */
const README = readFileSync(new URL('../README.md', import.meta.url), 'utf8')

function readmeScript (): string {
  const part = README.slice(README.indexOf('## Quick start'), README.indexOf('## Running many processes'))
  const blocks = [...part.matchAll(/```sh\n([\s\S]*?)```/g)].map((match) => match[1])
  // The first block is `npm install` / `npm start`: the test starts the gateway itself.
  return blocks.slice(1).join('\n')
}

const missing = ['bash', 'curl'].filter((tool) => spawnSync(tool, ['--version']).status !== 0)

t.test('the README examples run top to bottom against a real gateway', { skip: missing.length > 0 ? `needs ${missing.join(' and ')}` : false }, async (t) => {
  const gateway = await spawnGateway(t, { ADMIN_TOKEN: undefined })
  const token = /gha_[A-Za-z0-9_-]+/.exec(await gateway.waitForLine(/generated admin token/))?.[0] as string
  let script = readmeScript()
  t.match(script, 'export GH=http://localhost:8080 TOKEN=gha_…', 'the quick start sets GH and TOKEN')
  script = script.replace('export GH=http://localhost:8080 TOKEN=gha_…', `export GH=http://localhost:${gateway.port} TOKEN=${token}`)
  for (const port of ['9000', '9001', '9002']) script = script.replaceAll(port, String(await freePort()))
  const adm = 'adm() { curl -sS -H "Authorization: Bearer $TOKEN" -H \'content-type: application/json\' "$@"; echo; }'
  t.ok(script.includes(adm), 'the adm shorthand is as the README defines it')
  script = script.replace(adm, adm.replace('curl -sS', 'curl -sS --fail-with-body'))
  // The upstreams start in the background: give them a moment before the first request.
  script = script.replaceAll('done\n', 'done\nsleep 0.5\n').replace('" &\ncurl', '" &\nsleep 0.5\ncurl')

  const bash = spawn('bash', ['-c', `set -eo pipefail\n${script}`], { cwd: tempDir(t), detached: true, stdio: ['ignore', 'pipe', 'pipe'] })
  t.teardown(() => { try { process.kill(-(bash.pid as number), 'SIGKILL') } catch {} })
  let stdout = ''
  let stderr = ''
  bash.stdout.on('data', (chunk: Buffer) => { stdout += chunk.toString() })
  bash.stderr.on('data', (chunk: Buffer) => { stderr += chunk.toString() })
  const code = await new Promise<number | null>((resolve) => bash.on('exit', resolve))
  if (code !== 0) t.comment(`stderr:\n${stderr.slice(-3000)}\nstdout:\n${stdout.slice(-3000)}`)
  t.equal(code, 0, 'the script ends well')

  t.match(stdout, '{"url":"/echo/hello"}', 'the quick start route proxies')
  t.match(stdout, /via: 1\.1 gatehouse\r?\nx-request-id: my-trace-1|x-request-id: my-trace-1[\s\S]*via: 1\.1 gatehouse/i, 'the proxied request keeps its id')
  t.match(stdout, /"url":"\/42\?fields=name"/, 'stripPath: the upstream sees /42?fields=name')
  t.match(stdout, 'HTTP/1.1 401 Unauthorized', 'the api-key route wants a key')
  t.equal(stdout.match(/"url":"\/42"}/g)?.length, 2, 'the key and the basic credentials both get through')
  t.notMatch(stdout, 'a-shared-secret-of-at-least-32-chars!', 'the JWT secret is never echoed')
  t.match(stdout, '"secretSet":true')
})
