// The playground: up to three models answer the same conversation, prompt or classification, side by side.
//
// Every run is an ordinary /v1 call from the browser (console.js's api/sse: the session cookie and the CSRF header),
// streamed into its column as the deltas arrive; one model failing leaves the others running. A completion's column
// shows the model's stored prompt format and the prompt as the gateway will send it (the gateway applies the format,
// this page only previews it). Columns carry their progress as data attributes (data-state, data-chunks,
// data-finish) for styles and tests.

import { api, flash, sse } from "/console/static/console.js";

const CHAT = "/v1/chat/completions";
const COMPLETIONS = "/v1/completions";
const MAX_STOPS = 4; // the API's limit, and the prompt format's stop counts against it

const page = JSON.parse(document.getElementById("pg-data").textContent);
const known = new Map(page.models.map((model) => [model.id, model]));
const form = document.getElementById("pg-form");
const modelInputs = [...form.querySelectorAll('input[name="model"]')];
const turnsBox = document.getElementById("pg-turns");
const columnsBox = document.getElementById("pg-columns");
const columnTemplate = document.getElementById("pg-column");
const runButton = document.getElementById("pg-run");
const stopButton = document.getElementById("pg-stop");
const statusLine = document.getElementById("pg-status");

let controller = null;

const mode = () => form.elements.mode.value;
const chosenModels = () => modelInputs.map((input) => input.value.trim()).filter(Boolean);
const seconds = (ms) => (ms < 1000 ? `${Math.round(ms)} ms` : `${(ms / 1000).toFixed(2)} s`);
const percent = (share) => `${(share * 100).toFixed(1)}%`;

// --- the conversation ---------------------------------------------------------------------------------------------

function relabelTurns() {
  [...turnsBox.children].forEach((row, index) => {
    row.querySelector("select").setAttribute("aria-label", `Message ${index + 1}: role`);
    row.querySelector("textarea").setAttribute("aria-label", `Message ${index + 1}`);
    row.querySelector("button").setAttribute("aria-label", `Remove message ${index + 1}`);
  });
}

function addTurn(role = "user", content = "") {
  const row = document.createElement("div");
  row.className = "pg-turn";
  row.dataset.testid = "turn";
  const select = document.createElement("select");
  for (const name of ["user", "assistant"]) select.add(new Option(name, name, false, name === role));
  const text = document.createElement("textarea");
  text.rows = 2;
  text.value = content;
  text.placeholder = role === "user" ? "Ask something…" : "What the assistant said";
  const remove = document.createElement("button");
  remove.type = "button";
  remove.className = "secondary outline small";
  remove.textContent = "Remove";
  remove.addEventListener("click", () => {
    row.remove();
    if (!turnsBox.children.length) addTurn();
    relabelTurns();
  });
  row.append(select, text, remove);
  turnsBox.append(row);
  relabelTurns();
  return text;
}

function messages() {
  const found = [];
  const system = form.elements.system.value.trim();
  if (system) found.push({ role: "system", content: system });
  for (const row of turnsBox.children) {
    const content = row.querySelector("textarea").value;
    if (content.trim()) found.push({ role: row.querySelector("select").value, content });
  }
  return found;
}

document.getElementById("pg-add-turn").addEventListener("click", () => {
  const last = turnsBox.lastElementChild?.querySelector("select").value;
  addTurn(last === "user" ? "assistant" : "user").focus();
});

// --- parameters -----------------------------------------------------------------------------------------------------

// `###, " END"` -> ["###", " END"]: bare items are trimmed; quoted ones are JSON strings (spaces, \n kept).
export function parseStops(text) {
  const found = [];
  for (const match of text.matchAll(/\s*"(?:[^"\\]|\\.)*"|[^,\n]+/g)) {
    const item = match[0].trim();
    if (!item) continue;
    if (item.length >= 2 && item.startsWith('"') && item.endsWith('"')) {
      try {
        found.push(JSON.parse(item));
      } catch {
        throw new Error(`The stop sequence ${item} is not a valid quoted string.`);
      }
    } else {
      found.push(item);
    }
  }
  return found;
}

