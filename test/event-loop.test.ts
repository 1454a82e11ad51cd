/**
 * Hits from memory and the event loop, through both faces: a hit needs no I/O, so a caller that
 * awaits one after another would never let the loop turn. Answers are given at once until they
 * have held the loop for about a millisecond; then the next waits for its turn
 * (src/adapters/turns.ts).
 */
import { setImmediate as turn } from 'node:timers/promises'
import { afterEach, describe, expect, it } from 'vitest'
import { request } from 'undici'
import { createCache, createCachedFetch, cacheInterceptor } from '../src/index.js'
import { bytes, respond } from './helpers/origin.js'
import { teardown } from './helpers/teardown.js'

const opened = teardown()

afterEach(() => opened.close())

/** A client of each face over a fresh cache; `get` resolves to the Cache-Status and the body read. */
type Get = (url: string, signal?: AbortSignal) => Promise<{ status: string, body: Buffer }>

const faces: Array<[string, () => Get]> = [
  ['the interceptor', () => {
    const dispatcher = opened.agent().compose(cacheInterceptor({ cache: createCache() }))
    return async (url, signal) => {
      const response = await request(url, { dispatcher, signal })
      return { status: String(response.headers['cache-status']), body: Buffer.from(await response.body.arrayBuffer()) }
    }
  }],
  ['cachedFetch()', () => {
    const cachedFetch = createCachedFetch({ cache: createCache(), dispatcher: opened.agent() })
    return async (url, signal) => {
      const response = await cachedFetch(url, { signal })
      return { status: String(response.headers.get('cache-status')), body: Buffer.from(await response.arrayBuffer()) }
    }
  }]
]

describe.each(faces)('hits from memory through %s', (_face, client) => {
  async function stored (): Promise<{ get: Get, url: string, body: Buffer, originHits: () => number }> {
    // A small body: a large one is played in slices, and the consumer's pauses between them turn the loop anyway.
    const body = bytes(1024, 3)
    const server = await opened.origin({ '/small': respond(200, { 'cache-control': 'max-age=60' }, body) })
    const get = client()
    const url = `${server.url}/small`
    expect((await get(url)).status).toMatch(/fwd=uri-miss/)
    return { get, url, body, originHits: () => server.hits('/small') }
  }

  it('let the event loop turn while a caller awaits one after another, not only once they are over', async () => {
    const { get, url, body, originHits } = await stored()
    // Turns counted by an immediate that sets itself again each time.
    let turns = 0
    let counting = true
    const count = (): void => {
      turns++
      if (counting) setImmediate(count)
    }
    setImmediate(count)
    const began = performance.now()
    while (performance.now() - began < 60) {
      const hit = await get(url)
      expect(hit.status).toMatch(/^cachedfetch; hit/)
      expect(hit.body.equals(body)).toBe(true)
    }
    counting = false
    // On microtasks alone the loop would not turn once in those 60 ms; held up to a millisecond at
    // a time, it turns every millisecond or two (whether it waits at every hit: the test below), and
    // a few times at least on a machine busy with other work.
    expect(turns).toBeGreaterThanOrEqual(5)
    expect(originHits()).toBe(1)
  })

  it('answer without waiting for the event loop when it has just turned, not each at its next turn', async () => {
    const { get, url, body } = await stored()
    await turn()
    let turned = false
    setImmediate(() => { turned = true })
    const hit = await get(url)
    expect(hit.status).toMatch(/^cachedfetch; hit/)
    expect(hit.body.equals(body)).toBe(true)
    expect(turned).toBe(false)
  })

  it('reject a caller that aborts while its hit waits for the turn, with the signal\'s reason, as a request aborted before its answer', async () => {
    const { get, url, body } = await stored()
    await turn()
    const controller = new AbortController()
    // Hits asked one after another inside one task, for longer than answers from memory may hold the loop: the last ones wait for its turn.
    const calls: Array<Promise<{ status: string, body: Buffer }>> = []
    const began = performance.now()
    while (performance.now() - began < 5) calls.push(get(url, controller.signal))
    controller.abort()
    const settled = await Promise.allSettled(calls)
    // cachedFetch() answered the first ones before the abort; undici.request() plays even those on a
    // microtask, so the abort reaches them all first. None that waited is answered.
    const answered = settled.filter((s) => s.status === 'fulfilled')
    const rejected = settled.filter((s) => s.status === 'rejected')
    for (const s of answered) expect(s.value.body.equals(body)).toBe(true)
    expect(rejected.length).toBeGreaterThan(0)
    for (const s of rejected) expect(s.reason).toMatchObject({ name: 'AbortError' })
    expect(settled.findIndex((s) => s.status === 'rejected')).toBe(answered.length)
  })
})
