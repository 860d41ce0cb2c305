/**
 * Lets the conformance suite load on Node.js 20: `node --import ./node20.mjs .../conformance/dist/index.js`.
 *
 * The suite's bundle imports `globSync` from `fs`, which Node.js adds in version 22, and only its
 * `tier-check` command calls it. On a Node.js without it, this module registers itself as a resolve
 * hook that hands every importer of `fs` a module with all of `fs` plus a `globSync` that throws;
 * on Node.js 22 and later it does nothing.
 */
import fs from "node:fs";
import { register } from "node:module";
import { isMainThread } from "node:worker_threads";

const FS_WITH_GLOB = `data:text/javascript,${encodeURIComponent(
  'import fs from "node:fs"; export * from "node:fs"; export default fs;' +
    'export function globSync() { throw new Error("fs.globSync needs Node.js 22 or later"); }',
)}`;

export async function resolve(specifier, context, nextResolve) {
  if ((specifier === "fs" || specifier === "node:fs") && context.parentURL !== FS_WITH_GLOB) {
    return { url: FS_WITH_GLOB, shortCircuit: true };
  }
  return nextResolve(specifier, context);
}

// Hooks run on a thread of their own, where this module is loaded again: register once, from the main thread.
if (isMainThread && !("globSync" in fs)) {
  register(import.meta.url);
}
