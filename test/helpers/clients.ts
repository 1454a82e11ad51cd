/**
 * The two faces of one cache, driven the same way: `createCachedFetch` and `undici.request` through
 * `new Agent().compose(cacheInterceptor({ cache }))`. A test gives both the same request (`Send`)
 * and reads what a user of either would see, in one shape: status, header fields (a repeated field
 * joined with ", ", as `Headers.get` joins it) and body. `describe.each(adapters)` runs a case
 * through each; `send()` reads the whole body, `open()` leaves it to the test. A client goes out
 * through an Agent of its own, or through the dispatcher it is given (an Agent with options, or
 * one with interceptors below the cache), which its close() closes.
 */
import { Readable } from 'node:stream'
import { Agent, Dispatcher, request } from 'undici'
import { cacheInterceptor, createCachedFetch, type Cache, type CacheDispatchOptions, type FetchCacheMode } from '../../src/index.js'

export type CachePolicy = CacheDispatchOptions['cachePolicy']

/** One request, as either adapter takes it. */
export interface Send {
  /** @default 'GET' */
  readonly method?: string
  readonly headers?: Record<string, string>
  readonly body?: string
  /** A body sent as a one-shot stream (a ReadableStream to fetch, a Readable to undici.request). */
  readonly stream?: string
  readonly signal?: AbortSignal
  /** fetch's `init.cache`; the interceptor's `cacheMode` dispatch option. */
  readonly cache?: FetchCacheMode
  /** fetch's `init.cachePolicy`; the interceptor's `cachePolicy` dispatch option. */
  readonly cachePolicy?: CachePolicy
}

/** A response whose body is not read yet, so that a body that breaks off can be seen failing. */
export interface Answer {
  readonly status: number
  /** A field's value, a repeated field's lines joined with ", "; undefined when absent. */
  readonly header: (name: string) => string | undefined
  text (): Promise<string>
}

/** A response read to its end. */
export interface Reply {
  readonly status: number
  readonly body: string
  readonly header: (name: string) => string | undefined
}

export interface Client {
  /** Sends the request and reads the whole body. */
  send (url: string, init?: Send): Promise<Reply>
  /** Sends the request and leaves the body unread. */
  open (url: string, init?: Send): Promise<Answer>
  /** Closes the agent underneath. */
  close (): Promise<void>
}

export interface Adapter {
  readonly name: 'cachedFetch' | 'interceptor'
  /** A client on `cache`, with the dispatcher given, or an agent of its own (built with these options: timeouts, say). */
  readonly connect: (cache: Cache, agent?: Dispatcher | Agent.Options) => Client
}

function dispatcherOf (given: Dispatcher | Agent.Options | undefined): Dispatcher {
  return given instanceof Dispatcher ? given : new Agent(given)
}

/** A client from how it sends: `send` is `open` with the body read to its end. */
function client (open: Client['open'], close: Client['close']): Client {
  return {
    async send (url, init) {
      const answer = await open(url, init)
      return { status: answer.status, header: answer.header, body: await answer.text() }
    },
    open,
    close
  }
}

export const adapters: readonly Adapter[] = [
  {
    name: 'cachedFetch',
    connect (cache, given) {
      const agent = dispatcherOf(given)
      const fetch = createCachedFetch({ cache, dispatcher: agent })
      return client(async (url, init = {}) => {
        const { method = 'GET', headers, signal, cache: mode, cachePolicy } = init
        const body = init.stream === undefined ? init.body : webStream(init.stream)
        // fetch follows redirects for GET and HEAD only: a 3xx to another method is the answer under
        // test, as it is through undici.request, which never follows one.
        const redirect = method === 'GET' || method === 'HEAD' ? 'follow' : 'manual'
        const response = await fetch(url, {
          method, headers, body, signal, redirect, cache: mode, cachePolicy, ...(init.stream === undefined ? {} : { duplex: 'half' })
        })
        return {
          status: response.status,
          header: (name) => response.headers.get(name) ?? undefined,
          text: () => response.text()
        }
      }, () => agent.close())
    }
  },
  {
    name: 'interceptor',
    connect (cache, given) {
      const agent = dispatcherOf(given)
      const dispatcher = agent.compose(cacheInterceptor({ cache }))
      return client(async (url, init = {}) => {
        const { method = 'GET', headers, signal, cache: cacheMode, cachePolicy } = init
        const body = init.stream === undefined ? init.body : Readable.from([Buffer.from(init.stream)])
        const options: Parameters<typeof request>[1] & CacheDispatchOptions = { dispatcher, method, headers, body, signal, cacheMode, cachePolicy }
        const response = await request(url, options)
        return {
          status: response.statusCode,
          header: (name) => {
            const value = response.headers[name]
            return Array.isArray(value) ? value.join(', ') : value
          },
          text: () => response.body.text()
        }
      }, () => agent.close())
    }
  }
]

function webStream (text: string): ReadableStream<Uint8Array> {
  return new ReadableStream({
    start (controller) {
      controller.enqueue(new TextEncoder().encode(text))
      controller.close()
    }
  })
}
