import { fileURLToPath } from 'node:url'
import t from 'tap'
import { ESLint } from 'eslint'

const REPO_ROOT = fileURLToPath(new URL('..', import.meta.url))

/** Lints `code` as if it were the file at `filePath` (relative to the repository), with eslint.config.js. */
async function importProblems (filePath: string, code: string): Promise<string[]> {
  const eslint = new ESLint({ cwd: REPO_ROOT })
  const [result] = await eslint.lintText(code, { filePath: `${REPO_ROOT}${filePath}` })
  return result.messages.filter((message) => message.ruleId === 'import-x/no-restricted-paths').map((message) => message.message)
}

t.test('lib/ may not import from plugins/, routes/ or policies/', async (t) => {
  t.same(await importProblems('lib/upward.ts', "import { openDatabase } from '../plugins/db.js'\nexport const open = openDatabase\n"), [
    'Unexpected path "../plugins/db.js" imported in restricted zone. lib/ holds pure helpers: move what it needs down into lib/ or repositories/.'
  ])
  t.same(await importProblems('lib/auth/upward.ts', "import type { Upstreams } from '../../plugins/upstreams.js'\nexport type U = Upstreams\n"), [
    'Unexpected path "../../plugins/upstreams.js" imported in restricted zone. lib/ holds pure helpers: move what it needs down into lib/ or repositories/.'
  ], 'type-only imports and nested folders too')
  t.same(await importProblems('lib/upward.ts', "import admin from '../routes/admin/index.js'\nexport default admin\n"), [
    'Unexpected path "../routes/admin/index.js" imported in restricted zone. lib/ holds pure helpers: move what it needs down into lib/ or repositories/.'
  ])
})

t.test('nothing but app.ts and routes/ itself imports from routes/', async (t) => {
  t.same(await importProblems('plugins/upward.ts', "import admin from '../routes/admin/index.js'\nexport default admin\n"), [
    'Unexpected path "../routes/admin/index.js" imported in restricted zone. routes/ is registered by app.ts only.'
  ])
  t.same(await importProblems('app-like.ts', "import admin from './routes/admin/index.js'\nexport default admin\n"), [], 'a file at the root (app.ts) may')
  t.same(await importProblems('routes/admin/other.ts', "import { applyConfigChange } from './apply-change.js'\nexport default applyConfigChange\n"), [], 'and routes/ among itself')
})

t.test('downward imports pass', async (t) => {
  t.same(await importProblems('lib/downward.ts', "import { openDatabase } from '../repositories/connection.js'\nimport { unmapIPv4 } from './ip.js'\nexport { openDatabase, unmapIPv4 }\n"), [])
  t.same(await importProblems('plugins/downward.ts', "import { unmapIPv4 } from '../lib/ip.js'\nexport { unmapIPv4 }\n"), [])
})
