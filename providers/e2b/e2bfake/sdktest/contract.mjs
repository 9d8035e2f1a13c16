// Contract test: E2B's official SDK against the fake. The fake's address and
// key come from E2B_API_URL, E2B_SANDBOX_URL and E2B_API_KEY, exactly as a
// self-hosted E2B is configured. Every result is checked; any mismatch throws
// and exits non-zero. Run by providers/e2b/e2bfake/sdk_test.go.
import assert from 'node:assert/strict'
import { Sandbox, CommandExitError, FileNotFoundError, TimeoutError } from 'e2b'

const sbx = await Sandbox.create({ metadata: { suite: 'contract' }, envs: { GREETING: 'hello' }, timeoutMs: 120_000 })
let killed = false
try {
  assert.match(sbx.sandboxId, /^[a-z0-9]{20}$/)

  // commands.run: stdout, stderr, exit code, env vars, streaming callbacks.
  const streamed = []
  const r = await sbx.commands.run('echo "$GREETING $WHO"; echo oops >&2', {
    envs: { WHO: 'world' },
    onStdout: (d) => streamed.push(d),
  })
  assert.equal(r.exitCode, 0)
  assert.equal(r.stdout, 'hello world\n')
  assert.equal(r.stderr, 'oops\n')
  assert.equal(streamed.join(''), 'hello world\n')

  // A failing command: the SDK throws CommandExitError with the exit code.
  await assert.rejects(sbx.commands.run('echo partial; exit 3'), (e) => {
    assert.ok(e instanceof CommandExitError, `want CommandExitError, got ${e}`)
    assert.equal(e.exitCode, 3)
    assert.equal(e.stdout, 'partial\n')
    return true
  })

  // The command deadline (Connect-Timeout-Ms) ends the command.
  await assert.rejects(sbx.commands.run('sleep 10', { timeoutMs: 300 }), TimeoutError)

  // Background commands: list, stdin, kill (SendSignal).
  const cat = await sbx.commands.run('cat', { background: true, stdin: true })
  assert.ok((await sbx.commands.list()).some((p) => p.pid === cat.pid))
  await sbx.commands.sendStdin(cat.pid, 'from stdin')
  await sbx.commands.closeStdin(cat.pid)
  assert.equal((await cat.wait()).stdout, 'from stdin')
  const sleeper = await sbx.commands.run('sleep 30', { background: true })
  assert.equal(await sbx.commands.kill(sleeper.pid), true)
  await assert.rejects(sleeper.wait())
  assert.equal(await sbx.commands.kill(sleeper.pid), false)

  // files.write then files.read, relative to the home directory, and back
  // through a command.
  const info = await sbx.files.write('dir/a.txt', 'contents 1\n')
  assert.equal(info.name, 'a.txt')
  assert.ok(info.path.endsWith('/dir/a.txt'), info.path)
  assert.equal(await sbx.files.read('dir/a.txt'), 'contents 1\n')
  assert.equal((await sbx.commands.run('cat dir/a.txt')).stdout, 'contents 1\n')
  const bytes = await sbx.files.read(info.path, { format: 'bytes' })
  assert.deepEqual(Array.from(bytes), Array.from(Buffer.from('contents 1\n')))

  // Filesystem service: exists, list, makeDir, remove.
  assert.equal(await sbx.files.exists('dir/a.txt'), true)
  assert.equal(await sbx.files.exists('nope.txt'), false)
  const entries = await sbx.files.list('dir')
  assert.deepEqual(entries.map((e) => [e.name, e.type]), [['a.txt', 'file']])
  assert.equal(await sbx.files.makeDir('made/deep'), true)
  assert.equal(await sbx.files.makeDir('made/deep'), false)
  await sbx.files.remove('dir/a.txt')
  await assert.rejects(sbx.files.read('dir/a.txt'), FileNotFoundError)

  // Control plane: info, timeout, list by metadata.
  const got = await sbx.getInfo()
  assert.equal(got.sandboxId, sbx.sandboxId)
  assert.equal(got.metadata.suite, 'contract')
  await sbx.setTimeout(60_000)
  const listed = await Sandbox.list({ query: { metadata: { suite: 'contract' } } }).nextItems()
  assert.deepEqual(listed.map((s) => s.sandboxId), [sbx.sandboxId])

  // kill: true once, then the sandbox is gone.
  assert.equal(await sbx.kill(), true)
  killed = true
  assert.equal(await Sandbox.kill(sbx.sandboxId), false)
  assert.equal(await sbx.isRunning(), false)
} finally {
  if (!killed) await sbx.kill().catch(() => {})
}
console.log('contract ok')
