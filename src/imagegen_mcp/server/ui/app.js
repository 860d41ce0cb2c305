// The image viewer and gallery. In an MCP Apps host it is a View: it speaks JSON-RPC to the host over
// postMessage (ui/initialize, then tools/call and resources/read proxied to this server). Opened as a web page
// (GET /gallery) it sends the same requests to the server's /mcp endpoint itself, one self-contained POST each
// (protocol revision 2026-07-28: no handshake, no session). Every image arrives through resources/read as
// base64 and is shown as a data: URI, so the page needs no network access of its own.
"use strict";
(() => {
  const MCP_REVISION = "2026-07-28";
  const APPS_REVISION = "2026-01-26";
  const MAX_SEED = 2 ** 31 - 1;
  const THUMBNAILS_AT_ONCE = 4;
  const GALLERY_LIMIT = 100;
  const JOB_WAIT_S = 60;
  const SEARCH_DELAY_MS = 250;

  const $ = (id) => document.getElementById(id);

  function el(tag, props = {}, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(props)) {
      if (value === undefined || value === null || value === false) continue;
      if (key === "text") node.textContent = value;
      else if (key === "class") node.className = value;
      else if (key === "dataset") Object.assign(node.dataset, value);
      else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
      else node.setAttribute(key, value === true ? "" : String(value));
    }
    node.append(...children.filter((child) => child !== null && child !== undefined));
    return node;
  }

  // -- the two ways to reach the server ---------------------------------------------------------------------

  /** JSON-RPC with the host over postMessage (the MCP Apps transport). */
  class HostBridge {
    constructor() {
      this.nextId = 1;
      this.pending = new Map();
      this.handlers = new Map();
      window.addEventListener("message", (event) => this.receive(event));
    }

    receive(event) {
      const message = event.data;
      if (event.source !== window.parent || !message || message.jsonrpc !== "2.0") return;
      if (message.method === undefined) {
        const waiter = this.pending.get(message.id);
        if (!waiter) return;
        this.pending.delete(message.id);
        if (message.error) waiter.reject(new Error(message.error.message || "the host refused the request"));
        else waiter.resolve(message.result);
        return;
      }
      const handler = this.handlers.get(message.method);
      if (message.id === undefined) {
        if (handler) handler(message.params || {});
        return;
      }
      // A request from the host: ping and ui/resource-teardown are answered with an empty result.
      if (handler || message.method === "ping") {
        Promise.resolve(handler ? handler(message.params || {}) : {}).then((result) =>
          this.post({ jsonrpc: "2.0", id: message.id, result: result || {} }),
        );
      } else {
        this.post({ jsonrpc: "2.0", id: message.id, error: { code: -32601, message: "Method not found" } });
      }
    }

    post(message) {
      window.parent.postMessage(message, "*");
    }

    request(method, params) {
      const id = this.nextId++;
      const answer = new Promise((resolve, reject) => this.pending.set(id, { resolve, reject }));
      this.post({ jsonrpc: "2.0", id, method, params });
      return answer;
    }

    notify(method, params) {
      this.post({ jsonrpc: "2.0", method, params });
    }

    on(method, handler) {
      this.handlers.set(method, handler);
    }
  }

  /** The server's streamable HTTP endpoint, from a page it served. */
  class HttpBridge {
    constructor(endpoint) {
      this.endpoint = endpoint;
      this.nextId = 1;
    }

    async request(method, params) {
      const id = this.nextId++;
      const meta = {
        "io.modelcontextprotocol/protocolVersion": MCP_REVISION,
        "io.modelcontextprotocol/clientCapabilities": {},
        "io.modelcontextprotocol/clientInfo": { name: "imagegen-gallery", version: "1" },
      };
      const headers = {
        "content-type": "application/json",
        accept: "application/json, text/event-stream",
        "mcp-protocol-version": MCP_REVISION,
        "mcp-method": method,
      };
      const name = params.name ?? params.uri;
      if (name !== undefined) headers["mcp-name"] = name;
      const response = await fetch(this.endpoint, {
        method: "POST",
        headers,
        body: JSON.stringify({ jsonrpc: "2.0", id, method, params: { ...params, _meta: meta } }),
        credentials: "same-origin",
        cache: "no-store",
      });
      const type = response.headers.get("content-type") || "";
      const text = await response.text();
      let message = null;
      if (type.startsWith("text/event-stream")) message = fromEvents(text, id);
      else if (type.includes("json")) message = JSON.parse(text);
      if (!message) throw new Error(`the server answered HTTP ${response.status}`);
      if (message.error) throw new Error(message.error.message);
      return message.result;
    }

    notify() {}

    on() {}
  }

  /** The JSON-RPC answer with ``id`` in a text/event-stream body (progress notifications come before it). */
  function fromEvents(text, id) {
    for (const block of text.split(/\r?\n\r?\n/)) {
      const data = block
        .split(/\r?\n/)
        .filter((line) => line.startsWith("data:"))
        .map((line) => line.slice(5).trimStart())
        .join("\n");
      if (!data) continue;
      const message = JSON.parse(data);
      if (message.id === id) return message;
    }
    return null;
  }

  // -- state --------------------------------------------------------------------------------------------------

  const state = {
    bridge: null,
    hostCapabilities: {},
    hostContext: {},
    toolArguments: null,
    entries: [], // the viewer's images, oldest first: {id, uri, width, height, seed, prompt, model, tool, args, result, preview}
    current: -1,
    fromGallery: false,
    deleteArmed: false,
    fullscreen: false,
    models: new Set(),
    thumbnails: new Map(), // image id -> Promise of a data: URI
    thumbnailQueue: [],
    thumbnailsLoading: 0,
    searchTimer: 0,
    searchSerial: 0,
  };

  function status(text, isError = false) {
    const line = $("status");
    line.textContent = text;
    line.classList.toggle("error", isError);
  }

  function textOf(result) {
    return (result.content || [])
      .filter((block) => block.type === "text")
      .map((block) => block.text)
      .join("\n");
  }

  async function callTool(name, args) {
    const result = await state.bridge.request("tools/call", { name, arguments: args });
    if (result.isError) {
      const error = result.structuredContent?.error;
      throw new Error(error ? `${error.message} ${(error.remediation || []).join(" ")}`.trim() : textOf(result));
    }
    return result;
  }

  async function readResource(uri) {
    const result = await state.bridge.request("resources/read", { uri });
    const [content] = result.contents || [];
    if (!content) throw new Error(`nothing at ${uri}`);
    return content;
  }

  async function readImage(uri) {
    const content = await readResource(uri);
    if (content.blob === undefined) throw new Error(`${uri} is not an image`);
    return `data:${content.mimeType || "image/png"};base64,${content.blob}`;
  }

  async function readJson(uri) {
    return JSON.parse((await readResource(uri)).text);
  }

  const canRead = () => state.bridge instanceof HttpBridge || Boolean(state.hostCapabilities.serverResources);

  // -- the viewer ---------------------------------------------------------------------------------------------

  function entriesOf(result, args) {
    const output = result.structuredContent;
    const previews = (result.content || [])
      .filter((block) => block.type === "image")
      .map((block) => `data:${block.mimeType};base64,${block.data}`);
    return output.images.map((image, index) => ({
      id: image.id,
      uri: image.uri,
      width: image.width,
      height: image.height,
      seed: image.seed,
      prompt: args?.prompt ?? "",
      model: output.model,
      tool: output.operation === "generate" ? "generate_image" : "edit_image",
      args: args || null,
      result: output,
      preview: previews[index] || null,
    }));
  }

  function entryOfSummary(summary) {
    return {
      id: summary.id,
      uri: summary.uri,
      width: summary.width,
      height: summary.height,
      seed: summary.seed,
      prompt: summary.prompt,
      model: summary.model,
      tool: null,
      args: null,
      result: null,
      preview: null,
    };
  }

  /** Show a generation result: its images join the viewer's strip, the first of them selected. */
  async function showResult(result, args) {
    const output = result.structuredContent || {};
    if (result.isError) {
      const error = output.error;
      status(error ? `${error.message} ${(error.remediation || []).join(" ")}` : textOf(result), true);
      return;
    }
    if (output.job) {
      status(`Working (job ${output.job.id}, ${Math.round(100 * output.job.progress)}%)…`);
      const next = await state.bridge.request("tools/call", {
        name: "get_job",
        arguments: { job_id: output.job.id, wait_s: JOB_WAIT_S },
      });
      await showResult(next, args);
      return;
    }
    const known = new Set(state.entries.map((entry) => entry.id));
    const fresh = entriesOf(result, args).filter((entry) => !known.has(entry.id));
    if (!fresh.length) return;
    state.entries.push(...fresh);
    status(textOf(result).split("\n")[0]);
    await select(state.entries.length - fresh.length);
  }

  async function select(index) {
    state.current = index;
    state.deleteArmed = false;
    $("delete").textContent = "Delete";
    showSection("viewer");
    const entry = state.entries[index];
    renderEntry(entry);
    renderStrip();
    await Promise.all([loadFull(entry), loadDetails(entry)]);
  }

  function renderEntry(entry) {
    const full = $("full");
    full.alt = entry.prompt || `Generated image ${entry.id}`;
    full.width = entry.width;
    full.height = entry.height;
    full.dataset.id = entry.id;
    full.src = entry.full || entry.preview || "";
    $("prompt").textContent = entry.prompt;
    $("variation").disabled = !entry.args;
    renderFacts(entry);
  }

  async function loadFull(entry) {
    if (entry.full || !canRead()) {
      if (!canRead()) status("This host does not let the view read resources: showing the small preview.");
      return;
    }
    try {
      entry.full = await readImage(entry.uri);
    } catch (error) {
      status(`Could not load ${entry.uri}: ${error.message}`, true);
      return;
    }
    if (state.entries[state.current] === entry) $("full").src = entry.full;
  }

  async function loadDetails(entry) {
    if (!canRead()) return;
    let details;
    try {
      details = await readJson(`${entry.uri}/details`);
    } catch {
      $("lineage").hidden = true;
      return; // deleted since, or never in this history: the result alone is shown
    }
    entry.prompt ||= details.image.prompt;
    entry.args ||= details.request;
    entry.result ||= details.result;
    entry.tool ||= details.result && details.result.operation !== "generate" ? "edit_image" : "generate_image";
    if (state.entries[state.current] !== entry) return;
    renderEntry(entry);
    renderLineage(details);
  }

  function renderFacts(entry) {
    const output = entry.result;
    const rows = [
      ["Model", output ? `${output.model}${output.fell_back ? ` (fallback; asked for ${output.requested})` : ""}` : entry.model],
      ["Seed", String(entry.seed ?? "unknown")],
      ["Size", `${entry.width} × ${entry.height}`],
    ];
    if (output) {
      rows.push(["Cost", output.cost_usd === null ? "unknown" : `$${output.cost_usd.toFixed(4)}`]);
      rows.push(["Time", `${(output.elapsed_ms / 1000).toFixed(1)} s`]);
      if (output.operation !== "generate") rows.push(["Operation", output.operation]);
      if (output.attempts.length > 1 || output.fell_back) {
        const trace = el("ol");
        for (const attempt of output.attempts) {
          const reason = attempt.reason ? ` (${attempt.reason})` : "";
          trace.append(el("li", { text: `${attempt.provider}:${attempt.model} ${attempt.outcome}${reason}` }));
        }
        rows.push(["Fallback", trace]);
      }
      for (const note of output.adjustments) rows.push(["Note", note]);
    }
    $("facts").replaceChildren(...rows.flatMap(([name, value]) => [el("dt", { text: name }), el("dd", {}, value)]));
  }

  function renderStrip() {
    const items = state.entries.map((entry, index) =>
      el(
        "li",
        {},
        el(
          "button",
          {
            type: "button",
            "aria-current": index === state.current ? "true" : "false",
            "aria-label": `Image ${index + 1}, seed ${entry.seed}`,
            dataset: { seed: String(entry.seed), id: entry.id },
            onclick: () => select(index),
          },
          el("img", { src: entry.preview || entry.full || "", alt: entry.prompt || `Image ${index + 1}` }),
          el("span", { class: "seed", text: `seed ${entry.seed}` }),
        ),
      ),
    );
    const focused = [...$("strip").querySelectorAll("button")].indexOf(document.activeElement);
    $("strip").replaceChildren(...items);
    if (focused >= 0) $("strip").querySelectorAll("button")[focused]?.focus();
    $("strip").hidden = state.entries.length < 2;
    for (const entry of state.entries) {
      if (!entry.preview && !entry.full) fillThumbnail(entry, () => renderStrip());
    }
  }

  function renderLineage(details) {
    const links = (list) =>
      list.map((link) => {
        const summary = link.image;
        if (!summary) return el("li", { class: "muted", text: `${link.role}: ${link.image_id} (no longer stored)` });
        const image = el("img", { alt: summary.prompt });
        thumbnail(summary.id).then((src) => (image.src = src), () => {});
        return el(
          "li",
          {},
          el("button", { type: "button", title: `${link.role}: ${summary.prompt}`, onclick: () => openSummary(summary) }, image),
        );
      });
    $("parents").replaceChildren(...links(details.parents));
    $("children").replaceChildren(...links(details.children));
    $("parents").previousElementSibling.hidden = $("parents").hidden = !details.parents.length;
    $("children").previousElementSibling.hidden = $("children").hidden = !details.children.length;
    $("lineage").hidden = !details.parents.length && !details.children.length;
  }

  async function openSummary(summary) {
    const index = state.entries.findIndex((entry) => entry.id === summary.id);
    if (index >= 0) return select(index);
    state.entries.push(entryOfSummary(summary));
    return select(state.entries.length - 1);
  }

  function randomSeed(except) {
    const values = new Uint32Array(1);
    let seed;
    do {
      crypto.getRandomValues(values);
      seed = values[0] % (MAX_SEED + 1);
    } while (seed === except);
    return seed;
  }

  async function busy(label, work) {
    const buttons = [$("variation"), $("apply-edit"), $("delete")];
    buttons.forEach((button) => (button.disabled = true));
    status(label);
    try {
      await work();
    } catch (error) {
      status(error.message, true);
    } finally {
      buttons.forEach((button) => (button.disabled = false));
      const entry = state.entries[state.current];
      $("variation").disabled = !entry?.args;
    }
  }

  function newVariation() {
    const entry = state.entries[state.current];
    if (!entry?.args) return;
    const args = { ...entry.args, seed: randomSeed(entry.seed), count: 1 };
    return busy("Making a new variation…", async () => showResult(await callTool(entry.tool, args), args));
  }

  function applyEdit() {
    const entry = state.entries[state.current];
    const instruction = $("instruction").value.trim();
    if (!entry) return;
    if (!instruction) {
      status("Type an instruction first, e.g. “make the sky darker”.", true);
      $("instruction").focus();
      return;
    }
    const args = { image: entry.uri, prompt: instruction };
    return busy("Editing…", async () => {
      await showResult(await callTool("edit_image", args), args);
      $("instruction").value = "";
    });
  }

  function removeEntry() {
    const entry = state.entries[state.current];
    if (!entry) return;
    if (!state.deleteArmed) {
      state.deleteArmed = true;
      $("delete").textContent = "Confirm delete";
      status("Press Delete again to remove this image's file for good.");
      return;
    }
    return busy("Deleting…", async () => {
      await callTool("delete_image", { image_id: entry.id });
      state.entries.splice(state.current, 1);
      document.querySelector(`#grid [data-id="${entry.id}"]`)?.closest("li")?.remove();
      status(`Deleted ${entry.uri}.`);
      if (state.entries.length) await select(Math.min(state.current, state.entries.length - 1));
      else if (state.fromGallery) showSection("gallery");
      else $("viewer").hidden = true;
    });
  }

  async function openFullSize() {
    const entry = state.entries[state.current];
    if (!entry) return;
    const zoomed = $("zoomed");
    zoomed.alt = entry.prompt || `Generated image ${entry.id}`;
    zoomed.src = entry.full || entry.preview || "";
    $("lightbox").showModal();
    if ((state.hostContext.availableDisplayModes || []).includes("fullscreen")) {
      state.fullscreen = true;
      await displayMode("fullscreen");
    }
  }

  function displayMode(mode) {
    return state.bridge.request("ui/request-display-mode", { mode }).catch(() => {});
  }

  // -- the gallery --------------------------------------------------------------------------------------------

  function showSection(name) {
    $("viewer").hidden = name !== "viewer";
    $("gallery").hidden = name !== "gallery";
    $("back").hidden = !(name === "viewer" && state.fromGallery);
    $("title").textContent = name === "viewer" ? "Image" : "Gallery";
  }

  /** A thumbnail as a data: URI, read at most THUMBNAILS_AT_ONCE at a time and once per image. */
  function thumbnail(imageId) {
    if (!state.thumbnails.has(imageId)) {
      state.thumbnails.set(
        imageId,
        new Promise((resolve, reject) => {
          state.thumbnailQueue.push({ imageId, resolve, reject });
          pumpThumbnails();
        }),
      );
    }
    return state.thumbnails.get(imageId);
  }

  function pumpThumbnails() {
    while (state.thumbnailsLoading < THUMBNAILS_AT_ONCE && state.thumbnailQueue.length) {
      const { imageId, resolve, reject } = state.thumbnailQueue.shift();
      state.thumbnailsLoading++;
      readImage(`imagegen://images/${imageId}/thumbnail`)
        .then(resolve, reject)
        .finally(() => {
          state.thumbnailsLoading--;
          pumpThumbnails();
        });
    }
  }

  function fillThumbnail(entry, then) {
    if (!canRead()) return;
    thumbnail(entry.id).then((src) => {
      entry.preview = src;
      then();
    }, () => {});
  }

  function renderGrid(images) {
    const tiles = images.map((summary) => {
      const image = el("img", { alt: summary.prompt, width: 128, height: 128, dataset: { id: summary.id } });
      if (canRead()) thumbnail(summary.id).then((src) => (image.src = src), () => (image.alt = `${summary.prompt} (not available)`));
      return el(
        "li",
        {},
        el(
          "button",
          {
            type: "button",
            title: `${summary.prompt} — ${summary.model}, seed ${summary.seed}, ${summary.created_at}`,
            onclick: () => {
              state.fromGallery = true;
              openSummary(summary);
            },
          },
          image,
        ),
      );
    });
    $("grid").replaceChildren(...tiles);
    $("count").textContent = images.length ? `${images.length} image${images.length === 1 ? "" : "s"}, newest first` : "No image matches.";
  }

  function rememberModels(images) {
    let added = false;
    for (const image of images) {
      if (!state.models.has(image.model)) {
        state.models.add(image.model);
        added = true;
      }
    }
    if (!added) return;
    const models = [...state.models].sort();
    const providers = [...new Set(models.map((model) => model.split(":")[0]))];
    fillOptions($("provider"), "All providers", providers);
    fillOptions($("model"), "All models", models);
  }

  function fillOptions(select, everything, values) {
    const chosen = select.value;
    select.replaceChildren(el("option", { value: "", text: everything }), ...values.map((value) => el("option", { value, text: value })));
    select.value = values.includes(chosen) ? chosen : "";
  }

  function searchArguments() {
    const args = { limit: GALLERY_LIMIT };
    const query = $("query").value.trim();
    if (query) args.query = query;
    if ($("provider").value) args.provider = $("provider").value;
    if ($("model").value) args.model = $("model").value;
    return args;
  }

  async function search() {
    const serial = ++state.searchSerial;
    try {
      const result = await callTool("search_images", searchArguments());
      if (serial !== state.searchSerial) return; // a newer search is on its way
      showGallery(result.structuredContent.images);
    } catch (error) {
      status(error.message, true);
    }
  }

  function showGallery(images) {
    rememberModels(images);
    renderGrid(images);
    showSection("gallery");
  }

  function searchSoon() {
    clearTimeout(state.searchTimer);
    state.searchTimer = setTimeout(search, SEARCH_DELAY_MS);
  }

  // -- start ----------------------------------------------------------------------------------------------------

  function applyContext(context) {
    Object.assign(state.hostContext, context);
    const root = document.documentElement;
    if (context.theme) root.dataset.theme = context.theme;
    for (const [name, value] of Object.entries(context.styles?.variables || {})) {
      if (value) root.style.setProperty(name, value);
    }
  }

  function onToolResult(result) {
    const output = result.structuredContent || {};
    const tool = state.hostContext.toolInfo?.tool?.name;
    const isSearch = tool === "search_images" || (Array.isArray(output.images) && !output.parameters && !result.isError);
    if (isSearch) {
      const args = state.toolArguments || {};
      $("query").value = args.query || "";
      showGallery(output.images);
      for (const [id, name] of [["provider", "provider"], ["model", "model"]]) if (args[name]) $(id).value = args[name];
      return;
    }
    showResult(result, state.toolArguments).catch((error) => status(error.message, true));
  }

  function reportSize() {
    let last = "";
    new ResizeObserver(() => {
      const size = { width: Math.ceil(document.documentElement.scrollWidth), height: Math.ceil(document.documentElement.scrollHeight) };
      const key = `${size.width}x${size.height}`;
      if (key !== last) state.bridge.notify("ui/notifications/size-changed", size);
      last = key;
    }).observe(document.documentElement);
  }

  async function startInHost() {
    const bridge = new HostBridge();
    state.bridge = bridge;
    bridge.on("ui/notifications/tool-input", (params) => {
      state.toolArguments = params.arguments || {};
      if (state.toolArguments.prompt) $("prompt").textContent = state.toolArguments.prompt;
    });
    bridge.on("ui/notifications/tool-result", onToolResult);
    bridge.on("ui/notifications/tool-cancelled", (params) => status(`Cancelled${params.reason ? `: ${params.reason}` : ""}.`, true));
    bridge.on("ui/notifications/host-context-changed", applyContext);
    bridge.on("ui/resource-teardown", () => ({}));
    const answer = await bridge.request("ui/initialize", {
      protocolVersion: APPS_REVISION,
      appInfo: { name: "imagegen-viewer", version: "1" },
      appCapabilities: { availableDisplayModes: ["inline", "fullscreen"] },
    });
    state.hostCapabilities = answer.hostCapabilities || {};
    applyContext(answer.hostContext || {});
    bridge.notify("ui/notifications/initialized", {});
    reportSize();
    status("Waiting for the result…");
  }

  async function startAsPage() {
    state.bridge = new HttpBridge(new URL("/mcp", window.location.href).href);
    state.fromGallery = true;
    showSection("gallery");
    await search();
  }

  function wire() {
    $("variation").addEventListener("click", newVariation);
    $("apply-edit").addEventListener("click", applyEdit);
    $("instruction").addEventListener("keydown", (event) => {
      if (event.key === "Enter") applyEdit();
    });
    $("delete").addEventListener("click", removeEntry);
    $("open").addEventListener("click", openFullSize);
    $("close").addEventListener("click", () => $("lightbox").close());
    $("lightbox").addEventListener("close", () => {
      if (state.fullscreen) displayMode("inline");
      state.fullscreen = false;
    });
    $("back").addEventListener("click", () => showSection("gallery"));
    $("query").addEventListener("input", searchSoon);
    $("provider").addEventListener("change", search);
    $("model").addEventListener("change", search);
  }

  wire();
  (window.parent === window ? startAsPage() : startInHost()).catch((error) => status(error.message, true));
})();
