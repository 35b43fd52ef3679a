import neostandard, { resolveIgnoresFromGitignore } from 'neostandard'
import { createNodeResolver, importX } from 'eslint-plugin-import-x'

// Which way imports may point (docs/architecture.md): pure helpers in lib/ never reach into the
// Fastify-bound layers above them, and routes/ is registered by app.ts only.
const UPWARD = ['./plugins', './routes', './policies']

export default [
  ...neostandard({ ts: true, noJsx: true, ignores: resolveIgnoresFromGitignore() }),
  {
    // Two neostandard rules the code base has never followed, kept off so the linter arrived
    // without rewriting working lines: objects whose properties share a line with others
    // ({ a, b,\n c }), and `return void reply.send(…)` in callback-style hooks.
    rules: {
      '@stylistic/object-property-newline': 'off',
      'no-void': 'off',
      // Its loops wait on flags that other async functions change (closing, running): it cannot
      // see those writes and reports every such loop.
      'no-unmodified-loop-condition': 'off'
    }
  },
  {
    // The dashboard's modules run in the browser (served as they are, no build step).
    files: ['dashboard/**/*.js'],
    // htm templates read best with a short `${cond ? html`…` : null}` on one line.
    rules: { '@stylistic/multiline-ternary': 'off' },
    languageOptions: {
      globals: Object.fromEntries(['window', 'document', 'location', 'sessionStorage', 'fetch', 'URL', 'URLSearchParams', 'Blob',
        'getComputedStyle', 'ResizeObserver', 'setInterval', 'clearInterval', 'setTimeout', 'clearTimeout'].map((name) => [name, 'readonly']))
    }
  },
  {
    plugins: { 'import-x': importX },
    settings: {
      // Sources import each other as "./x.js" (ESM output names): resolve those to the .ts file.
      'import-x/resolver-next': [createNodeResolver({ extensions: ['.ts', '.js', '.mjs', '.json'], extensionAlias: { '.js': ['.ts', '.js'] } })]
    },
    rules: {
      'import-x/no-restricted-paths': ['error', {
        zones: [
          { target: './lib', from: UPWARD, message: 'lib/ holds pure helpers: move what it needs down into lib/ or repositories/.' },
          { target: ['./plugins', './policies', './repositories', './schemas', './migrations', './server.ts', './scripts', './bench'], from: './routes', message: 'routes/ is registered by app.ts only.' }
        ]
      }]
    }
  }
]
