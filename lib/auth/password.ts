import { randomBytes, scrypt, timingSafeEqual, type ScryptOptions } from 'node:crypto'

/**
 * Passwords are stored as `scrypt$N$r$p$salt$hash` (base64url salt and hash), a fresh
 * 16-byte salt per password. N = 2^15, r = 8 (32 MiB, about 60 ms on one core here) follows
 * current guidance for interactive logins; the parameters are stored with each hash, so
 * raising them later leaves existing passwords verifiable.
 */
const COST = 2 ** 15
const BLOCK_SIZE = 8
const PARALLELISM = 1
const KEY_LENGTH = 32
const SALT_BYTES = 16

export async function hashPassword (password: string): Promise<string> {
  const salt = randomBytes(SALT_BYTES)
  const hash = await scryptAsync(password, salt, KEY_LENGTH, { N: COST, r: BLOCK_SIZE, p: PARALLELISM })
  return ['scrypt', COST, BLOCK_SIZE, PARALLELISM, salt.toString('base64url'), hash.toString('base64url')].join('$')
}

export interface ParsedPasswordHash {
  N: number
  r: number
  p: number
  salt: Buffer
  hash: Buffer
}

export function parsePasswordHash (stored: string): ParsedPasswordHash | null {
  const parts = stored.split('$')
  if (parts.length !== 6 || parts[0] !== 'scrypt') return null
  const [N, r, p] = parts.slice(1, 4).map(Number)
  if (!Number.isInteger(N) || !Number.isInteger(r) || !Number.isInteger(p)) return null
  return { N, r, p, salt: Buffer.from(parts[4], 'base64url'), hash: Buffer.from(parts[5], 'base64url') }
}

/** Constant-time comparison of the derived key; false for a hash it cannot read. */
export async function verifyPassword (password: string, stored: ParsedPasswordHash): Promise<boolean> {
  const derived = await scryptAsync(password, stored.salt, stored.hash.length, { N: stored.N, r: stored.r, p: stored.p })
  return timingSafeEqual(derived, stored.hash)
}

function scryptAsync (password: string, salt: Buffer, keyLength: number, options: ScryptOptions): Promise<Buffer> {
  // Node refuses more than 32 MiB by default; scrypt needs 128·N·r bytes plus a little.
  const maxmem = 256 * (options.N ?? COST) * (options.r ?? BLOCK_SIZE)
  return new Promise((resolve, reject) => {
    scrypt(password, salt, keyLength, { ...options, maxmem }, (err, derived) => {
      if (err !== null) reject(err)
      else resolve(derived)
    })
  })
}

export class BusyError extends Error {
  constructor () {
    super('too many password verifications in progress')
    this.name = 'BusyError'
  }
}

/**
 * Caps how many scrypt runs share the libuv thread pool (which file and DNS work need too)
 * and how many may wait: an attacker sending wrong passwords can occupy at most
 * `concurrency` threads; past `maxQueued` waiting requests are refused at once (BusyError).
 */
export class ConcurrencyLimiter {
  private running = 0
  private readonly waiting: Array<() => void> = []

  constructor (readonly concurrency: number, readonly maxQueued: number) {}

  async run<T> (task: () => Promise<T>): Promise<T> {
    if (this.running >= this.concurrency) {
      if (this.waiting.length >= this.maxQueued) throw new BusyError()
      await new Promise<void>((resolve) => this.waiting.push(resolve))
    } else {
      this.running++
    }
    try {
      return await task()
    } finally {
      const next = this.waiting.shift()
      if (next === undefined) this.running--
      else next()
    }
  }

  get pending (): number {
    return this.waiting.length
  }
}
