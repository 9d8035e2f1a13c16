// Times Daytona's official SDK doing what the Go driver's benchmarks do,
// against the same fake: node bench.mjs
// <create-exec-delete|create-session-exec-delete|file-1mib> <n>.
// Prints one JSON line: {"n", "totalMs", "medianMs"}. Run by
// providers/daytona/bench_test.go.
import { randomBytes } from 'node:crypto'
import { Daytona } from '@daytonaio/sdk'

const [what, n] = [process.argv[2], Number(process.argv[3] || 1)]
const daytona = new Daytona({
  apiKey: process.env.DAYTONA_API_KEY,
  apiUrl: process.env.DAYTONA_API_URL,
  target: 'eu',
  useDeprecatedPolling: true,
})
const times = []
let shared
if (what === 'file-1mib') shared = await daytona.create({ autoStopInterval: 0 })
const data = randomBytes(1 << 20)
const began = performance.now()
for (let i = 0; i < n; i++) {
  const t = performance.now()
  if (what === 'create-exec-delete') {
    const sb = await daytona.create({ autoStopInterval: 0 })
    const r = await sb.process.executeCommand('echo hi')
    if (r.result !== 'hi\n') throw new Error(`exec gave ${JSON.stringify(r)}`)
    await sb.delete()
  } else if (what === 'create-session-exec-delete') {
    // The SDK's way to stdout and stderr apart: a session command.
    const sb = await daytona.create({ autoStopInterval: 0 })
    await sb.process.createSession('bench')
    const r = await sb.process.executeSessionCommand('bench', { command: 'echo hi' })
    if (r.stdout !== 'hi\n' || r.exitCode !== 0) throw new Error(`session exec gave ${JSON.stringify(r)}`)
    await sb.delete()
  } else if (what === 'file-1mib') {
    await shared.fs.uploadFile(data, 'f.bin')
    const back = await shared.fs.downloadFile('f.bin')
    if (Buffer.compare(back, data) !== 0) throw new Error('the round trip changed the file')
  } else {
    throw new Error(`unknown benchmark ${what}`)
  }
  times.push(performance.now() - t)
}
const totalMs = performance.now() - began
if (shared) await shared.delete()
times.sort((a, b) => a - b)
console.log(JSON.stringify({ n, totalMs, medianMs: times[Math.floor(times.length / 2)] }))
