/**
 * Bodies: they stream to the caller while the cache records them, bodies past `maxEntrySize` pass
 * through uncached, a body that fails half way is never stored, a hit replayed into an undici
 * handler honours pause(), resume() and abort(), and HEAD responses are kept apart from GET's.
 */
import { afterEach, describe, expect, it } from 'vitest'
import { request, type Dispatcher } from 'undici'
import { createCache, createCachedFetch, cacheInterceptor, type Cache } from '../src/index.js'
import { bytes, respond, type Origin } from './helpers/origin.js'
import { teardown } from './helpers/teardown.js'
import { gate, settle } from './helpers/wait.js'

const opened = teardown()

afterEach(() => opened.close())

function fetchWith (cache: Cache): ReturnType<typeof createCachedFetch> {
  return createCachedFetch({ cache, dispatcher: opened.agent() })
}

async function readAll (reader: ReadableStreamDefaultReader<Uint8Array>): Promise<Buffer> {
  const chunks: Uint8Array[] = []
  for (;;) {
    const { done, value } = await reader.read()
    if (done) return Buffer.concat(chunks)
    chunks.push(value)
  }
}

describe('bodies stream while they are recorded', () => {
  it('hands the first chunk to the caller before the origin has finished, then serves the whole body as a hit', async () => {
    const rest = gate()
    let finished = false
    const server = await opened.origin({
      '/slow': async (_req, res) => {
        res.writeHead(200, { 'content-type': 'text/plain', 'cache-control': 'max-age=60' })
        res.write('first chunk;')
        await rest.promise
        res.end('the rest')
        finished = true
      }
    })
    const cachedFetch = fetchWith(createCache())

    const response = await cachedFetch(`${server.url}/slow`)
    const reader: ReadableStreamDefaultReader<Uint8Array> = response.body!.getReader()
    const first = await reader.read()
    expect(Buffer.from(first.value!).toString()).toBe('first chunk;')
    expect(finished).toBe(false)

    rest.release()
    const remainder = await readAll(reader)
    expect(Buffer.concat([Buffer.from(first.value!), remainder]).toString()).toBe('first chunk;the rest')

    const hit = await cachedFetch(`${server.url}/slow`)
    expect(hit.headers.get('cache-status')).toMatch(/^cachedfetch; hit/)
    expect(await hit.text()).toBe('first chunk;the rest')
    expect(server.hits('/slow')).toBe(1)
  })

  it('streams through the interceptor too: undici.request sees the first chunk before the origin finishes', async () => {
    const rest = gate()
    let finished = false
    const server = await opened.origin({
      '/slow': async (_req, res) => {
        res.writeHead(200, { 'content-type': 'text/plain', 'cache-control': 'max-age=60' })
        res.write('first chunk;')
        await rest.promise
        res.end('the rest')
        finished = true
      }
    })
    const dispatcher = opened.agent().compose(cacheInterceptor({ cache: createCache() }))

    const { body } = await request(`${server.url}/slow`, { dispatcher })
    const chunks: Buffer[] = []
    for await (const chunk of body) {
      chunks.push(chunk as Buffer)
      if (chunks.length === 1) {
        expect(Buffer.concat(chunks).toString()).toBe('first chunk;')
        expect(finished).toBe(false)
        rest.release()
      }
    }
    expect(Buffer.concat(chunks).toString()).toBe('first chunk;the rest')

    const hit = await request(`${server.url}/slow`, { dispatcher })
    expect(hit.headers['cache-status']).toMatch(/^cachedfetch; hit/)
    expect(await hit.body.text()).toBe('first chunk;the rest')
    expect(server.hits('/slow')).toBe(1)
  })
})

