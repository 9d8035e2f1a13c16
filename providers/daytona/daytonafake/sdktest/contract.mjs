// Contract test: Daytona's official TypeScript SDK against the fake. The
// fake's address and key come from DAYTONA_API_URL and DAYTONA_API_KEY and
// are passed as the SDK's documented apiUrl and apiKey settings. Every result
// is checked; any mismatch throws and exits non-zero. Run by
// providers/daytona/daytonafake/sdk_test.go.
import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { Daytona, DaytonaNotFoundError } from '@daytonaio/sdk'

const daytona = new Daytona({
  apiKey: process.env.DAYTONA_API_KEY,
  apiUrl: process.env.DAYTONA_API_URL,
  target: 'eu',
  useDeprecatedPolling: true,
})

const sandbox = await daytona.create({ envVars: { GREETING: 'hello' }, labels: { suite: 'contract' }, autoStopInterval: 0 })
let deleted = false
try {
  assert.match(sandbox.id, /^[0-9a-f-]{36}$/)
  assert.equal(sandbox.state, 'started')
  assert.equal(sandbox.labels.suite, 'contract')
  assert.equal(sandbox.target, 'eu')

  // Commands: exit codes, env (the sandbox's and the call's), cwd.
  const hi = await sandbox.process.executeCommand('echo hi')
  assert.equal(hi.exitCode, 0)
  assert.equal(hi.result, 'hi\n')
  const failed = await sandbox.process.executeCommand('sh -c "exit 3"')
  assert.equal(failed.exitCode, 3)
  const env = await sandbox.process.executeCommand('sh -c "echo $GREETING $WHO"', undefined, { WHO: 'world' })
  assert.equal(env.result, 'hello world\n')
  await sandbox.fs.createFolder('work/sub', '755')
  const cwd = await sandbox.process.executeCommand('pwd', 'work/sub')
  assert.ok(cwd.result.trim().endsWith('/work/sub'), cwd.result)

  // Sessions: a command with its output streamed over the log websocket,
  // stdout and stderr apart, and its exit code.
  await sandbox.process.createSession('s1')
  const started = await sandbox.process.executeSessionCommand('s1', { command: 'echo out; echo err >&2; exit 4', runAsync: true })
  let out = ''
  let errOut = ''
  await sandbox.process.getSessionCommandLogs('s1', started.cmdId, (d) => { out += d }, (d) => { errOut += d })
  assert.equal(out, 'out\n')
  assert.equal(errOut, 'err\n')
  const cmd = await sandbox.process.getSessionCommand('s1', started.cmdId)
  assert.equal(cmd.exitCode, 4)
  const sync = await sandbox.process.executeSessionCommand('s1', { command: 'echo sync' })
  assert.equal(sync.exitCode, 0)
  assert.equal(sync.stdout, 'sync\n')
  const logs = await sandbox.process.getSessionCommandLogs('s1', started.cmdId)
  assert.equal(logs.stdout, 'out\n')
  assert.equal(logs.stderr, 'err\n')
  await sandbox.process.deleteSession('s1')

  // Files: a binary file up and down byte-exact, listing, details.
  const data = randomBytes(256 * 1024)
  data[0] = 0; data[1] = 0xff
  await sandbox.fs.uploadFile(data, 'work/blob.bin')
  const back = await sandbox.fs.downloadFile('work/blob.bin')
  assert.ok(Buffer.compare(back, data) === 0, 'the downloaded file differs from the uploaded one')
  const listed = await sandbox.fs.listFiles('work')
  assert.deepEqual(listed.map((f) => [f.name, f.isDir]).sort(), [['blob.bin', false], ['sub', true]])
  const details = await sandbox.fs.getFileDetails('work/blob.bin')
  assert.equal(details.size, data.length)
  await assert.rejects(sandbox.fs.downloadFile('work/missing.bin'), DaytonaNotFoundError)

  // Lifecycle: list by label, stop, start (files survive), delete.
  const found = []
  for await (const s of daytona.list({ labels: { suite: 'contract' } })) found.push(s.id)
  assert.deepEqual(found, [sandbox.id])
  await sandbox.stop()
  assert.equal(sandbox.state, 'stopped')
  await sandbox.start()
  assert.equal(sandbox.state, 'started')
  const again = await sandbox.fs.downloadFile('work/blob.bin')
  assert.ok(Buffer.compare(again, data) === 0, 'files did not survive stop and start')
  await sandbox.delete()
  deleted = true
  await assert.rejects(daytona.get(sandbox.id), DaytonaNotFoundError)
} finally {
  if (!deleted) await sandbox.delete().catch(() => {})
}
console.log('contract ok')
