#!/usr/bin/env node
import { writeFile } from 'node:fs/promises'
import { parseArgs } from 'node:util'
import { stringify as toYaml } from 'yaml'
import { readConfigDocumentFile } from '../lib/config-file.js'
import { type ConfigDiff, describeDiff } from '../lib/config-diff.js'

/**
 * `gatehouse config dump|diff|apply FILE` — configuration as code against a running gateway
 * (docs/config-history.md "GitOps with the CLI"). The gateway does the work: `diff` is
 * PUT /admin/config?dryRun=true, `apply` the same then PUT /admin/config with If-Match on the
 * ETag the diff was computed against, so it never overwrites a change made in between.
 */

const USAGE = `Usage: gatehouse config dump [FILE]
       gatehouse config diff FILE [--exit-code]
       gatehouse config apply FILE [--exit-code]

Options:
  --url URL      the gateway (default $GATEHOUSE_URL, else http://127.0.0.1:8080)
  --token TOKEN  the admin token (default $GATEHOUSE_TOKEN)
  --exit-code    diff, apply: exit 2 when there are changes
FILE is YAML (.yaml, .yml) or JSON (.json); dump writes YAML to stdout without FILE.

Exit codes: 0 done · 1 error (usage, unreachable gateway, token refused, invalid file or
document) · 2 changes found (with --exit-code) · 3 apply refused: the configuration changed
since the diff (run it again)`

export const EXIT = { ok: 0, error: 1, changes: 2, conflict: 3 } as const

class CliError extends Error {
  constructor (message: string, readonly exitCode: number = EXIT.error) { super(message) }
}

interface Options { url: string, token: string, exitCode: boolean }

interface Answer { status: number, headers: Headers, body: unknown }

