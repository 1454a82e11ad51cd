/**
 * Red team: hostile cases written apart from the rest of the suite, run through both faces of one
 * cache against real loopback origins. Whatever a case throws at the cache (a credential, a
 * response meant for one user, a key that two URLs could share, malformed or hostile fields, a
 * value written straight into the store, a Location on another origin), a caller gets what the
 * origin would have sent to that very request, or the error it would have got without the cache;
 * never another user's answer, never an exception of the cache's own; and Object.prototype is
 * the same after every test as before (fixtures/redteam.json holds the tables).
 *
 * Most cases are checked against a bare client (the same adapter on a plain Agent): the cache must
 * not change what a caller sees, except that a second request may be served without reaching the
 * origin. A raw TCP origin sends what Node's HTTP server would refuse to write.
 */
import { readFileSync } from 'node:fs'
import { createServer as createTcpServer, type LookupFunction, type Socket } from 'node:net'
import type { IncomingMessage } from 'node:http'
import { afterEach, describe, expect, it } from 'vitest'
import { Keyv } from 'keyv'
import { Agent, fetch as undiciFetch, request, type Dispatcher } from 'undici'
import { cacheInterceptor, createCache, type Cache, type CacheOptions } from '../src/index.js'
import { adapters, type Adapter, type Client, type Reply, type Send } from './helpers/clients.js'
import type { Origin } from './helpers/origin.js'
import { teardown } from './helpers/teardown.js'
import { manualClock, wholeSecondNow } from './helpers/time.js'
import { gate, waitFor, within, type Gate } from './helpers/wait.js'

type Fields = ReadonlyArray<readonly [string, string]>

interface Malformed {
  readonly name: string
  readonly status?: string
  readonly prelude?: string
  readonly fields: Fields
  readonly body?: string
  /** `false`: no Content-Length is added. */
  readonly length?: boolean
  /** Whether a second identical request is served without reaching the origin; null: either. */
  readonly hit: boolean | null
}

interface Frame {
  readonly name: string
  readonly variant?: Record<string, unknown>
  readonly header?: Record<string, unknown>
  readonly bodies?: string
  readonly raw?: string
  readonly value?: unknown
  readonly expect: 'origin' | 'entry' | 'any'
}

interface Location {
  readonly name: string
  readonly field: 'location' | 'content-location'
  readonly value: string
  readonly invalidatesX: boolean
}

const cases = JSON.parse(readFileSync(new URL('../fixtures/redteam.json', import.meta.url), 'utf8')) as {
  privateSpellings: string[][]
  setCookieSpellings: Array<{ name: string, fields: Fields }>
  varyCookieSpellings: string[][]
  malformed: Malformed[]
  frames: Frame[]
  locations: Location[]
}

const opened = teardown()

/** Object.prototype and its kin, as they were before any test ran. */
const PROTOTYPES: Record<string, object> = { Object: Object.prototype, Array: Array.prototype, Function: Function.prototype, String: String.prototype }
const shapes = (): Record<string, string[]> =>
  Object.fromEntries(Object.entries(PROTOTYPES).map(([name, proto]) => [name, Reflect.ownKeys(proto).map(String).sort()]))
const pristine = shapes()

afterEach(async () => {
  await opened.close()
  expect(shapes()).toEqual(pristine)
  expect(Object.getPrototypeOf(Object.prototype)).toBeNull()
  expect(({} as Record<string, unknown>).polluted).toBeUndefined()
})

// ---------------------------------------------------------------------------------------------
// Helpers: a raw origin, a bare client to compare with, outcomes.

interface RawRequest {
  readonly method: string
  readonly path: string
  /** Names in lower case; of a repeated field, the last. */
  readonly headers: Record<string, string>
}

interface RawOrigin {
  readonly url: string
  readonly requests: RawRequest[]
  hits (path: string): number
  close (): Promise<void>
}

/**
 * A TCP origin that answers every request with the bytes `answer` gives and closes the connection:
 * what Node's HTTP server would refuse to send (repeated Content-Length, odd statuses, names like
 * `__proto__`). `n` counts the requests for that path, from 1.
 */
