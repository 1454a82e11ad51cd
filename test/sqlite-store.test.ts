/**
 * SQLite as the store, built as a user builds it: a `KeyvSqlite` adapter on a real file (a fresh
 * temporary directory per test), which cachedfetch wraps in a Keyv of its own, so that a row is
 * keyed `<namespace>:<cache key>`. Entries outlive the cache that wrote them (a second cache on the
 * file, a second process) byte for byte; two processes write the file at once without a request
 * failing; a corrupt row is a miss, reported and replaced; namespaces and invalidations reach the
 * rows; and a store that cannot be opened, or is locked for longer than the store timeouts, never
 * costs a request more than the origin takes.
 */
import { execFile } from 'node:child_process'
import diagnostics from 'node:diagnostics_channel'
import { mkdtempSync, readFileSync } from 'node:fs'
import { rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'
import { afterEach, describe, expect, it } from 'vitest'
import KeyvSqlite from '@keyv/sqlite'
import sqlite3 from 'sqlite3'
import { createCache, createCachedFetch, type Cache, type CacheOptions } from '../src/index.js'
import { BINARY, getBytes, storedFields } from './helpers/binary.js'
import { adapters, type Client } from './helpers/clients.js'
import { respond, type Origin } from './helpers/origin.js'
import { teardown } from './helpers/teardown.js'
import { gate, settle, waitFor, within } from './helpers/wait.js'
import type { Job, JobReport } from './processes/sqlite-client.js'

const CLIENT = fileURLToPath(new URL('./processes/sqlite-client.ts', import.meta.url))
const FRAME = /^\d+\ncachedfetch\/3 /
const HIT = /^cachedfetch; hit; ttl=\d+$/
const FRESH = { 'content-type': 'text/plain', 'cache-control': 'max-age=60' }
/** The sweep the README gives, its SQL between the backquotes. */
const README_SWEEP = /const SWEEP = `([^`]+)`/

const opened = teardown()

afterEach(() => opened.close())

/** A database file in a directory of its own, removed after the test (after every connection to it). */
function databaseFile (): string {
  const dir = mkdtempSync(join(tmpdir(), 'cachedfetch-sqlite-'))
  opened.add({ close: () => rm(dir, { recursive: true, force: true }) })
  return join(dir, 'cache.db')
}

/** A cache on its own adapter (its own connection, an empty memory tier), both closed after the test. */
function sqliteCache (file: string, options: CacheOptions = {}): Cache {
  const adapter = new KeyvSqlite({ uri: `sqlite://${file}`, busyTimeout: 5000 })
  // Closed even when createCache refuses the options: the adapter is opening the file already. An
  // adapter whose file never opened rejects its disconnect with the error it reported then.
  opened.add({ close: () => adapter.disconnect().catch(() => {}) })
  const cache = createCache({ store: adapter, namespace: 'x', ...options })
  opened.add({ close: () => cache.close() })
  return cache
}

/** A connection of the test's own, to look at and tamper with the rows, as another program would. */
async function sql<T = Record<string, unknown>> (file: string, query: string, ...params: unknown[]): Promise<T[]> {
  const db = new sqlite3.Database(file)
  db.configure('busyTimeout', 5000)
  try {
    return await new Promise<T[]>((resolve, reject) => db.all(query, params, (error: Error | null, rows: T[]) => error === null ? resolve(rows) : reject(error)))
  } finally {
    await new Promise<void>((resolve) => db.close(() => resolve()))
  }
}

const rowKeys = async (file: string): Promise<string[]> =>
  (await sql<{ key: string }>(file, 'SELECT key FROM keyv ORDER BY key')).map((row) => row.key)
const rowValue = async (file: string, key: string): Promise<string | undefined> =>
  (await sql<{ value: string }>(file, 'SELECT value FROM keyv WHERE key = ?', key))[0]?.value
const storedCount = (cache: Cache, count: number): Promise<void> =>
  waitFor(() => cache.stats().stored >= count, `${count} entries written to SQLite`)
