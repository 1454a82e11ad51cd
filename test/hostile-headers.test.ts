/**
 * Hostile input, generated: property-based tests (fast-check) over Cache-Control, Expires, Date,
 * Age, ETag, Last-Modified, Vary, Set-Cookie and status codes, realistic and malformed, against the
 * engine (`cache.explain()`) and through both adapters against a real origin. Whatever the fields
 * say: nothing throws, no lifetime, age or retention is negative or NaN, nothing is stored that
 * RFC 9111 §3 forbids, and no response is served fresher than its fields allow. What they allow is
 * computed here, on its own, from the RFC: max-age / s-maxage, else Expires − Date, else a tenth
 * of the time since Last-Modified by our clock, less the age (§4.2).
 *
 * The runs are deterministic: FUZZ_SEED (default below) picks them; a failure names the seed and
 * the counterexample, and `FUZZ_SEED=<seed> npx vitest run test/hostile-headers.test.ts` replays it.
 * FUZZ_RUNS=10 runs ten times as many cases.
 */
import { Buffer } from 'node:buffer'
import { readFileSync } from 'node:fs'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import fc from 'fast-check'
import { Agent, request, type Dispatcher } from 'undici'
import { cacheInterceptor, createCache, createCachedFetch, type Cache } from '../src/index.js'
import { startOrigin, type Origin } from './helpers/origin.js'
import { manualClock } from './helpers/time.js'
import { within } from './helpers/wait.js'

const SEED = Number(process.env.FUZZ_SEED ?? 91110)
/** FUZZ_RUNS multiplies the number of runs, for a longer hunt than CI's. */
const RUNS = Number(process.env.FUZZ_RUNS ?? 1)
/** The clock every case starts at; generated dates are relative to it. */
const T0 = Date.UTC(2026, 0, 1)
const YEAR = 365 * 24 * 3600
/** RFC 9111 §1.2.2: the most a delta-seconds can say. */
const MAX_DELTA = 2 ** 31

/** Runs a property with the fixed seed; a failure says which seed to replay. */
async function check<T> (property: fc.IAsyncPropertyWithHooks<T> | fc.IPropertyWithHooks<T>, numRuns: number): Promise<void> {
  try {
    await fc.assert(property, { seed: SEED, numRuns: Math.ceil(numRuns * RUNS) })
  } catch (error) {
    (error as Error).message = `FUZZ_SEED=${SEED} replays this failure.\n${(error as Error).message}`
    throw error
  }
}

// ---------------------------------------------------------------------------------------------
// Arbitraries: realistic values, malformed ones, and anything at all.

const anything = fc.string({ unit: 'binary', maxLength: 12 })

const deltaSeconds = fc.oneof(
  { arbitrary: fc.nat({ max: 10 ** 6 }).map(String), weight: 3 },
  fc.constantFrom('0', '-1', '-60', '1e3', '60.5', '"60"', '"6"0', '', ' 60', '0x10', '+60', '60s', 'Infinity', 'NaN',
    '99999999999999999999999', '2147483648', '٣٠', '６０'),
  anything
)

const DIRECTIVE_NAMES = ['max-age', 's-maxage', 'stale-while-revalidate', 'stale-if-error', 'public', 'private', 'no-cache', 'no-store',
  'must-revalidate', 'proxy-revalidate', 'immutable', 'must-understand', 'no-transform']

/** A name in random case: directive names are case-insensitive (RFC 9111 §5.2). */
const anyCase = (name: string): fc.Arbitrary<string> =>
  fc.array(fc.boolean(), { minLength: name.length, maxLength: name.length }).map((upper) => [...name].map((ch, i) => upper[i] ? ch.toUpperCase() : ch).join(''))

const directive = fc.oneof(
  fc.tuple(fc.constantFrom('max-age', 's-maxage', 'stale-while-revalidate', 'stale-if-error').chain(anyCase), deltaSeconds).map(([name, value]) => `${name}=${value}`),
  fc.constantFrom(...DIRECTIVE_NAMES).chain(anyCase),
  fc.constantFrom('private="set-cookie"', 'no-cache="set-cookie, x-a"', 'private=authorization', 'max-age', 's-maxage=', '=60', 'x-ext=1'),
  anything
)

