/**
 * The benchmark's origin in a process of its own (bench/origin.ts): it says where it listens, then
 * answers each `{ id, directory }` with what it counted there.
 */
import { startOriginServer } from './origin.js'

const origin = await startOriginServer()
process.send!({ url: origin.url, etag: origin.etag })
process.on('message', (message: { id: number, directory: string }) => {
  process.send!({ id: message.id, counts: origin.seen(message.directory) })
})
process.on('disconnect', () => { void origin.close().then(() => process.exit(0)) })
