/**
 * Review of cachedFetch followers (src/adapters/follower.ts): cases where a follower's answer, or
 * the stats, differ from what undici.fetch through the interceptor gave before.
 */
import { Agent } from 'undici'
import { afterEach, describe, expect, it } from 'vitest'
import { createCache, createCachedFetch, type Cache, type CacheOptions } from '../src/index.js'
import type { Origin, Route } from './helpers/origin.js'
import { teardown } from './helpers/teardown.js'
import { gate, waitFor, within, type Gate } from './helpers/wait.js'

const opened = teardown()
afterEach(() => opened.close())

function gated (open: Gate, answer: Route): Route {
  return async (req, res, seen) => {
    await open.promise
    await answer(req, res, seen)
  }
}

async function setUp (routes: Record<string, Route>, options?: CacheOptions, agent: Agent = opened.agent()): Promise<{ server: Origin, cache: Cache, cachedFetch: ReturnType<typeof createCachedFetch> }> {
  const server = await opened.origin(routes)
  const cache = createCache(options)
  const cachedFetch = createCachedFetch({ cache, dispatcher: agent })
  return { server, cache, cachedFetch }
}

describe('cachedFetch followers (review)', () => {
  it('a follower of a request whose stored redirect leads to a flight gets the redirected response, as fetch gives it', async () => {
    const open = gate()
    const { server, cache, cachedFetch } = await setUp({
      '/from': (_req, res) => { res.writeHead(301, { location: '/to', 'cache-control': 'max-age=60' }).end() },
      '/to': gated(open, (_req, res) => { res.writeHead(200, { 'cache-control': 'max-age=60' }).end('arrived') })
    })
    // The redirect is stored; /to is not yet.
    const first = cachedFetch(`${server.url}/from`)
    await waitFor(() => server.hits('/to') === 1, 'the first request to reach /to')
    open.release()
    expect(await (await first).text()).toBe('arrived')
    await cache.invalidate(`${server.url}/to`)
    const second = gate()
    server.route('/to', gated(second, (_req, res) => { res.writeHead(200, { 'cache-control': 'max-age=60' }).end('arrived') }))

    const leader = cachedFetch(`${server.url}/from`)
    const follower = cachedFetch(`${server.url}/from`)
    await waitFor(() => server.hits('/to') === 2, 'the leader to reach /to')
    second.release()
    const responses = await Promise.all([leader, follower])
    for (const response of responses) {
      expect([response.status, response.redirected, response.url]).toEqual([200, true, `${server.url}/to`])
      expect(await response.text()).toBe('arrived')
    }
  })

  it('a follower whose signal aborts before the leader has reached the cache is rejected at once, as fetch rejects', async () => {
    const blocker = gate()
    const agent = opened.add(new Agent({ connections: 1 }))
    const { server, cachedFetch } = await setUp({
      '/slow': gated(blocker, (_req, res) => { res.writeHead(200).end('slow') }),
      '/doc': (_req, res) => { res.writeHead(200, { 'cache-control': 'max-age=60' }).end('doc') }
    }, undefined, agent)
    // The one connection is busy: /doc waits in the pool's queue.
    const slow = cachedFetch(`${server.url}/slow`, { cache: 'no-store' })
    await waitFor(() => server.hits('/slow') === 1, 'the slow request to reach the origin')
    const leader = cachedFetch(`${server.url}/doc`)
    const quitter = new AbortController()
    const quitting = cachedFetch(`${server.url}/doc`, { signal: quitter.signal })
    quitting.catch(() => {})
    quitter.abort()
    try {
      await expect(within(quitting, 'the aborted follower')).rejects.toMatchObject({ name: 'AbortError' })
    } finally {
      blocker.release()
      await (await slow).text()
      await (await leader).text()
    }
  })

  it('a follower whose signal aborts once its whole body has come, but before it is read, gets an AbortError from its body, as fetch does', async () => {
    const open = gate()
    const { server, cache, cachedFetch } = await setUp({
      '/doc': gated(open, (_req, res) => { res.writeHead(200, { 'cache-control': 'max-age=60' }).end('the body') })
    })
    const before = cache.stats().misses
    const leader = cachedFetch(`${server.url}/doc`)
    const quitter = new AbortController()
    const follower = cachedFetch(`${server.url}/doc`, { signal: quitter.signal })
    await waitFor(() => cache.stats().misses - before >= 2, 'both calls to reach the cache')
    open.release()
    const [, response] = await Promise.all([leader, follower])
    expect(response.headers.get('cache-status')?.endsWith('; collapsed')).toBe(true)
    await waitFor(() => cache.flights.size === 0, 'the exchange to end')
    quitter.abort()
    await expect(response.text()).rejects.toMatchObject({ name: 'AbortError' })
  })

  it('a caller that comes after an invalidation counts one miss, not two', async () => {
    const open = gate()
    const { server, cache, cachedFetch } = await setUp({
      '/doc': gated(open, (_req, res) => { res.writeHead(200, { 'cache-control': 'max-age=60' }).end('doc') })
    })
    const leader = cachedFetch(`${server.url}/doc`)
    await waitFor(() => server.hits('/doc') === 1, 'the leader to reach the origin')
    await cache.invalidate(`${server.url}/doc`)
    const before = cache.stats().misses
    const later = cachedFetch(`${server.url}/doc`)
    await waitFor(() => server.hits('/doc') === 2, 'the later caller to send a request of its own')
    open.release()
    await (await leader).text()
    await (await later).text()
    expect(cache.stats().misses - before).toBe(1)
  })

  it('identical requests to a host the cache is off for go out at once, as before (no waiting on each other)', async () => {
    let arrived = 0
    const both = gate()
    const { server, cachedFetch } = await setUp({
      // Each answer waits until both requests have arrived.
      '/doc': async (_req, res) => {
        if (++arrived === 2) both.release()
        await both.promise
        res.writeHead(200).end('doc')
      }
    }, { hosts: { '127.0.0.1': { enabled: false } } })
    const calls = [cachedFetch(`${server.url}/doc`), cachedFetch(`${server.url}/doc`)]
    const responses = await within(Promise.all(calls), 'both requests', 3000)
    for (const response of responses) expect(await response.text()).toBe('doc')
  })
})
