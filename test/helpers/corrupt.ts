/**
 * Values that are not entries, from fixtures/corrupt-store-values.json, for writing under a cache
 * key: plain values, frames of src/store/format.ts that are wrong in one way each (built from a
 * header object, so the rest of the frame is right), and raw text that bypasses Keyv's serializer.
 */
import { readFileSync } from 'node:fs'

export interface CorruptValue {
  readonly name: string
  /** Written with keyv.set(); "$KEY" and "$URL" are replaced by the real key and URL. */
  readonly value?: unknown
  /** With `header` and `bodies`: a frame, `prefix + JSON(header) + "\n" + bodies`, written with keyv.set(). */
  readonly prefix?: string
  readonly header?: unknown
  readonly bodies?: string
  /** Written into the store as it is, bypassing Keyv's serializer. */
  readonly raw?: string
  /** The control case: the frame every other frame case breaks one thing of, read as an entry. */
  readonly valid?: boolean
}

const values = JSON.parse(readFileSync(new URL('../../fixtures/corrupt-store-values.json', import.meta.url), 'utf8')) as CorruptValue[]
export const corruptValues = values.filter((value) => value.valid !== true)
export const wellFormedFrame = values.find((value) => value.valid === true)!

/** What to hand keyv.set() for a corrupt value that goes through Keyv. */
export function corruptValue (corrupt: CorruptValue, key: string, url: string): unknown {
  if (corrupt.prefix === undefined) return substitute(corrupt.value, key, url)
  return `${corrupt.prefix}${JSON.stringify(substitute(corrupt.header, key, url))}\n${corrupt.bodies ?? ''}`
}

function substitute (value: unknown, key: string, url: string): unknown {
  if (value === '$KEY') return key
  if (value === '$URL') return url
  if (Array.isArray(value)) return value.map((item) => substitute(item, key, url))
  if (typeof value === 'object' && value !== null) {
    return Object.fromEntries(Object.entries(value).map(([name, item]) => [name, substitute(item, key, url)]))
  }
  return value
}
