/**
 * What response header fields the cache will store. undici's parser already refuses most
 * malformed fields (CR, LF, NUL and other controls in values, bad names, and more than its
 * `maxHeaderSize`, 16 KiB by default, in all), but a dispatcher or interceptor below the cache can
 * hand anything over, and an Agent can be given a far larger `maxHeaderSize`. A response whose
 * fields fail these checks is passed on to its caller as it came, and not stored: a stored entry is
 * replayed to every later caller, and built into a `Response` on the fetch fast path, which throws
 * on such a value.
 */
import type { ResponseHeaders } from './entry.js'

/**
 * The bounds, in characters (a field value is Latin-1: one byte each). Varnish's defaults are of
 * the same order (8 KiB a field, 32 KiB a response, 64 fields); these leave room for large
 * Content-Security-Policy and Link fields.
 */
export const FIELD_LIMITS = Object.freeze({
  /** One field's value, as stored: a repeated field's lines joined (Set-Cookie's each on its own). */
  value: 8 * 1024,
  /** Every name and value together. */
  total: 64 * 1024,
  /** Fields (each Set-Cookie line counts). */
  count: 256
})

/** RFC 9110 §5.6.2: tchar, one or more. */
const TOKEN = /^[!#$%&'*+\-.^_`|~0-9a-z]+$/i
/**
 * RFC 9110 §5.5: CR, LF and NUL in a field value are invalid and dangerous; and a value is octets,
 * so a character past Latin-1 (which undici's parser never yields, but a dispatcher below may) is
 * none, and the fetch Response refuses it.
 */
const FORBIDDEN = /[\r\n\0\u0100-\uffff]/
const FIELD_VALUE = /^[\t\x20-\x7e\x80-\xff]*$/

/** Whether fetch's Headers take this field: a token for a name, octets free of CR, LF and NUL for a value. */
export function wellFormedField (name: string, value: string): boolean {
  return isToken(name) && !FORBIDDEN.test(value)
}

/**
 * RFC 9110 §5.5: a field value as a request sends it: visible characters, spaces, tabs and octets
 * past ASCII (obs-text); no control character, which undici refuses in a request's fields.
 */
export function isFieldValue (text: string): boolean {
  return FIELD_VALUE.test(text)
}

/** RFC 9110 §5.6.2: a token, what a field name and a method are. */
export function isToken (text: string): boolean {
  return TOKEN.test(text)
}

/** Whether a response's fields may be stored: names are tokens, values octets free of CR/LF/NUL, all within FIELD_LIMITS. */
export function fieldsFitToStore (headers: ResponseHeaders): boolean {
  let total = 0
  let count = 0
  for (const name in headers) {
    if (!isToken(name)) return false
    const value = headers[name]!
    // A field's one value as it is, not in an array of one: this runs for every response stored.
    const lines = typeof value === 'string' ? 1 : value.length
    for (let i = 0; i < lines; i++) {
      const line = typeof value === 'string' ? value : value[i]!
      if (line.length > FIELD_LIMITS.value || FORBIDDEN.test(line)) return false
      total += name.length + line.length
    }
    count += lines
    if (total > FIELD_LIMITS.total || count > FIELD_LIMITS.count) return false
  }
  return true
}

/**
 * Whether a stored status line can be replayed: a final status of three digits (RFC 9110 §15; a
 * 1xx is never a stored response, and a handler given one waits for a final one for ever), and a
 * reason phrase free of CR, LF and NUL (RFC 9112 §4).
 */
export function isReplayableStatus (status: number, statusText: string): boolean {
  return Number.isInteger(status) && status >= 200 && status <= 999 && !/[\r\n\0]/.test(statusText)
}