function numberField(name) {
  const raw = form.elements[name].value.trim();
  return raw === "" ? undefined : Number(raw);
}

function samplingParams() {
  const stop = parseStops(form.elements.stop.value);
  if (stop.length > MAX_STOPS) throw new Error(`At most ${MAX_STOPS} stop sequences (the API's limit).`);
  const params = {
    temperature: numberField("temperature"),
    max_tokens: numberField("max_tokens"),
    seed: numberField("seed"),
  };
  if (stop.length) params.stop = stop;
  return params;
}

// --- prompt formats -------------------------------------------------------------------------------------------------

// What the gateway does with a completion's prompt (app/datasets/prompt_format.py): the separator is appended
// unless the prompt already ends with it; the format's stop comes first among the stop sequences.
export function formatted(format, prompt, stops) {
  if (!format) return { prompt, stops: stops.slice(0, MAX_STOPS) };
  const separator = format.separator;
  const out = separator && !prompt.endsWith(separator) ? prompt + separator : prompt;
  const all = [];
  for (const stop of [format.stop, ...stops]) if (stop && !all.includes(stop)) all.push(stop);
  return { prompt: out, stops: all.slice(0, MAX_STOPS) };
}

function describeFormat(option) {
  if (!option) return "Prompt format: unknown here (not in this project's model list); the gateway decides.";
  if (option.format_varies) return "Prompt format: depends on the target the alias's split picks.";
  const format = option.prompt_format;
  if (!format) {
    return option.kind === "base" || option.kind === "upstream"
      ? "Prompt format: none (a base model takes the prompt as written)."
      : "Prompt format: none stored (the prompt is sent as written).";
  }
  const parts = [];
  if (format.separator) parts.push(`separator ${JSON.stringify(format.separator)}`);
  if (format.stop) parts.push(`stop ${JSON.stringify(format.stop)}`);
  if (format.leading_space) parts.push("answers start with a space (removed)");
  if (format.labels?.length) parts.push(`labels ${format.labels.join(", ")}`);
  return `Prompt format: ${parts.join(" · ") || "none"}.`;
}

// --- columns --------------------------------------------------------------------------------------------------------

function parts(column) {
  const find = (id) => column.querySelector(`[data-testid="${id}"]`);
  return {
    output: find("output"),
    error: find("error"),
    bars: find("bars"),
    ttft: find("ttft"),
    tokens: find("tokens"),
    finish: find("finish"),
    top: find("top-label"),
    coverage: find("coverage"),
    promptTokens: find("prompt-tokens"),
    elapsed: find("elapsed"),
    answeredBy: find("answered-by"),
    actions: find("column-actions"),
    format: find("prompt-format"),
    promptSent: find("prompt-sent"),
    stopsSent: find("stops-sent"),
  };
}

function applyMode() {
  const current = mode();
  for (const node of document.querySelectorAll("[data-for]")) {
    node.hidden = !node.dataset.for.split(" ").includes(current);
  }
  refreshPreviews();
}

function buildColumns() {
  const models = chosenModels();
  const columns = models.map((model, index) => {
    const column = columnTemplate.content.firstElementChild.cloneNode(true);
    column.dataset.model = model;
    column.dataset.index = String(index);
    const option = known.get(model);
    column.querySelector('[data-testid="column-model"]').textContent = model;
    column.querySelector('[data-testid="column-kind"]').textContent = option
      ? `${option.kind} · ${option.note}`
      : "not in this project's model list";
    column.querySelector("[data-continue]").addEventListener("click", () => continueWith(column));
    return column;
  });
  columnsBox.style.setProperty("--pg-count", String(Math.max(1, columns.length)));
  columnsBox.replaceChildren(...columns);
  const stored = models.flatMap((model) => known.get(model)?.prompt_format?.labels ?? []);
  form.elements.labels.placeholder = stored.length ? [...new Set(stored)].join(", ") : "yes, no";
  applyMode();
}

