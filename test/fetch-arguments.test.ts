/**
 * cachedFetch reads its arguments as fetch does (WHATWG Fetch, WebIDL): all of them when it is
 * called, whatever the caller changes afterwards; the init as a dictionary (inherited members and
 * getters included; no init but an object); any input but a Request as its text; Node's global
 * Request with its body left unread when init brings another; and a field fetch refuses refused
 * on a hit as on a miss (through the interceptor too, under undici.request). Each case is
 * compared with fetch itself.
 */
import { afterEach, expect, it } from 'vitest'
import { fetch as undiciFetch, FormData as UndiciFormData, request, Request as UndiciRequest } from 'undici'
import { cacheInterceptor, createCachedFetch } from '../src/index.js'
import { respond, type Route } from './helpers/origin.js'
import { teardown } from './helpers/teardown.js'

const opened = teardown()
afterEach(async () => { await opened.close() })

/** Answers with what it saw, as JSON, fresh for a minute (so that the cache is involved). */
const echo: Route = async (req, res) => {
  let body = ''
  for await (const chunk of req) body += String(chunk)
  res.writeHead(200, { 'cache-control': 'max-age=60', 'content-type': 'application/json' })
  res.end(JSON.stringify({ method: req.method, body, xa: req.headers['x-a'] ?? null, referer: req.headers.referer ?? null }))
}

const hello: Route = respond(200, { 'cache-control': 'max-age=60', 'content-type': 'text/plain' }, 'hello world')

/** What a call gave: its value, or the class and name of what it threw. */
async function outcome (run: () => Promise<unknown>): Promise<unknown> {
  try {
    return await run()
  } catch (error) {
    return { threw: (error as Error).constructor.name, name: (error as Error).name }
  }
}

const refused = { threw: 'TypeError', name: 'TypeError' }
type AnyFetch = (input: never, init?: never) => Promise<Response>
const theirs = undiciFetch as unknown as AnyFetch

it('reads a URL when called: a caller that reuses one for the next page gets each page (with a store, whose lookup waits)', async () => {
  const origin = await opened.origin({
    '/items': (req, res) => {
      res.writeHead(200, { 'cache-control': 'max-age=60', 'content-type': 'text/plain' })
      res.end(new URL(req.url!, 'http://x').searchParams.get('page') ?? 'none')
    }
  })
  const cachedFetch = createCachedFetch({ dispatcher: opened.agent(), store: new Map() })
  const url = new URL(`${origin.url}/items`)
  const pending: Array<Promise<Response>> = []
  for (const page of ['1', '2', '3']) {
    url.searchParams.set('page', page)
    pending.push(cachedFetch(url))
  }
  const pages = await Promise.all(pending.map(async (response) => { const r = await response; return [r.url, await r.text()] }))
  expect(pages).toEqual(['1', '2', '3'].map((page) => [`${origin.url}/items?page=${page}`, page]))
})

it('reads a Headers object when called: a caller that reuses one sends each request its own fields (with a store)', async () => {
  const origin = await opened.origin({ '/echo': echo })
  const cachedFetch = createCachedFetch({ dispatcher: opened.agent(), store: new Map() })
  const headers = new Headers()
  const pending: Array<Promise<Response>> = []
  for (const n of ['1', '2', '3']) {
    headers.set('x-a', n)
    pending.push(cachedFetch(`${origin.url}/echo?${n}`, { headers }))
  }
  expect(await Promise.all(pending.map(async (response) => ((await (await response).json()) as { xa: string }).xa))).toEqual(['1', '2', '3'])
})

const inits: Record<string, (url: string) => RequestInit> = {
  'an init with inherited members (Object.create(defaults))': () => Object.create({ method: 'POST', body: 'hi', headers: { 'x-a': '1' } }) as RequestInit,
  'an init whose members are getters (a class instance)': () => new (class { get method (): string { return 'POST' } get body (): string { return 'hi' } get headers (): Record<string, string> { return { 'x-a': '1' } } })(),
  'a Request as the init (fetch(url, request))': (url) => new UndiciRequest(url, { method: 'POST', body: 'hi', headers: { 'x-a': '1' } })
}

it.each(Object.entries(inits))('sends what fetch sends for %s', async (_name, makeInit) => {
  const origin = await opened.origin({ '/echo': echo })
  const cachedFetch = createCachedFetch({ dispatcher: opened.agent() })
  const url = `${origin.url}/echo`
  const expected = { method: 'POST', body: 'hi', xa: '1', referer: null }
  expect(await (await undiciFetch(`${url}?theirs`, makeInit(`${url}?theirs`) as never)).json()).toEqual(expected)
  expect(await (await cachedFetch(`${url}?ours`, makeInit(`${url}?ours`))).json()).toEqual(expected)
})

it.each(['no-store', 42, true])('refuses an init of %j with a TypeError, as fetch does', async (init) => {
  const origin = await opened.origin({ '/a': hello })
  const cachedFetch = createCachedFetch({ dispatcher: opened.agent() }) as unknown as AnyFetch
  const status = async (fetch: AnyFetch): Promise<unknown> => await outcome(async () => (await fetch(`${origin.url}/a` as never, init as never)).status)
  expect(await status(theirs)).toEqual(refused)
  expect(await status(cachedFetch)).toEqual(refused)
  expect(origin.hits('/a')).toBe(0)
})

