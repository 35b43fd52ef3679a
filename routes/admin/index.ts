import type { FastifyInstance } from 'fastify'
import routesAdmin from './routes.js'

/**
 * /admin/*: one encapsulated scope so the admin-token hook covers every resource here and
 * nothing outside. No CORS plugin is registered in this scope: the admin API never answers
 * a preflight permissively (contract section 2).
 */
export default async function admin (app: FastifyInstance): Promise<void> {
  app.addHook('onRequest', app.requireAdmin)
  await app.register(routesAdmin, { prefix: '/routes' })
}
