/**
 * What a test opens (origins, agents, clients) closed once it has run, the last opened first, so
 * that no server or socket outlives its test. A file (or a describe block) makes one with
 * `teardown()`, opens through it, and calls its `close()` from afterEach, after anything of its
 * own that must come first.
 */
import { Agent } from 'undici'
import { startOrigin, type Origin, type Route } from './origin.js'

export interface Closable {
  close (): Promise<void>
}

export interface Teardown {
  /** Closes `thing` after the test; returns it. */
  readonly add: <T extends Closable>(thing: T) => T
  /** A loopback origin (`startOrigin`), closed after the test. */
  readonly origin: (routes?: Record<string, Route>) => Promise<Origin>
  /** An undici Agent, closed after the test. */
  readonly agent: () => Agent
  /** Closes everything added since the last call, the last added first. */
  readonly close: () => Promise<void>
}

export function teardown (): Teardown {
  const opened: Closable[] = []
  const add = <T extends Closable>(thing: T): T => {
    opened.push(thing)
    return thing
  }
  return {
    add,
    origin: async (routes) => add(await startOrigin(routes)),
    agent: () => add(new Agent()),
    close: async () => {
      for (const thing of opened.splice(0).reverse()) await thing.close()
    }
  }
}
