/**
 * `node --import cachedfetch/register app.js`: the cache installed (src/adapters/install.ts) before
 * the application runs, configured from the environment, so that code calling plain `fetch` or
 * `undici.request` gets it without a change:
 * - `CACHEDFETCH_STORE`: `redis://…`, `rediss://…` or `sqlite:./cache.db`; unset, memory only.
 * - `CACHEDFETCH_NAMESPACE`: the `namespace` option.
 * - `CACHEDFETCH_HOSTS`: a JSON file of per-host policies (the `hosts` option; JSON has no key hooks).
 * Writes still on their way when the application is done are waited for before the process exits
 * (on 'beforeExit': not after `process.exit()` or a signal).
 */
import { install, uninstall } from './adapters/install.js'
import { readHostsFile } from './hosts.js'
import { storeFromUrl, type UrlStore } from './store/from-url.js'
import { renamedOptions } from './validate.js'

const env = process.env

/**
 * The store and the hosts file read, the cache installed. A setting the operator got wrong is told
 * in one line naming its variable, and the application does not start; a stack into our code would
 * only bury that line.
 */
async function configure (): Promise<UrlStore | undefined> {
  const store = env.CACHEDFETCH_STORE === undefined || env.CACHEDFETCH_STORE === '' ? undefined : await storeFromUrl(env.CACHEDFETCH_STORE, 'CACHEDFETCH_STORE')
  const hosts = env.CACHEDFETCH_HOSTS === undefined || env.CACHEDFETCH_HOSTS === '' ? undefined : await readHostsFile(env.CACHEDFETCH_HOSTS, 'CACHEDFETCH_HOSTS')
  // An empty variable is an unset one, as for the two above.
  const namespace = env.CACHEDFETCH_NAMESPACE === undefined || env.CACHEDFETCH_NAMESPACE === '' ? undefined : env.CACHEDFETCH_NAMESPACE
  try {
    install({
      ...(store === undefined ? {} : { store: store.adapter }),
      ...(namespace === undefined ? {} : { namespace }),
      ...(hosts === undefined ? {} : { hosts })
    })
  } catch (error) {
    // Named as the application's operator set them, not as the options they became.
    throw renamedOptions(error, { namespace: 'CACHEDFETCH_NAMESPACE', hosts: `CACHEDFETCH_HOSTS (${env.CACHEDFETCH_HOSTS ?? ''})` })
  }
  return store
}

let store: UrlStore | undefined
try {
  store = await configure()
} catch (error) {
  if (!(error instanceof Error) || !error.message.includes('CACHEDFETCH_')) throw error
  process.stderr.write(`cachedfetch/register: ${error.message}\n`)
  process.exit(1)
}

let exiting = false
process.on('beforeExit', () => {
  if (exiting) return
  exiting = true
  void uninstall().then(() => store?.close())
})