async function call (options: Options, method: string, path: string, body?: unknown, headers: Record<string, string> = {}): Promise<Answer> {
  let response: Response
  try {
    response = await fetch(new URL(path, options.url), {
      method,
      headers: { authorization: `Bearer ${options.token}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }), ...headers },
      body: body === undefined ? undefined : JSON.stringify(body)
    })
  } catch (err) {
    const cause = (err as { cause?: { code?: string, message?: string } }).cause
    throw new CliError(`cannot reach the gateway at ${options.url}: ${cause?.code ?? cause?.message ?? (err as Error).message}`)
  }
  const text = await response.text()
  let parsed: unknown = text
  try { parsed = JSON.parse(text) } catch {}
  if (response.status === 401 || response.status === 403) {
    throw new CliError(`the gateway at ${options.url} refused the admin token (${response.status}): check --token or GATEHOUSE_TOKEN`)
  }
  return { status: response.status, headers: response.headers, body: parsed }
}

function messageOf (answer: Answer): string {
  const body = answer.body as { message?: unknown }
  return typeof body?.message === 'string' ? body.message : `HTTP ${answer.status}`
}

/** The server names the field as "body/routes/2/path …": said of the file instead. */
function invalidDocument (file: string, answer: Answer): CliError {
  return new CliError(`${file} is invalid: ${messageOf(answer).replace(/^body\/?/, '')}`)
}

/** Items without what says where and when they were stored, so that a dump stays stable under git. */
function forFile (document: Record<string, unknown[]>): Record<string, unknown[]> {
  const strip = (item: unknown): unknown => {
    if (item === null || typeof item !== 'object') return item
    const { id: _id, createdAt: _c, updatedAt: _u, ...rest } = item as Record<string, unknown>
    return rest
  }
  return Object.fromEntries(Object.entries(document).map(([section, items]) => [section, items.map(strip)]))
}

function format (document: unknown, file: string | undefined): string {
  return file !== undefined && /\.json$/i.test(file) ? `${JSON.stringify(document, null, 2)}\n` : toYaml(document)
}

async function readDocument (file: string): Promise<unknown> {
  try {
    return await readConfigDocumentFile(file) ?? {}
  } catch (err) {
    throw new CliError((err as Error).message)
  }
}

async function dryRun (options: Options, file: string): Promise<{ diff: ConfigDiff, etag: string | null, document: unknown }> {
  const document = await readDocument(file)
  const answer = await call(options, 'PUT', '/admin/config?dryRun=true', document)
  if (answer.status === 400) throw invalidDocument(file, answer)
  if (answer.status !== 200) throw new CliError(`the gateway refused the diff (${answer.status}): ${messageOf(answer)}`)
  return { diff: answer.body as ConfigDiff, etag: answer.headers.get('etag'), document }
}

function hasChanges (diff: ConfigDiff): boolean {
  return diff.summary.creating + diff.summary.updating + diff.summary.deleting > 0
}

export async function run (argv: string[], env: NodeJS.ProcessEnv, out: (line: string) => void): Promise<number> {
  let parsed
  try {
    parsed = parseArgs({
      args: argv,
      allowPositionals: true,
      options: { url: { type: 'string' }, token: { type: 'string' }, 'exit-code': { type: 'boolean' }, help: { type: 'boolean', short: 'h' } }
    })
  } catch (err) {
    throw new CliError(`${(err as Error).message}\n${USAGE}`)
  }
  const [group, command, file, ...extra] = parsed.positionals
  if (parsed.values.help === true) { out(USAGE); return EXIT.ok }
  if (group !== 'config' || !['dump', 'diff', 'apply'].includes(command ?? '') || extra.length > 0) throw new CliError(USAGE)
  if (command !== 'dump' && file === undefined) throw new CliError(`gatehouse config ${command} needs a FILE\n${USAGE}`)
  const token = parsed.values.token ?? env.GATEHOUSE_TOKEN
  if (token === undefined || token === '') throw new CliError('no admin token: pass --token or set GATEHOUSE_TOKEN')
  const url = parsed.values.url ?? env.GATEHOUSE_URL ?? 'http://127.0.0.1:8080'
  if (!/^https?:\/\/.+/.test(url)) throw new CliError(`--url must be an http:// or https:// URL, got "${url}"`)
  const options: Options = { url, token, exitCode: parsed.values['exit-code'] === true }

  if (command === 'dump') {
    const answer = await call(options, 'GET', '/admin/config')
    if (answer.status !== 200) throw new CliError(`the gateway refused the dump (${answer.status}): ${messageOf(answer)}`)
    const text = format(forFile(answer.body as Record<string, unknown[]>), file)
    if (file === undefined) {
      process.stdout.write(text)
    } else {
      await writeFile(file, text)
      out(`wrote ${file}`)
    }
    return EXIT.ok
  }

  const { diff, etag, document } = await dryRun(options, file as string)
  for (const line of describeDiff(diff)) out(line)
  const changed = hasChanges(diff)
  if (command === 'diff' || !changed) return changed && options.exitCode ? EXIT.changes : EXIT.ok

  const applied = await call(options, 'PUT', '/admin/config', document, etag === null ? {} : { 'if-match': etag })
  if (applied.status === 412) {
    throw new CliError('not applied: the configuration changed on the gateway since this diff; run the command again to see the new diff', EXIT.conflict)
  }
  if (applied.status === 400) throw invalidDocument(file as string, applied)
  if (applied.status !== 200) throw new CliError(`the gateway refused the change (${applied.status}): ${messageOf(applied)}`)
  out(`applied: configuration revision ${(applied.headers.get('etag') ?? '').replace(/^"config-(\d+)"$/, '$1')}`)
  return options.exitCode ? EXIT.changes : EXIT.ok
}

try {
  process.exitCode = await run(process.argv.slice(2), process.env, (line) => { process.stdout.write(`${line}\n`) })
} catch (err) {
  process.stderr.write(`gatehouse: ${err instanceof CliError ? err.message : (err as Error).stack}\n`)
  process.exitCode = err instanceof CliError ? err.exitCode : EXIT.error
}