/** A path in a directory that does not exist: SQLite cannot create the file. */
const unopenable = (): string => join(databaseFile(), '..', 'missing', 'cache.db')

type StoreError = { key?: unknown, reason?: unknown, error?: unknown }

/** The store-error events published from now until the end of the test. */
function storeErrors (): StoreError[] {
  const events: StoreError[] = []
  const listen = (event: unknown): void => { events.push(event as StoreError) }
  diagnostics.subscribe('cachedfetch:store-error', listen)
  opened.add({ close: () => Promise.resolve(void diagnostics.unsubscribe('cachedfetch:store-error', listen)) })
  return events
}

/** Whether a usable entry is stored for `url`, asked without reaching the origin (RFC 9111 §5.2.1.7). */
async function peek (client: Client, url: string): Promise<'hit' | 'absent'> {
  const reply = await client.send(url, { headers: { 'cache-control': 'only-if-cached' } })
  if (reply.status === 504 && reply.header('cache-status') === 'cachedfetch; detail=only-if-cached') return 'absent'
  expect(reply.header('cache-status')).toMatch(HIT)
  return 'hit'
}

/** Runs test/processes/sqlite-client.ts in a process of its own and reads its report. */
async function runClient (job: Job): Promise<JobReport> {
  const { stdout } = await promisify(execFile)(process.execPath, ['--import', 'tsx', CLIENT, JSON.stringify(job)], { timeout: 30_000 })
  return JSON.parse(stdout) as JobReport
}

/** An origin whose `paths` answer with the path and how often it was asked (`/doc #2`), fresh for a minute. */
async function countingOrigin (paths: readonly string[], extra: Record<string, Record<string, string>> = {}): Promise<Origin> {
  const origin = await opened.origin()
  for (const path of paths) {
    origin.route(path, (_req, res) => {
      res.writeHead(200, { ...FRESH, ...extra[path] })
      res.end(`${path} #${origin.hits(path)}`)
    })
  }
  return origin
}

/** Another program's connection holding the database's lock (BEGIN EXCLUSIVE) until released. */
async function lockExclusively (file: string): Promise<() => Promise<void>> {
  const db = new sqlite3.Database(file)
  const exec = (query: string): Promise<void> => new Promise((resolve, reject) => db.exec(query, (error: Error | null) => error === null ? resolve() : reject(error)))
  await exec('BEGIN EXCLUSIVE')
  let released: Promise<void> | undefined
  const release = (): Promise<void> => released ??= exec('COMMIT').then(() => new Promise<void>((resolve) => db.close(() => resolve())))
  opened.add({ close: release })
  return release
}

/** Rows that are no entry for `GET <url>/doc`, made from its real row and the real row of /other. */
const corruptRows: Array<[string, (own: string, other: string) => string]> = [
  ['garbage text', () => 'this is not a cachedfetch entry'],
  ['a frame cut short in its body', (own) => own.slice(0, -3)],
  ['a frame cut short in its header', (own) => own.slice(0, own.indexOf('"e":'))],
  ['a cachedfetch/2 frame (the previous format)', (own) => own.replace('cachedfetch/3 ', 'cachedfetch/2 ')],
  ['a frame stored under another key', (_own, other) => other]
]

/** Paths tagged by Cache-Tag (comma-separated) or Surrogate-Key (space-separated); t10 is not t1. */
const TAGGED: Record<string, Record<string, string>> = {
  '/users/1': { 'cache-tag': 't1, t2' },
  '/users/2': { 'surrogate-key': 't1 t3' },
  '/posts/1': { 'surrogate-key': 't1 t3' },
  '/posts/2': { 'cache-tag': 't1, t2' },
  '/about': { 'cache-tag': 't10' }
}

