import type { FastifyServerOptions } from 'fastify'

type SchemaErrorFormatter = NonNullable<FastifyServerOptions['schemaErrorFormatter']>

const WHAT: Partial<Record<Parameters<SchemaErrorFormatter>[1], string>> = { querystring: 'query parameter', params: 'path parameter', headers: 'header' }

/**
 * Fastify's message for a schema failure, except that an unknown property is named
 * ("querystring/sort is not a known query parameter") where Ajv says only
 * "querystring must NOT have additional properties".
 */
export const schemaErrorMessage: SchemaErrorFormatter = (errors, dataVar) => {
  const messages = errors.map((error) => {
    const unknown = error.keyword === 'additionalProperties' ? error.params.additionalProperty : undefined
    if (typeof unknown === 'string') return `${dataVar}${error.instancePath}/${unknown} is not a known ${WHAT[dataVar] ?? 'field'}`
    return `${dataVar}${error.instancePath} ${error.message ?? 'is invalid'}`
  })
  return new Error(messages.join(', '))
}
