/**
 * Responses `cachedFetch` builds itself, without undici.fetch, that look as `fetch`'s own would:
 * for a hit (src/adapters/fetch.ts) and for a caller that follows another's exchange
 * (src/adapters/follower.ts). Only answers that fetch would hand over unchanged are built here.
 */
import { Headers, Response } from 'undici'
import { bodyArrayBuffer, bodyBytes, joinedBytes, type StoredBody } from '../entry.js'
import { ArrivingBody } from './arriving-body.js'
import { onAbort, removeWhenCollected } from './abort-listeners.js'

/**
 * Statuses `fetch` acts on itself, so such an answer is never the response it returns as is: the
 * redirects it follows (Fetch §4.4), 407, which it turns into a network error, and 421, which it
 * sends again on a new connection (§4.5).
 */
const FETCH_ACTS_ON = new Set([301, 302, 303, 307, 308, 407, 421])
/**
 * What the Response constructor takes as statusText (RFC 9110 §15: HTAB, SP, VCHAR, obs-text); a
 * fetched response can carry more, as undici decodes the origin's bytes.
 */
const REASON_PHRASE = /^[\t\x20-\x7e\x80-\xff]*$/

/**
 * Whether undici.fetch would hand an answer to the caller unchanged: not one it follows, fails,
 * retries, decodes, or that the Response constructor refuses (a status outside 200–599, which an
 * origin can send, RFC 9110 §15).
 */
export function servableAsIs (status: number, statusText: string, contentEncoding: string | null | undefined): boolean {
  return servableStatus(status, statusText) && unencoded(contentEncoding)
}

/** The part of servableAsIs that the status line decides. */
export function servableStatus (status: number, statusText: string): boolean {
  return status >= 200 && status <= 599 && !FETCH_ACTS_ON.has(status) && REASON_PHRASE.test(statusText)
}

/** The part of servableAsIs that Content-Encoding decides: fetch decodes any other. */
export function unencoded (contentEncoding: string | null | undefined): boolean {
  return contentEncoding == null || contentEncoding === 'identity'
}

type Fields = Readonly<Record<string, string | readonly string[] | undefined>>

/**
 * Response fields as undici Headers, each value appended as it is, leaving out the names in `omit`.
 * Throws for a field Headers refuses.
 */
export function toHeaders (fields: Fields, omit?: ReadonlySet<string>): Headers {
  return appendFields(new Headers(), fields, omit)
}

/** Appends response fields to `headers` (a Response's own, say), as toHeaders does; returns them. */
export function appendFields (headers: Headers, fields: Fields, omit?: ReadonlySet<string>): Headers {
  for (const name in fields) {
    const value = fields[name]
    if (value === undefined || omit?.has(name) === true) continue
    if (typeof value === 'string') headers.append(name, value)
    else for (const item of value) headers.append(name, item)
  }
  return headers
}

/**
 * A Response's own Headers, through undici's getter: not the guarded view FetchedResponse's
 * `headers` hands out, so that the cache can still fill them.
 */
export function ownHeaders (response: Response): Headers {
  return Reflect.get<Response, 'headers'>(Response.prototype, 'headers', response)
}

/** UTF-8 decode as text() and json() do (Encoding §4.1): a leading BOM dropped, bad bytes replaced. */
const utf8 = new TextDecoder()

/**
 * A Response built by the cache that looks fetched, as `fetch`'s own would: its URL, type
 * "basic", and headers that refuse changes (the "immutable" guard), kept by clone() too.
 *
 * Its body is not a stream unless one is needed. undici's Response makes a web stream of any body
 * it is given (and Node 20 makes each stream transferable), then reads it back chunk by chunk and
 * joins the chunks for arrayBuffer() and text(): together most of a hit. A hit's body is the
 * stored one, and a follower's the chunks of its exchange as they arrive (src/adapters/arriving-body.ts);
 * arrayBuffer(), bytes(), text() and json() read it directly, into a copy or string of the
 * caller's own. A stream is made when something needs one (`body`, blob(), formData(), a clone of
 * an arriving body), and from then on that stream is the body, read as any fetched body is.
 *
 * A hit's Response watches its caller's signal as fetch's does (Fetch §4.1, abort fetch): once it
 * has aborted, a body not read yet fails with its reason: a direct read checks the signal when it
 * reads, and a stream of the body (`body`) listens to it and fails part way (sliced()), as a fetched
 * body's stream does. A hit and its clones share one watch: once any of them has read the body whole, an abort fails
 * none, as under fetch, whose abort errors the stream a clone's tee has drained by then.
 */
