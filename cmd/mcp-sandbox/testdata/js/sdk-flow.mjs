// A client on the official MCP TypeScript SDK that runs one full sandbox flow
// against mcp-sandbox: create, write, read, run, destroy. Run by
// TestTypeScriptSDKClient (cmd/mcp-sandbox/clients_test.go):
//
//   node sdk-flow.mjs stdio /path/to/mcp-sandbox     (env is passed to the server)
//   node sdk-flow.mjs http  http://127.0.0.1:8080/mcp (token in MCP_SANDBOX_TEST_TOKEN)
//
// The packages come from MCP_SANDBOX_JS_MODULES, else ./node_modules. On
// success the last stdout line is a JSON report; any failure exits 1.
import { join, dirname } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";

const modules = process.env.MCP_SANDBOX_JS_MODULES || join(dirname(fileURLToPath(import.meta.url)), "node_modules");
const sdk = (path) => import(pathToFileURL(join(modules, "@modelcontextprotocol/sdk/dist/esm", path)).href);
const { Client } = await sdk("client/index.js");

const [mode, target] = process.argv.slice(2);
let transport;
if (mode === "stdio") {
  const { StdioClientTransport, getDefaultEnvironment } = await sdk("client/stdio.js");
  const env = { ...getDefaultEnvironment() };
  for (const key of ["MCP_SANDBOX_STATE_DIR", "MCP_SANDBOX_ENV_FILE"]) {
    if (process.env[key]) env[key] = process.env[key];
  }
  transport = new StdioClientTransport({ command: target, args: [], env, stderr: "inherit" });
} else if (mode === "http") {
  const { StreamableHTTPClientTransport } = await sdk("client/streamableHttp.js");
  const headers = {};
  if (process.env.MCP_SANDBOX_TEST_TOKEN) headers.Authorization = `Bearer ${process.env.MCP_SANDBOX_TEST_TOKEN}`;
  transport = new StreamableHTTPClientTransport(new URL(target), { requestInit: { headers } });
} else {
  console.error("usage: sdk-flow.mjs stdio BINARY | http URL");
  process.exit(2);
}

const report = { steps: [] };
const client = new Client({ name: "mcp-sandbox-sdk-flow", version: "1.0.0" });

async function call(name, args, { expectError = false } = {}) {
  const result = await client.callTool({ name, arguments: args });
  const text = (result.content || []).map((c) => c.text || "").join("\n");
  if (Boolean(result.isError) !== expectError) {
    throw new Error(`${name}: isError=${Boolean(result.isError)}, want ${expectError}: ${text}`);
  }
  return { structured: result.structuredContent || {}, text };
}

try {
  await client.connect(transport);
  report.steps.push("initialize");

  const created = await call("sandbox_create", { name: "sdk-flow" });
  const id = created.structured.sandbox_id;
  if (!id) throw new Error(`sandbox_create returned no sandbox_id: ${created.text}`);
  report.steps.push("sandbox_create");

  const content = "written by the TypeScript SDK\n";
  const written = await call("write_file", { sandbox_id: id, path: "notes/hello.txt", content });
  if (written.structured.bytes_written !== content.length) throw new Error(`write_file: ${written.text}`);
  report.steps.push("write_file");

  const read = await call("read_file", { sandbox_id: id, path: "notes/hello.txt" });
  report.read = read.structured.content;
  report.steps.push("read_file");

  const ran = await call("run_command", { sandbox_id: id, command: "tr a-z A-Z < notes/hello.txt" });
  if (ran.structured.exit_code !== 0) throw new Error(`run_command: ${ran.text}`);
  report.run = ran.structured.stdout;
  report.steps.push("run_command");

  const destroyed = await call("sandbox_destroy", { sandbox_id: id });
  if (destroyed.structured.destroyed !== true) throw new Error(`sandbox_destroy: ${destroyed.text}`);
  report.steps.push("sandbox_destroy");

  // The destroyed sandbox is gone for good: using it is a tool error the model can read.
  const after = await call("run_command", { sandbox_id: id, command: "true" }, { expectError: true });
  if (!/not found|no sandbox/i.test(after.text)) throw new Error(`run_command after destroy: ${after.text}`);
  report.steps.push("after_destroy");

  if (mode === "http") await transport.terminateSession();
  await client.close();
  console.log(JSON.stringify(report));
} catch (err) {
  console.error(`sdk-flow (${mode}) failed after steps [${report.steps.join(", ")}]: ${err.stack || err}`);
  await client.close().catch(() => {});
  process.exit(1);
}
