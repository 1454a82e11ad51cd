/**
 * A second tier that answers reads late: a store across a network, or a SQLite file another
 * process keeps busy. What a write does while a read is on its way is what these stores let a test see.
 */
import { Keyv } from 'keyv'

/** A Keyv on a Map whose reads take `ms`, answering what the map held when asked; writes land at once. */
export function slowStore (ms: number): Keyv {
  const map = new Map<string, unknown>()
  const store = Object.assign(new Map(), {
    get: async (name: string) => { const value = map.get(name); await new Promise((resolve) => setTimeout(resolve, ms)); return value },
    set: (name: string, value: unknown) => { map.set(name, value); return true },
    delete: (name: string) => map.delete(name),
    clear: () => map.clear()
  })
  return new Keyv({ store })
}

/** A Keyv on a Map whose writes take `ms` to land, as across a network; reads answer at once. */
export function slowWrites (ms: number): Keyv {
  const map = new Map<string, unknown>()
  const store = Object.assign(new Map(), {
    get: (name: string) => map.get(name),
    set: async (name: string, value: unknown) => { await new Promise((resolve) => setTimeout(resolve, ms)); map.set(name, value); return true },
    delete: (name: string) => map.delete(name),
    clear: () => map.clear()
  })
  return new Keyv({ store })
}
