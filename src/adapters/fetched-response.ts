/**
 * Responses `cachedFetch` builds itself, without undici.fetch, that look as `fetch`'s own would:
 * for a hit (src/adapters/fetch.ts) and for a caller that follows another's exchange
 * (src/adapters/follower.ts). Only answers that fetch would hand over unchanged are built here.
 */
import { Headers, Response } from 'undici'

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

/**
 * A Response built by the cache that looks fetched, as `fetch`'s own would: its URL, type
 * "basic", and headers that refuse changes (the "immutable" guard), kept by clone() too.
 */
export class FetchedResponse extends Response {
  readonly #url: string
  #guarded = false

  constructor (url: string, body: Buffer | ReadableStream<Uint8Array> | null, init: { status: number, statusText: string, headers: Headers }) {
    super(body, init)
    this.#url = url
  }

  override clone (): Response {
    return lookFetched(super.clone(), this.#url)
  }

  static {
    // Accessors on the prototype rather than properties on each instance: a hit pays nothing for them.
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
      }
    })
  }
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
