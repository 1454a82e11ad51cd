/**
 * Interim responses (RFC 9110 §15.2): an origin may send 103 Early Hints or 102 Processing before
 * its final response, on the same exchange. The cache must answer, share, revalidate and store by
 * the final response, through both faces, and never take the interim one for it.
 */
import { afterEach, describe, expect, it } from 'vitest'
import { createCache } from '../src/index.js'
import { adapters } from './helpers/clients.js'
import type { Route } from './helpers/origin.js'
import { teardown } from './helpers/teardown.js'
import { gate, waitFor } from './helpers/wait.js'

const opened = teardown()
afterEach(() => opened.close())

/** 103 Early Hints and 102 Processing, then 304 to a matching If-None-Match, else 200 with `body`. */
function withInterim (body: string, cacheControl = 'max-age=60'): Route {
  return (req, res) => {
    res.writeEarlyHints({ link: '</style.css>; rel=preload; as=style' })
    res.writeProcessing()
    const fields = { 'cache-control': cacheControl, etag: '"v1"' }
    if (req.headers['if-none-match'] === '"v1"') res.writeHead(304, fields).end()
    else res.writeHead(200, { ...fields, 'content-type': 'text/plain' }).end(body)
  }
}

describe.each(adapters)('interim responses through $name', ({ connect }) => {
  it('answers with the final response, and stores it: the next request is a hit', async () => {
    const server = await opened.origin({ '/doc': withInterim('the document') })
    const client = opened.add(connect(createCache()))

    const first = await client.send(`${server.url}/doc`)
    const second = await client.send(`${server.url}/doc`)

    expect([first.status, first.body]).toEqual([200, 'the document'])
    expect([second.status, second.body]).toEqual([200, 'the document'])
    expect(second.header('cache-status')).toMatch(/^cachedfetch; hit/)
    expect(server.hits('/doc')).toBe(1)
  })

  it('revalidates by the final 304', async () => {
    const server = await opened.origin({ '/doc': withInterim('the document', 'no-cache') })
    const client = opened.add(connect(createCache()))

    await client.send(`${server.url}/doc`)
    const revalidated = await client.send(`${server.url}/doc`)

    expect([revalidated.status, revalidated.body]).toEqual([200, 'the document'])
    expect(revalidated.header('cache-status')).toMatch(/fwd-status=304/)
    expect(server.seen('/doc').map((r) => r.headers['if-none-match'] ?? 'unconditional')).toEqual(['unconditional', '"v1"'])
  })

  it('shares the final response among identical requests in flight', async () => {
    const open = gate()
    const answer = withInterim('the document')
    const server = await opened.origin({
      '/doc': async (req, res, seen) => {
        await open.promise
        await answer(req, res, seen)
      }
    })
    const cache = createCache()
    const client = opened.add(connect(cache))

    const replies = Array.from({ length: 5 }, async () => await client.send(`${server.url}/doc`))
    await waitFor(() => cache.stats().misses === 5, 'the five requests to reach the cache')
    open.release()

    expect((await Promise.all(replies)).map((r) => `${r.status} ${r.body}`)).toEqual(Array(5).fill('200 the document'))
    expect(server.hits('/doc')).toBe(1)
  })
})
