// Times Runloop's official SDK against the fake, for the driver's benchmark
// (providers/runloop/bench_test.go), which runs it in the same run as the
// driver. Usage: node bench.mjs <create|file> <iterations>
// Prints one JSON array: each iteration's time in milliseconds.
import { RunloopSDK } from '@runloop/api-client'

const [op, n] = [process.argv[2], Number(process.argv[3] || 10)]
const sdk = new RunloopSDK({ maxRetries: 0 })
const times = []
if (op === 'create') {
  for (let i = 0; i < n; i++) {
    const t0 = performance.now()
    const devbox = await sdk.devbox.create({ name: 'bench' })
    const r = await devbox.cmd.exec('true')
    if (r.exitCode !== 0) throw new Error(`exit ${r.exitCode}`)
    await devbox.shutdown()
    times.push(performance.now() - t0)
  }
} else if (op === 'file') {
  const data = new Uint8Array(1 << 20).map((_, i) => (i * 7919) & 0xff)
  const devbox = await sdk.devbox.create({ name: 'bench' })
  try {
    for (let i = 0; i < n; i++) {
      const t0 = performance.now()
      await devbox.file.upload({ path: 'bench.bin', file: new File([data], 'bench.bin') })
      const got = new Uint8Array(await (await devbox.file.download({ path: 'bench.bin' })).arrayBuffer())
      if (got.length !== data.length) throw new Error(`read ${got.length} bytes`)
      times.push(performance.now() - t0)
    }
  } finally {
    await devbox.shutdown()
  }
} else {
  throw new Error(`unknown op ${op}`)
}
console.log(JSON.stringify(times))
