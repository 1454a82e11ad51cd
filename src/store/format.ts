/**
 * The versioned serialization of a resource's variants for stores outside the process (L2), one
 * string:
 *
 *     cachedfetch/3 <header JSON>\n<body 0><body 1>…
 *
 * The header holds the key (the URL is part of it), when the value expires, and for each variant
 * its status, headers, policy (src/stored-policy.ts: when its age was zero, its freshness
 * lifetime; its directives are read again from the stored Cache-Control), Vary values,
 * tags, and its body's encoding and length. A body that is valid UTF-8 (JSON, HTML, text: what
 * services mostly cache) is kept as it is, so it is not inflated at all; anything else is base64
 * (33%). A store whose serializer escapes strings (Keyv's JSON one, for a Keyv instance the caller
 * built) would inflate text with many quotes or control characters; such a body goes as base64
 * too, so no body ever grows by more than a third.
 *
 * Reading never throws: a value that is not a frame, has another version, belongs to another key,
 * or is cut short is `undefined`, which the store turns into a miss, a delete and an event.
 */
import { isUtf8 } from 'node:buffer'
import { bodySlice, setField, toStoredBody, toVariants, variantList, type CacheEntry, type ResponseHeaders, type Variants } from '../entry.js'
import { fieldsFitToStore, isReplayableStatus } from '../field-limits.js'
import type { VaryValues } from '../key.js'
import type { PolicyFactory } from '../policy.js'
import type { PolicyObject } from '../stored-policy.js'

/**
 * Version of the serialized form. A stored value of another version is a miss and is deleted: 3
 * keeps digests of credential Vary values (src/key.ts) where 2 kept them in clear.
 */
export const FORMAT_VERSION = 3
const MAGIC = `cachedfetch/${FORMAT_VERSION} `

interface Header {
  /** The key it was stored under. */
  k: string
  /** When it expires, ms since the epoch (the store's clock); `null` for never. */
  x: number | null
  e: VariantHeader[]
}

interface VariantHeader {
  s: number
  m: string
  h: ResponseHeaders
  p: PolicyObject
  /** Vary values; `null` for a field the request did not send, which JSON would otherwise drop. */
  y: Record<string, string | null>
  t: readonly string[]
  /** The body's encoding: `u` UTF-8 as it is, `b` base64. */
  n: 'u' | 'b'
  /** The body's length in the frame, in UTF-16 code units. */
  l: number
}

/** A resource's variants as a store outside the process keeps them. */
export interface StoredVariants {
  readonly variants: Variants
  /** When the store lets them go, ms since the epoch: a memory-tier copy must not outlive that. */
  readonly expires: number | undefined
}

export function serializeVariants (key: string, stored: StoredVariants): string {
  const bodies: string[] = []
  const e = variantList(stored.variants).map((entry): VariantHeader => {
    const [n, text] = encodeBody(bodySlice(entry.body))
    bodies.push(text)
    return {
      s: entry.status,
      m: entry.statusText,
      h: entry.headers,
      p: entry.policy.toObject(),
      y: toNulls(entry.vary),
      t: entry.tags,
      n,
      l: text.length
    }
  })
  const header: Header = { k: key, x: stored.expires ?? null, e }
  return `${MAGIC}${JSON.stringify(header)}\n${bodies.join('')}`
}

/** Rebuilds stored variants, or `undefined` when the value is not one of ours for `key`. Never throws. */
export function deserializeVariants (value: unknown, key: string, policies: PolicyFactory): StoredVariants | undefined {
  const frame = readFrame(value)
  if (frame === undefined || frame.header.k !== key) return undefined
  const { header, bodies } = frame
  const variants: CacheEntry[] = []
  let offset = 0
  for (const item of header.e) {
    if (!isRecord(item)) return undefined
    const { s, m, h, p, y, t, n, l } = item as Partial<VariantHeader>
    // What an origin could not have sent (a status that is no final one, a field that is no field:
    // src/field-limits.ts) is no entry of ours, and replayed it could fail or hang its caller.
    if (typeof s !== 'number' || typeof m !== 'string' || !isReplayableStatus(s, m) || !isHeaders(h) || !fieldsFitToStore(h) ||
        !isRecord(y) || !isStrings(t) || (n !== 'u' && n !== 'b') || !Number.isSafeInteger(l) || l! < 0) return undefined
    const text = bodies.slice(offset, offset += l!)
    if (text.length !== l) return undefined
    const body = toStoredBody(Buffer.from(text, n === 'u' ? 'utf8' : 'base64'))
    const policy = policies.fromObject(p, h)
    const vary = fromNulls(y)
    if (policy === undefined || vary === undefined) return undefined
    variants.push({ key, status: s, statusText: m, headers: h, body, policy, vary, tags: t })
  }
  // Bytes past the last body mean the lengths do not describe this value.
  if (offset !== bodies.length || variants.length === 0) return undefined
  return { variants: toVariants(variants), expires: header.x ?? undefined }
}

/** The tags of every variant in a stored value, reading only its header; `undefined` for a value not ours. */
export function storedTags (value: unknown): string[] | undefined {
  const frame = readFrame(value)
  if (frame === undefined) return undefined
  const tags: string[] = []
  for (const item of frame.header.e) {
    if (isRecord(item) && isStrings(item.t)) tags.push(...item.t)
  }
  return tags
}

function readFrame (value: unknown): { header: Header, bodies: string } | undefined {
  if (typeof value !== 'string' || !value.startsWith(MAGIC)) return undefined
  const end = value.indexOf('\n', MAGIC.length)
  if (end === -1) return undefined
  let header: unknown
  try {
    header = JSON.parse(value.slice(MAGIC.length, end))
  } catch {
    return undefined
  }
  if (!isRecord(header) || typeof header.k !== 'string' || !Array.isArray(header.e) ||
      (header.x !== null && typeof header.x !== 'number')) return undefined
  return { header: header as unknown as Header, bodies: value.slice(end + 1) }
}

/**
 * UTF-8 text as it is, unless a serializer's escaping would make it longer than base64 (each `"`
 * and `\` gains a byte, each other control character up to five).
 */
function encodeBody (body: Buffer): ['u' | 'b', string] {
  const base64Length = Math.ceil(body.byteLength / 3) * 4
  if (isUtf8(body)) {
    const text = body.toString('utf8')
    let escaped = body.byteLength
    for (let i = 0; i < text.length && escaped <= base64Length; i++) {
      const code = text.charCodeAt(i)
      if (code === 0x22 || code === 0x5c) escaped += 1
      else if (code < 0x20) escaped += 5
    }
    if (escaped <= base64Length) return ['u', text]
  }
  return ['b', body.toString('base64')]
}

function toNulls (vary: VaryValues): Record<string, string | null> {
  const values: Record<string, string | null> = {}
  for (const field in vary) setField(values, field, vary[field] ?? null)
  return values
}

function fromNulls (value: Record<string, unknown>): VaryValues | undefined {
  const vary: Record<string, string | undefined> = {}
  for (const field in value) {
    const v = value[field]
    if (v !== null && typeof v !== 'string') return undefined
    setField(vary, field, v ?? undefined)
  }
  return vary
}

function isHeaders (value: unknown): value is ResponseHeaders {
  if (!isRecord(value)) return false
  for (const name in value) {
    const field = value[name]
    if (typeof field !== 'string' && !isStrings(field)) return false
  }
  return true
}

function isStrings (value: unknown): value is string[] {
  return Array.isArray(value) && value.every((v) => typeof v === 'string')
}

function isRecord (value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value)
}
