// Every call the dashboard makes is an admin API call with the token kept in sessionStorage
// (never localStorage, never a cookie): closing the tab forgets it.
const TOKEN_KEY = 'gatehouse.adminToken'

export const token = {
  get: () => sessionStorage.getItem(TOKEN_KEY),
  set: (value) => sessionStorage.setItem(TOKEN_KEY, value),
  clear: () => sessionStorage.removeItem(TOKEN_KEY)
}

export class ApiError extends Error {
  constructor (status, body, retryAfter) {
    const message = status === 429
      ? `Too many failed admin attempts from this address (429): try again in ${retryAfter ?? 'a few'} s.`
      : (body && typeof body === 'object' && typeof body.message === 'string') ? body.message : `HTTP ${status}`
    super(message)
    this.status = status
    this.body = body
  }
}

let unauthorized = () => {}
/** Called with a message when any call answers 401: the app goes back to the login. */
export function onUnauthorized (handler) { unauthorized = handler }

export async function api (method, path, body, { tokenValue } = {}) {
  const headers = { authorization: `Bearer ${tokenValue ?? token.get() ?? ''}` }
  if (body !== undefined) headers['content-type'] = 'application/json'
  const response = await fetch(path, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
    cache: 'no-store',
    credentials: 'omit'
  })
  const text = await response.text()
  let data = null
  try { data = text === '' ? null : JSON.parse(text) } catch { data = text }
  if (response.status === 401 && tokenValue === undefined) {
    token.clear()
    unauthorized('The admin token was refused (401): sign in again.')
  }
  if (!response.ok) throw new ApiError(response.status, data, response.headers.get('retry-after'))
  return data
}

/** Query string from an object, leaving out empty values. */
export function query (params) {
  const search = new URLSearchParams()
  for (const [key, value] of Object.entries(params)) if (value !== undefined && value !== null && value !== '') search.set(key, String(value))
  const text = search.toString()
  return text === '' ? '' : `?${text}`
}

let openApi = null

/** This gateway's OpenAPI document (read once): which admin endpoints and parameters it has. */
async function apiDocument () {
  openApi ??= fetch('/docs/json', { credentials: 'omit' }).then((response) => response.ok ? response.json() : null).catch(() => null)
  return await openApi
}

async function servedPaths () {
  const document = await apiDocument()
  return document?.paths ? new Set(Object.keys(document.paths)) : null
}

/** Whether an operation documents a query parameter (e.g. PUT /admin/config dryRun). */
export async function hasQueryParameter (path, method, name) {
  const operation = (await apiDocument())?.paths?.[path]?.[method]
  return (operation?.parameters ?? []).some((parameter) => parameter.in === 'query' && parameter.name === name)
}

/**
 * Whether a list endpoint exists in this gateway: features built separately (certificates,
 * egress rules, configuration revisions) answer 404 for an unknown admin path until they land.
 * null: available (with its first page); false: not available.
 */
export async function listIfAvailable (path) {
  // Asked of the OpenAPI document first, so a missing feature costs no failed request.
  const paths = await servedPaths()
  if (paths !== null && !paths.has(path.split('?')[0])) return false
  try {
    return await api('GET', path)
  } catch (err) {
    if (err instanceof ApiError && err.status === 404) return false
    throw err
  }
}