describe('bodies larger than maxEntrySize', () => {
  it('streams a body with a content-length past maxEntrySize through uncached', async () => {
    const body = bytes(4096)
    const server = await opened.origin({
      '/big': respond(200, { 'cache-control': 'max-age=60', 'content-length': String(body.byteLength) }, body)
    })
    const cachedFetch = fetchWith(createCache({ maxEntrySize: 1024 }))

    const first = await cachedFetch(`${server.url}/big`)
    expect(Buffer.from(await first.arrayBuffer()).equals(body)).toBe(true)
    const second = await cachedFetch(`${server.url}/big`)
    expect(Buffer.from(await second.arrayBuffer()).equals(body)).toBe(true)
    expect(second.headers.get('cache-status')).not.toMatch(/; hit/)
    expect(server.hits('/big')).toBe(2)
  })

  it('streams a chunked body without content-length past maxEntrySize through uncached, without waiting for its end', async () => {
    const rest = gate()
    const head = bytes(3000)
    const tail = bytes(2000)
    const server = await opened.origin({
      '/chunked': async (_req, res) => {
        res.writeHead(200, { 'cache-control': 'max-age=60', 'content-type': 'application/octet-stream' })
        res.write(head)
        await rest.promise
        res.end(tail)
      }
    })
    const cachedFetch = fetchWith(createCache({ maxEntrySize: 1024 }))

    const first = await cachedFetch(`${server.url}/chunked`)
    expect(first.headers.get('content-length')).toBeNull()
    const reader: ReadableStreamDefaultReader<Uint8Array> = first.body!.getReader()
    // More than maxEntrySize reaches the caller while the origin still holds the rest back.
    let received = 0
    const chunks: Uint8Array[] = []
    while (received < head.byteLength) {
      const { done, value } = await reader.read()
      if (done) break
      chunks.push(value)
      received += value.byteLength
    }
    expect(received).toBe(head.byteLength)
    rest.release()
    chunks.push(await readAll(reader))
    expect(Buffer.concat(chunks).equals(Buffer.concat([head, tail]))).toBe(true)

    const second = await cachedFetch(`${server.url}/chunked`)
    expect(second.headers.get('cache-status')).not.toMatch(/; hit/)
    expect(Buffer.from(await second.arrayBuffer()).equals(Buffer.concat([head, tail]))).toBe(true)
    expect(server.hits('/chunked')).toBe(2)
  })
  it('caches a body of exactly maxEntrySize bytes, chunked or not, and not one a byte larger', async () => {
    const fits = bytes(1024)
    const over = bytes(1025)
    const server = await opened.origin({
      '/fits': respond(200, { 'cache-control': 'max-age=60', 'content-length': '1024' }, fits),
      '/fits-chunked': (_req, res) => {
        res.writeHead(200, { 'cache-control': 'max-age=60' })
        res.write(fits.subarray(0, 500))
        res.end(fits.subarray(500))
      },
      '/over-chunked': (_req, res) => {
        res.writeHead(200, { 'cache-control': 'max-age=60' })
        res.write(over.subarray(0, 500))
        res.end(over.subarray(500))
      }
    })
    const cachedFetch = fetchWith(createCache({ maxEntrySize: 1024 }))

    for (const path of ['/fits', '/fits-chunked', '/over-chunked', '/fits', '/fits-chunked', '/over-chunked']) {
      const response = await cachedFetch(server.url + path)
      expect(Buffer.from(await response.arrayBuffer()).equals(path.startsWith('/fits') ? fits : over)).toBe(true)
    }
    expect(server.hits('/fits')).toBe(1)
    expect(server.hits('/fits-chunked')).toBe(1)
    expect(server.hits('/over-chunked')).toBe(2)
  })
})

describe('an origin that fails mid-body', () => {
  for (const framing of ['content-length', 'chunked'] as const) {
    it(`fails the caller's read and stores nothing (${framing})`, async () => {
      const body = bytes(8000)
      let calls = 0
      let cut = gate()
      const server = await opened.origin({
        '/cut': async (_req, res) => {
          calls++
          const headers: Record<string, string> = { 'cache-control': 'max-age=60' }
          if (framing === 'content-length') headers['content-length'] = String(body.byteLength)
          res.writeHead(200, headers)
          if (calls > 1) {
            res.end(body)
            return
          }
          res.write(body.subarray(0, 1000))
          await cut.promise
          res.socket?.destroy()
        }
      })
      const cachedFetch = fetchWith(createCache())

      const broken = await cachedFetch(`${server.url}/cut`)
      const reader: ReadableStreamDefaultReader<Uint8Array> = broken.body!.getReader()
      const first = await reader.read()
      expect(first.value!.byteLength).toBeGreaterThan(0)
      cut.release()
      await expect(readAll(reader)).rejects.toThrow()

      cut = gate()
      const retried = await cachedFetch(`${server.url}/cut`)
      expect(retried.headers.get('cache-status')).not.toMatch(/; hit/)
      expect(Buffer.from(await retried.arrayBuffer()).equals(body)).toBe(true)
      expect(server.hits('/cut')).toBe(2)

      // The complete answer is what is stored.
      const hit = await cachedFetch(`${server.url}/cut`)
      expect(hit.headers.get('cache-status')).toMatch(/^cachedfetch; hit/)
      expect(Buffer.from(await hit.arrayBuffer()).equals(body)).toBe(true)
      expect(server.hits('/cut')).toBe(2)
    })
  }
})

/** A raw handler on undici's new API that records everything it is told. */
class RecordingHandler implements Dispatcher.DispatchHandler {
  controller: Dispatcher.DispatchController | undefined
  status: number | undefined
  headers: Record<string, string | string[] | undefined> = {}
  readonly chunks: Buffer[] = []
  readonly events: string[] = []
  error: Error | undefined
  readonly firstChunk = gate()
  readonly finished: Promise<void>
  #finish!: () => void
  whenData: ((controller: Dispatcher.DispatchController, chunk: Buffer) => void) | undefined
  whenStart: ((controller: Dispatcher.DispatchController) => void) | undefined

