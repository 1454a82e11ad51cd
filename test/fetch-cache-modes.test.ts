/**
 * The Fetch standard's request cache modes (`init.cache`, Fetch §4.6 HTTP-network-or-cache fetch)
 * through cachedFetch, and the same modes through the interceptor's `cacheMode` dispatch option.
 * What a mode means: default (the HTTP cache as usual), no-store (neither reads nor writes), reload
 * (does not read, does write), no-cache (revalidates whatever is stored), force-cache (takes any
 * stored response, stale or not), only-if-cached (only a stored response, never the network).
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { Agent, request, Request } from 'undici'
import { cacheInterceptor, createCache, createCachedFetch, isCachedFetchError, type CachedFetch } from '../src/index.js'
import { adapters, type Client } from './helpers/clients.js'
import { startOrigin, type Origin } from './helpers/origin.js'
import { teardown } from './helpers/teardown.js'
import { manualClock, wholeSecondNow, type ManualClock } from './helpers/time.js'

/** The adapters, each named with the way it takes a cache mode. */
const modeAdapters = adapters.map((adapter) => ({ ...adapter, name: `${adapter.name} (${adapter.name === 'cachedFetch' ? 'init.cache' : 'cacheMode'})` }))

interface Resource {
  /** Bumped by a test to change the representation (body and ETag). */
  version: number
  cacheControl: string
}

/** `/res`: body `version N`, ETag `"vN"`, answering a matching If-None-Match with a 304. */
function serveResource (origin: Origin, clock: ManualClock, resource: Resource): void {
  origin.route('/res', (req, res) => {
    const etag = `"v${resource.version}"`
    const fields = { date: clock.date(), 'cache-control': resource.cacheControl, etag }
    if (req.headers['if-none-match'] === etag) res.writeHead(304, fields).end()
    else res.writeHead(200, { ...fields, 'content-type': 'text/plain' }).end(`version ${resource.version}`)
  })
}

