import { existsSync } from 'node:fs'
import { chromium, type Browser, type BrowserContext, type Page } from 'playwright-core'
import { ADMIN_TOKEN, type TestContext } from '../helper.js'

/** Debian's chromium (installed by .ci/run); GATEHOUSE_CHROMIUM points elsewhere. */
export const CHROMIUM = process.env.GATEHOUSE_CHROMIUM ?? '/usr/bin/chromium'

/**
 * One headless browser per test file, closed at teardown. null (the caller skips with the
 * message) when chromium is not installed, unless GATEHOUSE_REQUIRE_SERVICES=1, which fails.
 */
export async function launchBrowser (t: TestContext): Promise<Browser | null> {
  if (!existsSync(CHROMIUM)) {
    if (process.env.GATEHOUSE_REQUIRE_SERVICES === '1') throw new Error(`chromium required but not found at ${CHROMIUM}`)
    return null
  }
  // --no-sandbox: CI runs as root, where chromium's sandbox refuses to start.
  const browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage'] })
  t.teardown(() => browser.close())
  return browser
}

export const SKIP_MESSAGE = `chromium not found at ${CHROMIUM}: browser tests skipped (set GATEHOUSE_REQUIRE_SERVICES=1 to fail instead)`

export interface Session {
  context: BrowserContext
  page: Page
  /** console.error lines and uncaught page errors. */
  consoleErrors: string[]
  /** Every request the page made to another origin than the gateway's. */
  foreignRequests: string[]
  /** Every request the page made (method and path). */
  requests: string[]
}

export const DESKTOP = { width: 1280, height: 720 }
export const PHONE = { width: 390, height: 844 }

export async function openDashboard (browser: Browser, gatewayUrl: string, options: { viewport?: { width: number, height: number }, colorScheme?: 'light' | 'dark' } = {}): Promise<Session> {
  const context = await browser.newContext({ viewport: options.viewport ?? DESKTOP, colorScheme: options.colorScheme ?? 'light' })
  const page = await context.newPage()
  page.setDefaultTimeout(10_000)
  const origin = new URL(gatewayUrl).origin
  const session: Session = { context, page, consoleErrors: [], foreignRequests: [], requests: [] }
  page.on('console', (message) => { if (message.type() === 'error') session.consoleErrors.push(message.text()) })
  page.on('pageerror', (err) => { session.consoleErrors.push(`uncaught: ${err.message}`) })
  context.on('request', (request) => {
    const url = request.url()
    if (url.startsWith('blob:') || url.startsWith('data:')) return
    if (new URL(url).origin !== origin) session.foreignRequests.push(url)
    else session.requests.push(`${request.method()} ${new URL(url).pathname}`)
  })
  await page.goto(`${gatewayUrl}/dashboard`)
  return session
}

export async function signIn (page: Page, token: string = ADMIN_TOKEN): Promise<void> {
  await page.getByLabel('Admin token').fill(token)
  await page.getByRole('button', { name: 'Sign in' }).click()
}

/**
 * A navigation function for `page`: clicks the page's link in the navigation, waits for its
 * heading, and checks the URL's hash.
 */
export function navigator (page: Page, t: { equal: (found: unknown, wanted: unknown) => unknown }): (hash: string, title: string) => Promise<void> {
  return async (hash, title) => {
    await page.getByRole('navigation').getByRole('link', { name: title, exact: true }).click()
    await page.getByRole('heading', { name: title, level: 1 }).waitFor()
    t.equal(new URL(page.url()).hash, `#/${hash}`)
  }
}

/** Accepts the next confirm() (deletions ask first). */
export function acceptNextDialog (page: Page): void {
  page.once('dialog', (dialog) => { void dialog.accept() })
}
