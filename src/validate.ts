/** Helpers for option validation: errors that name the option path and say what was given. */

export function assertKnownKeys (value: object, known: ReadonlySet<string>, path: string): void {
  for (const key of Object.keys(value)) {
    if (!known.has(key)) {
      throw new TypeError(`unknown option ${path}.${key}; expected one of ${[...known].join(', ')}`)
    }
  }
}

export function describe (value: unknown): string {
  if (value === null) return 'null'
  if (Array.isArray(value)) return 'array'
  if (typeof value === 'number' || typeof value === 'boolean') return `${typeof value} ${String(value)}`
  if (typeof value === 'string') return `string ${JSON.stringify(value)}`
  return typeof value
}