describe.each(modeAdapters)('cache modes through $name', ({ connect }) => {
  const opened = teardown()
  let clock: ManualClock
  let origin: Origin
  let client: Client
  let resource: Resource
  let url: string

  beforeEach(async () => {
    clock = manualClock(wholeSecondNow())
    origin = await opened.origin()
    client = opened.add(connect(createCache({ now: clock.now })))
    resource = { version: 1, cacheControl: 'max-age=60' }
    serveResource(origin, clock, resource)
    url = `${origin.url}/res`
  })

  afterEach(() => opened.close())

  it('default stores a response and serves it from the cache while fresh', async () => {
    const first = await client.send(url, { cache: 'default' })
    expect(first.header('cache-status')).toBe('cachedfetch; fwd=uri-miss; fwd-status=200; stored')
    clock.advance(5)
    const second = await client.send(url, { cache: 'default' })
    expect(second.body).toBe('version 1')
    expect(second.header('cache-status')).toBe('cachedfetch; hit; ttl=55')
    expect(second.header('age')).toBe('5')
    expect(origin.hits('/res')).toBe(1)
  })

  it('no-store neither reads a fresh entry nor replaces it', async () => {
    await client.send(url)
    resource.version = 2

    const bypassed = await client.send(url, { cache: 'no-store' })
    expect(bypassed.body).toBe('version 2')
    expect(bypassed.header('cache-status')).toBe('cachedfetch; fwd=bypass; fwd-status=200')
    expect(origin.hits('/res')).toBe(2)
    expect(origin.seen('/res')[1]!.headers['if-none-match']).toBeUndefined()

    // The stored entry is still the first response.
    const after = await client.send(url)
    expect(after.body).toBe('version 1')
    expect(after.header('cache-status')).toMatch(/^cachedfetch; hit;/)
    expect(origin.hits('/res')).toBe(2)
  })

  it('no-store does not store a response when nothing is stored', async () => {
    await client.send(url, { cache: 'no-store' })
    const after = await client.send(url)
    expect(after.header('cache-status')).toBe('cachedfetch; fwd=uri-miss; fwd-status=200; stored')
    expect(origin.hits('/res')).toBe(2)
  })

  it('reload goes to the origin unconditionally and stores the answer', async () => {
    await client.send(url)
    resource.version = 2

    const reloaded = await client.send(url, { cache: 'reload' })
    expect(reloaded.body).toBe('version 2')
    expect(reloaded.header('cache-status')).toBe('cachedfetch; fwd=request; fwd-status=200; stored')
    expect(origin.hits('/res')).toBe(2)
    expect(origin.seen('/res')[1]!.headers['if-none-match']).toBeUndefined()

    const after = await client.send(url)
    expect(after.body).toBe('version 2')
    expect(after.header('cache-status')).toMatch(/^cachedfetch; hit;/)
    expect(origin.hits('/res')).toBe(2)
  })

  it('no-cache revalidates a fresh entry', async () => {
    await client.send(url)

    const revalidated = await client.send(url, { cache: 'no-cache' })
    expect(revalidated.body).toBe('version 1')
    expect(revalidated.header('cache-status')).toBe('cachedfetch; fwd=request; fwd-status=304; ttl=60')
    expect(origin.hits('/res')).toBe(2)
    expect(origin.seen('/res')[1]!.headers['if-none-match']).toBe('"v1"')
  })

  it('no-cache revalidates a fresh entry when the caller sets a Cache-Control of its own', async () => {
    await client.send(url)
    clock.advance(10)

    const revalidated = await client.send(url, { cache: 'no-cache', headers: { 'cache-control': 'max-stale=3600' } })
    expect(revalidated.body).toBe('version 1')
    expect(revalidated.header('cache-status')).toBe('cachedfetch; fwd=request; fwd-status=304; ttl=60')
    expect(origin.hits('/res')).toBe(2)
    expect(origin.seen('/res')[1]!.headers['if-none-match']).toBe('"v1"')
  })

  it('no-cache takes the new response when the revalidation gets a 200', async () => {
    await client.send(url)
    clock.advance(10)
    resource.version = 2

    const replaced = await client.send(url, { cache: 'no-cache' })
    expect(replaced.body).toBe('version 2')
    expect(origin.hits('/res')).toBe(2)
    expect(origin.seen('/res')[1]!.headers['if-none-match']).toBe('"v1"')
    const after = await client.send(url)
    expect(after.body).toBe('version 2')
    expect(origin.hits('/res')).toBe(2)
  })

  it('force-cache serves a stale entry without going to the origin', async () => {
    resource.cacheControl = 'max-age=10'
    await client.send(url)
    clock.advance(60)

    const stale = await client.send(url, { cache: 'force-cache' })
    expect(stale.body).toBe('version 1')
    expect(stale.header('cache-status')).toBe('cachedfetch; hit; ttl=-50')
    expect(stale.header('age')).toBe('60')
    expect(origin.hits('/res')).toBe(1)
  })

  it('force-cache fetches and stores when nothing is stored', async () => {
    const first = await client.send(url, { cache: 'force-cache' })
    expect(first.body).toBe('version 1')
    expect(first.header('cache-status')).toBe('cachedfetch; fwd=uri-miss; fwd-status=200; stored')
    expect(origin.hits('/res')).toBe(1)

    const second = await client.send(url)
    expect(second.header('cache-status')).toMatch(/^cachedfetch; hit;/)
    expect(origin.hits('/res')).toBe(1)
  })

  it('only-if-cached serves a stored entry, even a stale one', async () => {
    resource.cacheControl = 'max-age=10'
    await client.send(url)

    const fresh = await client.send(url, { cache: 'only-if-cached' })
    expect(fresh.body).toBe('version 1')
    expect(fresh.header('cache-status')).toBe('cachedfetch; hit; ttl=10')

    clock.advance(60)
    const stale = await client.send(url, { cache: 'only-if-cached' })
    expect(stale.body).toBe('version 1')
    expect(stale.header('cache-status')).toBe('cachedfetch; hit; ttl=-50')
    expect(origin.hits('/res')).toBe(1)
  })
})