function refreshPreviews() {
  if (mode() !== "completion") return;
  let stops = [];
  try {
    stops = parseStops(form.elements.stop.value);
  } catch {
    // shown when the run starts; the preview keeps the caller's stops out meanwhile
  }
  const apply = form.elements.apply_prompt_format.checked;
  const prompt = form.elements.prompt.value;
  for (const column of columnsBox.children) {
    const ui = parts(column);
    const option = known.get(column.dataset.model);
    const format = apply && !option?.format_varies ? option?.prompt_format : null;
    const sent = formatted(format, prompt, stops);
    ui.format.textContent = apply ? describeFormat(option) : "Prompt format: not applied (the prompt is sent as written).";
    ui.promptSent.textContent = sent.prompt;
    ui.stopsSent.textContent = `Stop sequences sent: ${sent.stops.map((s) => JSON.stringify(s)).join(", ") || "none"}`;
  }
}

function resetColumn(column) {
  const ui = parts(column);
  column.dataset.state = "waiting";
  column.dataset.chunks = "0";
  delete column.dataset.finish;
  ui.output.textContent = "";
  ui.bars.replaceChildren();
  ui.error.hidden = true;
  ui.error.textContent = "";
  ui.actions.hidden = true;
  ui.answeredBy.textContent = "";
  for (const field of [ui.ttft, ui.tokens, ui.finish, ui.top, ui.coverage, ui.promptTokens, ui.elapsed]) {
    field.textContent = "—";
  }
}

function failed(column, error, signal) {
  const ui = parts(column);
  if (signal.aborted) {
    column.dataset.state = "stopped";
    ui.finish.textContent = "stopped";
    return;
  }
  column.dataset.state = "error";
  ui.error.textContent = error.message;
  ui.error.hidden = false;
}

function answeredBy(column, model) {
  if (model && model !== column.dataset.model) parts(column).answeredBy.textContent = `answered by ${model}`;
}

async function streamInto(column, path, body, signal) {
  const ui = parts(column);
  const started = performance.now();
  let text = "";
  let chunks = 0;
  let finish = null;
  let usage = null;
  column.dataset.state = "streaming";
  try {
    for await (const event of sse(path, body, { signal })) {
      answeredBy(column, event.model);
      if (event.usage) usage = event.usage;
      for (const choice of event.choices ?? []) {
        const piece = path === CHAT ? choice.delta?.content : choice.text;
        if (piece) {
          if (chunks === 0) ui.ttft.textContent = seconds(performance.now() - started);
          text += piece;
          chunks += 1;
          ui.output.textContent = text;
          ui.tokens.textContent = String(chunks);
          column.dataset.chunks = String(chunks);
        }
        if (choice.finish_reason) finish = choice.finish_reason;
      }
    }
    column.dataset.finish = finish ?? "";
    ui.finish.textContent = finish ?? "—";
    if (usage) {
      ui.tokens.textContent = String(usage.completion_tokens);
      ui.promptTokens.textContent = String(usage.prompt_tokens);
    }
    column.dataset.state = "done";
    ui.actions.hidden = path !== CHAT;
  } catch (error) {
    failed(column, error, signal);
  } finally {
    ui.elapsed.textContent = seconds(performance.now() - started);
  }
}

function drawBars(box, result) {
  const ranked = Object.entries(result.probabilities).sort((a, b) => b[1] - a[1]);
  box.replaceChildren(
    ...ranked.map(([label, probability]) => {
      const row = document.createElement("div");
      row.className = "pg-bar-row";
      row.dataset.testid = "bar";
      row.dataset.label = label;
      row.dataset.probability = String(probability);
      if (label === result.label) row.classList.add("pg-top");
      const name = document.createElement("span");
      name.textContent = label;
      const track = document.createElement("div");
      track.className = "pg-track";
      track.setAttribute("aria-hidden", "true");
      const bar = document.createElement("div");
      bar.className = "bar";
      bar.style.width = `${(probability * 100).toFixed(2)}%`;
      track.append(bar);
      const share = document.createElement("span");
      share.textContent = percent(probability);
      row.append(name, track, share);
      return row;
    }),
  );
}

