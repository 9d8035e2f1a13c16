// Contract test: Modal's official JS SDK against the fake. The fake's address
// and tokens come from MODAL_SERVER_URL, MODAL_TOKEN_ID and MODAL_TOKEN_SECRET,
// exactly as a client is pointed at another Modal server. Every result is
// checked; any mismatch throws and exits non-zero. Run by
// providers/modal/modalfake/sdk_test.go.
import assert from 'node:assert/strict'
import { ModalClient, NotFoundError } from 'modal'

const modal = new ModalClient()
const app = await modal.apps.fromName('mcp-sandbox-contract', { createIfMissing: true })
assert.match(app.appId, /^ap-[0-9A-Za-z]{22}$/)
await assert.rejects(modal.apps.fromName('no-such-app'), NotFoundError)

const image = modal.images.fromRegistry('alpine:3.21')
const sb = await modal.sandboxes.create(app, image, {
  timeoutMs: 600_000,
  env: { GREETING: 'hello' },
})
let terminated = false
try {
  // A V2 sandbox: the SDK picks the V2 RPCs from the ID's shape.
  assert.match(sb.sandboxId, /^sb-[0-9A-Za-z]{26}$/)

  // exec: stdout and stderr apart, exit codes, env.
  const p = await sb.exec(['sh', '-c', 'echo "$GREETING $WHO"; echo oops >&2; exit 3'], { env: { WHO: 'world' } })
  assert.equal(await p.stdout.readText(), 'hello world\n')
  assert.equal(await p.stderr.readText(), 'oops\n')
  assert.equal(await p.wait(), 3)

  // stdin through the process's writable stream, then EOF.
  const cat = await sb.exec(['cat'])
  await cat.stdin.writeText('from stdin')
  await cat.stdin.close()
  assert.equal(await cat.stdout.readText(), 'from stdin')
  assert.equal(await cat.wait(), 0)

  // A command killed by a signal reports 128+N.
  const killed = await sb.exec(['sh', '-c', 'kill -9 $$'])
  assert.equal(await killed.wait(), 137)

  // Files through the fs-tools helper, byte-exact, in the sandbox's own
  // directory (the fake's sandboxes are directories on this machine).
  const pwd = await sb.exec(['pwd'])
  const dir = (await pwd.stdout.readText()).trim()
  await pwd.wait()
  const bin = new Uint8Array(256 * 1024)
  for (let i = 0; i < bin.length; i++) bin[i] = (i * 7 + (i >> 8)) & 0xff
  await sb.filesystem.writeBytes(bin, `${dir}/data/blob.bin`)
  const back = await sb.filesystem.readBytes(`${dir}/data/blob.bin`)
  assert.equal(Buffer.compare(Buffer.from(back), Buffer.from(bin)), 0)
  const sum = await sb.exec(['sh', '-c', 'wc -c < data/blob.bin'])
  assert.equal((await sum.stdout.readText()).trim(), String(bin.length))
  await sb.filesystem.writeText('hello file\n', `${dir}/x.txt`)
  assert.equal(await sb.filesystem.readText(`${dir}/x.txt`), 'hello file\n')
  const ls = await sb.filesystem.listFiles(`${dir}/data`)
  assert.deepEqual(ls.map((e) => [e.name, e.type, e.size]), [['blob.bin', 'file', bin.length]])
  await assert.rejects(sb.filesystem.readText(`${dir}/missing.txt`), /No such file/)

  // A fresh handle by ID reattaches through the V2 task and router RPCs.
  const again = await modal.sandboxes.fromId(sb.sandboxId)
  const echo = await again.exec(['echo', 'again'])
  assert.equal(await echo.stdout.readText(), 'again\n')
  assert.equal(await sb.poll(), null)

  assert.equal(await sb.terminate({ wait: true }), 137)
  terminated = true
} finally {
  if (!terminated) await sb.terminate()
}
modal.close()
console.log('contract ok')