const inputs: Record<string, (url: string) => unknown> = {
  'a String object': (url) => new String(url),  
  'a URL-like object with toString() (another realm\'s or library\'s URL)': (url) => ({ toString: () => url, href: url })
}

it.each(Object.entries(inputs))('takes %s as input, as fetch does', async (_name, makeInput) => {
  const origin = await opened.origin({ '/a': hello })
  const cachedFetch = createCachedFetch({ dispatcher: opened.agent() }) as unknown as AnyFetch
  const url = `${origin.url}/a`
  const read = async (fetch: AnyFetch): Promise<unknown> => await outcome(async () => {
    const response = await fetch(makeInput(url) as never)
    return { status: response.status, url: response.url, text: await response.text() }
  })
  const expected = { status: 200, url, text: 'hello world' }
  expect(await read(theirs)).toEqual(expected)
  expect(await read(cachedFetch)).toEqual(expected)
})

it('leaves a global Request\'s body unread when init brings its own, as Node\'s fetch does', async () => {
  const origin = await opened.origin({ '/echo': echo })
  const cachedFetch = createCachedFetch({ dispatcher: opened.agent() })
  const input = new Request(`${origin.url}/echo`, { method: 'POST', body: 'original' })
  expect(await (await cachedFetch(input, { body: 'replacement' })).json()).toEqual({ method: 'POST', body: 'replacement', xa: null, referer: null })
  expect(input.bodyUsed).toBe(false)
  expect(await input.text()).toBe('original')
})

it('sends a global Request\'s body when init gives a null one, as fetch does (a null init body is none)', async () => {
  const origin = await opened.origin({ '/echo': echo })
  const cachedFetch = createCachedFetch({ dispatcher: opened.agent() })
  const input = new Request(`${origin.url}/echo`, { method: 'POST', body: 'original' })
  expect(await (await cachedFetch(input, { body: null })).json()).toEqual({ method: 'POST', body: 'original', xa: null, referer: null })
})

it('reads a URL subclass as fetch reads it: by its own toString()', async () => {
  const origin = await opened.origin({ '/echo': echo })
  const cachedFetch = createCachedFetch({ dispatcher: opened.agent() })
  class Pager extends URL { override toString (): string { return `${origin.url}/echo?from=toString` } }
  const response = await cachedFetch(new Pager(`${origin.url}/echo`))
  await response.arrayBuffer()
  expect([response.status, response.url]).toEqual([200, `${origin.url}/echo?from=toString`])
})

it('takes a Node Request made before the application put undici\'s classes in the globals (undici\'s install())', async () => {
  const origin = await opened.origin({ '/echo': echo })
  const cachedFetch = createCachedFetch({ dispatcher: opened.agent() })
  const input = new Request(`${origin.url}/echo`, { method: 'POST', body: 'made before' })
  const saved = { Request: globalThis.Request, FormData: globalThis.FormData }
  Object.assign(globalThis, { Request: UndiciRequest, FormData: UndiciFormData })
  try {
    expect(await (await cachedFetch(input)).json()).toEqual({ method: 'POST', body: 'made before', xa: null, referer: null })
  } finally {
    Object.assign(globalThis, saved)
  }
})

const unsendable: Record<string, Record<string | symbol, string>> = {
  'Transfer-Encoding: chunked': { 'transfer-encoding': 'chunked' },
  'Keep-Alive: timeout=5': { 'keep-alive': 'timeout=5' },
  'Upgrade: websocket': { upgrade: 'websocket' },
  'Expect: 100-continue': { expect: '100-continue' },
  'a record with a symbol key': { [Symbol('x')]: '1' }
}

it.each(Object.entries(unsendable))('refuses a request with %s on a hit as fetch refuses it', async (_name, headers) => {
  const origin = await opened.origin({ '/a': hello })
  const cachedFetch = createCachedFetch({ dispatcher: opened.agent() }) as unknown as AnyFetch
  const url = `${origin.url}/a`
  const status = async (fetch: AnyFetch): Promise<unknown> => await outcome(async () => (await fetch(url as never, { headers } as never)).status)
  expect(await status(theirs)).toEqual(refused)
  expect(await status(cachedFetch)).toEqual(refused)
  const stored = await cachedFetch(url as never)
  expect(stored.headers.get('cache-status')).toMatch(/stored/)
  await stored.arrayBuffer()
  expect(await status(cachedFetch)).toEqual(refused)
})

it.each(Object.keys(unsendable).slice(0, 4))('refuses a request with %s through the interceptor on a hit as undici refuses it on a miss', async (name) => {
  const origin = await opened.origin({ '/a': hello })
  const dispatcher = opened.agent().compose(cacheInterceptor())
  const url = `${origin.url}/a`
  const headers = unsendable[name] as Record<string, string>
  const status = async (): Promise<unknown> => await outcome(async () => {
    const response = await request(url, { dispatcher, headers })
    await response.body.arrayBuffer()
    return response.statusCode
  })
  const miss = await status()
  expect(miss).toMatchObject({ threw: expect.any(String) as unknown })
  expect((await request(url, { dispatcher })).headers['cache-status']).toMatch(/stored/)
  expect(await status()).toEqual(miss)
})
