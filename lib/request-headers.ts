/** The credential of `Authorization: Bearer <credential>`, or null. */
export function bearerToken (header: string): string | null {
  if (header.length < 8 || header.slice(0, 7).toLowerCase() !== 'bearer ') return null
  const token = header.slice(7).trim()
  return token === '' ? null : token
}

/**
 * How many lines of the raw head carry this header. Node keeps only the first of two
 * Authorization or Host lines and joins others with ", ", so a credential header sent twice is
 * refused rather than guessed at.
 */
export function countRawHeader (rawHeaders: readonly string[], lowerName: string): number {
  let count = 0
  for (let i = 0; i < rawHeaders.length; i += 2) {
    if (rawHeaders[i].length === lowerName.length && rawHeaders[i].toLowerCase() === lowerName) count++
  }
  return count
}