describe.each(adapters)('SQLite as store through $name', (adapter) => {
  /** A cache on `file` and a client on it, both closed after the test. */
  const open = (file: string, options: CacheOptions = {}): { cache: Cache, client: Client } => {
    const cache = sqliteCache(file, options)
    return { cache, client: opened.add(adapter.connect(cache)) }
  }

  it('writes a miss to the row x:GET <url> as a frame, which a second cache on its own connection serves byte for byte', async () => {
    const origin = await opened.origin({
      '/binary': (_req, res) => {
        res.writeHead(200, [
          ['content-type', 'application/octet-stream'], ['content-length', '256'], ['cache-control', 'max-age=60'],
          ['etag', '"bytes-v1"'], ['x-note', 'first'], ['x-note', 'second']
        ])
        res.end(BINARY)
      }
    })
    const url = `${origin.url}/binary`
    const file = databaseFile()
    const first = sqliteCache(file)
    const miss = await getBytes(adapter.name, first, url, opened.agent())
    expect(miss.headers['cache-status']).toBe('cachedfetch; fwd=uri-miss; fwd-status=200; stored')
    await storedCount(first, 1)
    expect(await rowKeys(file)).toEqual([`x:GET ${url}`])
    // Keyv's expiry, a newline, then our frame: stored as it is, not inside Keyv's JSON.
    expect(await rowValue(file, `x:GET ${url}`)).toMatch(FRAME)

    const hit = await getBytes(adapter.name, sqliteCache(file), url, opened.agent())
    expect(hit.headers['cache-status']).toMatch(HIT)
    expect(hit.body.equals(BINARY)).toBe(true)
    expect(storedFields(hit.headers)).toEqual(storedFields(miss.headers))
    expect(storedFields(hit.headers)).toMatchObject({ 'x-note': 'first, second', etag: '"bytes-v1"', 'content-length': '256' })
    expect(origin.hits('/binary')).toBe(1)
  })

  it('serves the next request from memory as soon as a miss is answered, while the row is still being read and written', async () => {
    const origin = await countingOrigin(['/doc'])
    const { cache, client } = open(databaseFile())
    const url = `${origin.url}/doc`
    const miss = await client.send(url)
    expect(miss.header('cache-status')).toBe('cachedfetch; fwd=uri-miss; fwd-status=200; stored')
    const next = await client.send(url)
    expect([next.header('cache-status'), next.body]).toEqual([expect.stringMatching(HIT), '/doc #1'])
    expect(origin.hits('/doc')).toBe(1)
    await storedCount(cache, 1)
  })

  describe('a corrupt row under the cache key', () => {
    it.each(corruptRows)('%s: is a miss served by the origin, reported with its key, and replaced', async (_name, corrupt) => {
      const origin = await countingOrigin(['/doc', '/other'])
      const file = databaseFile()
      const key = `GET ${origin.url}/doc`
      const seed = open(file)
      for (const path of ['/doc', '/other']) await seed.client.send(origin.url + path)
      await storedCount(seed.cache, 2)
      const own = (await rowValue(file, `x:${key}`))!
      expect(own).toMatch(FRAME)
      await sql(file, 'INSERT OR REPLACE INTO keyv (key, value) VALUES (?, ?)', `x:${key}`, corrupt(own, (await rowValue(file, `x:GET ${origin.url}/other`))!))

      const errors = storeErrors()
      const second = open(file)
      const reply = await second.client.send(`${origin.url}/doc`)
      expect([reply.status, reply.body, reply.header('cache-status')]).toEqual([200, '/doc #2', 'cachedfetch; fwd=uri-miss; fwd-status=200; stored'])
      expect(errors).toContainEqual(expect.objectContaining({ key, reason: 'get' }))
      await storedCount(second.cache, 1)
      // The origin's answer now stands in the row, in the cache's own format.
      const row = await rowValue(file, `x:${key}`)
      expect(row).toMatch(FRAME)
      expect(row?.endsWith('/doc #2')).toBe(true)
      const hit = await open(file).client.send(`${origin.url}/doc`)
      expect([hit.header('cache-status'), hit.body]).toEqual([expect.stringMatching(HIT), '/doc #2'])
      expect(origin.hits('/doc')).toBe(2)
    })
  })

  it('keeps namespaces a and b apart on one file; a.clear() leaves only b\'s row, which b still serves', async () => {
    const origin = await countingOrigin(['/doc'])
    const url = `${origin.url}/doc`
    const file = databaseFile()
    const a = open(file, { namespace: 'a' })
    const b = open(file, { namespace: 'b' })
    expect((await a.client.send(url)).body).toBe('/doc #1')
    await storedCount(a.cache, 1)
    expect(await peek(b.client, url)).toBe('absent')
    // b's own miss, and a's hit is still its own answer, not b's.
    expect((await b.client.send(url)).body).toBe('/doc #2')
    await storedCount(b.cache, 1)
    expect((await a.client.send(url)).body).toBe('/doc #1')
    expect(await rowKeys(file)).toEqual([`a:GET ${url}`, `b:GET ${url}`])

    await a.cache.clear()
    expect(await rowKeys(file)).toEqual([`b:GET ${url}`])
    expect(await peek(b.client, url)).toBe('hit')
    expect(await peek(open(file, { namespace: 'b' }).client, url)).toBe('hit')
    expect(await peek(a.client, url)).toBe('absent')
    expect(await peek(open(file, { namespace: 'a' }).client, url)).toBe('absent')
    expect(origin.hits('/doc')).toBe(2)
  })

  it.each<[string, (cache: Cache, base: string) => Promise<void>, string[]]>([
    ['invalidate(url)', (cache, base) => cache.invalidate(`${base}/users/1`), ['/users/1']],
    ['invalidatePrefix()', (cache, base) => cache.invalidatePrefix(`${base}/users/`), ['/users/1', '/users/2']],
    ['invalidateTag() by Cache-Tag and Surrogate-Key', (cache) => cache.invalidateTag('t1'), ['/users/1', '/users/2', '/posts/1', '/posts/2']]
  ])('%s deletes exactly those rows, for this cache and a second one on the file', async (_name, invalidate, dropped) => {
    const paths = Object.keys(TAGGED)
    const origin = await countingOrigin(paths, TAGGED)
    const file = databaseFile()
    const first = open(file)
    for (const path of paths) await first.client.send(origin.url + path)
    await storedCount(first.cache, paths.length)
    await invalidate(first.cache, origin.url)

    const kept = paths.filter((path) => !dropped.includes(path))
    expect(await rowKeys(file)).toEqual(kept.map((path) => `x:GET ${origin.url}${path}`).sort())
    const expected = Object.fromEntries(paths.map((path) => [path, dropped.includes(path) ? 'absent' : 'hit']))
    for (const client of [first.client, open(file).client]) {
      const seen: Record<string, string> = {}
      for (const path of paths) seen[path] = await peek(client, origin.url + path)
      expect(seen).toEqual(expected)
    }
  })

  describe('a broken store', () => {
    const paths = ['/item/1', '/item/2', '/item/3', '/item/4', '/item/5']

    it('that cannot be opened: the origin answers every request within 1 s, the failures are counted, no rejection is left unhandled', async () => {
      const unhandled: unknown[] = []
      const onUnhandled = (reason: unknown): void => { unhandled.push(reason) }
      process.on('unhandledRejection', onUnhandled)
      try {
        const origin = await countingOrigin(paths)
        const { cache, client } = open(unopenable(), { maxSize: 0 })
        for (const path of paths) {
          const reply = await within(client.send(origin.url + path), `${path} on a database that cannot be opened`, 1000)
          expect([reply.status, reply.body]).toEqual([200, `${path} #1`])
          expect(reply.header('cache-status')).toMatch(/^cachedfetch; fwd=uri-miss; fwd-status=200/)
        }
        expect(origin.requests.length).toBe(5)
        expect(cache.stats().storeErrors).toBeGreaterThanOrEqual(5)
        await settle()
        expect(unhandled).toEqual([])
      } finally {
        process.off('unhandledRejection', onUnhandled)
      }
    })

    it('that cannot be opened, left idle: says so as an event, and leaves no rejection unhandled to end the process', async () => {
      const unhandled: unknown[] = []
      const onUnhandled = (reason: unknown): void => { unhandled.push(reason) }
      process.on('unhandledRejection', onUnhandled)
      try {
        const errors = storeErrors()
        open(unopenable())
        await waitFor(() => errors.some((event) => event.reason === 'open'), 'the failed open to be reported')
        await settle()
        expect(unhandled).toEqual([])
      } finally {
        process.off('unhandledRejection', onUnhandled)
      }
    })

    it('that cannot be opened: reports each failed read and write with its key, and counts nothing as stored', async () => {
      const origin = await countingOrigin(paths)
      const errors = storeErrors()
      const { cache, client } = open(unopenable(), { maxSize: 0 })
      for (const path of paths) await client.send(origin.url + path)
      await waitFor(() => errors.filter((event) => event.reason === 'set').length >= paths.length, 'every write to fail')
      const expected = paths.flatMap((path) => ['get', 'set'].map((reason) => ({ key: `GET ${origin.url}${path}`, reason })))
      expect(errors.map(({ key, reason }) => ({ key, reason }))).toEqual(expect.arrayContaining(expected))
      expect(errors.every((event) => event.error instanceof Error)).toBe(true)
      expect(cache.stats().stored).toBe(0)
    })

    it('locked by another connection past the store timeouts: the origin answers within 1 s, the read and the write time out, reported with the key', async () => {
      const origin = await countingOrigin(['/doc'])
      const url = `${origin.url}/doc`
      const file = databaseFile()
      await sqliteCache(file).clear() // the table exists, as on a database in use
      const errors = storeErrors()
      const { cache, client } = open(file, { storeTimeouts: { read: 50, write: 200 } })
      const release = await lockExclusively(file)
      try {
        const reply = await within(client.send(url), 'a request on a locked database', 1000)
        expect([reply.status, reply.body]).toEqual([200, '/doc #1'])
        expect(reply.header('cache-status')).toMatch(/^cachedfetch; fwd=uri-miss; fwd-status=200/)
        await waitFor(() => errors.some((event) => event.reason === 'set'), 'the write to be given up')
      } finally {
        await release()
      }
      for (const reason of ['get', 'set']) {
        const event = errors.find((e) => e.key === `GET ${url}` && e.reason === reason)
        expect((event?.error as Error | undefined)?.name).toBe('StoreTimeoutError')
      }
      expect(cache.stats().stored).toBe(0)
    })
  })
})