const cacheControl = fc.oneof(
  fc.tuple(fc.array(directive, { maxLength: 6 }), fc.constantFrom(',', ', ', ' ,', ',,', ';', ' ')).map(([parts, separator]) => parts.join(separator)),
  fc.array(fc.array(directive, { minLength: 1, maxLength: 3 }).map((parts) => parts.join(', ')), { minLength: 2, maxLength: 3 })
)

const DAY_NAMES = ['Sun', 'Mon', 'Tue', 'Wed', 'Thu', 'Fri', 'Sat']
const LONG_DAY_NAMES = ['Sunday', 'Monday', 'Tuesday', 'Wednesday', 'Thursday', 'Friday', 'Saturday']
const MONTH_NAMES = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec']
const pad = (n: number, width = 2): string => String(n).padStart(width, '0')
const clock = (d: Date): string => `${pad(d.getUTCHours())}:${pad(d.getUTCMinutes())}:${pad(d.getUTCSeconds())}`

/** The three HTTP-date forms of RFC 9110 §5.6.7, for a time in the years 0 to 9999. */
const HTTP_DATE_FORMS: Record<string, (d: Date) => string> = {
  imf: (d) => `${DAY_NAMES[d.getUTCDay()]}, ${pad(d.getUTCDate())} ${MONTH_NAMES[d.getUTCMonth()]} ${pad(d.getUTCFullYear(), 4)} ${clock(d)} GMT`,
  rfc850: (d) => `${LONG_DAY_NAMES[d.getUTCDay()]}, ${pad(d.getUTCDate())}-${MONTH_NAMES[d.getUTCMonth()]}-${pad(d.getUTCFullYear() % 100)} ${clock(d)} GMT`,
  asctime: (d) => `${DAY_NAMES[d.getUTCDay()]} ${MONTH_NAMES[d.getUTCMonth()]} ${String(d.getUTCDate()).padStart(2, ' ')} ${clock(d)} ${pad(d.getUTCFullYear(), 4)}`
}

const httpDate = fc.oneof(
  // Near the clock, in each form (RFC 850's two-digit years stay in this century from here).
  fc.tuple(fc.integer({ min: -20 * YEAR, max: 20 * YEAR }), fc.constantFrom('imf', 'rfc850', 'asctime'))
    .map(([offset, form]) => HTTP_DATE_FORMS[form]!(new Date(T0 + offset * 1000))),
  // Any year from 0 to 9999.
  fc.tuple(fc.integer({ min: 0, max: 9999 }), fc.integer({ min: 0, max: YEAR - 1 })).map(([year, second]) => {
    const date = new Date(0)
    date.setUTCFullYear(year, 0, 1)
    return HTTP_DATE_FORMS.imf!(new Date(date.getTime() + second * 1000))
  }),
  fc.constantFrom('0', '-1', '1', 'yesterday', '2100-01-01', '2100-01-01T00:00:00Z', 'Sat, 01 Jan 2100 00:00:00', 'Thu, 31 Feb 2026 00:00:00 GMT',
    'Fri, 31 Dec 275760 23:59:59 GMT', 'Sat, 01 Jan 10000 00:00:00 GMT', 'Sun, 06 Nov 1994 25:00:00 GMT', 'sun, 06 nov 1994 08:49:37 gmt', ''),
  anything
)

const age = fc.oneof(fc.nat({ max: 10 * YEAR }).map(String), fc.constantFrom('-5', '1e20', '99999999999999999999', '5, 10', '', ' 7 ', '3.5', '0x10'), anything)
const etag = fc.oneof(fc.constantFrom('"v1"', 'W/"v1"', 'unquoted', '', '"', '"a", "b"'), anything)
const vary = fc.oneof(
  fc.array(fc.constantFrom('accept-language', 'Cookie', 'AUTHORIZATION', '*', 'accept', '', ' ', 'x-a b'), { maxLength: 4 }).map((names) => names.join(',')),
  anything
)

interface Fields {
  readonly 'cache-control'?: string | string[]
  readonly expires?: string
  readonly date?: string
  readonly 'last-modified'?: string
  readonly age?: string
  readonly etag?: string
  readonly vary?: string
  readonly 'set-cookie'?: string
}

