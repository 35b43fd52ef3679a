import { buildApp } from './app.js'
import { ConfigError, loadConfig } from './plugins/config.js'

// Minimal process entry; graceful shutdown, cluster workers and .env handling are completed in server work.
const config = (() => {
  try {
    return loadConfig(process.env)
  } catch (err) {
    if (err instanceof ConfigError) {
      console.error(`gatehouse: invalid setting ${err.message}`)
      process.exit(1)
    }
    throw err
  }
})()

const app = await buildApp(config)
await app.listen({ port: config.port, host: config.host })