describe('cachedFetch cache modes, as fetch reports them', () => {
  const opened = teardown()
  let clock: ManualClock
  let origin: Origin
  let fetch: CachedFetch
  let resource: Resource
  let url: string

  beforeEach(async () => {
    clock = manualClock(wholeSecondNow())
    origin = await opened.origin()
    fetch = createCachedFetch({ cache: createCache({ now: clock.now }), dispatcher: opened.agent() })
    resource = { version: 1, cacheControl: 'max-age=60' }
    serveResource(origin, clock, resource)
    url = `${origin.url}/res`
  })

  afterEach(() => opened.close())

  it('no-store and reload tell the origin not to answer from its own caches', async () => {
    await (await fetch(url, { cache: 'no-store' })).text()
    await (await fetch(url, { cache: 'reload' })).text()
    for (const seen of origin.seen('/res')) {
      expect(seen.headers.pragma).toBe('no-cache')
      expect(seen.headers['cache-control']).toBe('no-cache')
    }
    expect(origin.hits('/res')).toBe(2)
  })

  it('only-if-cached rejects with ERR_ONLY_IF_CACHED when nothing is stored, and the origin sees nothing', async () => {
    const error: unknown = await fetch(url, { cache: 'only-if-cached' }).then(() => undefined, (e: unknown) => e)
    expect(error).toBeInstanceOf(TypeError)
    const cause = (error as TypeError).cause
    expect(isCachedFetchError(cause)).toBe(true)
    expect((cause as { code: string }).code).toBe('ERR_ONLY_IF_CACHED')
    expect(origin.requests).toHaveLength(0)
  })

  it('names the method fetch sends in the ERR_ONLY_IF_CACHED error: a Request\'s own, normalized as fetch normalizes it', async () => {
    const methodOf = async (input: string | Request, init: RequestInit): Promise<unknown> => {
      const error: unknown = await fetch(input, { ...init, cache: 'only-if-cached' }).then(() => undefined, (e: unknown) => e)
      return ((error as TypeError).cause as { method?: string }).method
    }
    expect(await methodOf(new Request(url, { method: 'HEAD' }), {})).toBe('HEAD')
    expect(await methodOf(url, { method: 'head' })).toBe('HEAD')
    expect(origin.requests).toHaveLength(0)
  })

  it.each([
    { name: 'Range', headers: { range: 'bytes=0-0' } },
    { name: 'If-None-Match', headers: { 'if-none-match': '"v0"' } }
  ])('only-if-cached with $name rejects with ERR_ONLY_IF_CACHED when nothing is stored, and the origin sees nothing', async ({ headers }) => {
    const error: unknown = await fetch(url, { cache: 'only-if-cached', headers }).then(() => undefined, (e: unknown) => e)
    expect(error).toBeInstanceOf(TypeError)
    expect(((error as TypeError).cause as { code?: string }).code).toBe('ERR_ONLY_IF_CACHED')
    expect(origin.requests).toHaveLength(0)
  })

  it('takes the cache mode of a Request object', async () => {
    resource.cacheControl = 'max-age=10'
    await (await fetch(url)).text()
    resource.version = 2

    const bypassed = await fetch(new Request(url, { cache: 'no-store' }))
    expect(await bypassed.text()).toBe('version 2')
    expect(bypassed.headers.get('cache-status')).toBe('cachedfetch; fwd=bypass; fwd-status=200')
    expect(origin.hits('/res')).toBe(2)

    clock.advance(60)
    const stale = await fetch(new Request(url, { cache: 'force-cache' }))
    expect(await stale.text()).toBe('version 1')
    expect(stale.headers.get('cache-status')).toBe('cachedfetch; hit; ttl=-50')
    expect(origin.hits('/res')).toBe(2)

    const onlyCached = await fetch(new Request(url, { cache: 'only-if-cached', mode: 'same-origin' }))
    expect(await onlyCached.text()).toBe('version 1')
    expect(origin.hits('/res')).toBe(2)
  })

  it('takes the cache mode of a global Request object', async () => {
    await (await fetch(url)).text()
    resource.version = 2

    const input = new globalThis.Request(url, { cache: 'reload' } as ConstructorParameters<typeof globalThis.Request>[1]) as unknown as Request
    const reloaded = await fetch(input)
    expect(await reloaded.text()).toBe('version 2')
    expect(reloaded.headers.get('cache-status')).toBe('cachedfetch; fwd=request; fwd-status=200; stored')
    expect(origin.hits('/res')).toBe(2)
  })

  it('lets init.cache override the cache mode of a Request object', async () => {
    await (await fetch(url)).text()
    resource.version = 2

    const response = await fetch(new Request(url, { cache: 'force-cache' }), { cache: 'no-store' })
    expect(await response.text()).toBe('version 2')
    expect(origin.hits('/res')).toBe(2)
  })

  it('only-if-cached with a Request object rejects when nothing is stored', async () => {
    const error: unknown = await fetch(new Request(url, { cache: 'only-if-cached', mode: 'same-origin' })).then(() => undefined, (e: unknown) => e)
    expect(error).toBeInstanceOf(TypeError)
    expect(((error as TypeError).cause as { code?: string }).code).toBe('ERR_ONLY_IF_CACHED')
    expect(origin.requests).toHaveLength(0)
  })
})

describe('interceptor only-if-cached', () => {
  it('answers 504 when nothing is stored, and the origin sees nothing', async () => {
    const origin = await startOrigin()
    const agent = new Agent().compose(cacheInterceptor({ cache: createCache() }))
    try {
      // undici's own options type takes cacheMode (the package augments it): no cast.
      const response = await request(`${origin.url}/res`, { dispatcher: agent, cacheMode: 'only-if-cached' })
      await response.body.text()
      expect(response.statusCode).toBe(504)
      expect(response.headers['cache-status']).toBe('cachedfetch; detail=only-if-cached')
      expect(origin.requests).toHaveLength(0)
    } finally {
      await agent.close()
      await origin.close()
    }
  })

  it.each([
    { name: 'Range', headers: { range: 'bytes=0-0' } },
    { name: 'If-None-Match', headers: { 'if-none-match': '"v0"' } }
  ])('answers 504 to a request with $name when nothing is stored, and the origin sees nothing', async ({ headers }) => {
    const origin = await startOrigin()
    const agent = new Agent().compose(cacheInterceptor({ cache: createCache() }))
    try {
      const response = await request(`${origin.url}/res`, { dispatcher: agent, cacheMode: 'only-if-cached', cachePolicy: { staleIfError: 0 }, headers })
      await response.body.text()
      expect(response.statusCode).toBe(504)
      expect(response.headers['cache-status']).toBe('cachedfetch; detail=only-if-cached')
      expect(origin.requests).toHaveLength(0)
    } finally {
      await agent.close()
      await origin.close()
    }
  })
})