describe('SQLite invalidation by listing the rows: expired ones, thousands, unreadable ones', () => {
  // Nothing sweeps a SQLite cache: an expired row stays until read. Keyv's iterator deletes each
  // it meets, and @keyv/sqlite pages by offset, so every deletion made the listing skip a live row.
  it.each<[string, (cache: Cache, base: string) => Promise<void>]>([
    ['invalidatePrefix()', (cache, base) => cache.invalidatePrefix(`${base}/b/`)],
    ['invalidateTag()', (cache) => cache.invalidateTag('live')]
  ])('%s drops every live row it picks, however many expired rows come before them', async (_name, invalidate) => {
    const paths = [...Array.from({ length: 5 }, (_, i) => `/a/${i}`), ...Array.from({ length: 10 }, (_, i) => `/b/${i}`)]
    const origin = await opened.origin()
    for (const path of paths) origin.route(path, respond(200, { ...FRESH, 'cache-tag': path.startsWith('/b') ? 'live' : 'old' }, path))
    const file = databaseFile()
    const writer = sqliteCache(file)
    const cachedFetch = createCachedFetch({ cache: writer, dispatcher: opened.agent() })
    for (const path of paths) await (await cachedFetch(origin.url + path)).text()
    await storedCount(writer, paths.length)
    // The /a rows' retention (Keyv's expiry, the frame's first line) is over.
    for (const { key, value } of await sql<{ key: string, value: string }>(file, "SELECT key, value FROM keyv WHERE key LIKE '%/a/%'")) {
      await sql(file, 'UPDATE keyv SET value = ? WHERE key = ?', value.replace(/^\d+\n/, `${Date.now() - 1000}\n`), key)
    }

    await invalidate(sqliteCache(file), origin.url)
    expect((await rowKeys(file)).filter((key) => key.includes('/b/'))).toEqual([])
  })

  it("the README's sweep deletes the namespace's expired rows and no other", async () => {
    const origin = await opened.origin({
      '/day': respond(200, FRESH, 'day'),
      '/year': respond(200, { 'content-type': 'text/plain', 'cache-control': 'max-age=31536000' }, 'year')
    })
    const file = databaseFile()
    const writer = sqliteCache(file)
    const cachedFetch = createCachedFetch({ cache: writer, dispatcher: opened.agent() })
    for (const path of ['/day', '/year']) await (await cachedFetch(origin.url + path)).text()
    await storedCount(writer, 2)
    // Another namespace's row of the same age, a row of no expiry, and another program's row.
    const [day] = await sql<{ value: string }>(file, 'SELECT value FROM keyv WHERE key = ?', `x:GET ${origin.url}/day`)
    await sql(file, 'INSERT INTO keyv(key, value) VALUES (?, ?), (?, ?), (?, ?)',
      `y:GET ${origin.url}/day`, day!.value, `x:forever`, `\nframe`, 'x:theirs', '{"value":1,"expires":5}')
    const sweep = README_SWEEP.exec(readFileSync(new URL('../README.md', import.meta.url), 'utf8'))?.[1]!.replace('cachedfetch:', 'x:').replace('cachedfetch;', 'x;')
    // Two days on, as the sweep would find the file then: the day's retention (60 s, then a day stale) is over.
    await sql(file, sweep!, Date.now() + 2 * 86_400_000)
    expect(await rowKeys(file)).toEqual([`x:GET ${origin.url}/year`, 'x:forever', 'x:theirs', `y:GET ${origin.url}/day`].sort())
  })

  /** A file with a tagged /t and `rows` more rows (copies of /o's, or `value`): what invalidateTag('t') must get past. */
  async function crowded (rows: number, value?: string | null | Buffer): Promise<{ file: string, origin: Origin }> {
    const origin = await opened.origin({
      '/t': (_req, res) => { res.writeHead(200, { ...FRESH, 'cache-tag': 't' }).end(`t#${origin.hits('/t')}`) },
      '/o': respond(200, FRESH, 'o')
    })
    const file = databaseFile()
    const writer = sqliteCache(file)
    const cachedFetch = createCachedFetch({ cache: writer, dispatcher: opened.agent() })
    await (await cachedFetch(`${origin.url}/o`)).text()
    await storedCount(writer, 1)
    const [copied] = await sql<{ value: string }>(file, 'SELECT value FROM keyv')
    for (let from = 0; from < rows; from += 400) {
      const batch = Array.from({ length: Math.min(400, rows - from) }, (_, i) => [`x:GET ${origin.url}/o?${from + i}`, value === undefined ? copied!.value : value])
      await sql(file, `INSERT INTO keyv(key, value) VALUES ${batch.map(() => '(?, ?)').join(',')}`, ...batch.flat())
    }
    // Stored after them: a listing reaches it last.
    await (await cachedFetch(`${origin.url}/t`)).text()
    await storedCount(writer, 2)
    return { file, origin }
  }

  it('invalidateTag() lists as long as the store answers: a file of thousands of rows takes longer than one write may', async () => {
    // @keyv/sqlite lists ten rows a query; the whole listing once had to fit in storeTimeouts.write.
    const { file, origin } = await crowded(3000)
    const cache = sqliteCache(file, { storeTimeouts: { read: 1000, write: 150 } })
    await cache.invalidateTag('t')
    expect(await sql(file, 'SELECT key FROM keyv WHERE key = ?', `x:GET ${origin.url}/t`)).toEqual([])
    const cachedFetch = createCachedFetch({ cache, dispatcher: opened.agent() })
    expect(await (await cachedFetch(`${origin.url}/t`)).text()).toBe('t#2')
  })

  it.each([['a NULL', null], ['a BLOB', Buffer.from([0, 255])]])('invalidateTag() passes over a row of %s value rather than end the listing there', async (_what, value) => {
    const { file, origin } = await crowded(1, value)
    await sqliteCache(file).invalidateTag('t')
    expect(await sql(file, 'SELECT key FROM keyv WHERE key = ?', `x:GET ${origin.url}/t`)).toEqual([])
  })
})

