// A client on the official MCP TypeScript SDK, driven line by line from
// stdin, for the replica test (cmd/mcp-sandbox/replica_cluster_test.go): the
// test decides what happens between calls (a replica killed, Redis
// restarted) and checks every answer.
//
//   node replica-driver.mjs http://127.0.0.1:8080/mcp
//
// Each stdin line is a JSON command, answered by one stdout line:
//   {"op":"call","tool":"run_command","args":{...}} -> {"ok":true,"isError":false,"structured":{...},"text":"..."}
//   {"op":"terminate"}                              -> {"ok":true}  (HTTP DELETE of the session)
// A call the transport fails answers {"ok":false,"error":"..."}; the driver
// goes on. The packages come from MCP_SANDBOX_JS_MODULES, else ./node_modules.
import { join, dirname } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { createInterface } from "node:readline";

const modules = process.env.MCP_SANDBOX_JS_MODULES || join(dirname(fileURLToPath(import.meta.url)), "node_modules");
const sdk = (path) => import(pathToFileURL(join(modules, "@modelcontextprotocol/sdk/dist/esm", path)).href);
const { Client } = await sdk("client/index.js");
const { StreamableHTTPClientTransport } = await sdk("client/streamableHttp.js");

const transport = new StreamableHTTPClientTransport(new URL(process.argv[2]));
const client = new Client({ name: "mcp-sandbox-replica-driver", version: "1.0.0" });
client.onerror = () => {}; // a broken GET stream (its replica killed) is reconnected by the SDK
await client.connect(transport);
console.log(JSON.stringify({ ok: true, session: transport.sessionId }));

for await (const line of createInterface({ input: process.stdin })) {
  const cmd = JSON.parse(line);
  let answer;
  try {
    if (cmd.op === "call") {
      const result = await client.callTool({ name: cmd.tool, arguments: cmd.args || {} });
      const text = (result.content || []).map((c) => c.text || "").join("\n");
      answer = { ok: true, isError: Boolean(result.isError), structured: result.structuredContent || {}, text };
    } else if (cmd.op === "terminate") {
      await transport.terminateSession();
      answer = { ok: true };
    } else {
      answer = { ok: false, error: `unknown op ${cmd.op}` };
    }
  } catch (err) {
    answer = { ok: false, error: String(err && err.message ? err.message : err) };
  }
  console.log(JSON.stringify(answer));
}
await client.close().catch(() => {});
