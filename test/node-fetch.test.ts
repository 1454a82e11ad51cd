/**
 * Node's own `globalThis.fetch` (the undici bundled with Node, which speaks the old handler API)
 * gets the cache through `setGlobalDispatcher(new Agent().compose(cacheInterceptor()))`: undici's
 * composition wraps its handler, so hits, decoding and revalidation work there too.
 */
import { gzipSync } from 'node:zlib'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { getGlobalDispatcher, setGlobalDispatcher, type Dispatcher } from 'undici'
import { createCache, createCachedFetch, cacheInterceptor } from '../src/index.js'
import { respond } from './helpers/origin.js'
import { teardown } from './helpers/teardown.js'
import { manualClock } from './helpers/time.js'

let previous: Dispatcher
const opened = teardown()

beforeEach(() => {
  previous = getGlobalDispatcher()
})

afterEach(async () => {
  setGlobalDispatcher(previous)
  await opened.close()
})

function installCache (options?: Parameters<typeof cacheInterceptor>[0]): void {
  setGlobalDispatcher(opened.agent().compose(cacheInterceptor(options)))
}

describe("Node's global fetch with the cache as global dispatcher", () => {
  it('serves the second fetch from the cache', async () => {
    const server = await opened.origin({
      '/data': respond(200, { 'content-type': 'application/json', 'cache-control': 'max-age=60' }, '{"n":1}')
    })
    installCache()

    const first = await globalThis.fetch(`${server.url}/data`)
    expect(first.headers.get('cache-status')).toMatch(/fwd=uri-miss; fwd-status=200; stored/)
    expect(await first.json()).toEqual({ n: 1 })
    const second = await globalThis.fetch(`${server.url}/data`)
    expect(second.status).toBe(200)
    expect(second.headers.get('cache-status')).toMatch(/^cachedfetch; hit/)
    expect(second.headers.get('age')).not.toBeNull()
    expect(await second.json()).toEqual({ n: 1 })
    expect(server.hits('/data')).toBe(1)
  })

  it('decodes a gzip-encoded hit', async () => {
    const text = 'zipped '.repeat(100)
    const gzipped = gzipSync(text)
    const server = await opened.origin({
      '/gz': respond(200, { 'content-encoding': 'gzip', 'content-length': String(gzipped.byteLength), 'cache-control': 'max-age=60' }, gzipped)
    })
    installCache()

    expect(await (await globalThis.fetch(`${server.url}/gz`)).text()).toBe(text)
    const hit = await globalThis.fetch(`${server.url}/gz`)
    expect(hit.headers.get('cache-status')).toMatch(/^cachedfetch; hit/)
    expect(await hit.text()).toBe(text)
    expect(server.hits('/gz')).toBe(1)
  })

  it('gives a private hit the same Set-Cookie fields as the miss', async () => {
    const server = await opened.origin({
      '/me': respond(200, { 'cache-control': 'max-age=60', 'set-cookie': ['a=1', 'b=2'] }, 'me')
    })
    installCache({ shared: false })

    const miss = await globalThis.fetch(`${server.url}/me`)
    await miss.text()
    const hit = await globalThis.fetch(`${server.url}/me`)
    expect(hit.headers.get('cache-status')).toMatch(/^cachedfetch; hit/)
    // Node 20's bundled fetch joins repeated fields behind any composed interceptor
    // (nodejs/undici#4389), on a miss as on a hit: the hit must not differ from the miss.
    expect(hit.headers.getSetCookie()).toEqual(miss.headers.getSetCookie())
    expect(hit.headers.get('set-cookie')).toBe(miss.headers.get('set-cookie'))
    expect(hit.headers.get('set-cookie')).toMatch(/a=1.*b=2/)
    expect(await hit.text()).toBe('me')
    expect(server.hits('/me')).toBe(1)
  })

  it('serves the stored body after a 304 revalidation', async () => {
    const clock = manualClock(Date.now())
    const server = await opened.origin({
      '/doc': (req, res) => {
        const headers = { etag: '"v1"', 'cache-control': 'max-age=10', date: clock.date() }
        if (req.headers['if-none-match'] === '"v1"') {
          res.writeHead(304, headers).end()
          return
        }
        res.writeHead(200, { ...headers, 'content-type': 'text/plain' }).end('version one')
      }
    })
    installCache({ cache: createCache({ now: clock.now }) })

    expect(await (await globalThis.fetch(`${server.url}/doc`)).text()).toBe('version one')
    clock.advance(30)
    const revalidated = await globalThis.fetch(`${server.url}/doc`)
    expect(revalidated.status).toBe(200)
    expect(revalidated.headers.get('cache-status')).toMatch(/fwd=stale; fwd-status=304/)
    expect(await revalidated.text()).toBe('version one')
    expect(server.seen('/doc').map((seen) => seen.headers['if-none-match'])).toEqual([undefined, '"v1"'])

    const hit = await globalThis.fetch(`${server.url}/doc`)
    expect(hit.headers.get('cache-status')).toMatch(/^cachedfetch; hit/)
    expect(await hit.text()).toBe('version one')
    expect(server.hits('/doc')).toBe(2)
  })
})

describe("Node's global Request and FormData given to cachedFetch (what code that install() serves makes)", () => {
  /** Echoes what the origin got: Content-Length, Content-Type and body. */
  async function echoOrigin (): Promise<string> {
    const server = await opened.origin({
      '/echo': (req, res) => {
        const chunks: Buffer[] = []
        req.on('data', (chunk: Buffer) => chunks.push(chunk))
        req.on('end', () => res.writeHead(200).end(JSON.stringify({ length: req.headers['content-length'] ?? null, type: req.headers['content-type'] ?? null, body: Buffer.concat(chunks).toString() })))
      },
      '/307': (_req, res) => { res.writeHead(307, { location: '/echo' }).end() }
    })
    return server.url
  }

  it('sends a global Request\'s body with its Content-Length and follows a 307 with it, as Node\'s fetch does', async () => {
    const base = await echoOrigin()
    const cachedFetch = createCachedFetch({ dispatcher: opened.agent() })
    const native = await globalThis.fetch(new globalThis.Request(`${base}/307`, { method: 'POST', body: 'hello' }))
    const ours = await cachedFetch(new globalThis.Request(`${base}/307`, { method: 'POST', body: 'hello' }))
    expect([ours.url, await ours.json()]).toEqual([native.url, await native.json()])
    expect(native.url).toBe(`${base}/echo`)
  })

  it('sends a global FormData as multipart/form-data, as Node\'s fetch does', async () => {
    const base = await echoOrigin()
    const cachedFetch = createCachedFetch({ dispatcher: opened.agent() })
    const form = new globalThis.FormData()
    form.append('a', '1')
    const sent = await (await cachedFetch(`${base}/echo`, { method: 'POST', body: form })).json() as { type: string, body: string }
    expect(sent.type).toMatch(/^multipart\/form-data; boundary=/)
    expect(sent.body).toContain('name="a"\r\n\r\n1\r\n')
  })
})
