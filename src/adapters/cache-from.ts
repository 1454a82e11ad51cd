/**
 * What both adapters take: a ready `cache` to share, or the options to build their own.
 */
import { Cache } from '../cache.js'
import type { CacheOptions } from '../options.js'
import { describe, isOptionsObject } from '../validate.js'

/**
 * Adapter options: a ready `cache` to share, or the options to build one, not both (a TypeError at
 * run time, and a type error where TypeScript sees both).
 */
export type CacheOrOptions =
  | (CacheOptions & { cache?: undefined })
  | ({
      /** A cache to use; several adapters given the same one share its entries. */
      cache: Cache
    } & { [Option in keyof CacheOptions]?: never })

export function cacheFrom (options: CacheOrOptions | undefined, path = 'options'): Cache {
  if (options === undefined) return new Cache()
  if (!isOptionsObject(options)) {
    throw new TypeError(`expected ${path} to be an object, got ${describe(options)}`)
  }
  const { cache, ...rest } = options
  if (cache === undefined) return new Cache(rest)
  if (!(cache instanceof Cache)) throw new TypeError(`expected ${path}.cache to be a Cache from createCache(), got ${typeof cache}`)
  const extra = Object.keys(rest)
  if (extra.length > 0) {
    throw new TypeError(`${path}.cache is given, so ${path}.${extra[0]} must be set on createCache() instead`)
  }
  return cache
}