describe('SQLite shared between processes', () => {
  it('keeps an entry across a restart: a second process on the file gets a hit', async () => {
    const origin = await countingOrigin(['/doc'])
    const job: Job = { file: databaseFile(), urls: [`${origin.url}/doc`], requests: 1, concurrency: 1 }
    expect(await runClient(job)).toEqual({ statuses: ['cachedfetch; fwd=uri-miss; fwd-status=200; stored'], failures: [], storeErrors: 0, storeErrorEvents: [] })
    const restarted = await runClient(job)
    expect(restarted.statuses).toEqual([expect.stringMatching(HIT)])
    expect(restarted.failures).toEqual([])
    expect(origin.requests.length).toBe(1)
  })

  it('lets two processes read and write the file at once without a request failing, and keeps every entry', async () => {
    const paths = Array.from({ length: 60 }, (_, i) => `/item/${i}`)
    // The origin answers nothing until both processes have requests waiting (20 each), so that
    // their reads and writes overlap.
    const held = gate()
    const origin = await opened.origin()
    for (const path of paths) {
      origin.route(path, async (_req, res) => {
        if (origin.requests.length >= 40) held.release()
        await held.promise
        res.writeHead(200, FRESH).end(path)
      })
    }
    const file = databaseFile()
    // SQLite lets one connection write at a time; the others wait. cachedfetch fails open: a
    // "database is locked", or a read that waits past storeTimeouts.read, is a store-error event
    // (counted in the report) and a miss, never a failed request. busyTimeout makes the first rare;
    // neither is asserted on.
    const job: Job = { file, urls: paths.map((path) => origin.url + path), requests: 300, concurrency: 20, maxSize: 0 }
    const reports = await Promise.all([runClient(job), runClient(job)])
    for (const report of reports) {
      expect(report.failures).toEqual([])
      expect(report.statuses).toHaveLength(300)
    }

    expect(await rowKeys(file)).toEqual(paths.map((path) => `x:GET ${origin.url}${path}`).sort())
    const asked = origin.requests.length
    const third = opened.add(adapters[0]!.connect(sqliteCache(file)))
    for (const path of paths) {
      const reply = await third.send(origin.url + path)
      expect([reply.header('cache-status'), reply.body]).toEqual([expect.stringMatching(HIT), path])
    }
    expect(origin.requests.length).toBe(asked)
  }, 60_000)
})

describe('SQLite namespaces that a LIKE pattern would confuse', () => {
  // @keyv/sqlite clears a namespace with `LIKE 'ns:%'`, which ignores case and reads '_' as any
  // character: such namespaces are refused, so that clear() never reaches another's entries.
  it.each(['A', 'a_b'])('refuses %s, naming the option', (namespace) => {
    expect(() => sqliteCache(databaseFile(), { namespace })).toThrow(/options\.namespace/)
  })

  it('clear() on a leaves the entries of a.b and a-b', async () => {
    const origin = await opened.origin({ '/doc': respond(200, FRESH, 'doc') })
    const file = databaseFile()
    for (const theirs of ['a.b', 'a-b']) {
      const other = sqliteCache(file, { namespace: theirs })
      await opened.add(adapters[0]!.connect(other)).send(`${origin.url}/doc`)
      await storedCount(other, 1)
    }
    await sqliteCache(file, { namespace: 'a' }).clear()
    expect((await rowKeys(file)).sort()).toEqual([`a-b:GET ${origin.url}/doc`, `a.b:GET ${origin.url}/doc`])
  })
})