const fields: fc.Arbitrary<Fields> = fc.record({
  'cache-control': cacheControl,
  expires: httpDate,
  date: httpDate,
  'last-modified': httpDate,
  age,
  etag,
  vary,
  'set-cookie': fc.constant('session=someone')
}, { requiredKeys: [] })

interface Case {
  readonly status: number
  readonly method: 'GET' | 'HEAD'
  readonly shared: boolean
  readonly credential: 'authorization' | 'cookie' | undefined
  readonly fields: Fields
}

const ODD_STATUSES = [0, 99, 100, 101, 199, 206, 304, 600, 999, 1000, -1]
const caseOf = (status: fc.Arbitrary<number>): fc.Arbitrary<Case> => fc.record({
  status,
  method: fc.constantFrom('GET', 'HEAD'),
  shared: fc.boolean(),
  credential: fc.constantFrom('authorization', 'cookie', undefined),
  fields
})

// ---------------------------------------------------------------------------------------------
// What the fields allow, from RFC 9111, written apart from the engine.

/** RFC 9110 §5.6.7: an HTTP-date in one of its three forms, else undefined. */
function parseDate (value: string | undefined, now: number): number | undefined {
  if (value === undefined) return undefined
  const month = (name: string): number => MONTH_NAMES.findIndex((m) => m.toLowerCase() === name.toLowerCase())
  const at = (year: number, mon: number, day: number, h: string, m: string, s: string): number | undefined => {
    if (mon < 0 || Number(h) > 23 || Number(m) > 59 || Number(s) > 60) return undefined
    const date = new Date(0)
    date.setUTCFullYear(year, mon, day)
    if (date.getUTCDate() !== day) return undefined
    return date.getTime() + (Number(h) * 3600 + Number(m) * 60 + Number(s)) * 1000
  }
  const text = value.trim()
  let m = /^(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun), (\d\d) (\w{3}) (\d{4}) (\d\d):(\d\d):(\d\d) GMT$/i.exec(text)
  if (m !== null) return at(Number(m[3]), month(m[2]!), Number(m[1]), m[4]!, m[5]!, m[6]!)
  m = /^(?:Monday|Tuesday|Wednesday|Thursday|Friday|Saturday|Sunday), (\d\d)-(\w{3})-(\d\d) (\d\d):(\d\d):(\d\d) GMT$/i.exec(text)
  if (m !== null) {
    const current = new Date(now).getUTCFullYear()
    let year = current - (current % 100) + Number(m[3])
    if (year > current + 50) year -= 100
    return at(year, month(m[2]!), Number(m[1]), m[4]!, m[5]!, m[6]!)
  }
  m = /^(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun) (\w{3}) ([ \d]\d) (\d\d):(\d\d):(\d\d) (\d{4})$/i.exec(text)
  if (m !== null) return at(Number(m[6]), month(m[1]!), Number(m[2]!.trim()), m[3]!, m[4]!, m[5]!)
  return undefined
}

/** RFC 9111 §1.2.2: digits (a quoted-string form accepted, §5.2), at most 2^31; anything else invalid. */
function delta (value: string | true | undefined): number | undefined {
  if (typeof value !== 'string') return undefined
  const text = value.replace(/^"(.*)"$/, '$1')
  return /^\d+$/.test(text) ? Math.min(Number(text), MAX_DELTA) : undefined
}

/** Directives of every Cache-Control line, names lower-cased; of one given twice, the first (§4.2.1). */
function directivesOf (value: string | string[] | undefined): Map<string, string | true> {
  const directives = new Map<string, string | true>()
  for (const line of value === undefined ? [] : [value].flat()) {
    // A comma inside a quoted-string argument separates nothing (RFC 9110 §5.6.4).
    for (const part of line.match(/(?:"(?:[^"\\]|\\.)*"?|[^,"])+|(?<=^|,)(?=,|$)/g) ?? []) {
      const eq = part.indexOf('=')
      const name = (eq === -1 ? part : part.slice(0, eq)).trim().toLowerCase()
      if (name !== '' && !directives.has(name)) directives.set(name, eq === -1 ? true : part.slice(eq + 1).trim())
    }
  }
  return directives
}

