/**
 * A URL's variants written by one process with a second tier: a 304's update reads the shared tier
 * to find what it updates (RFC 9111 §4.3.4), and builds the URL's other variants from memory first,
 * where this process's own writes since that read are (another refresh's, another caller's); a fill
 * of memory from the store never puts an older list over one this process wrote meanwhile. Two
 * refreshes of two variants at once both land; a 304 beside a 200 puts back no older version; new
 * variants asked for one after another while the writes before land late all stay.
 */
import { mkdtempSync } from 'node:fs'
import { rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import KeyvSqlite from '@keyv/sqlite'
import { Keyv } from 'keyv'
import { afterEach, describe, expect, it } from 'vitest'
import { createCache, type Cache, type CacheOptions } from '../src/index.js'
import { adapters, type Client } from './helpers/clients.js'
import type { Origin } from './helpers/origin.js'
import { slowStore, slowWrites } from './helpers/slow-store.js'
import { teardown } from './helpers/teardown.js'
import { manualClock, wholeSecondNow, type ManualClock } from './helpers/time.js'
import { gate, waitFor } from './helpers/wait.js'

describe.each(adapters)('a URL\'s variants written with a second tier, through $name', ({ connect }) => {
  const opened = teardown()
  afterEach(() => opened.close())
  let clock: ManualClock

  /** A slow Map, whose reads the store timeouts wait out. */
  const slow = (): CacheOptions => ({ store: slowStore(30), storeTimeouts: { read: 1000, write: 1000 } })
  /** SQLite on a file of its own, removed after the test, with the default timeouts. */
  const sqlite = (): CacheOptions => {
    const dir = mkdtempSync(join(tmpdir(), 'cachedfetch-variants-'))
    opened.add({ close: () => rm(dir, { recursive: true, force: true }) })
    return { store: new KeyvSqlite({ uri: `sqlite://${join(dir, 'cache.db')}` }) as never }
  }

  async function setup (options: CacheOptions = slow()): Promise<{ cache: Cache, client: Client, origin: Origin }> {
    clock = manualClock(wholeSecondNow())
    const origin = await opened.origin()
    const cache = createCache({ now: clock.now, ...options })
    opened.add({ close: () => cache.close() })
    return { cache, client: opened.add(connect(cache)), origin }
  }

  /**
   * `/v`, varying on Accept-Language; a language's first request gets version 1, later ones
   * `later`, a version 2 after `delay` ms.
   */
  function route (origin: Origin, later: (lang: string) => 'not modified' | 'version 2', delay = 0): void {
    origin.route('/v', async (req, res) => {
      const lang = String(req.headers['accept-language'])
      const fields = { date: clock.date(), 'cache-control': 'max-age=10, stale-while-revalidate=60', vary: 'accept-language' }
      const first = origin.seen('/v').filter((s) => s.headers['accept-language'] === lang).length === 1
      if (first) res.writeHead(200, { ...fields, etag: `"${lang}1"` }).end(`${lang} version 1`)
      else if (later(lang) === 'not modified') res.writeHead(304, { ...fields, etag: `"${lang}1"` }).end()
      else {
        if (delay > 0) await new Promise((resolve) => setTimeout(resolve, delay))
        res.writeHead(200, { ...fields, etag: `"${lang}2"` }).end(`${lang} version 2`)
      }
    })
  }

  /** Stores both languages' version 1, then lets both go stale. */
  async function storedThenStale (cache: Cache, client: Client, url: string): Promise<void> {
    await client.send(url, { headers: { 'accept-language': 'en' } })
    await client.send(url, { headers: { 'accept-language': 'fr' } })
    await cache.flush()
    clock.advance(30)
  }

  /** Both languages' stale hits at once, and their refreshes to their end. */
  async function refreshedAtOnce (cache: Cache, client: Client, origin: Origin, url: string): Promise<void> {
    await Promise.all([client.send(url, { headers: { 'accept-language': 'en' } }), client.send(url, { headers: { 'accept-language': 'fr' } })])
    await waitFor(() => origin.hits('/v') === 4, 'both refreshes')
    await cache.flush()
  }

  it('freshens both variants when their 304 refreshes run at once', async () => {
    const { cache, client, origin } = await setup()
    route(origin, () => 'not modified')
    const url = `${origin.url}/v`
    await storedThenStale(cache, client, url)
    await refreshedAtOnce(cache, client, origin, url)
    const en = await client.send(url, { headers: { 'accept-language': 'en' } })
    const fr = await client.send(url, { headers: { 'accept-language': 'fr' } })
    expect([en.header('cache-status'), fr.header('cache-status')]).toEqual(['cachedfetch; hit; ttl=10', 'cachedfetch; hit; ttl=10'])
  })

  it.each([
    { name: 'a slow Map', options: slow },
    { name: 'SQLite', options: sqlite }
  ])('puts back no older version of a variant a 200 refresh replaced beside another\'s 304 refresh ($name)', async ({ options }) => {
    const { cache, client, origin } = await setup(options())
    route(origin, (lang) => lang === 'en' ? 'not modified' : 'version 2')
    const url = `${origin.url}/v`
    await storedThenStale(cache, client, url)
    await refreshedAtOnce(cache, client, origin, url)
    const en = await client.send(url, { headers: { 'accept-language': 'en' } })
    const fr = await client.send(url, { headers: { 'accept-language': 'fr' } })
    expect([en.header('cache-status'), fr.body, fr.header('cache-status')]).toEqual(['cachedfetch; hit; ttl=10', 'fr version 2', 'cachedfetch; hit; ttl=10'])
  })

  it('puts back no older version of a variant its caller replaced while another\'s background 304 was on its way', async () => {
    const { cache, client, origin } = await setup()
    route(origin, (lang) => lang === 'en' ? 'not modified' : 'version 2', 10)
    const url = `${origin.url}/v`
    await storedThenStale(cache, client, url)
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

  // Found by a hunt: a request for another variant, while a write was still landing, read the
  // store, and memory took the store's older list over its own.
  it.each([
    ['memory holds them all', {}],
    ['memory holds only some', { maxSize: 1500 }]
  ])('keeps every variant it stored while their writes land late (%s), and none at an older version', async (_what, bound) => {
    const { cache, client, origin } = await setup({ store: slowWrites(50), storeTimeouts: { read: 1000, write: 1000 }, ...bound })
    let version = 1
    origin.route('/l', (req, res) => {
      res.writeHead(200, { date: clock.date(), 'cache-control': 'max-age=600', vary: 'accept-language' }).end(`${String(req.headers['accept-language'])} v${version}`.padEnd(400, '.'))
    })
    const url = `${origin.url}/l`
    const get = async (lang: string, init: { cache?: 'reload' } = {}): Promise<string> => {
      const reply = await client.send(url, { headers: { 'accept-language': lang }, ...init })
      return `${reply.body.slice(0, 5)} ${/hit/.test(reply.header('cache-status') ?? '') ? 'hit' : 'miss'}`
    }
    await get('en')
    await cache.flush()
    version = 2
    // Reloaded, then other languages asked for, one after another, each while the write before lands.
    expect(await get('en', { cache: 'reload' })).toBe('en v2 miss')
    for (const lang of ['fr', 'de']) expect(await get(lang)).toBe(`${lang} v2 miss`)
    await cache.flush()
    expect([await get('en'), await get('fr'), await get('de')]).toEqual(['en v2 hit', 'fr v2 hit', 'de v2 hit'])
  })

  // Found by a review and a hunt: two writes that read the store at once, each behind the same one
  // landing, stored lists from the same read, and the later dropped the earlier's variant, or put
  // back the version before its reload.
  it.each([
    ['two new variants', 'en', [['de'], ['it']], ['en v2 hit', 'fr v1 hit', 'de v2 hit', 'it v2 hit']],
    ['a reload and a new variant', 'fr', [['en', 'reload'], ['de']], ['en v2 hit', 'fr v2 hit', 'de v2 hit']]
  ] as const)('keeps %s asked for at once while another write of the URL lands, memory holding only some', async (_what, reloaded, atOnce, after) => {
    const { cache, client, origin } = await setup({ store: slowWrites(50), storeTimeouts: { read: 1000, write: 1000 }, maxSize: 1500 })
    let version = 1
    origin.route('/c', (req, res) => {
      res.writeHead(200, { date: clock.date(), 'cache-control': 'max-age=600', vary: 'accept-language' }).end(`${String(req.headers['accept-language'])} v${version}`.padEnd(400, '.'))
    })
    const url = `${origin.url}/c`
    const get = async (lang: string, mode?: 'reload'): Promise<string> => {
      const reply = await client.send(url, { headers: { 'accept-language': lang }, ...(mode === undefined ? {} : { cache: mode }) })
      return `${reply.body.slice(0, 5)} ${/hit/.test(reply.header('cache-status') ?? '') ? 'hit' : 'miss'}`
    }
    for (const lang of ['en', 'fr']) {
      await get(lang)
      await cache.flush()
    }
    version = 2
    // A reload, whose write lands late; then the two at once.
    await get(reloaded, 'reload')
    await Promise.all(atOnce.map(([lang, mode]) => get(lang, mode)))
    await cache.flush()
    const seen = origin.hits('/c')
    const answers = []
    for (const answer of after) answers.push(await get(answer.slice(0, 2)))
    expect(answers).toEqual(after)
    expect(origin.hits('/c')).toBe(seen)
  })

  // Found by a review of the commit before: the 304's update, which began later, refused the reload's write.
  it('keeps a reload\'s new representation over a late 304 for the old one whose update read the store first', async () => {
    // A store whose reads, while held, wait until the test lets each go: its answers come out of order.
    const map = new Map<string, unknown>()
    const held: Array<() => void> = []
    let holding = false
    const gated = Object.assign(new Map(), {
      get: async (name: string) => {
        if (holding) await new Promise<void>((resolve) => held.push(resolve))
        return map.get(name)
      },
      set: (name: string, value: unknown) => { map.set(name, value); return true },
      delete: (name: string) => map.delete(name),
      clear: () => map.clear()
    })
    const { cache, client, origin } = await setup({ store: new Keyv({ store: gated }), maxSize: 0, storeTimeouts: { read: 5000, write: 5000 } })
    let version = 1
    const late = gate()
    origin.route('/u', async (req, res) => {
      if (req.headers['if-none-match'] === '"1"') {
        // Answered while the origin still held version 1, and late.
        await late.promise
        res.writeHead(304, { date: clock.date(), etag: '"1"', 'cache-control': 'max-age=600' }).end()
        return
      }
      res.writeHead(200, { date: clock.date(), etag: `"${version}"`, 'cache-control': version === 1 ? 'max-age=1' : 'max-age=600' }).end(`version ${version}`)
    })
    const url = `${origin.url}/u`
    await client.send(url)
    await cache.flush()
    clock.advance(5)
    const revalidating = client.send(url)
    await waitFor(() => origin.hits('/u') === 2, 'the revalidation out')
    version = 2
    holding = true
    expect((await client.send(url, { cache: 'reload' })).body).toBe('version 2')
    await waitFor(() => held.length >= 1, 'the reload\'s write reading')
    const before = held.length
    late.release()
    await revalidating
    await waitFor(() => held.length > before, 'the 304\'s update reading')
    // The store answers the 304's read first, then the reload's.
    held.pop()!()
    await new Promise((resolve) => setTimeout(resolve, 20))
    holding = false
    for (const release of held.splice(0)) release()
    await cache.flush()
    expect((await client.send(url)).body).toBe('version 2')
  })
})
