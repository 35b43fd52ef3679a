import { readFile } from 'node:fs/promises'
import { parse as parseYaml } from 'yaml'

/**
 * Reads a configuration document from a YAML or JSON file (CONFIG_FILE, `gatehouse config
 * apply FILE`): by extension, .json as JSON and anything else as YAML (which reads JSON too).
 * Errors say which file and what is wrong with it (line and column for YAML).
 */
export async function readConfigDocumentFile (file: string): Promise<unknown> {
  let text: string
  try {
    text = await readFile(file, 'utf8')
  } catch (err) {
    throw new Error(`${file} cannot be read: ${(err as Error).message}`)
  }
  return parseConfigDocument(text, file)
}

export function parseConfigDocument (text: string, file: string): unknown {
  if (/\.json$/i.test(file)) {
    try {
      return JSON.parse(text)
    } catch (err) {
      throw new Error(`${file} is not valid JSON: ${(err as Error).message}`)
    }
  }
  try {
    return parseYaml(text, { prettyErrors: true })
  } catch (err) {
    throw new Error(`${file} is not valid YAML: ${(err as Error).message.split('\n')[0]}`)
  }
}
