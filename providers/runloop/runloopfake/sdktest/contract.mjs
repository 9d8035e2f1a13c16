// Contract test: Runloop's official SDK against the fake. The fake's address
// and key come from RUNLOOP_BASE_URL and RUNLOOP_API_KEY, the variables the
// SDK itself reads. The flow runs twice: over the SDK's default HTTP/2
// transport (h2c to an http:// URL) and again with `http2: false`. Every
// result is checked; any mismatch throws and exits non-zero. Run by
// providers/runloop/runloopfake/sdk_test.go.
import assert from 'node:assert/strict'
import { RunloopSDK } from '@runloop/api-client'

const ALL_BYTES = Uint8Array.from({ length: 256 }, (_, i) => i)

async function flow(label, options) {
  const sdk = new RunloopSDK({ maxRetries: 1, ...options })

  // create_and_await_running, then wait_for_status (the SDK long-polls).
  const devbox = await sdk.devbox.create({
    name: `contract-${label}`,
    environment_variables: { GREETING: 'hello' },
    metadata: { suite: 'contract', transport: label },
    launch_parameters: { keep_alive_time_seconds: 600, resource_size_request: 'X_SMALL' },
  })
  let shut = false
  try {
    assert.match(devbox.id, /^dbx_[A-Za-z0-9]+$/)
    const info = await devbox.getInfo()
    assert.equal(info.status, 'running')
    assert.equal(info.metadata.transport, label)
    assert.equal(info.launch_parameters.keep_alive_time_seconds, 600)

    // cmd.exec without callbacks: POST /execute with a command_id.
    const r = await devbox.cmd.exec('echo "$GREETING world"; echo oops >&2; exit 3')
    assert.equal(r.exitCode, 3)
    assert.equal(await r.stdout(), 'hello world\n')
    assert.equal(await r.stderr(), 'oops\n')
    assert.equal(r.success, false)
    const ok = await devbox.cmd.exec('true')
    assert.equal(ok.exitCode, 0)

    // cmd.exec with callbacks: execute_async + the SSE output streams.
    const streamed = { out: [], err: [] }
    const s = await devbox.cmd.exec('for i in 1 2 3; do echo line$i; sleep 0.1; done; echo e >&2', {
      stdout: (l) => streamed.out.push(l),
      stderr: (l) => streamed.err.push(l),
    })
    assert.equal(s.exitCode, 0)
    assert.equal(streamed.out.join(''), 'line1\nline2\nline3\n')
    assert.equal(streamed.err.join(''), 'e\n')

    // Asynchronous execution: still running, then completed; kill.
    const slow = await devbox.cmd.execAsync('sleep 0.5; echo late')
    const done = await slow.result()
    assert.equal(done.exitCode, 0)
    assert.equal(await done.stdout(), 'late\n')
    const sleeper = await devbox.cmd.execAsync('sleep 30')
    await sleeper.kill()
    const killed = await sdk.api.devboxes.executions.retrieve(devbox.id, sleeper.executionId)
    assert.equal(killed.status, 'completed')
    assert.notEqual(killed.exit_status, 0)

    // Low-level execute_sync, as older clients use it.
    const sync = await sdk.api.devboxes.executeSync(devbox.id, { command: 'printf abc' })
    assert.equal(sync.exit_status, 0)
    assert.equal(sync.stdout, 'abc')

    // Text files: write_file_contents then read_file_contents (text/plain).
    await devbox.file.write({ file_path: 'dir/a.txt', contents: 'contents 1\n' })
    assert.equal(await devbox.file.read({ file_path: 'dir/a.txt' }), 'contents 1\n')
    assert.equal(await (await devbox.cmd.exec('cat dir/a.txt')).stdout(), 'contents 1\n')

    // Binary files: upload_file (multipart) then download_file, byte-exact.
    await devbox.file.upload({ path: 'bin/all.bin', file: new File([ALL_BYTES], 'all.bin') })
    const resp = await devbox.file.download({ path: 'bin/all.bin' })
    const got = new Uint8Array(await resp.arrayBuffer())
    assert.deepEqual(Array.from(got), Array.from(ALL_BYTES))
    assert.equal((await (await devbox.cmd.exec('wc -c < bin/all.bin')).stdout()).trim(), '256')

    // Listing files goes through a command: there is no list endpoint.
    const ls = await devbox.cmd.exec('ls -1 bin dir')
    assert.equal(await ls.stdout(), 'bin:\nall.bin\n\ndir:\na.txt\n')

    // A missing file is a 404 the SDK raises as NotFoundError.
    await assert.rejects(devbox.file.read({ file_path: 'nope.txt' }), (e) => e.status === 404)

    // Listing devboxes by status finds this one.
    const page = await sdk.api.devboxes.list({ status: 'running', limit: 100 })
    assert.ok(page.devboxes.some((d) => d.id === devbox.id))

    // shutdown; the devbox is then gone from the running list.
    const down = await devbox.shutdown()
    assert.equal(down.status, 'shutdown')
    shut = true
    assert.equal((await devbox.getInfo()).status, 'shutdown')
    const after = await sdk.api.devboxes.list({ status: 'running', limit: 100 })
    assert.ok(!after.devboxes.some((d) => d.id === devbox.id))
    await assert.rejects(devbox.cmd.exec('true'), (e) => e.status >= 400 && e.status < 500)
  } finally {
    if (!shut) await devbox.shutdown().catch(() => {})
  }
}

// A wrong key is refused with 401, not retried into a hang.
await assert.rejects(
  new RunloopSDK({ bearerToken: 'wrong', maxRetries: 0 }).devbox.create({}),
  (e) => e.status === 401,
)

await flow('http2', {})
await flow('http1', { http2: false })
console.log('contract ok')
