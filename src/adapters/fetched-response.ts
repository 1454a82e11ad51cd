/**
 * Responses `cachedFetch` builds itself, without undici.fetch, that look as `fetch`'s own would:
 * for a hit (src/adapters/fetch.ts) and for a caller that follows another's exchange
 * (src/adapters/follower.ts). Only answers that fetch would hand over unchanged are built here.
 */
import { Headers, Response } from 'undici'
import { bodyArrayBuffer, bodyBytes, type StoredBody } from '../entry.js'

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
  return status >= 200 && status <= 599 && !FETCH_ACTS_ON.has(status) && REASON_PHRASE.test(statusText) &&
    (contentEncoding == null || contentEncoding === 'identity')
}

/**
 * Response fields as undici Headers, each value appended as it is, leaving out the names in `omit`.
 * Throws for a field Headers refuses.
 */
export function toHeaders (fields: Readonly<Record<string, string | readonly string[] | undefined>>, omit?: ReadonlySet<string>): Headers {
  const headers = new Headers()
  for (const name in fields) {
    const value = fields[name]
    if (value === undefined || omit?.has(name) === true) continue
    if (typeof value === 'string') headers.append(name, value)
    else for (const item of value) headers.append(name, item)
  }
  return headers
}

/** UTF-8 decode as text() and json() do (Encoding §4.1): a leading BOM dropped, bad bytes replaced. */
const utf8 = new TextDecoder()

/**
 * A Response built by the cache that looks fetched, as `fetch`'s own would: its URL, type
 * "basic", and headers that refuse changes (the "immutable" guard), kept by clone() too.
 *
 * A hit's body is the stored one, not a stream: undici's Response makes a web stream of any body
 * it is given (and Node 20 makes that stream transferable), then reads it back chunk by chunk and
 * joins the chunks for arrayBuffer() and text(), which cost most of a hit. Here arrayBuffer(),
 * bytes(), text() and json() read the stored body directly, into a copy or string of the caller's
 * own; a stream is made only when something needs one (`body`, blob(), formData(), a clone of a
 * streamed body), and from then on that stream is the body, read as any fetched body is.
 */
export class FetchedResponse extends Response {
  readonly #url: string
  #guarded = false
  /** The stored body of a hit, never handed out itself; undefined for a streamed body, which is undici's. */
  readonly #stored: StoredBody | undefined
  /** The stored body has been read directly. */
  #read = false
  /** A Response whose body is a stream of the stored one, once something needed a stream: it answers for the body from then on. */
  #streamed: Response | undefined

  constructor (url: string, body: StoredBody | ReadableStream<Uint8Array> | null, init: { status: number, statusText: string, headers: Headers }) {
    const stored = typeof body === 'string' || Buffer.isBuffer(body) ? body : undefined
    super(stored === undefined ? body as ReadableStream<Uint8Array> | null : null, init)
    this.#url = url
    this.#stored = stored
  }

  override clone (): Response {
    if (this.#stored === undefined) return lookFetched(super.clone(), this.#url)
    if (this.bodyUsed) throw new TypeError('Response.clone: Body has already been consumed.')
    const headers = new Headers(Reflect.get<Response, 'headers'>(Response.prototype, 'headers', this))
    // A streamed body is teed, as undici's clone() does; a stored one is shared, since neither copy hands it out.
    const body = this.#streamed === undefined ? this.#stored : this.#streamed.clone().body
    return new FetchedResponse(this.#url, body, { status: this.status, statusText: this.statusText, headers })
  }

  /** The stored body, for a direct read that uses it up; undefined when a stream answers instead. */
  #take (): StoredBody | undefined {
    if (this.#stored === undefined || this.#streamed !== undefined || this.#read) return undefined
    this.#read = true
    return this.#stored
  }

  /** The Response whose body undici's methods read: this one's own, or the stream made of the stored body. */
  #holder (): Response {
    if (this.#stored === undefined) return this
    if (this.#streamed === undefined) {
      const type = Reflect.get<Response, 'headers'>(Response.prototype, 'headers', this).get('content-type')
      // The Response constructor copies the bytes, so the caller cannot change the stored body.
      this.#streamed = new Response(bodyBytes(this.#stored), type === null ? undefined : { headers: { 'content-type': type } })
      // Read directly before: the stream is left as undici leaves one it has read (disturbed,
      // closed, locked by its reader), so everything after fails as it would.
      if (this.#read) void this.#streamed.body!.getReader().cancel()
    }
    return this.#streamed
  }

  static {
    // On the prototype rather than on each instance (a hit pays nothing for them), and as
    // properties because undici's types declare the body methods as properties.
    Object.defineProperties(FetchedResponse.prototype, {
      url: { get (this: FetchedResponse) { return this.#url } },
      type: { get () { return 'basic' } },
      headers: {
        get (this: FetchedResponse) {
          const headers: Headers = Reflect.get(Response.prototype, 'headers', this)
          // Guarded on first use: a caller that only reads the body pays nothing for it.
          if (!this.#guarded) {
            Object.defineProperties(headers, IMMUTABLE_HEADERS)
            this.#guarded = true
          }
          return headers
        }
      },
      arrayBuffer: {
        async value (this: FetchedResponse): Promise<ArrayBuffer> {
          const stored = this.#take()
          return stored === undefined ? await Response.prototype.arrayBuffer.call(this.#holder()) : bodyArrayBuffer(stored)
        }
      },
      bytes: {
        async value (this: FetchedResponse): Promise<Uint8Array> {
          const stored = this.#take()
          return stored === undefined ? await Response.prototype.bytes.call(this.#holder()) : new Uint8Array(bodyArrayBuffer(stored))
        }
      },
      text: {
        async value (this: FetchedResponse): Promise<string> {
          const stored = this.#take()
          return stored === undefined ? await Response.prototype.text.call(this.#holder()) : decode(stored)
        }
      },
      json: {
        async value (this: FetchedResponse): Promise<unknown> {
          const stored = this.#take()
          return stored === undefined ? await Response.prototype.json.call(this.#holder()) : JSON.parse(decode(stored))
        }
      },
      blob: { value (this: FetchedResponse) { return Response.prototype.blob.call(this.#holder()) } },
      formData: { value (this: FetchedResponse) { return Response.prototype.formData.call(this.#holder()) } },
      body: {
        get (this: FetchedResponse) { return Reflect.get(Response.prototype, 'body', this.#holder()) as unknown }
      },
      bodyUsed: {
        get (this: FetchedResponse) {
          return this.#stored !== undefined && this.#streamed === undefined
            ? this.#read
            : Reflect.get<Response, 'bodyUsed'>(Response.prototype, 'bodyUsed', this.#streamed ?? this)
        }
      }
    })
  }
}

function decode (body: StoredBody): string {
  return utf8.decode(typeof body === 'string' ? Buffer.from(body, 'latin1') : body)
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
