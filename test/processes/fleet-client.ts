/**
 * One process of a fleet sharing Redis, for test/redis-fleet.test.ts: builds a cachedFetch on
 * @keyv/redis as the README does, says "ready" once connected, waits for "go" on stdin, sends
 * `requests` identical GETs at once, and prints what they got as one line of JSON.
 */
import { createInterface } from 'node:readline'
import { createCachedFetch } from '../../src/index.js'
import { redisAdapter } from '../helpers/redis.js'

interface Config {
  readonly url: string
  readonly redisUrl: string
  readonly namespace: string
  readonly coordinate: boolean
  readonly requests: number
}

const config = JSON.parse(process.argv[2]!) as Config
const { adapter, close } = redisAdapter(config.redisUrl)
const cachedFetch = createCachedFetch({ store: adapter, namespace: config.namespace, coordinate: config.coordinate })
await adapter.getClient()
process.stdout.write('ready\n')
const lines = createInterface({ input: process.stdin })
await new Promise<void>((resolve) => lines.once('line', () => resolve()))
lines.close()

const outcomes = await Promise.allSettled(Array.from({ length: config.requests }, async () => {
  const response = await cachedFetch(config.url)
  return { status: response.headers.get('cache-status') ?? '', body: await response.text() }
}))
const statuses: Record<string, number> = {}
const bodies: Record<string, number> = {}
let failures = 0
for (const outcome of outcomes) {
  if (outcome.status === 'rejected') {
    failures++
    continue
  }
  const kind = outcome.value.status.replace(/; ttl=\d+/, '')
  statuses[kind] = (statuses[kind] ?? 0) + 1
  bodies[outcome.value.body] = (bodies[outcome.value.body] ?? 0) + 1
}
process.stdout.write(JSON.stringify({ statuses, bodies, failures }) + '\n')
await cachedFetch.cache.close()
await close()