/** Statuses whose caching rules a cache can be expected to understand (RFC 9110 §15), for must-understand. */
const UNDERSTOOD = new Set([200, 203, 204, 300, 301, 302, 303, 307, 308, 404, 405, 410, 414, 501])

/** RFC 9110 §15.1: statuses heuristically cacheable. */
const HEURISTIC = new Set([200, 203, 204, 206, 300, 301, 308, 404, 405, 410, 414, 501])

interface Allowed {
  /** Whether RFC 9111 §3 (and our shared-cache rules for cookies) let the response be stored at all. */
  readonly storable: boolean
  /** The most freshness the fields give, in seconds (§4.2.1, §4.2.2). */
  readonly lifetime: number
  /** The least age it can have when received (§4.2.3). */
  readonly age: number
}

function allowed (c: Case, fieldValues: Fields, receivedAt: number): Allowed {
  const d = directivesOf(fieldValues['cache-control'])
  const has = (name: string): boolean => d.has(name)
  const varied = (fieldValues.vary ?? '').split(',').map((name) => name.trim().toLowerCase())
  const credentialAllowed = has('public') || has('must-revalidate') || (c.shared && has('s-maxage'))
  const explicit = has('max-age') || (c.shared && has('s-maxage')) || fieldValues.expires !== undefined
  // §5.2.2.3: must-understand stores only a status the cache understands, and then ignores no-store.
  const understood = has('must-understand') ? UNDERSTOOD.has(c.status) : !has('no-store')
  const storable = c.status >= 200 && c.status !== 206 && c.status !== 304 && understood && !varied.includes('*') &&
    (explicit || has('public') || (!c.shared && has('private')) || HEURISTIC.has(c.status)) &&
    !(c.shared && (has('private') || fieldValues['set-cookie'] !== undefined)) &&
    !(c.shared && c.credential === 'authorization' && !credentialAllowed) &&
    !(c.shared && c.credential === 'cookie' && !credentialAllowed && !varied.includes('cookie'))
  const date = parseDate(fieldValues.date, receivedAt)
  let lifetime: number
  if (c.shared && has('s-maxage')) lifetime = delta(d.get('s-maxage')) ?? 0
  else if (has('max-age')) lifetime = delta(d.get('max-age')) ?? 0
  else if (fieldValues.expires !== undefined) {
    const expires = parseDate(fieldValues.expires, receivedAt)
    lifetime = expires === undefined ? 0 : Math.max(0, (expires - (date ?? receivedAt)) / 1000)
  } else {
    const lastModified = parseDate(fieldValues['last-modified'], receivedAt)
    lifetime = lastModified === undefined ? 0 : 0.1 * Math.max(0, receivedAt - lastModified) / 1000
  }
  if (has('no-cache')) lifetime = 0
  const apparent = date === undefined ? 0 : Math.max(0, (receivedAt - date) / 1000)
  const ageField = delta(fieldValues.age?.split(',')[0]?.trim()) ?? 0
  return { storable, lifetime: Math.min(lifetime, MAX_DELTA), age: Math.max(apparent, ageField) }
}

const HIT = /^cachedfetch; hit/

/** Cache-Status `ttl` of our member, if any. */
function ttlOf (cacheStatus: string | null | undefined): number | undefined {
  const ttl = /cachedfetch;[^,]*; ttl=(-?\d+)/.exec(cacheStatus ?? '')
  return ttl === null ? undefined : Number(ttl[1])
}

const credentials = (c: Case): Record<string, string> =>
  c.credential === 'authorization' ? { authorization: 'Bearer alice' } : c.credential === 'cookie' ? { cookie: 'session=alice' } : {}

// ---------------------------------------------------------------------------------------------

interface KnownCase {
  readonly name: string
  readonly headers: Record<string, string | string[]>
  readonly shared?: boolean
  readonly lifetime: number
  readonly minAge?: number
  readonly maxAge?: number
}

const known = (JSON.parse(readFileSync(new URL('../fixtures/hostile-fields.json', import.meta.url), 'utf8')) as { cases: KnownCase[] }).cases

