/**
 * A process of its own with a cache on a SQLite file, as an application builds it:
 * `createCachedFetch({ store: new KeyvSqlite(…) })`. It makes `requests` GETs over `urls`,
 * `concurrency` at a time, closes the cache (which waits for the writes its misses started) and
 * everything else, and exits by itself (a handle left open is a hang the test sees). It prints one
 * JSON line: each response's Cache-Status, the requests that failed, and the store-error events.
 *
 * Run: node --import tsx test/processes/sqlite-client.ts '<JSON of Job>'
 */
import diagnostics from 'node:diagnostics_channel'
import KeyvSqlite from '@keyv/sqlite'
import { Agent } from 'undici'
import { createCachedFetch } from '../../src/index.js'

export interface Job {
  readonly file: string
  readonly urls: readonly string[]
  readonly requests: number
  readonly concurrency: number
  /** `0` turns the memory tier off, so that every request reads the file. */
  readonly maxSize?: number
  /** Waits after each request until its store write has ended (`flush()`): until then a lookup takes the entry being written. */
  readonly settle?: boolean
}

export interface JobReport {
  readonly statuses: string[]
  readonly failures: string[]
  readonly storeErrors: number
  /** Each store-error event as `<reason> <key>: <error>`. */
  readonly storeErrorEvents: string[]
}

const job = JSON.parse(process.argv[2] ?? '') as Job
let storeErrors = 0
const storeErrorEvents: string[] = []
diagnostics.subscribe('cachedfetch:store-error', (message) => {
  storeErrors++
  const { reason, key, error } = message as { reason?: string, key?: string, error?: unknown }
  storeErrorEvents.push(`${reason ?? ''} ${key ?? ''}: ${String(error)}`)
})

const adapter = new KeyvSqlite({ uri: `sqlite://${job.file}`, busyTimeout: 5000 })
const agent = new Agent()
const fetch = createCachedFetch({ store: adapter, namespace: 'x', maxSize: job.maxSize, dispatcher: agent })
const statuses: string[] = []
const failures: string[] = []

let next = 0
async function worker (): Promise<void> {
  while (next < job.requests) {
    const url = job.urls[next++ % job.urls.length]!
    try {
      const response = await fetch(url)
      await response.arrayBuffer()
      statuses.push(response.status === 200 ? response.headers.get('cache-status') ?? 'no cache-status' : `status ${response.status}`)
      if (job.settle === true) await fetch.cache.flush()
    } catch (error) {
      failures.push(`${url}: ${String(error)}`)
    }
  }
}
await Promise.all(Array.from({ length: job.concurrency }, worker))

// A miss is written after its body has been read: close() waits for the writes still in flight,
// or the process would exit with entries never written. The adapter is the caller's to close after.
await fetch.cache.close()
await agent.close()
await adapter.disconnect()
process.stdout.write(JSON.stringify({ statuses, failures, storeErrors, storeErrorEvents } satisfies JobReport) + '\n')
