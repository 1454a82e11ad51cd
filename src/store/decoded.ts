/**
 * The frames read from L2 lately, decoded. Without a memory tier (`maxSize: 0`) every hit reads
 * the store, and a hot entry comes back as the same bytes each time. Decoding them again (the JSON
 * header, the body's bytes, the policy) gave each hit new objects, so that the fetch face also
 * built the entry's undici Headers anew on every hit. Decoded once, a `cachedFetch()` hit from
 * Redis ran 12–34% fewer instructions in five pairs of callgrind runs, an interceptor's 2.5% in
 * one (bench/LOG.md; bench/redis-hits.ts).
 * The same bytes decode to the same entry, so serving the one decoded before changes nothing a
 * caller can see: the store is still read on every hit, and a value replaced there is other
 * bytes, decoded afresh.
 *
 * Kept by store key, the frame beside its entry, and compared with the frame read. A frame comes
 * from the store as a new string every time, and a Map keyed by frames hashed each one whole: for
 * the 1.5 KB frame of a 1 KB body that took 2.1 µs, where comparing it with the frame kept takes
 * 0.05 µs (alone, in a loop).
 * Bounded by the frames' length: past `budget` UTF-16 code units it starts over, as the memos of
 * src/memo.ts do, so that a hit pays one Map lookup and no LRU bookkeeping.
 */
import type { StoredVariants } from './format.js'

export class DecodedFrames {
  readonly #budget: number
  #frames = new Map<string, { readonly frame: string, readonly stored: StoredVariants }>()
  #held = 0

  constructor (budget: number) {
    this.#budget = budget
  }

  /** What `frame`, read under `key`, decodes to: the one decoded before, or `decode(frame)`'s, kept. */
  decode (frame: string, key: string, decode: (frame: string) => StoredVariants | undefined): StoredVariants | undefined {
    const known = this.#frames.get(key)
    if (known?.frame === frame) return known.stored
    const stored = decode(frame)
    if (stored === undefined || frame.length > this.#budget) return stored
    // The frame it replaces under this key no longer counts.
    if (known !== undefined) this.#held -= known.frame.length
    if (this.#held + frame.length > this.#budget) {
      this.#frames = new Map()
      this.#held = 0
    }
    this.#frames.set(key, { frame, stored })
    this.#held += frame.length
    return stored
  }
}
