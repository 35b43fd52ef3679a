import fp from 'fastify-plugin'
import type { FastifyPluginAsync } from 'fastify'
import type { ConfigSection } from '../lib/config-section.js'

export type { ConfigSection } from '../lib/config-section.js'

export interface ConfigSections {
  add: <Item>(section: ConfigSection<Item>) => void
  readonly all: readonly ConfigSection[]
}

declare module 'fastify' {
  interface FastifyInstance {
    configSections: ConfigSections
  }
}

const configSectionsPlugin: FastifyPluginAsync = async (app) => {
  const sections: ConfigSection[] = []
  app.decorate('configSections', {
    add (section) {
      if (sections.some((existing) => existing.name === section.name)) throw new Error(`config section ${section.name} added twice`)
      sections.push(section as ConfigSection)
    },
    get all () { return sections }
  } satisfies ConfigSections)
}

export default fp(configSectionsPlugin, { name: 'config-sections' })
