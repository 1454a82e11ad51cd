/**
 * A URL's variants written by one process with a second tier: a 304's update reads the shared tier
 * to find what it updates (RFC 9111 §4.3.4), and builds the URL's other variants from memory first,
 * where this process's own writes since that read are (another refresh's, another caller's); a fill
 * of memory from the store never puts an older list over one this process wrote meanwhile. Two
 * refreshes of two variants at once both land; a 304 beside a 200 puts back no older version.
 */
import { mkdtempSync } from 'node:fs'
import { rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import KeyvSqlite from '@keyv/sqlite'
import { Keyv } from 'keyv'
import { afterEach, describe, expect, it } from 'vitest'
import { createCache, type Cache } from '../src/index.js'
import { adapters, type Client } from './helpers/clients.js'
import { teardown } from './helpers/teardown.js'
import { manualClock, wholeSecondNow, type ManualClock } from './helpers/time.js'
import { waitFor } from './helpers/wait.js'

/** A Keyv on a Map whose reads take `ms` (a store across a network, a busy SQLite file). */
function slowStore (ms: number): Keyv {
  const map = new Map<string, unknown>()
  const store = Object.assign(new Map(), {
    get: async (name: string) => { const value = map.get(name); await new Promise((resolve) => setTimeout(resolve, ms)); return value },
    set: (name: string, value: unknown) => { map.set(name, value); return true },
    delete: (name: string) => map.delete(name),
    clear: () => map.clear()
  })
  return new Keyv({ store })
}

describe.each(adapters)('two variants refreshed at once, memory + a second tier, through $name', ({ connect }) => {
  const opened = teardown()
  afterEach(() => opened.close())
  let clock: ManualClock

  async function setup (): Promise<{ cache: Cache, client: Client, origin: Awaited<ReturnType<typeof opened.origin>> }> {
    clock = manualClock(wholeSecondNow())
    const origin = await opened.origin()
    const cache = createCache({ now: clock.now, store: slowStore(30), storeTimeouts: { read: 1000, write: 1000 } })
    opened.add({ close: () => cache.close() })
    return { cache, client: opened.add(connect(cache)), origin }
  }

  /** `/v`, varying on Accept-Language; a language's first request gets version 1, later ones `later`. */
  function route (origin: Awaited<ReturnType<typeof opened.origin>>, later: (lang: string) => 'not modified' | 'version 2'): void {
    origin.route('/v', (req, res) => {
      const lang = String(req.headers['accept-language'])
      const fields = { date: clock.date(), 'cache-control': 'max-age=10, stale-while-revalidate=60', vary: 'accept-language' }
      const first = origin.seen('/v').filter((s) => s.headers['accept-language'] === lang).length === 1
      if (first) res.writeHead(200, { ...fields, etag: `"${lang}1"` }).end(`${lang} version 1`)
      else if (later(lang) === 'not modified') res.writeHead(304, { ...fields, etag: `"${lang}1"` }).end()
      else res.writeHead(200, { ...fields, etag: `"${lang}2"` }).end(`${lang} version 2`)
    })
  }

  it('both 304 refreshes freshen their own variant', async () => {
    const { cache, client, origin } = await setup()
    route(origin, () => 'not modified')
    const url = `${origin.url}/v`
    await client.send(url, { headers: { 'accept-language': 'en' } })
    await client.send(url, { headers: { 'accept-language': 'fr' } })
    await cache.flush()
    clock.advance(30)
    await Promise.all([client.send(url, { headers: { 'accept-language': 'en' } }), client.send(url, { headers: { 'accept-language': 'fr' } })])
    await waitFor(() => origin.hits('/v') === 4, 'both refreshes')
    await cache.flush()
    const en = await client.send(url, { headers: { 'accept-language': 'en' } })
    const fr = await client.send(url, { headers: { 'accept-language': 'fr' } })
    expect([en.header('cache-status'), fr.header('cache-status')]).toEqual(['cachedfetch; hit; ttl=10', 'cachedfetch; hit; ttl=10'])
  })

  it('a 304 refresh of one variant does not put back the older version of another that a 200 refresh replaced', async () => {
    const { cache, client, origin } = await setup()
    route(origin, (lang) => lang === 'en' ? 'not modified' : 'version 2')
    const url = `${origin.url}/v`
    await client.send(url, { headers: { 'accept-language': 'en' } })
    await client.send(url, { headers: { 'accept-language': 'fr' } })
    await cache.flush()
    clock.advance(30)
    await Promise.all([client.send(url, { headers: { 'accept-language': 'en' } }), client.send(url, { headers: { 'accept-language': 'fr' } })])
    await waitFor(() => origin.hits('/v') === 4, 'both refreshes')
    await cache.flush()
    const fr = await client.send(url, { headers: { 'accept-language': 'fr' } })
    expect([fr.body, fr.header('cache-status')]).toEqual(['fr version 2', 'cachedfetch; hit; ttl=10'])
  })
})

describe.each(adapters)('a caller reads a variant back older than it just got, through $name', ({ connect }) => {
  const opened = teardown()
  afterEach(() => opened.close())

  it('a background 304 of one variant does not put back the version of another that its caller replaced meanwhile', async () => {
    const clock = manualClock(wholeSecondNow())
    const origin = await opened.origin()
    const cache = createCache({ now: clock.now, store: slowStore(30), storeTimeouts: { read: 1000, write: 1000 } })
    opened.add({ close: () => cache.close() })
    const client = opened.add(connect(cache))
    origin.route('/v', async (req, res) => {
      const lang = String(req.headers['accept-language'])
      const fields = { date: clock.date(), 'cache-control': 'max-age=10, stale-while-revalidate=60', vary: 'accept-language' }
      const first = origin.seen('/v').filter((s) => s.headers['accept-language'] === lang).length === 1
      if (first) res.writeHead(200, { ...fields, etag: `"${lang}1"` }).end(`${lang} version 1`)
      else if (lang === 'en') res.writeHead(304, { ...fields, etag: '"en1"' }).end()
      else {
        await new Promise((resolve) => setTimeout(resolve, 10))
        res.writeHead(200, { ...fields, etag: '"fr2"' }).end('fr version 2')
      }
    })
    const url = `${origin.url}/v`
    await client.send(url, { headers: { 'accept-language': 'en' } })
    await client.send(url, { headers: { 'accept-language': 'fr' } })
    await cache.flush()
    clock.advance(30)
    // en: a stale-while-revalidate hit, whose refresh gets a 304; fr: a caller that must see the origin's answer.
    const [, fr] = await Promise.all([
      client.send(url, { headers: { 'accept-language': 'en' } }),
      client.send(url, { headers: { 'accept-language': 'fr', 'cache-control': 'no-cache' } })
    ])
    expect(fr.body).toBe('fr version 2')
    await cache.flush()
    const again = await client.send(url, { headers: { 'accept-language': 'fr' } })
    expect([again.body, again.header('cache-status')]).toEqual(['fr version 2', 'cachedfetch; hit; ttl=10'])
  })
})

describe.each(adapters)('two variants refreshed at once, memory + SQLite, through $name', ({ connect }) => {
  const opened = teardown()
  afterEach(() => opened.close())

  it('a 304 refresh of one variant does not put back the older version of another that a 200 refresh replaced (SQLite)', async () => {
    const clock = manualClock(wholeSecondNow())
    const origin = await opened.origin()
    const dir = mkdtempSync(join(tmpdir(), 'cachedfetch-variants-'))
    opened.add({ close: () => rm(dir, { recursive: true, force: true }) })
    const file = join(dir, 'cache.db')
    const cache = createCache({ now: clock.now, store: new KeyvSqlite({ uri: `sqlite://${file}` }) as never })
    opened.add({ close: () => cache.close() })
    const client = opened.add(connect(cache))
    origin.route('/v', (req, res) => {
      const lang = String(req.headers['accept-language'])
      const fields = { date: clock.date(), 'cache-control': 'max-age=10, stale-while-revalidate=60', vary: 'accept-language' }
      const first = origin.seen('/v').filter((s) => s.headers['accept-language'] === lang).length === 1
      if (first) res.writeHead(200, { ...fields, etag: `"${lang}1"` }).end(`${lang} version 1`)
      else if (lang === 'en') res.writeHead(304, { ...fields, etag: `"${lang}1"` }).end()
      else res.writeHead(200, { ...fields, etag: `"${lang}2"` }).end(`${lang} version 2`)
    })
    const url = `${origin.url}/v`
    await client.send(url, { headers: { 'accept-language': 'en' } })
    await client.send(url, { headers: { 'accept-language': 'fr' } })
    await cache.flush()
    clock.advance(30)
    await Promise.all([client.send(url, { headers: { 'accept-language': 'en' } }), client.send(url, { headers: { 'accept-language': 'fr' } })])
    await waitFor(() => origin.hits('/v') === 4, 'both refreshes')
    await cache.flush()
    const en = await client.send(url, { headers: { 'accept-language': 'en' } })
    const fr = await client.send(url, { headers: { 'accept-language': 'fr' } })
    expect([en.header('cache-status'), fr.body, fr.header('cache-status')]).toEqual(['cachedfetch; hit; ttl=10', 'fr version 2', 'cachedfetch; hit; ttl=10'])
  })
})
