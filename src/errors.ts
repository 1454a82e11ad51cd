/**
 * Errors cachedfetch raises. Every one is a `CachedFetchError` with a stable `code`, the request's
 * method and URL in its message, and the underlying `cause` when there is one. Bad options are
 * plain `TypeError`s thrown at construction (src/options.ts), as undici does.
 */

export type CachedFetchErrorCode =
  /** `cache: 'only-if-cached'` and nothing usable is stored (the Fetch standard's network error). */
  | 'ERR_ONLY_IF_CACHED'
  /** A caller sharing another's response (single-flight) stopped reading and fell too far behind. */
  | 'ERR_SHARED_BODY_OVERRUN'
  /**
   * An invalidation reached memory but not the store (or not the other processes): the store may
   * still hold what it was to drop, and serve it. It has no `cause`: the `store-error` events say
   * why. Call it again.
   */
  | 'ERR_STORE_UNREACHABLE'

const NAME = 'CachedFetchError'

export interface RequestInfo {
  method: string
  url: string
}

export class CachedFetchError extends Error {
  override readonly name = NAME
  readonly code: CachedFetchErrorCode
  readonly method: string
  readonly url: string

  constructor (code: CachedFetchErrorCode, message: string, request: RequestInfo, options?: ErrorOptions) {
    super(`${message} (${request.method} ${request.url})`, options)
    this.code = code
    this.method = request.method
    this.url = request.url
  }
}

/** Works across realms and copies of the package, where `instanceof` does not. */
export function isCachedFetchError (error: unknown): error is CachedFetchError {
  return error instanceof Error && error.name === NAME && typeof (error as CachedFetchError).code === 'string'
}
