#!/usr/bin/env node
/**
 * Drives an MCP server over stdio with the official TypeScript SDK and prints one JSON document.
 *
 * Input, as JSON in the first argument or else on stdin:
 *   {"server": {"command": "python", "args": ["-m", "imagegen_mcp"], "env": {...}, "cwd": "..."},
 *    "steps": [{"op": "callTool", "name": "list_models", "arguments": {"provider": "foo"}}, ...],
 *    "timeoutMs": 60000}
 * Output on stdout:
 *   {"initialize": OUTCOME, "steps": [OUTCOME, ...], "logs": [LOG, ...], "stderr": "the server's stderr"}
 * where OUTCOME is {"op": ..., "ok": true, "result": ...} or {"op": ..., "ok": false,
 * "error": {"code": -32602, "message": "MCP error -32602: Structured content does not match ..."}},
 * and LOG the params of each notifications/message the server sent ({"level", "logger", "data"}).
 *
 * Operations and their fields: listTools, listResources, listResourceTemplates, listPrompts, ping;
 * callTool (name, arguments), readResource (uri), getPrompt (name, arguments),
 * complete (ref, argument), setLoggingLevel (level).
 * A string field of the form "$steps/<index>/<path...>" is replaced by that value of an earlier
 * step's outcome, e.g. "$steps/0/result/structuredContent/images/0/uri".
 *
 * The tools are listed once before the steps, as clients do: the SDK's callTool validates
 * structuredContent against a tool's outputSchema only for tools it has listed.
 */
import { createRequire } from "node:module";
import { readFileSync } from "node:fs";

// require() honours NODE_PATH, so the dependencies may be installed outside this folder.
const require = createRequire(import.meta.url);
const { Client } = require("@modelcontextprotocol/sdk/client/index.js");
const { StdioClientTransport } = require("@modelcontextprotocol/sdk/client/stdio.js");
const { LoggingMessageNotificationSchema } = require("@modelcontextprotocol/sdk/types.js");

const STDERR_TAIL = 20000;

const OPERATIONS = {
  listTools: (client, _step, options) => client.listTools(undefined, options),
  listResources: (client, _step, options) => client.listResources(undefined, options),
  listResourceTemplates: (client, _step, options) => client.listResourceTemplates(undefined, options),
  listPrompts: (client, _step, options) => client.listPrompts(undefined, options),
  ping: (client, _step, options) => client.ping(options),
  callTool: (client, step, options) =>
    client.callTool({ name: step.name, arguments: step.arguments ?? {} }, undefined, options),
  readResource: (client, step, options) => client.readResource({ uri: step.uri }, options),
  getPrompt: (client, step, options) =>
    client.getPrompt({ name: step.name, arguments: step.arguments ?? {} }, options),
  complete: (client, step, options) => client.complete({ ref: step.ref, argument: step.argument }, options),
  setLoggingLevel: (client, step, options) => client.setLoggingLevel(step.level, options),
};

function describeError(error) {
  return { code: error?.code ?? null, message: error?.message ?? String(error), data: error?.data ?? null };
}

async function outcome(op, run) {
  try {
    return { op, ok: true, result: await run() };
  } catch (error) {
    return { op, ok: false, error: describeError(error) };
  }
}

function lookUp(outcomes, reference) {
  const [, index, ...path] = reference.split("/");
  return path.reduce((value, key) => value?.[key], outcomes[Number(index)]);
}

function resolveReferences(value, outcomes) {
  if (typeof value === "string" && value.startsWith("$steps/")) return lookUp(outcomes, value);
  if (Array.isArray(value)) return value.map((item) => resolveReferences(item, outcomes));
  if (value && typeof value === "object") {
    return Object.fromEntries(Object.entries(value).map(([key, item]) => [key, resolveReferences(item, outcomes)]));
  }
  return value;
}

async function runSteps(client, steps, options) {
  const outcomes = [];
  for (const raw of steps) {
    const step = resolveReferences(raw, outcomes);
    const operation = OPERATIONS[step.op];
    outcomes.push(
      operation
        ? await outcome(step.op, () => operation(client, step, options))
        : { op: step.op, ok: false, error: { code: null, message: `unknown op ${step.op}`, data: null } },
    );
  }
  return outcomes;
}

async function main() {
  const input = JSON.parse(process.argv[2] ?? readFileSync(0, "utf8"));
  const options = { timeout: input.timeoutMs ?? 60000 };
  const transport = new StdioClientTransport({ ...input.server, stderr: "pipe" });
  let stderr = "";
  transport.stderr?.on("data", (chunk) => {
    stderr = (stderr + chunk).slice(-STDERR_TAIL);
  });
  const client = new Client({ name: "imagegen-mcp-tests", version: "1.0.0" });
  const logs = [];
  client.setNotificationHandler(LoggingMessageNotificationSchema, (notification) => {
    logs.push(notification.params);
  });
  const initialize = await outcome("initialize", async () => {
    await client.connect(transport, options);
    await client.listTools(undefined, options);
    return {
      serverVersion: client.getServerVersion(),
      capabilities: client.getServerCapabilities(),
      instructions: client.getInstructions(),
    };
  });
  const steps = initialize.ok ? await runSteps(client, input.steps ?? [], options) : [];
  await client.close();
  process.stdout.write(`${JSON.stringify({ initialize, steps, logs, stderr })}\n`);
}

await main();
