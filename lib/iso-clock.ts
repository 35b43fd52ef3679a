/**
 * The current time as an ISO-8601 string, formatted once per millisecond: under load many
 * requests end within the same millisecond, and each audit row needs the string.
 */
export class IsoClock {
  private lastMs = -1
  private lastIso = ''

  now (): string {
    const ms = Date.now()
    if (ms !== this.lastMs) {
      this.lastMs = ms
      this.lastIso = new Date(ms).toISOString()
    }
    return this.lastIso
  }
}