export class FetchedResponse extends Response {
  readonly #url: string
  #guarded = false
  /** A hit's stored body (never handed out itself) or a follower's; undefined for a stream, which is undici's to read. */
  readonly #source: StoredBody | ArrivingBody | undefined
  /** A hit's caller's signal, shared with its clones (a follower's body watches its own: src/adapters/follower.ts). */
  #watch: BodyWatch | undefined
  /** The body has been read directly. */
  #read = false
  /** A Response whose body is a stream of the source, once something needed a stream: it answers for the body from then on. */
  #streamed: Response | undefined

  constructor (url: string, body: StoredBody | ArrivingBody | ReadableStream<Uint8Array> | null, init: { status: number, statusText: string, headers?: Headers, signal?: AbortSignal | undefined }) {
    const source = body instanceof ReadableStream || body === null ? undefined : body
    super(source === undefined ? body as ReadableStream<Uint8Array> | null : null, init)
    this.#url = url
    this.#source = source
    this.#watch = init.signal === undefined ? undefined : new BodyWatch(init.signal)
  }

  override clone (): Response {
    const source = this.#source
    if (source === undefined) return lookFetched(super.clone(), this.#url)
    if (this.bodyUsed) throw new TypeError('Response.clone: Body has already been consumed.')
    const headers = new Headers(ownHeaders(this))
    // A stream is teed, as undici's clone() does; a stored body is shared, since neither copy hands it out.
    const body = this.#streamed === undefined && !(source instanceof ArrivingBody) ? source : this.#holder().clone().body
    const clone = new FetchedResponse(this.#url, body, { status: this.status, statusText: this.statusText, headers })
    clone.#watch = this.#watch
    return clone
  }

  /** The whole body, for a direct read that uses it up; undefined when a stream answers instead. */
  #take (): Promise<Whole> | undefined {
    const source = this.#source
    if (source === undefined || this.#streamed !== undefined || this.#read) return undefined
    this.#read = true
    const watch = this.#watch
    if (watch?.aborted === true) return Promise.reject(watch.signal.reason as Error)
    if (source instanceof ArrivingBody) return source.read()
    if (watch !== undefined) watch.drained = true
    return Promise.resolve(source)
  }

  /** The Response whose body undici's methods read: this one's own, or the stream made of the source. */
  #holder (): Response {
    const source = this.#source
    if (source === undefined) return this
    if (this.#streamed === undefined) {
      const type = ownHeaders(this).get('content-type')
      // The Response constructor copies a stored body's bytes: the caller cannot change the stored one.
      const watch = this.#watch
      let body: Uint8Array | ReadableStream<Uint8Array>
      if (this.#read) body = new Uint8Array(0)
      else if (source instanceof ArrivingBody) body = source.stream()
      else {
        const bytes = bodyBytes(source)
        // A small body without a signal is the Response's to copy whole: one chunk, as fetch's would be.
        body = watch === undefined && bytes.byteLength <= SLICE ? bytes : sliced(bytes, watch)
      }
      this.#streamed = new Response(body, type === null ? undefined : { headers: { 'content-type': type } })
      // Read directly before: the stream is left as undici leaves one it has read (disturbed,
      // closed, locked by its reader), so everything after fails as it would.
      if (this.#read) void this.#streamed.body!.getReader().cancel()
    }
    return this.#streamed
  }

  static {
    /** A body method: the whole body read directly, unless a stream answers for it (undici's method then). */
    const reading = <T>(direct: (whole: Whole) => T, streamed: (this: Response) => Promise<T>): PropertyDescriptor => ({
      async value (this: FetchedResponse): Promise<T> {
        const whole = this.#take()
        return whole === undefined ? await streamed.call(this.#holder()) : direct(await whole)
      }
    })
    // On the prototype rather than on each instance (a hit pays nothing for them), and as
    // properties because undici's types declare the body methods as properties.
    Object.defineProperties(FetchedResponse.prototype, {
      url: { get (this: FetchedResponse) { return this.#url } },
      type: { get () { return 'basic' } },
      headers: {
        get (this: FetchedResponse) {
          const headers = ownHeaders(this)
          // Guarded on first use: a caller that only reads the body pays nothing for it.
          if (!this.#guarded) {
            Object.defineProperties(headers, IMMUTABLE_HEADERS)
            this.#guarded = true
          }
          return headers
        }
      },
      arrayBuffer: reading(toArrayBuffer, Response.prototype.arrayBuffer),
      bytes: reading((whole) => new Uint8Array(toArrayBuffer(whole)), Response.prototype.bytes),
      text: reading(decode, Response.prototype.text),
      json: reading((whole): unknown => JSON.parse(decode(whole)), Response.prototype.json),
      blob: { value (this: FetchedResponse) { return Response.prototype.blob.call(this.#holder()) } },
      formData: { value (this: FetchedResponse) { return Response.prototype.formData.call(this.#holder()) } },
      body: {
        get (this: FetchedResponse) { return Reflect.get(Response.prototype, 'body', this.#holder()) as unknown }
      },
      bodyUsed: {
        get (this: FetchedResponse) {
          return this.#source !== undefined && this.#streamed === undefined
            ? this.#read
            : Reflect.get<Response, 'bodyUsed'>(Response.prototype, 'bodyUsed', this.#streamed ?? this)
        }
      }
    })
  }
}

/** A hit's caller's signal, and whether the hit or a clone of it has read the body whole. */
class BodyWatch {
  drained = false
  constructor (readonly signal: AbortSignal) {}
  /** Whether a body not read yet fails: aborted before any copy was read whole. */
  get aborted (): boolean {
    return !this.drained && this.signal.aborted
  }
}

/** The most a stored body's stream hands over at once: as undici's fetch hands a body over. */
const SLICE = 64 * 1024

/**
 * A stored body as a stream, copied a slice at a time as it is read (a caller cannot change the
 * stored bytes, and one that reads slowly holds no whole copy of a large body), and failed by the
 * caller's signal, with its reason, until it or a clone has been read (Fetch "abort fetch" errors
 * a response body still readable), as a fetched body is.
 */
function sliced (bytes: Buffer, watch: BodyWatch | undefined): ReadableStream<Uint8Array> {
  const signal = watch?.signal
  let offset = 0
  let fail: (() => void) | undefined
  const stream = new ReadableStream({
    type: 'bytes',
    start (controller) {
      if (watch === undefined) return
      if (watch.aborted) {
        controller.error(watch.signal.reason)
        return
      }
      // Held weakly: a stream dropped unread is collected, and its listener removed (src/adapters/abort-listeners.ts).
      const held = new WeakRef(controller)
      fail = () => { if (!watch.drained) held.deref()?.error(watch.signal.reason) }
      onAbort(watch.signal, fail)
    },
    pull (controller) {
      const end = Math.min(offset + SLICE, bytes.byteLength)
      // A byte stream takes no empty chunk.
      if (end > offset) controller.enqueue(new Uint8Array(bytes.subarray(offset, end)))
      offset = end
      if (offset < bytes.byteLength) return
      if (watch !== undefined) watch.drained = true
      if (fail !== undefined) signal!.removeEventListener('abort', fail)
      controller.close()
      // A BYOB read waiting on a stream that closes is answered with no bytes, else it waits for ever.
      controller.byobRequest?.respond(0)
    },
    cancel () {
      if (fail !== undefined) signal!.removeEventListener('abort', fail)
    }
  })
  if (fail !== undefined) removeWhenCollected(stream, signal!, fail)
  return stream
}

/** A whole body: a stored one, or the chunks an arriving one came in. */
type Whole = StoredBody | readonly Buffer[]

/** The body in an ArrayBuffer of the caller's own, copied once. */
function toArrayBuffer (whole: Whole): ArrayBuffer {
  if (!Array.isArray(whole)) return bodyArrayBuffer(whole as StoredBody)
  const chunks = whole as readonly Buffer[]
  return joinedBytes(chunks, chunks.reduce((length, chunk) => length + chunk.byteLength, 0)).buffer
}

function decode (whole: Whole): string {
  if (!Array.isArray(whole)) return utf8.decode(bodyBytes(whole as StoredBody))
  const chunks = whole as readonly Buffer[]
  return utf8.decode(chunks.length === 1 ? chunks[0] : Buffer.concat(chunks))
}

/** A clone is a plain Response: it gets the same looks, clone() included, as properties of its own. */
function lookFetched (copy: Response, url: string): Response {
  Object.defineProperties(copy, {
    url: { value: url },
    type: { value: 'basic' },
    clone: { value: () => lookFetched(Response.prototype.clone.call(copy), url) }
  })
  Object.defineProperties(copy.headers, IMMUTABLE_HEADERS)
  return copy
}

function refuseChange (): never {
  throw new TypeError('immutable')
}

const IMMUTABLE_HEADERS: PropertyDescriptorMap = {
  append: { value: refuseChange },
  delete: { value: refuseChange },
  set: { value: refuseChange }
}