async function rawOrigin (answer: (request: RawRequest, n: number) => Buffer | Promise<Buffer>): Promise<RawOrigin> {
  const requests: RawRequest[] = []
  const sockets = new Set<Socket>()
  const server = createTcpServer((socket) => {
    sockets.add(socket)
    socket.on('close', () => sockets.delete(socket))
    socket.on('error', () => {})
    let buffered = ''
    socket.on('data', (data) => {
      buffered += data.toString('latin1')
      const end = buffered.indexOf('\r\n\r\n')
      if (end === -1) return
      const [line = '', ...lines] = buffered.slice(0, end).split('\r\n')
      buffered = ''
      const [method = '', path = ''] = line.split(' ')
      const headers: Record<string, string> = Object.create(null) as Record<string, string>
      for (const field of lines) headers[field.slice(0, field.indexOf(':')).trim().toLowerCase()] = field.slice(field.indexOf(':') + 1).trim()
      const seen = { method, path, headers }
      requests.push(seen)
      Promise.resolve(answer(seen, requests.filter((r) => r.path === path).length)).then((bytes) => socket.end(bytes), () => socket.destroy())
    })
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const { port } = server.address() as { port: number }
  return opened.add({
    url: `http://127.0.0.1:${port}`,
    requests,
    hits: (path: string) => requests.filter((r) => r.path === path).length,
    close: () => new Promise<void>((resolve) => {
      for (const socket of sockets) socket.destroy()
      server.close(() => resolve())
    })
  })
}

/** A response as bytes (Latin-1: one byte a character), with `connection: close` and, unless told not to, Content-Length. */
function rawResponse (status: string, fields: Fields, body: string, options: { length?: boolean, prelude?: string } = {}): Buffer {
  const has = (name: string): boolean => fields.some(([field]) => field.toLowerCase() === name)
  const all: Array<readonly [string, string]> = [...fields]
  if (options.length !== false && !has('content-length') && !has('transfer-encoding')) all.push(['Content-Length', String(Buffer.byteLength(body, 'latin1'))])
  if (!has('connection')) all.push(['Connection', 'close'])
  const head = `HTTP/1.1 ${status}\r\n${all.map(([name, value]) => `${name}: ${value}\r\n`).join('')}\r\n`
  return Buffer.from(`${options.prelude ?? ''}${head}${body}`, 'latin1')
}

type Outcome = { readonly ok: true, readonly reply: Reply } | { readonly ok: false, readonly error: unknown }

async function attempt (sent: Promise<Reply>): Promise<Outcome> {
  try {
    return { ok: true, reply: await within(sent, 'the request', 5000) }
  } catch (error) {
    return { ok: false, error }
  }
}

/** The same adapter without a cache: what a caller sees from the origin itself. */
function bare (name: Adapter['name'], agent: Dispatcher = opened.agent()): (url: string, init?: Send) => Promise<Reply> {
  return async (url, init = {}) => {
    const method = init.method ?? 'GET'
    if (name === 'cachedFetch') {
      const response = await undiciFetch(url, { method, headers: init.headers, dispatcher: agent, redirect: method === 'GET' || method === 'HEAD' ? 'follow' : 'manual' })
      return { status: response.status, header: (field) => response.headers.get(field) ?? undefined, body: await response.text() }
    }
    const response = await request(url, { method, headers: init.headers, dispatcher: agent })
    return {
      status: response.statusCode,
      header: (field) => {
        const value = response.headers[field]
        return Array.isArray(value) ? value.join(', ') : value
      },
      body: await response.body.text()
    }
  }
}

/** What the caller sees of an outcome, for messages. */
function shown (outcome: Outcome): string {
  return outcome.ok ? `${outcome.reply.status} ${JSON.stringify(outcome.reply.body)}` : `error ${String((outcome.error as Error)?.message ?? outcome.error)}`
}

/** `outcome` as the bare client's `reference`: the same failure or the same status, body and `fields`. */
function expectSame (outcome: Outcome, reference: Outcome, fields: readonly string[], what: string): void {
  if (!reference.ok) {
    expect(outcome.ok, `${what}: the origin alone fails (${shown(reference)}), the cache gave ${shown(outcome)}`).toBe(false)
    return
  }
  expect(outcome.ok, `${what}: ${shown(outcome)} where the origin alone gives ${shown(reference)}`).toBe(true)
  if (!outcome.ok) return
  expect(outcome.reply.status, what).toBe(reference.reply.status)
  expect(outcome.reply.body, what).toBe(reference.reply.body)
  // Whitespace around a value is no part of it (RFC 9110 §5.5). undici.fetch keeps what its parser
  // leaves at the end of a line; a Response cachedFetch() builds itself (a hit, a follower's) has
  // its fields put in through Headers.append, which drops it, as the Fetch standard normalizes values.
  const value = (reply: Reply, field: string): string | undefined => reply.header(field)?.replace(/[ \t]+$/, '')
  for (const field of fields) expect(value(outcome.reply, field), `${what}: field ${field}`).toBe(value(reference.reply, field))
}

/** Response fields as undici hands them over: names in lower case, a repeated field's lines in a list. */
function received (fields: Fields): Record<string, string | string[]> {
  const record: Record<string, string | string[]> = {}
  for (const [name, value] of fields) {
    const lower = name.toLowerCase()
    const previous = record[lower]
    record[lower] = previous === undefined ? value : [previous, value].flat()
  }
  return record
}

/** The first raw value of a request field, whatever its name (req.headers cannot hold `__proto__`). */
function rawField (req: IncomingMessage, name: string): string | undefined {
  for (let i = 0; i < req.rawHeaders.length; i += 2) if (req.rawHeaders[i]!.toLowerCase() === name) return req.rawHeaders[i + 1]
  return undefined
}

/** Every name is 127.0.0.1, where the test's origins listen. */
const loopback: LookupFunction = (_hostname, options, callback) => {
  if ((options as { all?: boolean }).all === true) (callback as unknown as (error: null, addresses: Array<{ address: string, family: number }>) => void)(null, [{ address: '127.0.0.1', family: 4 }])
  else callback(null, '127.0.0.1', 4)
}

function connect (adapter: Adapter, options?: CacheOptions, below?: Dispatcher): { cache: Cache, client: Client } {
  const cache = createCache(options)
  return { cache, client: opened.add(adapter.connect(cache, below)) }
}

/** Sends one request, reads it, and waits for what it stores. */
async function sendAndStore (cache: Cache, client: Client, url: string, init?: Send): Promise<Reply> {
  const reply = await client.send(url, init)
  await cache.flush()
  return reply
}

// ---------------------------------------------------------------------------------------------

describe.each(adapters)('$name: one user\'s answer never reaches another', (adapter) => {
  it.each(['authorization', 'cookie', 'proxy-authorization'])('an answer to a request with %s goes to that request alone', async (field) => {
    const origin = await opened.origin({
      '/me': (req, res) => {
        res.writeHead(200, { 'cache-control': 'max-age=60' })
        res.end(`${field}=${rawField(req, field) ?? '-'}`)
      }
    })
    const { cache, client } = connect(adapter)
    const url = `${origin.url}/me`
    const as = async (value?: string): Promise<string> => (await sendAndStore(cache, client, url, value === undefined ? {} : { headers: { [field]: value } })).body
    expect(await as('alice')).toBe(`${field}=alice`)
    expect(await as('bob')).toBe(`${field}=bob`)
    expect(await as('')).toBe(`${field}=`)
    // The field's name in any case is the same field (RFC 9110 §5.1).
    expect((await sendAndStore(cache, client, url, { headers: { [field.toUpperCase()]: 'carol' } })).body).toBe(`${field}=carol`)
    expect(await as()).toBe(`${field}=-`)
    // The anonymous answer is stored, and may serve anyone (the origin did not say it varies); no one else's.
    expect(await as('alice')).toMatch(new RegExp(`^${field}=(alice|-)$`))
  })

  it.each(['authorization', 'cookie', 'proxy-authorization'])('a revalidation carrying %s never stores that user\'s answer for others', async (field) => {
    // Stale at once but usable for a minute while revalidated in the background (RFC 5861 §3), and with
    // a validator: the next request, whoever sends it, revalidates the stored answer with its own fields.
    const clock = manualClock(wholeSecondNow())
    const origin = await opened.origin({
      '/r': (req, res) => {
        const who = rawField(req, field) ?? 'anyone'
        res.writeHead(200, { 'cache-control': 'max-age=1, stale-while-revalidate=60', etag: `"${who}"`, date: clock.date() })
        res.end(who)
      }
    })
    const { cache, client } = connect(adapter, { now: clock.now })
    const url = `${origin.url}/r`
    expect((await sendAndStore(cache, client, url)).body).toBe('anyone')
    clock.advance(2)
    // Served the stored answer; the refresh behind it carries alice's credential.
    expect((await sendAndStore(cache, client, url, { headers: { [field]: 'alice' } })).body).toBe('anyone')
    await waitFor(() => cache.stats().refreshing === 0 && origin.hits('/r') === 2, 'the background refresh')
    await cache.flush()
    for (const who of [undefined, 'bob']) {
      const reply = await sendAndStore(cache, client, url, who === undefined ? {} : { headers: { [field]: who } })
      expect(reply.body, String(who)).not.toBe('alice')
    }
  })

  it('a private cache\'s entries on the same store never reach a shared cache', async () => {
    let n = 0
    const origin = await opened.origin({
      '/me': (_req, res) => {
        res.writeHead(200, { 'cache-control': 'private, max-age=60', 'set-cookie': `session=${++n}` })
        res.end(`mine#${n}`)
      }
    })
    const store = new Keyv({ store: new Map() })
    const mine = connect(adapter, { store, shared: false })
    const everyone = connect(adapter, { store })
    expect((await sendAndStore(mine.cache, mine.client, `${origin.url}/me`, { headers: { authorization: 'alice' } })).body).toBe('mine#1')
    expect((await sendAndStore(mine.cache, mine.client, `${origin.url}/me`, { headers: { authorization: 'alice' } })).body).toBe('mine#1')
    expect((await sendAndStore(everyone.cache, everyone.client, `${origin.url}/me`)).body).toBe('mine#2')
  })

  it.each(cases.setCookieSpellings)('a response with $name is never stored', async ({ fields }) => {
    const origin = await rawOrigin((_req, n) => rawResponse('200 OK', [
      ['Cache-Control', 'public, max-age=60'],
      ...fields.map(([name, value]) => [name, value.replaceAll('$N', String(n))] as const)
    ], `#${n}`))
    const { cache, client } = connect(adapter)
    const first = await sendAndStore(cache, client, `${origin.url}/s`)
    const second = await sendAndStore(cache, client, `${origin.url}/s`)
    expect([first.body, second.body]).toEqual(['#1', '#2'])
    expect(origin.hits('/s')).toBe(2)
    if (fields.some(([, value]) => value.includes('$N'))) expect(second.header('set-cookie')).not.toContain('=1')
  })

  it.each(cases.privateSpellings.map((lines) => [lines]))('a response with Cache-Control %j is never stored', async (lines) => {
    let n = 0
    const origin = await opened.origin({
      '/p': (_req, res) => {
        res.setHeader('cache-control', lines)
        res.writeHead(200).end(`#${++n}`)
      }
    })
    const { cache, client } = connect(adapter)
    expect((await sendAndStore(cache, client, `${origin.url}/p`)).body).toBe('#1')
    expect((await sendAndStore(cache, client, `${origin.url}/p`)).body).toBe('#2')
  })

  it.each(cases.varyCookieSpellings.map((lines) => [lines]))('a response with Vary %j is served to the same Cookie alone', async (lines) => {
    let n = 0
    const origin = await opened.origin({
      '/v': (req, res) => {
        res.setHeader('vary', lines)
        res.writeHead(200, { 'cache-control': 'max-age=60' }).end(`${req.headers.cookie ?? '-'}#${++n}`)
      }
    })
    const { cache, client } = connect(adapter)
    const as = async (cookie?: string): Promise<string> => (await sendAndStore(cache, client, `${origin.url}/v`, cookie === undefined ? {} : { headers: { cookie } })).body
    expect(await as('u=alice')).toBe('u=alice#1')
    expect(await as('u=alice')).toBe('u=alice#1')
    expect(await as('u=bob')).toBe('u=bob#2')
    expect(await as()).toBe('-#3')
    expect(await as('u=alice; x=1')).toBe('u=alice; x=1#4')
    expect(await as('')).toBe('#5')
    expect(await as('u=bob')).toBe('u=bob#2')
  })

  it('a Vary that Connection names still keys the response by Cookie (it was meant for this cache)', async () => {
    const origin = await rawOrigin((req, n) => rawResponse('200 OK', [
      ['Cache-Control', 'public, max-age=60'], ['Vary', 'Cookie'], ['Connection', 'vary']
    ], `${req.headers.cookie ?? '-'}#${n}`))
    const { cache, client } = connect(adapter)
    const as = async (cookie?: string): Promise<string> => (await sendAndStore(cache, client, `${origin.url}/c`, cookie === undefined ? {} : { headers: { cookie } })).body
    expect(await as('u=alice')).toBe('u=alice#1')
    expect(await as('u=bob')).toBe('u=bob#2')
    expect(await as()).toBe('-#3')
  })

  it('a public response with Vary: Authorization in any spelling is served to the same credential alone', async () => {
    let n = 0
    const origin = await opened.origin({
      '/a': (req, res) => {
        res.setHeader('vary', ['Accept', ' AUTHORIZATION\t'])
        res.writeHead(200, { 'cache-control': 'public, max-age=60' }).end(`${req.headers.authorization ?? '-'}#${++n}`)
      }
    })
    const { cache, client } = connect(adapter)
    const as = async (authorization?: string): Promise<string> =>
      (await sendAndStore(cache, client, `${origin.url}/a`, authorization === undefined ? {} : { headers: { Authorization: authorization } })).body
    expect(await as('Bearer alice')).toBe('Bearer alice#1')
    expect(await as('Bearer bob')).toBe('Bearer bob#2')
    expect(await as()).toBe('-#3')
    expect(await as('Bearer alice')).toBe('Bearer alice#1')
  })
})

describe.each(adapters)('$name: single-flight never shares one user\'s answer', (adapter) => {
  /** Sends `count` requests at once; the origin holds its first answer until each has reached the cache. */
  async function inFlight (cache: Cache, client: Client, origin: Origin, hold: { release: () => void }, inits: readonly Send[]): Promise<Reply[]> {
    const before = cache.stats().misses
    const replies = inits.map(async (init) => await client.send(`${origin.url}/f`, init))
    await waitFor(() => cache.stats().misses - before >= inits.length && origin.hits('/f') >= 1, 'every request to reach the cache')
    hold.release()
    return await Promise.all(replies)
  }

  const oneUser: Array<[string, Record<string, string | string[]>]> = [
    ['a Set-Cookie with public', { 'cache-control': 'public, max-age=60', 'set-cookie': 'session=$N' }],
    ['two Set-Cookie lines', { 'cache-control': 'max-age=60', 'set-cookie': ['a=$N', 'session=$N'] }],
    ['private', { 'cache-control': 'private, max-age=60' }],
    ['PRIVATE on a second Cache-Control line', { 'cache-control': ['max-age=60', 'PRIVATE'] }],
    ['private="x"', { 'cache-control': 'max-age=60, private="x"' }]
  ]

  /** `/f` answers request n with `#n` and `headers`, $N in them made n; the first answer waits for `hold`. */
  async function numberedOrigin (hold: Gate, headers: Record<string, string | string[]>): Promise<Origin> {
    let n = 0
    return await opened.origin({
      '/f': async (_req, res) => {
        const mine = ++n
        if (mine === 1) await hold.promise
        const fields = Object.fromEntries(Object.entries(headers).map(([name, value]) =>
          [name, Array.isArray(value) ? value.map((v) => v.replace('$N', String(mine))) : value.replace('$N', String(mine))]))
        res.writeHead(200, fields)
        res.end(`#${mine}`)
      }
    })
  }

  it.each(oneUser)('an answer with %s goes to its own caller alone; the others fetch their own', async (_name, headers) => {
    const hold = gate()
    const origin = await numberedOrigin(hold, headers)
    const { cache, client } = connect(adapter)
    const replies = await inFlight(cache, client, origin, hold, [{}, {}, {}, {}])
    expect(new Set(replies.map((reply) => reply.body)).size).toBe(4)
    expect(origin.hits('/f')).toBe(4)
    for (const reply of replies) {
      const cookie = reply.header('set-cookie')
      if (cookie !== undefined) expect(cookie).toContain(`session=${reply.body.slice(1)}`)
    }
  })

  it('concurrent callers with different credentials each get their own answer', async () => {
    const hold = gate()
    const origin = await opened.origin({
      '/f': async (req, res) => {
        await hold.promise
        res.writeHead(200, { 'cache-control': 'max-age=60' })
        res.end(`${req.headers.authorization ?? '-'}|${req.headers.cookie ?? '-'}|${rawField(req, 'proxy-authorization') ?? '-'}`)
      }
    })
    const { client } = connect(adapter)
    const inits: Send[] = [
      { headers: { authorization: 'alice' } },
      { headers: { authorization: 'bob' } },
      {},
      { headers: { cookie: 'carol' } },
      { headers: { 'proxy-authorization': 'dave' } },
      { headers: { authorization: 'alice', cookie: 'carol' } }
    ]
    const replies = inits.map(async (init) => await client.send(`${origin.url}/f`, init))
    await waitFor(() => origin.hits('/f') >= inits.length, 'every caller to reach the origin')
    hold.release()
    expect((await Promise.all(replies)).map((reply) => reply.body)).toEqual([
      'alice|-|-', 'bob|-|-', '-|-|-', '-|carol|-', '-|-|dave', 'alice|carol|-'
    ])
  })

  it.each(['__proto__', 'constructor', 'toString', 'hasOwnProperty', 'x-tenant'])(
    'callers whose %s fields differ never share an exchange the origin varies on it',
    async (field) => {
      const hold = gate()
      const origin = await opened.origin({
        '/f': async (req, res) => {
          await hold.promise
          res.writeHead(200, { 'cache-control': 'max-age=60', vary: field })
          res.end(`${rawField(req, field.toLowerCase()) ?? '-'}`)
        }
      })
      const { cache, client } = connect(adapter)
      const inits: Send[] = [{ headers: { [field]: 'a' } }, { headers: { [field]: 'b' } }, {}]
      const replies = inits.map(async (init) => await client.send(`${origin.url}/f`, init))
      await waitFor(() => cache.stats().misses >= inits.length && origin.hits('/f') >= 1, 'every request to reach the cache')
      hold.release()
      const bodies = (await Promise.all(replies)).map((reply) => reply.body)
      // What each request carries to the origin by itself (undici.fetch sends no field named __proto__).
      const reference = bare(adapter.name)
      const expected: string[] = []
      for (const init of inits) expected.push((await reference(`${origin.url}/f`, init)).body)
      if (adapter.name === 'interceptor') expect(expected).toEqual(['a', 'b', '-'])
      expect(bodies).toEqual(expected)
      await cache.flush()
      // And once stored, each is served its own.
      for (const [i, init] of inits.entries()) expect((await sendAndStore(cache, client, `${origin.url}/f`, init)).body).toBe(expected[i])
    })

  it('an answer whose fields a dispatcher below spells in capitals is not shared either', async () => {
    const hold = gate()
    const origin = await numberedOrigin(hold, { 'cache-control': 'public, max-age=60', 'set-cookie': 'session=$N' })
    // An interceptor below the cache that hands the fields on with names in Title-Case.
    const titleCase: Dispatcher.DispatcherComposeInterceptor = (dispatch) => (opts, handler) => dispatch(opts, {
      onRequestStart: (controller, context) => handler.onRequestStart?.(controller, context),
      onResponseStart: (controller, status, headers, message) => handler.onResponseStart?.(controller, status,
        Object.fromEntries(Object.entries(headers).map(([name, value]) => [name.replace(/(^|-)([a-z])/g, (_m, dash: string, c: string) => dash + c.toUpperCase()), value])), message),
      onResponseData: (controller, chunk) => handler.onResponseData?.(controller, chunk),
      onResponseEnd: (controller, trailers) => handler.onResponseEnd?.(controller, trailers),
      onResponseError: (controller, error) => handler.onResponseError?.(controller, error)
    })
    const { cache, client } = connect(adapter, undefined, new Agent().compose(titleCase))
    const replies = await inFlight(cache, client, origin, hold, [{}, {}, {}])
    expect(replies.map((reply) => reply.body).sort()).toEqual(['#1', '#2', '#3'])
    for (const reply of replies) expect(reply.header('set-cookie')).toBe(`session=${reply.body.slice(1)}`)
    expect((await sendAndStore(cache, client, `${origin.url}/f`)).body).toBe('#4')
  })
})

describe.each(adapters)('$name: no two requests share a key they should not', (adapter) => {
  it('paths that a URL parser could fold together are each answered as the origin answers them', async () => {
    const origin = await rawOrigin((req) => rawResponse('200 OK', [['Cache-Control', 'max-age=60']], `path=${req.path}`))
    const paths = [
      '/p/a', '//p/a', '/p//a', '/p/a/', '/p/%2F', '/p%2Fa', '/p/./a', '/p/%2E/a', '/p/a?', '/p/a?x=1',
      '/p/a?x=1&x=2', '/P/a', '/p/a;', '/p/a%20', '/p/a%00', '/p/%C3%BC', '/p/a?%3F', '/p/a??', '/p/a?x=%2F', '/p/a?x=/'
    ]
    const reference = bare(adapter.name)
    const expected = new Map<string, Outcome>()
    for (const path of paths) expected.set(path, await attempt(reference(`${origin.url}${path}`)))
    const { cache, client } = connect(adapter)
    for (const round of [1, 2]) {
      for (const path of paths) {
        const outcome = await attempt(client.send(`${origin.url}${path}`))
        await cache.flush()
        expectSame(outcome, expected.get(path)!, [], `round ${round}, ${path}`)
      }
    }
  })

  it('hosts written in other forms are keyed as the authority the origin sees', async () => {
    const origin = await rawOrigin((req) => rawResponse('200 OK', [['Cache-Control', 'max-age=60']], `host=${req.headers.host?.toLowerCase()}`))
    const other = await rawOrigin((req) => rawResponse('200 OK', [['Cache-Control', 'max-age=60']], `other=${req.headers.host?.toLowerCase()}`))
    const port = new URL(origin.url).port
    const urls = [
      `http://127.0.0.1:${port}/h`, `http://b\u00fccher.localhost:${port}/h`, `http://xn--bcher-kva.localhost:${port}/h`,
      `http://B\u00dcCHER.localhost:${port}/h`, `http://bucher.localhost:${port}/h`, `http://2130706433:${port}/h`,
      `http://0x7f.1:${port}/h`, `http://LOCALHOST:${port}/h`, `http://localhost.:${port}/h`, `${other.url}/h`,
      `http://user:secret@127.0.0.1:${port}/h`, `http://127.0.0.1:${port}/h#frag`
    ]
    const reference = bare(adapter.name, opened.add(new Agent({ connect: { lookup: loopback } })))
    const expected = await Promise.all(urls.map(async (url) => await attempt(reference(url))))
    const { cache, client } = connect(adapter, undefined, new Agent({ connect: { lookup: loopback } }))
    for (const round of [1, 2]) {
      for (const [i, url] of urls.entries()) {
        const outcome = await attempt(client.send(url))
        await cache.flush()
        expectSame(outcome, expected[i]!, [], `round ${round}, ${url}`)
      }
    }
  })

  it('a Host field naming another authority is another resource', async () => {
    const origin = await rawOrigin((req) => rawResponse('200 OK', [['Cache-Control', 'max-age=60']], `host=${req.headers.host?.toLowerCase()}`))
    const port = new URL(origin.url).port
    const hosts = [undefined, 'evil.example', 'EVIL.example', `127.0.0.1:${port}`, `127.0.0.1:${port}0`, 'evil.example:80', 'evil.example.', `127.0.0.1:${port}/x?`]
    const reference = bare(adapter.name)
    const init = (host: string | undefined): Send => host === undefined ? {} : { headers: { host } }
    const expected = await Promise.all(hosts.map(async (host) => await attempt(reference(`${origin.url}/h`, init(host)))))
    const { cache, client } = connect(adapter)
    for (const round of [1, 2]) {
      for (const [i, host] of hosts.entries()) {
        const outcome = await attempt(client.send(`${origin.url}/h`, init(host)))
        await cache.flush()
        expectSame(outcome, expected[i]!, [], `round ${round}, Host ${String(host)}`)
      }
    }
  })

  it('methods are case-sensitive: a lower-case get is not GET', async () => {
    const origin = await rawOrigin((req) => rawResponse('200 OK', [['Cache-Control', 'max-age=60']], `method=${req.method}`))
    const reference = bare(adapter.name)
    const methods = ['GET', 'get', 'Get', 'HEAD', 'head', 'GET']
    const expected = await Promise.all(methods.map(async (method) => await attempt(reference(`${origin.url}/m`, { method }))))
    const { cache, client } = connect(adapter)
    for (const [i, method] of methods.entries()) {
      const outcome = await attempt(client.send(`${origin.url}/m`, { method }))
      await cache.flush()
      expectSame(outcome, expected[i]!, [], method)
    }
  })

  const hooks: Array<[string, (url: URL) => unknown]> = [
    ['an empty string', () => ''],
    ['a string that is no URL', () => 'not a url'],
    ['a number', () => 42],
    ['null', () => null],
    ['nothing, having changed its argument', (url) => { url.pathname = '/other' }],
    ['a throw', () => { throw new Error('hook failed') }],
    ['an object whose toString throws', () => ({ toString () { throw new Error('boom') } })],
    ['a Proxy whose every trap throws', () => new Proxy({}, { get () { throw new Error('trap') }, getPrototypeOf () { throw new Error('trap') } })],
    ['a URL without a host', () => new URL('javascript:void 0')]
  ]

  it.each(hooks)('a key hook returning %s keys each request by its own URL, or serves nothing amiss', async (name, hook) => {
    const origin = await rawOrigin((req) => rawResponse('200 OK', [['Cache-Control', 'max-age=60']], `path=${req.path}`))
    const { cache, client } = connect(adapter, { key: hook as (url: URL) => URL })
    const constant = name === 'a URL without a host'
    for (const path of ['/k1', '/k2', '/k1', '/k2']) {
      const outcome = await attempt(client.send(`${origin.url}${path}`))
      await cache.flush()
      expect(outcome.ok, shown(outcome)).toBe(true)
      // A hook that maps every URL to one is the application's to answer for (SECURITY.md).
      if (!constant && outcome.ok) expect(outcome.reply.body).toBe(`path=${path}`)
    }
    await cache.invalidate(`${origin.url}/k1`)
    await cache.invalidatePrefix(`${origin.url}/`)
  })
})

describe('interceptor: request targets in other forms', () => {
  it('absolute-form and asterisk-form targets are answered as the origin answers them, never from another\'s entry', async () => {
    const origin = await rawOrigin((req) => rawResponse('200 OK', [['Cache-Control', 'max-age=60']], `${req.method} ${req.path}`))
    const other = await rawOrigin((req) => rawResponse('200 OK', [['Cache-Control', 'max-age=60']], `other ${req.method} ${req.path}`))
    const plain = opened.agent()
    const cached = opened.add(new Agent()).compose(cacheInterceptor({ cache: createCache() }))
    const targets: Array<[string, string]> = [
      ['GET', '/x'], ['GET', `${other.url}/x`], ['GET', `${origin.url}/x`], ['GET', `${origin.url}//x`], ['OPTIONS', '*'], ['GET', '/x']
    ]
    const send = async (dispatcher: Dispatcher, method: string, path: string): Promise<Outcome> => await attempt((async () => {
      const response = await dispatcher.request({ origin: origin.url, method, path })
      return { status: response.statusCode, header: () => undefined, body: await response.body.text() }
    })())
    for (const round of [1, 2]) {
      for (const [method, path] of targets) expectSame(await send(cached, method, path), await send(plain, method, path), [], `round ${round}, ${method} ${path}`)
    }
  })
})

describe('interceptor: the query dispatch option', () => {
  it('is part of the key, as undici sends it', async () => {
    const origin = await rawOrigin((req) => rawResponse('200 OK', [['Cache-Control', 'max-age=60']], `path=${req.path}`))
    const plain = opened.agent()
    const cached = opened.add(new Agent()).compose(cacheInterceptor({ cache: createCache() }))
    const sends: Array<[string, Record<string, unknown> | undefined]> = [
      ['/q', { a: '1' }], ['/q?a=1', undefined], ['/q', { a: '2' }], ['/q', { a: ['1', '2'] }], ['/q', { a: '1 2' }],
      ['/q', {}], ['/q?', undefined], ['/q', { ['__proto__']: 'x', b: '/' }], ['/q', { a: { toString: () => 'obj' } }],
      ['/q?a=1', { b: '2' }], ['/q#f', { a: '1' }]
    ]
    const send = async (dispatcher: Dispatcher, path: string, query: Record<string, unknown> | undefined): Promise<Outcome> => await attempt((async () => {
      const response = await request(`${origin.url}${path}`, { dispatcher, query })
      return { status: response.statusCode, header: () => undefined, body: await response.body.text() }
    })())
    for (const round of [1, 2]) {
      for (const [path, query] of sends) {
        const reference = await send(plain, path, query)
        expectSame(await send(cached, path, query), reference, [], `round ${round}, ${path} ${JSON.stringify(query)}`)
      }
    }
  })
})

describe.each(adapters)('$name: malformed and hostile response fields', (adapter) => {
  const list = (count: number, item: (i: number) => string, separator: string): string => Array.from({ length: count }, (_, i) => item(i)).join(separator)
  // Past 8 KiB a field value is not stored (FIELD_LIMITS, README): then the second request reaches the origin.
  const generated: Malformed[] = [
    { name: 'Vary listing 1000 fields', fields: [['Cache-Control', 'max-age=60'], ['Vary', list(1000, (i) => `f${i}`, ', ')]], hit: true },
    { name: 'Cache-Tag with 1000 tags', fields: [['Cache-Control', 'max-age=60'], ['Cache-Tag', list(1000, (i) => `t${i}`, ',')]], hit: true },
    { name: 'Cache-Tag with 2000 tags, past 8 KiB', fields: [['Cache-Control', 'max-age=60'], ['Cache-Tag', list(2000, (i) => `t${i}`, ',')]], hit: false },
    { name: 'Surrogate-Key with 1000 keys', fields: [['Cache-Control', 'max-age=60'], ['Surrogate-Key', list(1000, (i) => `k${i}`, ' ')]], hit: true },
    { name: 'Surrogate-Key with 2000 keys, past 8 KiB', fields: [['Cache-Control', 'max-age=60'], ['Surrogate-Key', list(2000, (i) => `k${i}`, ' ')]], hit: false },
    { name: 'a tag of 8000 characters', fields: [['Cache-Control', 'max-age=60'], ['Cache-Tag', 'x'.repeat(8000)]], hit: true },
    { name: 'Cache-Control with 500 directives', fields: [['Cache-Control', `max-age=60, ${list(500, (i) => `d${i}=${i}`, ', ')}`]], hit: true },
    { name: 'Cache-Control with 1000 directives, past 8 KiB', fields: [['Cache-Control', `max-age=60, ${list(1000, (i) => `d${i}=${i}`, ', ')}`]], hit: false }
  ]

  it.each([...cases.malformed, ...generated])('$name: answered as the origin answers, stored only when it may be', async (kase) => {
    const body = kase.body ?? 'payload'
    const origin = await rawOrigin(() => rawResponse(kase.status ?? '200 OK', kase.fields, body, { length: kase.length, prelude: kase.prelude }))
    const url = `${origin.url}/m`
    const reference = await attempt(bare(adapter.name)(url))
    const { cache, client } = connect(adapter, { retry: false })
    const connectionNamed = kase.fields.filter(([name]) => name.toLowerCase() === 'connection').flatMap(([, value]) => value.split(',').map((v) => v.trim().toLowerCase()))
    const compared = [...new Set(kase.fields.map(([name]) => name.toLowerCase()))]
      .filter((name) => !['connection', 'keep-alive', 'transfer-encoding', 'upgrade', 'age', ...connectionNamed].includes(name))
    const hitsBefore = origin.hits('/m')
    for (const round of [1, 2]) {
      const outcome = await attempt(client.send(url))
      await cache.flush()
      expectSame(outcome, reference, compared, `round ${round}`)
    }
    if (kase.hit === false && reference.ok && [200, 204].includes(reference.reply.status)) {
      // What the cache says of it agrees: not stored, and why.
      const explained = cache.explain({ method: 'GET', url, headers: {} }, reference.reply.status, received(kase.fields))
      expect(explained.storable && explained.retention > 0 && explained.lifetime > 0, JSON.stringify(explained.reasons)).toBe(false)
    }
    if (kase.hit !== null) expect(origin.hits('/m') - hitsBefore, kase.hit ? 'the second request is a hit' : 'the second request reaches the origin').toBe(kase.hit ? 1 : 2)
    // Invalidations by the names a hostile response used as tags.
    for (const tag of ['__proto__', 'constructor', 'toString', 'hasOwnProperty', 't1999', 'x'.repeat(8000)]) await cache.invalidateTag(tag)
  })

  it('a Vary on a field named __proto__ or constructor keys requests by that field as the origin sees it', async () => {
    let n = 0
    const origin = await opened.origin({
      '/v': (req, res) => {
        res.writeHead(200, { 'cache-control': 'max-age=60', vary: '__proto__, constructor' })
        res.end(`${rawField(req, '__proto__') ?? '-'}|${rawField(req, 'constructor') ?? '-'}#${++n}`)
      }
    })
    const { cache, client } = connect(adapter)
    const reference = bare(adapter.name)
    const inits: Array<Record<string, string>> = [{ ['__proto__']: 'a' }, { ['__proto__']: 'b' }, { constructor: 'c' }, {}, { ['__proto__']: 'a', constructor: 'c' }]
    const distinct = new Set<string>()
    for (const round of [1, 2]) {
      for (const headers of inits) {
        // What the origin sees of this request by itself (undici.fetch sends no field named __proto__).
        const seen = (await reference(`${origin.url}/v`, { headers })).body.replace(/#\d+$/, '')
        distinct.add(seen)
        expect((await sendAndStore(cache, client, `${origin.url}/v`, { headers })).body, `round ${round}, ${JSON.stringify(headers)}`).toMatch(new RegExp(`^${seen.replace(/\|/g, '\\|')}#`))
      }
    }
    if (adapter.name === 'interceptor') expect(distinct.size).toBe(inits.length)
    // Each variant stored once, and served from the cache from then on.
    expect(origin.hits('/v')).toBe(2 * inits.length + distinct.size)
  })
})

describe.each(adapters)('$name: values written straight into the store', (adapter) => {
  const BODY = 'body'
  const baseVariant = { s: 200, m: 'OK', h: { 'cache-control': 'max-age=60' }, p: { b: '$NOW', l: 60, sh: true }, y: {}, t: [], n: 'u', l: BODY.length }

  function substitute (value: unknown, key: string, now: number): unknown {
    if (value === '$NOW') return now
    if (typeof value === 'string') return value.replaceAll('$KEY', key)
    if (Array.isArray(value)) return value.map((item) => substitute(item, key, now))
    // Object.fromEntries defines a property named __proto__ as its own, as JSON.parse does.
    if (typeof value === 'object' && value !== null) return Object.fromEntries(Object.entries(value).map(([name, item]) => [name, substitute(item, key, now)]))
    return value
  }

  /** What the Map holds under the key: Keyv's record as the cache writes it, `<expires>\n<frame>`, or a raw value. */
  function stored (frame: Frame, key: string): unknown {
    if ('value' in frame) return frame.value
    const now = Date.now()
    const header = substitute({ k: '$KEY', x: null, e: [{ ...baseVariant, ...frame.variant }], ...frame.header }, key, now)
    const text = `cachedfetch/3 ${JSON.stringify(header)}\n${frame.bodies ?? BODY}`
    if (frame.raw !== undefined) return frame.raw.replace('$FRAME', text).replace('$HEADER', JSON.stringify(header))
    return `\n${text}`
  }

  it.each(cases.frames)('$name: $expect, never an exception', async (frame) => {
    const origin = await opened.origin({ '/t': (_req, res) => { res.writeHead(200, { 'cache-control': 'no-store' }); res.end('origin') } })
    const url = `${origin.url}/t`
    const map = new Map<string, unknown>([[`cachedfetch:GET ${url}`, stored(frame, `GET ${url}`)]])
    // No memory tier: every request reads the store.
    const { cache, client } = connect(adapter, { store: map, maxSize: 0, retry: false })
    const outcome = await attempt(client.send(url))
    expect(outcome.ok, shown(outcome)).toBe(true)
    if (outcome.ok && frame.expect !== 'any') {
      expect(outcome.reply.body).toBe(frame.expect === 'origin' ? 'origin' : BODY)
      expect(origin.hits('/t')).toBe(frame.expect === 'origin' ? 1 : 0)
    }
    // Listing the store, and dropping by the tags a value names, read it too.
    for (const tag of ['__proto__', 'constructor', 'toString']) await cache.invalidateTag(tag)
    await cache.invalidatePrefix(`${origin.url}/`)
    expect((await client.send(url)).body).toBe('origin')
    await cache.close()
  })

  it('a frame whose JSON nests past the stack is a miss', async () => {
    const origin = await opened.origin({ '/t': (_req, res) => { res.writeHead(200, { 'cache-control': 'no-store' }); res.end('origin') } })
    const url = `${origin.url}/t`
    const map = new Map<string, unknown>([[`cachedfetch:GET ${url}`, `\ncachedfetch/3 ${'['.repeat(200_000)}${']'.repeat(200_000)}\nbody`]])
    const { client } = connect(adapter, { store: map, maxSize: 0 })
    expect((await client.send(url)).body).toBe('origin')
  })
})

describe.each(adapters)('$name: invalidation stays on its own origin', (adapter) => {
  async function origins (location: (a: string, b: string) => { field: string, value: string | string[] }): Promise<{ a: Origin, b: Origin }> {
    const a = await opened.origin()
    const b = await opened.origin()
    for (const origin of [a, b]) {
      for (const path of ['/x', '/y']) {
        origin.route(path, (_req, res) => {
          res.writeHead(200, { 'cache-control': 'max-age=60' })
          res.end(`${origin.url}${path}`)
        })
      }
    }
    a.route('/post', (_req, res) => {
      const { field, value } = location(new URL(a.url).port, new URL(b.url).port)
      res.writeHead(201, { [field]: value })
      res.end()
    })
    return { a, b }
  }

  async function primed (cache: Cache, client: Client, a: Origin, b: Origin): Promise<void> {
    for (const url of [`${a.url}/x`, `${a.url}/y`, `${b.url}/x`, `${b.url}/y`]) await sendAndStore(cache, client, url)
  }

  it.each(cases.locations)('$name', async ({ field, value, invalidatesX }) => {
    const { a, b } = await origins((portA, portB) => ({ field, value: value.replaceAll('$A', portA).replaceAll('$B', portB) }))
    const { cache, client } = connect(adapter)
    await primed(cache, client, a, b)
    const answer = await attempt(sendAndStore(cache, client, `${a.url}/post`, { method: 'POST', body: 'x' }))
    expect(answer.ok, shown(answer)).toBe(true)
    for (const url of [`${a.url}/x`, `${a.url}/y`, `${b.url}/x`, `${b.url}/y`]) expect((await sendAndStore(cache, client, url)).body).toBe(url)
    expect([a.hits('/x'), a.hits('/y'), b.hits('/x'), b.hits('/y')]).toEqual([invalidatesX ? 2 : 1, 1, 1, 1])
  })

  it('of several Location lines, none reaches another origin', async () => {
    const { a, b } = await origins((portA, portB) => ({ field: 'location', value: [`http://127.0.0.1:${portB}/x`, `http://127.0.0.1:${portA}/x`, `http://127.0.0.1:${portB}/y`] }))
    const { cache, client } = connect(adapter)
    await primed(cache, client, a, b)
    await sendAndStore(cache, client, `${a.url}/post`, { method: 'POST', body: 'x' })
    for (const url of [`${b.url}/x`, `${b.url}/y`]) await sendAndStore(cache, client, url)
    expect([b.hits('/x'), b.hits('/y')]).toEqual([1, 1])
  })

  it('a Location that a dispatcher below hands over as LOCATION still invalidates', async () => {
    const { a, b } = await origins((portA) => ({ field: 'location', value: `http://127.0.0.1:${portA}/x` }))
    const upper: Dispatcher.DispatcherComposeInterceptor = (dispatch) => (opts, handler) => dispatch(opts, {
      onRequestStart: (controller, context) => handler.onRequestStart?.(controller, context),
      onResponseStart: (controller, status, headers, message) => handler.onResponseStart?.(controller, status,
        Object.fromEntries(Object.entries(headers).map(([name, value]) => [name.toUpperCase(), value])), message),
      onResponseData: (controller, chunk) => handler.onResponseData?.(controller, chunk),
      onResponseEnd: (controller, trailers) => handler.onResponseEnd?.(controller, trailers),
      onResponseError: (controller, error) => handler.onResponseError?.(controller, error)
    })
    const { cache, client } = connect(adapter, undefined, new Agent().compose(upper))
    await primed(cache, client, a, b)
    await sendAndStore(cache, client, `${a.url}/post`, { method: 'POST', body: 'x' })
    await sendAndStore(cache, client, `${a.url}/x`)
    expect(a.hits('/x')).toBe(2)
  })
})
