/**
 * Tags an entry can be invalidated by (`cache.invalidateTag()`): the origin's `Cache-Tag`
 * (comma-separated, as Cloudflare and Akamai read it) and `Surrogate-Key` (space-separated, as
 * Fastly reads it), plus tags the cache or the request is configured with. Compared exactly.
 */
import { fieldValue, type ResponseHeaders } from './entry.js'

/** A response naming more tags than this keeps the first ones: every tag costs an index write. */
export const MAX_TAGS = 64
/** A longer tag is dropped: it would be a store key of its own. */
export const MAX_TAG_LENGTH = 256

export function responseTags (headers: ResponseHeaders, configured: readonly string[]): readonly string[] {
  const cacheTag = fieldValue(headers['cache-tag'])
  const surrogateKey = fieldValue(headers['surrogate-key'])
  if (cacheTag === undefined && surrogateKey === undefined) return configured
  const tags = new Set(configured)
  for (const tag of cacheTag?.split(',') ?? []) add(tags, tag.trim())
  for (const tag of surrogateKey?.split(/[\s,]+/) ?? []) add(tags, tag)
  return [...tags].slice(0, MAX_TAGS)
}

function add (tags: Set<string>, tag: string): void {
  if (tag !== '' && tag.length <= MAX_TAG_LENGTH) tags.add(tag)
}
