/** Helpers for option validation: errors that name the option path and say what was given. */

export function assertKnownKeys (value: object, known: ReadonlySet<string>, path: string): void {
  for (const key of Object.keys(value)) {
    if (!known.has(key)) {
      throw new TypeError(`unknown option ${path}.${key}; expected one of ${[...known].join(', ')}`)
    }
  }
}

/**
 * Whether `value` can be an object of options, read by its own keys: not null, an array, a Map or
 * a Set, whose entries are no keys (a Map of hosts would be read as no hosts at all).
 */
export function isOptionsObject (value: unknown): value is object {
  return typeof value === 'object' && value !== null && !Array.isArray(value) && !(value instanceof Map) && !(value instanceof Set)
}

export function describe (value: unknown): string {
  if (value === null) return 'null'
  if (Array.isArray(value)) return 'array'
  if (value instanceof Map) return 'a Map (give a plain object)'
  if (value instanceof Set) return 'a Set'
  if (typeof value === 'number' || typeof value === 'boolean') return `${typeof value} ${String(value)}`
  if (typeof value === 'string') return `string ${JSON.stringify(value)}`
  return typeof value
}

export function optionalBoolean (value: unknown, path: string): boolean | undefined {
  if (value === undefined || typeof value === 'boolean') return value
  throw new TypeError(`expected ${path} to be a boolean or undefined, got ${describe(value)}`)
}

/** A whole number of at least `min` and at most `max` (bytes, entries, milliseconds). */
export function optionalSize (value: unknown, path: string, min = 1, max = Number.MAX_SAFE_INTEGER): number | undefined {
  if (value === undefined) return undefined
  if (typeof value === 'number' && Number.isSafeInteger(value) && value >= min && value <= max) return value
  const what = min === 0 ? 'a non-negative integer' : 'a positive integer'
  const most = max === Number.MAX_SAFE_INTEGER ? '' : ` of at most ${max}`
  throw new TypeError(`expected ${path} to be ${what}${most} or undefined, got ${describe(value)}`)
}

/**
 * The longest delay a Node timer takes, in ms (2^31 − 1): it runs a longer one after 1 ms. Options
 * that become timers (store timeouts, leases, retry delays) are bounded by it.
 */
export const MAX_TIMER_MS = 2 ** 31 - 1

/**
 * An options TypeError said of where those options came from (a command-line flag, an environment
 * variable): `options.namespace` becomes the name in `names` for `namespace`. Anything else as it is.
 */
export function renamedOptions (error: unknown, names: Readonly<Record<string, string>>): unknown {
  if (!(error instanceof TypeError)) return error
  let message = error.message
  for (const key in names) message = message.replaceAll(`options.${key}`, names[key]!)
  return message === error.message ? error : new TypeError(message)
}
