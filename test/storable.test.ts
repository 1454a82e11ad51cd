/**
 * RFC 9111 §3: which responses the cache stores. Each case in fixtures/storable.json is sent twice,
 * with the same request, through cachedFetch and through the undici interceptor: a stored response
 * makes the second a hit the origin never sees; anything else reaches the origin twice.
 */
import { readFileSync } from 'node:fs'
import { Agent, request } from 'undici'
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import { cacheInterceptor, createCache, createCachedFetch, type Cache } from '../src/index.js'
import { startOrigin, type Origin } from './helpers/origin.js'

interface StorableCase {
  readonly name: string
  readonly method?: string
  readonly status: number
  /** An array value is sent as several field lines. */
  readonly response: Record<string, string | string[]>
  readonly request?: Record<string, string>
  readonly mode: 'shared' | 'private'
  readonly stored: boolean
}

const { cases } = JSON.parse(readFileSync(new URL('../fixtures/storable.json', import.meta.url), 'utf8')) as
  { cases: StorableCase[] }

interface Reply {
  readonly status: number
  readonly headers: Record<string, string>
  readonly body: string
}

interface Client {
  send (url: string, method: string, headers: Record<string, string>): Promise<Reply>
  close (): Promise<void>
}

/** The two faces of one cache: what a user of either would see. */
const adapters: Record<string, (cache: Cache) => Client> = {
  cachedFetch (cache) {
    const agent = new Agent()
    const fetch = createCachedFetch({ cache, dispatcher: agent })
    return {
      async send (url, method, headers) {
        const response = await fetch(url, { method, headers })
        return { status: response.status, headers: Object.fromEntries(response.headers), body: await response.text() }
      },
      close: () => agent.close()
    }
  },
  interceptor (cache) {
    const agent = new Agent()
    const dispatcher = agent.compose(cacheInterceptor({ cache }))
    return {
      async send (url, method, headers) {
        const response = await request(url, { method, headers, dispatcher })
        const flat: Record<string, string> = {}
        for (const [name, value] of Object.entries(response.headers)) {
          if (value !== undefined) flat[name] = Array.isArray(value) ? value.join(', ') : value
        }
        return { status: response.statusCode, headers: flat, body: await response.body.text() }
      },
      close: () => agent.close()
    }
  }
}

let origin: Origin
const clients: Client[] = []

beforeAll(async () => {
  origin = await startOrigin()
})

afterEach(async () => {
  await Promise.all(clients.splice(0).map((client) => client.close()))
})

afterAll(async () => {
  await origin.close()
})

describe.each(Object.keys(adapters))('storability through %s', (adapter) => {
  it.each(cases.map((c, i) => ({ ...c, path: `/${adapter}/${i}` })))('$name', async (c) => {
    const method = c.method ?? 'GET'
    origin.route(c.path, (_req, res) => {
      res.writeHead(c.status, c.response)
      res.end(`body of ${c.path}`)
    })
    const client = adapters[adapter]!(createCache({ shared: c.mode === 'shared', retry: false }))
    clients.push(client)
    const url = origin.url + c.path
    const headers = c.request ?? {}

    const first = await client.send(url, method, headers)
    const second = await client.send(url, method, headers)

    expect(first.status).toBe(c.status)
    expect(second.status).toBe(c.status)
    expect(second.body).toBe(first.body)
    if (c.stored) {
      expect(first.headers['cache-status']).toMatch(/; stored$/)
      expect(second.headers['cache-status']).toMatch(/^cachedfetch; hit; ttl=\d+$/)
      expect(origin.hits(c.path)).toBe(1)
    } else {
      expect(first.headers['cache-status']).not.toContain('stored')
      expect(second.headers['cache-status']).not.toContain('hit')
      expect(origin.hits(c.path)).toBe(2)
    }
  })
})
