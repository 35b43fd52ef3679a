import type { Route, RouteAuth, RouteInput } from '../schemas/route.js'

type JwtAuth = Extract<RouteAuth, { type: 'jwt' }>

/**
 * A route as answers show it: a JWT route's HS256 secret is write-only, shown as `secret: null`
 * with `secretSet` saying whether one is stored (docs/admin-api.md "A JWT route's secret is write-only").
 */
export function publicRoute<T extends Pick<Route, 'auth'>> (route: T): T {
  if (route.auth.type !== 'jwt') return route
  return { ...route, auth: { ...route.auth, secret: null, secretSet: route.auth.secret !== null } }
}

/** A JWT auth that names neither a secret nor a JWKS URL: it means "keep the stored secret". */
export function keepsStoredSecret (auth: RouteAuth): auth is JwtAuth {
  return auth.type === 'jwt' && auth.secret === null && auth.jwksUrl === null
}

/**
 * What a client sent for a route, made storable: `secretSet` (answers only) is dropped, and a
 * JWT auth with neither secret nor jwksUrl keeps the secret `before` holds, so a route read
 * with GET can be sent back with PUT or PATCH unchanged. Without a stored secret it stays as
 * sent, and validation refuses it ("must set exactly one of secret or jwksUrl").
 */
export function withStoredSecret<T extends Pick<RouteInput, 'auth'>> (input: T, before: Pick<Route, 'auth'> | undefined): T {
  if (input.auth.type !== 'jwt') return input
  const { secretSet: _answerOnly, ...auth } = input.auth
  if (keepsStoredSecret(auth) && before?.auth.type === 'jwt' && before.auth.secret !== null) auth.secret = before.auth.secret
  return { ...input, auth }
}