  constructor () {
    this.finished = new Promise<void>((resolve) => { this.#finish = resolve })
  }

  onRequestStart (controller: Dispatcher.DispatchController): void {
    this.controller = controller
    this.events.push('request-start')
  }

  onResponseStart (controller: Dispatcher.DispatchController, status: number, headers: Record<string, string | string[] | undefined>): void {
    this.status = status
    this.headers = headers
    this.events.push('response-start')
    this.whenStart?.(controller)
  }

  onResponseData (controller: Dispatcher.DispatchController, chunk: Buffer): void {
    this.chunks.push(chunk)
    this.events.push('data')
    if (this.chunks.length === 1) this.firstChunk.release()
    this.whenData?.(controller, chunk)
  }

  onResponseEnd (): void {
    this.events.push('end')
    this.#finish()
  }

  onResponseError (_controller: Dispatcher.DispatchController, error: Error): void {
    this.error = error
    this.events.push('error')
    this.#finish()
  }
}

describe('a hit replayed into an undici handler', () => {
  const body = bytes(200 * 1024)

  async function cachedLarge (): Promise<{ server: Origin, dispatcher: Dispatcher }> {
    const server = await opened.origin({
      '/large': respond(200, { 'cache-control': 'max-age=60', 'content-length': String(body.byteLength) }, body)
    })
    const dispatcher = opened.agent().compose(cacheInterceptor({ cache: createCache() }))
    const miss = await request(`${server.url}/large`, { dispatcher })
    expect(Buffer.from(await miss.body.arrayBuffer()).equals(body)).toBe(true)
    return { server, dispatcher }
  }

  function dispatch (dispatcher: Dispatcher, server: Origin, handler: RecordingHandler): void {
    dispatcher.dispatch({ origin: server.url, path: '/large', method: 'GET', headers: {} }, handler)
  }

  it('delivers nothing more after pause() until resume(), then the rest of the body', async () => {
    const { server, dispatcher } = await cachedLarge()
    const handler = new RecordingHandler()
    handler.whenData = (controller) => { if (handler.chunks.length === 1) controller.pause() }
    dispatch(dispatcher, server, handler)

    await handler.firstChunk.promise
    await settle()
    expect(handler.headers['cache-status']).toMatch(/^cachedfetch; hit/)
    expect(handler.chunks).toHaveLength(1)
    expect(handler.chunks[0]!.byteLength).toBeLessThan(body.byteLength)
    expect(handler.events).not.toContain('end')

    handler.controller!.resume()
    await handler.finished
    expect(handler.events.at(-1)).toBe('end')
    expect(handler.chunks.length).toBeGreaterThan(1)
    expect(Buffer.concat(handler.chunks).equals(body)).toBe(true)
    expect(server.hits('/large')).toBe(1)
  })

  it('stops for every pause(): a consumer that pauses after each chunk gets one chunk per resume()', async () => {
    const { server, dispatcher } = await cachedLarge()
    const handler = new RecordingHandler()
    handler.whenData = (controller) => controller.pause()
    dispatch(dispatcher, server, handler)

    await handler.firstChunk.promise
    let resumes = 0
    for (;;) {
      await settle()
      if (handler.events.includes('end')) break
      expect(handler.chunks).toHaveLength(resumes + 1)
      handler.controller!.resume()
      resumes++
      if (resumes > 16) throw new Error('the body never ended')
    }
    // The last resume() only lets the end through.
    expect(handler.chunks).toHaveLength(resumes)
    expect(resumes).toBeGreaterThan(1)
    expect(Buffer.concat(handler.chunks).equals(body)).toBe(true)
  })

  it('ends with onResponseError and never onResponseEnd when the handler aborts after the first chunk', async () => {
    const { server, dispatcher } = await cachedLarge()
    const handler = new RecordingHandler()
    const reason = new Error('consumer gave up')
    handler.whenData = (controller) => controller.abort(reason)
    dispatch(dispatcher, server, handler)

    await handler.finished
    await settle()
    expect(handler.error).toBe(reason)
    expect(handler.events).toEqual(['request-start', 'response-start', 'data', 'error'])
    expect(server.hits('/large')).toBe(1)
  })

  it('ends with onResponseError and no data when the handler aborts at the response start', async () => {
    const { server, dispatcher } = await cachedLarge()
    const handler = new RecordingHandler()
    handler.whenStart = (controller) => controller.abort(new Error('not wanted'))
    dispatch(dispatcher, server, handler)

    await handler.finished
    await settle()
    expect(handler.events).toEqual(['request-start', 'response-start', 'error'])
    expect(handler.error?.message).toBe('not wanted')
  })

  it('ends with onResponseError when the handler aborts while paused', async () => {
    const { server, dispatcher } = await cachedLarge()
    const handler = new RecordingHandler()
    handler.whenData = (controller) => controller.pause()
    dispatch(dispatcher, server, handler)

    await handler.firstChunk.promise
    handler.controller!.abort(new Error('gave up while paused'))
    handler.controller!.resume()
    await handler.finished
    await settle()
    expect(handler.events).toEqual(['request-start', 'response-start', 'data', 'error'])
  })
})

describe('HEAD', () => {
  const body = 'the whole document'

  async function documentOrigin (): Promise<Origin> {
    return opened.origin({
      '/doc': respond(200, {
        'content-type': 'text/plain',
        'content-length': String(Buffer.byteLength(body)),
        'cache-control': 'max-age=60'
      }, body)
    })
  }

  function hitsFor (server: Origin, method: string): number {
    return server.seen('/doc').filter((seen) => seen.method === method).length
  }

  it('serves a HEAD hit without a body, through fetch and through the interceptor', async () => {
    const server = await documentOrigin()
    const cache = createCache()
    const cachedFetch = fetchWith(cache)
    const dispatcher = opened.agent().compose(cacheInterceptor({ cache }))

    const miss = await cachedFetch(`${server.url}/doc`, { method: 'HEAD' })
    expect(await miss.text()).toBe('')
    const hit = await cachedFetch(`${server.url}/doc`, { method: 'HEAD' })
    expect(hit.headers.get('cache-status')).toMatch(/^cachedfetch; hit/)
    expect(hit.headers.get('content-length')).toBe(String(Buffer.byteLength(body)))
    expect(hit.body).toBeNull()

    const viaInterceptor = await request(`${server.url}/doc`, { method: 'HEAD', dispatcher })
    expect(viaInterceptor.headers['cache-status']).toMatch(/^cachedfetch; hit/)
    expect(await viaInterceptor.body.text()).toBe('')
    expect(hitsFor(server, 'HEAD')).toBe(1)
  })

  it('does not answer a GET from a stored HEAD response: the GET goes to the origin and gets the body', async () => {
    const server = await documentOrigin()
    const cache = createCache()
    const cachedFetch = fetchWith(cache)
    const dispatcher = opened.agent().compose(cacheInterceptor({ cache }))

    await (await cachedFetch(`${server.url}/doc`, { method: 'HEAD' })).text()

    const viaInterceptor = await request(`${server.url}/doc`, { dispatcher })
    expect(viaInterceptor.headers['cache-status']).toMatch(/fwd=uri-miss/)
    expect(await viaInterceptor.body.text()).toBe(body)
    expect(hitsFor(server, 'GET')).toBe(1)

    const getHit = await cachedFetch(`${server.url}/doc`)
    expect(getHit.headers.get('cache-status')).toMatch(/^cachedfetch; hit/)
    expect(await getHit.text()).toBe(body)

    const headHit = await cachedFetch(`${server.url}/doc`, { method: 'HEAD' })
    expect(headHit.headers.get('cache-status')).toMatch(/^cachedfetch; hit/)
    expect(await headHit.text()).toBe('')
    expect(hitsFor(server, 'GET')).toBe(1)
    expect(hitsFor(server, 'HEAD')).toBe(1)
  })

  it('caches a HEAD response whose Content-Length is past maxEntrySize: it has no body to hold', async () => {
    const server = await opened.origin({
      '/huge': (_req, res) => {
        res.writeHead(200, { 'content-length': String(10 * 1024 * 1024), 'cache-control': 'max-age=60' })
        res.end()
      }
    })
    const cachedFetch = fetchWith(createCache({ maxEntrySize: 1024 }))

    await (await cachedFetch(`${server.url}/huge`, { method: 'HEAD' })).text()
    const second = await cachedFetch(`${server.url}/huge`, { method: 'HEAD' })
    expect(second.headers.get('content-length')).toBe(String(10 * 1024 * 1024))
    expect(second.headers.get('cache-status')).toMatch(/^cachedfetch; hit/)
    expect(server.hits('/huge')).toBe(1)
  })

  it('caches HEAD apart from GET: a HEAD after a stored GET goes to the origin', async () => {
    const server = await documentOrigin()
    const cachedFetch = fetchWith(createCache())

    expect(await (await cachedFetch(`${server.url}/doc`)).text()).toBe(body)
    const head = await cachedFetch(`${server.url}/doc`, { method: 'HEAD' })
    expect(head.headers.get('cache-status')).toMatch(/fwd=uri-miss/)
    expect(await head.text()).toBe('')
    expect(hitsFor(server, 'HEAD')).toBe(1)

    const get = await cachedFetch(`${server.url}/doc`)
    expect(await get.text()).toBe(body)
    expect(hitsFor(server, 'GET')).toBe(1)
  })
})