describe('hostile fields with a known answer (fixtures/hostile-fields.json)', () => {
  it.each(known)('$name', async (c) => {
    const cache = createCache({ now: () => T0, shared: c.shared ?? true })
    const explanation = cache.explain({ method: 'GET', url: 'https://example.test/known', headers: {} }, 200, c.headers)
    expect(explanation.lifetime).toBeCloseTo(c.lifetime, 3)
    if (c.minAge !== undefined) expect(explanation.age).toBeGreaterThanOrEqual(c.minAge)
    if (c.maxAge !== undefined) expect(explanation.age).toBeLessThanOrEqual(c.maxAge)
    await cache.close()
  })
})

describe('the engine, given hostile fields (cache.explain)', () => {
  const status = fc.oneof(fc.integer({ min: 100, max: 599 }), fc.constantFrom(...ODD_STATUSES))

  it('never throws; lifetime, age and retention are finite and never negative; never more storable or fresher than the fields allow', async () => {
    const shared = createCache({ now: () => T0 })
    const privateCache = createCache({ now: () => T0, shared: false })
    await check(fc.property(caseOf(status), (c) => {
      const engine = c.shared ? shared : privateCache
      const explanation = engine.explain({ method: c.method, url: 'https://example.test/fuzz', headers: credentials(c) }, c.status, { ...c.fields })
      for (const n of [explanation.lifetime, explanation.age, explanation.retention]) {
        expect(Number.isFinite(n)).toBe(true)
        expect(n).toBeGreaterThanOrEqual(0)
      }
      expect(Number.isSafeInteger(explanation.ttl)).toBe(true)
      const limit = allowed(c, c.fields, T0)
      if (explanation.storable) expect(limit.storable).toBe(true)
      expect(explanation.lifetime).toBeLessThanOrEqual(limit.lifetime + 1e-6)
      expect(explanation.ttl).toBeLessThanOrEqual(limit.lifetime - limit.age + 1e-6)
    }), 3000)
    await Promise.all([shared.close(), privateCache.close()])
  })
})

