// Gatehouse from dist/ exactly as server.ts builds it, but with request audit rows switched off
// (buildApp's auditRequests: false): the `audit-off` profile, to show what auditing costs.
// Not a user setting, so it is not reachable through the environment.
import { buildApp } from '../dist/app.js'
import { loadConfig } from '../dist/plugins/config.js'

const config = loadConfig(process.env)
const app = await buildApp(config, { auditRequests: false })
await app.listen({ port: config.port, host: config.host })
process.on('SIGTERM', () => { app.close().then(() => process.exit(0)) })