async function classifyInto(column, body, signal) {
  const ui = parts(column);
  const started = performance.now();
  column.dataset.state = "streaming";
  try {
    const response = await api("POST", "/v1/classifications", body, { signal });
    const result = response.data[0];
    answeredBy(column, response.model);
    drawBars(ui.bars, result);
    ui.top.textContent = result.label ?? "none (no label matched the model's tokens)";
    ui.coverage.textContent = `${percent(result.coverage)} of the model's probability went to these labels`;
    ui.promptTokens.textContent = String(response.usage.prompt_tokens);
    column.dataset.top = result.label ?? "";
    column.dataset.state = "done";
  } catch (error) {
    failed(column, error, signal);
  } finally {
    ui.elapsed.textContent = seconds(performance.now() - started);
  }
}

function continueWith(column) {
  const answer = parts(column).output.textContent;
  const rows = [...turnsBox.children];
  const last = rows.at(-1);
  if (last && !last.querySelector("textarea").value.trim()) last.remove();
  addTurn("assistant", answer);
  addTurn("user").focus();
}

// --- running --------------------------------------------------------------------------------------------------------

function requests(models) {
  const current = mode();
  if (current === "classification") {
    const input = form.elements.input.value;
    if (!input.trim()) throw new Error("Write the input to classify.");
    const labels = form.elements.labels.value.split(",").map((s) => s.trim()).filter(Boolean);
    return models.map((model) => ({ model, input, ...(labels.length ? { labels } : {}) }));
  }
  const params = samplingParams();
  const common = { ...params, stream: true, stream_options: { include_usage: true } };
  if (current === "chat") {
    const conversation = messages();
    if (!conversation.some((m) => m.role !== "system")) throw new Error("Write a message first.");
    return models.map((model) => ({ model, messages: conversation, ...common }));
  }
  const prompt = form.elements.prompt.value;
  if (!prompt) throw new Error("Write a prompt first.");
  const apply = form.elements.apply_prompt_format.checked;
  return models.map((model) => ({ model, prompt, ...common, apply_prompt_format: apply }));
}

function remember(models) {
  const query = new URLSearchParams({ models: models.join(","), mode: mode() });
  history.replaceState(null, "", `${location.pathname}?${query}`);
}

function running(on) {
  runButton.disabled = on;
  runButton.setAttribute("aria-busy", String(on));
  stopButton.disabled = !on;
}

async function run() {
  const models = chosenModels();
  if (!models.length) return flash("Pick at least one model.");
  let bodies;
  try {
    bodies = requests(models);
  } catch (error) {
    return flash(error.message);
  }
  buildColumns();
  remember(models);
  const columns = [...columnsBox.children];
  columns.forEach(resetColumn);
  controller = new AbortController();
  const { signal } = controller;
  running(true);
  statusLine.textContent = `Running ${models.length} model${models.length > 1 ? "s" : ""}…`;
  const started = performance.now();
  const current = mode();
  await Promise.allSettled(
    columns.map((column, index) =>
      current === "classification"
        ? classifyInto(column, bodies[index], signal)
        : streamInto(column, current === "chat" ? CHAT : COMPLETIONS, bodies[index], signal),
    ),
  );
  running(false);
  controller = null;
  const errors = columns.filter((c) => c.dataset.state === "error").length;
  const took = seconds(performance.now() - started);
  statusLine.textContent = signal.aborted
    ? `Stopped after ${took}.`
    : `Done in ${took}${errors ? ` (${errors} failed)` : ""}.`;
}

form.addEventListener("submit", (event) => {
  event.preventDefault();
  if (!controller) run();
});
form.addEventListener("keydown", (event) => {
  if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) {
    event.preventDefault();
    form.requestSubmit();
  }
});
stopButton.addEventListener("click", () => controller?.abort());
for (const input of modelInputs) {
  // The columns follow the selection (typed ids too); a run in progress keeps its columns.
  input.addEventListener("input", () => controller || buildColumns());
}
for (const radio of form.elements.mode) radio.addEventListener("change", applyMode);
for (const name of ["prompt", "stop", "apply_prompt_format"]) {
  form.elements[name].addEventListener("input", refreshPreviews);
}

addTurn();
buildColumns();
