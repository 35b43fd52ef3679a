import { lookup } from 'node:dns/promises'

/**
 * Every address a name resolves to (A and AAAA, as the system resolver answers), in the
 * resolver's order. The caller checks every one and connects only to those, so a name cannot
 * pass the check with one answer and be connected to with another (docs/egress.md
 * "Private addresses").
 */
export async function resolveAll (name: string, timeoutMs: number): Promise<string[]> {
  let timer: NodeJS.Timeout | undefined
  const timeout = new Promise<never>((_resolve, reject) => {
    timer = setTimeout(() => reject(Object.assign(new Error(`no DNS answer for ${name} within ${timeoutMs} ms`), { code: 'ETIMEOUT' })), timeoutMs)
  })
  try {
    const answers = await Promise.race([lookup(name, { all: true, verbatim: true }), timeout])
    return answers.map((answer) => answer.address)
  } finally {
    clearTimeout(timer)
  }
}