describe('both adapters, given hostile fields from a real origin', () => {
  let origin: Origin
  const agent = new Agent()
  /** The fields the origin sends for the case being run. */
  let current: { status: number, fields: Record<string, string | string[]> } = { status: 200, fields: {} }

  beforeAll(async () => {
    origin = await startOrigin({
      '/fuzz': (_req, res) => {
        // The case's Date or none: not the server's own.
        res.sendDate = false
        res.writeHead(current.status, current.fields).end('the body')
      }
    })
  })

  afterAll(async () => {
    await agent.close()
    await origin.close()
  })

  /**
   * What goes on the wire: a value as its UTF-8 bytes read as Latin-1 (as undici reads them), with
   * the controls a server cannot send taken out (undici refuses them: test/poisoning.test.ts).
   */
  function onTheWire (value: string): string {
    return Buffer.from(value, 'utf8').toString('latin1').replace(/[^\t\x20-\x7e\x80-\xff]/g, '').trim()
  }

  interface Seen {
    readonly status: number
    readonly body: string
    readonly age: string | undefined
    readonly cacheStatus: string | undefined
  }

  type Send = (c: Case, mode: 'default' | 'force-cache') => Promise<Seen>

  function viaFetch (fetch: ReturnType<typeof createCachedFetch>): Send {
    return async (c, mode) => {
      const response = await fetch(`${origin.url}/fuzz`, { method: c.method, headers: credentials(c), cache: mode })
      return { status: response.status, body: await response.text(), age: response.headers.get('age') ?? undefined, cacheStatus: response.headers.get('cache-status') ?? undefined }
    }
  }

  function viaRequest (dispatcher: Dispatcher): Send {
    return async (c, mode) => {
      const response = await request(`${origin.url}/fuzz`, { dispatcher, method: c.method, headers: credentials(c), cacheMode: mode })
      const one = (v: string | string[] | undefined): string | undefined => Array.isArray(v) ? v.join(', ') : v
      return { status: response.statusCode, body: await response.body.text(), age: one(response.headers.age), cacheStatus: one(response.headers['cache-status']) }
    }
  }

  // Not 205: Node's server sends a body with it, which it must not (RFC 9110 §15.3.6), and what a
  // client makes of the bytes after it is the connection's business, not the cache's.
  const status = fc.oneof(fc.integer({ min: 200, max: 599 }).filter((code) => code !== 205), fc.constantFrom(206, 304, 600, 999))
  const faces: [string, (cache: Cache) => Send][] = [
    ['cachedFetch', (cache) => viaFetch(createCachedFetch({ cache, dispatcher: agent }))],
    ['interceptor', (cache) => viaRequest(agent.compose(cacheInterceptor({ cache })))]
  ]

  it.each([600, 999])('stores and serves a status of %i through both, as undici.fetch returns it (the Response constructor refuses it)', async (code) => {
    current = { status: code, fields: { 'cache-control': 'max-age=60' } }
    const c: Case = { status: code, method: 'GET', shared: true, credential: undefined, fields: {} }
    for (const [, make] of faces) {
      const cache = createCache()
      const send = make(cache)
      for (let i = 0; i < 2; i++) expect(await send(c, 'default')).toMatchObject({ status: code, body: 'the body' })
      expect((await send(c, 'default')).cacheStatus).toMatch(HIT)
      await cache.close()
    }
  })

  it('says a ttl and an Age of a hit as integers, whatever the max-age and Age', async () => {
    current = { status: 200, fields: { 'cache-control': 'max-age=99999999999999999999999', age: '99999999999999999999', etag: '"v1"' } }
    const c: Case = { status: 200, method: 'GET', shared: true, credential: undefined, fields: {} }
    for (const [, make] of faces) {
      const cache = createCache({ now: () => T0 })
      const send = make(cache)
      await send(c, 'default')
      const hit = await send(c, 'force-cache')
      expect(hit.cacheStatus).toMatch(/^cachedfetch; hit; ttl=-?\d+$/)
      expect(hit.age).toBe(String(MAX_DELTA))
      expect(ttlOf(hit.cacheStatus)).toBe(0)
      await cache.close()
    }
  })

  it('never throws or stalls; a hit is never fresher than the fields allow, and its Age and ttl are integers', async () => {
    const waits = fc.oneof(fc.nat({ max: 300 }), fc.nat({ max: 3 * YEAR }))
    await check(fc.asyncProperty(caseOf(status), waits, async (c, elapsed) => {
      const sent: Record<string, string | string[]> = {}
      for (const [name, value] of Object.entries(c.fields as Record<string, string | string[]>)) sent[name] = Array.isArray(value) ? value.map(onTheWire) : onTheWire(value)
      current = { status: c.status, fields: sent }
      const limit = allowed(c, sent, T0)
      for (const [adapter, make] of faces) {
        // undici.fetch turns a 407 into a network error, cache or not (Fetch §4.3, no-window requests).
        if (adapter === 'cachedFetch' && c.status === 407) continue
        const time = manualClock(T0)
        const cache = createCache({ now: time.now, shared: c.shared, retry: false })
        const send = make(cache)
        const first = await within(send(c, 'default'), 'the first request')
        await cache.flush()
        time.advance(elapsed)
        const second = await within(send(c, 'default'), 'the second request')
        const stale = await within(send(c, 'force-cache'), 'a force-cache request')
        for (const seen of [first, second, stale]) {
          expect(seen.status).toBe(c.status)
          expect(seen.body).toBe(c.method === 'HEAD' || [204, 304].includes(c.status) ? '' : 'the body')
        }
        if (/; stored/.test(first.cacheStatus ?? '')) expect(limit.storable).toBe(true)
        // The last request may be served the answer to the second, stored `elapsed` later than the first.
        for (const [seen, since] of [[second, elapsed], [stale, HIT.test(second.cacheStatus ?? '') ? elapsed : 0]] as const) {
          if (!HIT.test(seen.cacheStatus ?? '')) continue
          expect(limit.storable).toBe(true)
          expect(seen.age).toMatch(/^\d{1,15}$/)
          expect(seen.cacheStatus).toMatch(/; ttl=-?\d{1,15}(;|$)/)
          expect(ttlOf(seen.cacheStatus)).toBeLessThanOrEqual(limit.lifetime - limit.age - since + 1e-6)
        }
        if (/^cachedfetch; hit; ttl=/.test(second.cacheStatus ?? '')) expect(limit.lifetime - limit.age - elapsed).toBeGreaterThan(0)
        await cache.close()
      }
    }), 120)
  })
})
