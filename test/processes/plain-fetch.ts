// An application that knows nothing of cachedfetch: it calls plain fetch and prints what came back.
const response = await fetch(process.argv[2]!)
const body = await response.text()
process.stdout.write(JSON.stringify({ status: response.status, cacheStatus: response.headers.get('cache-status'), body }) + '\n')
