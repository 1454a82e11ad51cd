/**
 * A store from a URL, for configuration that is text (environment variables, the CLI's --store):
 * `redis://…` or `rediss://…` builds @keyv/redis as the README does (commands fail at once while
 * Redis is down), `sqlite:path` or `sqlite://path` builds @keyv/sqlite on that file. Both packages
 * are the application's to install; a missing one is an error that says which to install.
 */
import type { KeyvStoreAdapter } from 'keyv'
import type * as KeyvRedisModule from '@keyv/redis'
import type * as KeyvSqliteModule from '@keyv/sqlite'

export interface UrlStore {
  readonly adapter: KeyvStoreAdapter
  readonly close: () => Promise<void>
}

export async function storeFromUrl (url: string, what: string): Promise<UrlStore> {
  if (/^rediss?:\/\//.test(url)) {
    const { default: KeyvRedis, createClient } = await load<typeof KeyvRedisModule>('@keyv/redis', what)
    let client: ReturnType<typeof createClient>
    try {
      client = createClient({ url, disableOfflineQueue: true })
    } catch (error) {
      // node-redis says only "Invalid pathname" or "Invalid URL": said here of what, without the password.
      throw new TypeError(`expected ${what} to be a Redis URL, redis[s]://[[user]:password@]host[:port][/db-number], got ${JSON.stringify(withoutPassword(url))}: ${(error as Error).message}`)
    }
    // Before anything connects: an idle connection must not keep a finished script alive. (node-redis
    // applies it to the socket it creates; one created before would stay referenced.)
    client.unref()
    return {
      adapter: new KeyvRedis(client, { throwOnErrors: true }) as unknown as KeyvStoreAdapter,
      close: () => { if (client.isOpen) client.destroy(); return Promise.resolve() }
    }
  }
  if (url.startsWith('sqlite:')) {
    const file = url.slice('sqlite:'.length).replace(/^\/\//, '')
    if (file === '') throw new TypeError(`expected ${what} to name a file, as in sqlite:./cache.db, got ${JSON.stringify(url)}`)
    const { default: KeyvSqlite } = await load<typeof KeyvSqliteModule>('@keyv/sqlite', what)
    // A call that waits on another process's lock holds a thread of libuv's pool while it waits:
    // no longer than a read may take (storeTimeouts.read), after which it is given up anyway.
    const adapter = new KeyvSqlite({ uri: `sqlite://${file}`, busyTimeout: 100 })
    return {
      adapter: adapter as unknown as KeyvStoreAdapter,
      close: async () => { await adapter.disconnect().catch(() => {}) }
    }
  }
  throw new TypeError(`expected ${what} to be a redis://, rediss:// or sqlite: URL, got ${JSON.stringify(withoutPassword(url))}`)
}

async function load<T> (name: string, what: string): Promise<T> {
  try {
    return await import(name) as T
  } catch (error) {
    // Installed but failing as it loads (a native build missing, say) is not missing: its own message says why.
    const missing = (error as { code?: unknown }).code === 'ERR_MODULE_NOT_FOUND' && (error as Error).message.includes(`'${name}'`)
    throw new Error(missing ? `${what} needs the package ${name}: npm install ${name}` : `${what}: the package ${name} failed to load: ${(error as Error).message}`, { cause: error })
  }
}

/**
 * A store URL as it may be printed: its password, if any, left out. One that parses with a
 * password has it masked; one that does not parse, or parses without the password it holds (a /
 * in the password made the rest a path, an @ in the user name), has everything from its scheme to
 * its last @ masked, the user too. (A path with an @ in a URL without credentials is masked as
 * well: that errs on the safe side.)
 */
export function withoutPassword (text: string): string {
  try {
    const url = new URL(text.trim())
    if (url.password !== '') {
      url.password = '***'
      return url.href
    }
  } catch {
    // Masked below, in the text.
  }
  if (!text.includes('@')) return text
  return text.replace(/^(\s*["']?(?:[a-z][\w+.-]*:\/{0,2})?)[^]*@/i, '$1***@')
}
