/**
 * A plain cachedFetch request sent as fetch sent the last one of its shape, to its own path
 * (src/adapters/sent.ts), goes where fetch would send it and carries what fetch would add: URLs read
 * against undici's global origin, a Referer made from it, a URL ending "?#".
 *
 * Each test makes a first call (undici.fetch, recorded under its shape) and a second one, to
 * another path, sent without fetch: it says what fetch would have sent for the second call.
 */
import type { IncomingMessage, ServerResponse } from 'node:http'
import { setGlobalOrigin } from 'undici'
import { afterEach, describe, expect, it } from 'vitest'
import { createCache, createCachedFetch } from '../src/index.js'
import type { Origin, Route } from './helpers/origin.js'
import { teardown } from './helpers/teardown.js'

const opened = teardown()
afterEach(async () => {
  setGlobalOrigin(undefined)
  await opened.close()
})

async function setUp (routes: Record<string, Route> = {}): Promise<{ server: Origin, cachedFetch: ReturnType<typeof createCachedFetch> }> {
  const server = await opened.origin(routes)
  return { server, cachedFetch: createCachedFetch({ cache: createCache(), dispatcher: opened.agent() }) }
}

/** Stored for a minute; keeps each request's raw header lines. */
function fresh (raw: string[][] = []): Route {
  return (req: IncomingMessage, res: ServerResponse) => {
    raw.push(req.rawHeaders)
    res.writeHead(200, { 'cache-control': 'max-age=60', 'content-type': 'text/plain' }).end(`at ${req.url!}`)
  }
}

/** The field names of raw header lines, in order, as written. */
const names = (raw: string[]): string[] => raw.filter((_, i) => i % 2 === 0)

describe('a request of a recorded shape sent to another path', () => {
  it('goes where fetch sends it when a global origin is set: "http:host/path" is relative to it for fetch', async () => {
    const { server: other, cachedFetch } = await setUp({ '/first': fresh(), '/x': fresh() })
    const global = await opened.origin({})
    setGlobalOrigin(global.url)
    // Recorded: a shape for `other`'s origin.
    await (await cachedFetch(`${other.url}/first`)).text()

    // fetch parses this against the global origin (same scheme, no "//"): http://127.0.0.1:GLOBAL/127.0.0.1:OTHER/x
    const port = new URL(other.url).port
    const response = await cachedFetch(`http:127.0.0.1:${port}/x`)
    await response.text()

    expect(global.requests.map((r) => r.path)).toEqual([`/127.0.0.1:${port}/x`])
    expect(other.hits('/x')).toBe(0)
  })

  it('carries no Referer recorded under another global origin than the one fetch sees now', async () => {
    const raw: string[][] = []
    const { server, cachedFetch } = await setUp({ '/first': fresh(raw), '/second': fresh(raw) })
    setGlobalOrigin('http://example.com')
    await (await cachedFetch(`${server.url}/first`)).text()
    expect(names(raw[0]!).map((n) => n.toLowerCase())).toContain('referer')

    setGlobalOrigin(undefined)
    await (await cachedFetch(`${server.url}/second`)).text()

    // fetch sends no Referer without a global origin (undici: the request's client has no URL).
    expect(names(raw[1]!).map((n) => n.toLowerCase())).not.toContain('referer')
  })

  it('sends the path fetch sends for a URL ending "?#" (fetch drops the "?" there)', async () => {
    const { server, cachedFetch } = await setUp({ '/first': fresh(), '/p': fresh() })
    await (await cachedFetch(`${server.url}/first`)).text()

    await (await cachedFetch(`${server.url}/p?#`)).text()

    expect(server.requests.map((r) => r.path)).toEqual(['/first', '/p'])
  })
})
