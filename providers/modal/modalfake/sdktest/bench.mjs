// Times Modal's official JS SDK against the fake doing what the Go driver's
// benchmark does: create + exec + terminate, and a 1 MiB file written and
// read back. Prints one JSON line of per-iteration milliseconds. Run by
// providers/modal/bench_test.go (BenchmarkAgainstSDK).
import { ModalClient } from 'modal'

const n = Number(process.argv[2] ?? 10)
const modal = new ModalClient({ logLevel: 'error' })
const app = await modal.apps.fromName('mcp-sandbox-bench', { createIfMissing: true })
const image = modal.images.fromRegistry('alpine:3.21')

const lifecycle = []
for (let i = 0; i < n + 1; i++) {
  const t0 = performance.now()
  const sb = await modal.sandboxes.create(app, image)
  const p = await sb.exec(['true'])
  if ((await p.wait()) !== 0) throw new Error('true failed')
  await sb.terminate()
  if (i > 0) lifecycle.push(performance.now() - t0) // the first warms up
}

const sb = await modal.sandboxes.create(app, image)
const pwd = await sb.exec(['pwd'])
const dir = (await pwd.stdout.readText()).trim()
const data = new Uint8Array(1 << 20)
for (let i = 0; i < data.length; i++) data[i] = (i * 31 + 7) & 0xff
const files = []
for (let i = 0; i < n + 1; i++) {
  const t0 = performance.now()
  await sb.filesystem.writeBytes(data, `${dir}/bench.bin`)
  const back = await sb.filesystem.readBytes(`${dir}/bench.bin`)
  if (back.length !== data.length) throw new Error(`read ${back.length} bytes`)
  if (i > 0) files.push(performance.now() - t0)
}
await sb.terminate()
modal.close()
console.log(JSON.stringify({ lifecycle, files }))
