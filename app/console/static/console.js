// The console's shared script: every state change goes through the gateway's own API (/v1/...) with the session
// cookie and the page's CSRF token; an API error is shown as its message.
//
// Declarative hooks, so page templates need no script for the common cases:
//   <button data-api="POST /v1/fine_tuning/jobs/ftjob-1/cancel" data-confirm="Cancel?" data-then="reload">
//   <form data-api-form="POST /v1/registry/aliases" data-then="/console/registry/{name}"> (fields -> JSON body;
//     name="a.b" nests, type=number sends numbers, data-json on a textarea sends parsed JSON, empty fields are left out)

const csrfToken = document.querySelector('meta[name="csrf-token"]')?.content ?? "";

export class ApiError extends Error {
  constructor(message, status, body) {
    super(message);
    this.status = status;
    this.body = body;
  }
}

async function errorOf(response) {
  let body = null;
  try {
    body = await response.json();
  } catch {
    // not JSON: fall through to the status text
  }
  const message = body?.error?.message ?? `${response.status} ${response.statusText}`;
  return new ApiError(message, response.status, body);
}

export async function api(method, path, body, { raw = false, signal } = {}) {
  const headers = { "X-CSRF-Token": csrfToken, Accept: "application/json" };
  const init = { method, headers, credentials: "same-origin", signal };
  if (body instanceof FormData) {
    init.body = body;
  } else if (body !== undefined) {
    headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const response = await fetch(path, init);
  if (!response.ok) throw await errorOf(response);
  if (raw) return response;
  return response.status === 204 ? null : response.json();
}

// Server-sent events from a POST (fetch streams): yields each event's parsed data until [DONE].
export async function* sse(path, body, { signal } = {}) {
  const response = await api("POST", path, body, { raw: true, signal });
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    // SSE lines may end in \r\n (sse-starlette's default), \r or \n; a \r last in the buffer may be half of \r\n.
    buffer = (buffer + value).replace(/\r\n|\r(?!$)/g, "\n");
    let cut;
    while ((cut = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, cut);
      buffer = buffer.slice(cut + 2);
      const data = block
        .split("\n")
        .filter((line) => line.startsWith("data:"))
        .map((line) => line.slice(5).trimStart())
        .join("\n");
      if (!data) continue;
      if (data === "[DONE]") return;
      const parsed = JSON.parse(data);
      if (parsed.error) throw new ApiError(parsed.error.message, 0, parsed);
      yield parsed;
    }
  }
}

export function flash(message, kind = "error") {
  const area = document.getElementById("flash");
  if (!area) return;
  const note = document.createElement("p");
  note.className = `flash flash-${kind}`;
  note.dataset.testid = `flash-${kind}`;
  note.textContent = message;
  const close = document.createElement("button");
  close.type = "button";
  close.className = "flash-close";
  close.setAttribute("aria-label", "Dismiss");
  close.textContent = "×";
  close.addEventListener("click", () => note.remove());
  note.append(close);
  area.replaceChildren(note);
  note.scrollIntoView({ block: "nearest" });
}

function fill(template, values) {
  return template.replace(/\{(\w+)\}/g, (_, key) => encodeURIComponent(values?.[key] ?? ""));
}

function after(element, result) {
  const then = element.dataset.then ?? "reload";
  if (then === "reload") window.location.reload();
  else if (then !== "none") window.location.assign(fill(then, result));
  element.dispatchEvent(new CustomEvent("api:done", { detail: result, bubbles: true }));
}

function setPath(target, path, value) {
  const parts = path.split(".");
  let node = target;
  for (const part of parts.slice(0, -1)) node = node[part] ??= {};
  node[parts.at(-1)] = value;
}

export function formBody(form) {
  const body = {};
  for (const field of form.elements) {
    if (!field.name || field.disabled || field.name === "csrf_token") continue;
    if ((field.type === "checkbox" || field.type === "radio") && !field.checked) continue;
    let value = field.value;
    if (value === "" || value === undefined) continue;
    if (field.type === "number" || field.dataset.type === "number") value = Number(value);
    else if (field.type === "checkbox" && field.value === "on") value = true;
    else if (field.dataset.json !== undefined) value = JSON.parse(value);
    else if (field.dataset.list !== undefined) value = value.split(",").map((s) => s.trim()).filter(Boolean);
    setPath(body, field.name, value);
  }
  return body;
}

function split(spec) {
  const [method, ...rest] = spec.trim().split(/\s+/);
  return [method.toUpperCase(), rest.join(" ")];
}

async function busy(element, work) {
  element.setAttribute("aria-busy", "true");
  element.disabled = true;
  try {
    return await work();
  } finally {
    element.removeAttribute("aria-busy");
    element.disabled = false;
  }
}

document.addEventListener("click", async (event) => {
  const button = event.target.closest("[data-api]");
  if (!button) return;
  event.preventDefault();
  if (button.dataset.confirm && !window.confirm(button.dataset.confirm)) return;
  const [method, path] = split(button.dataset.api);
  const body = button.dataset.body ? JSON.parse(button.dataset.body) : undefined;
  try {
    const result = await busy(button, () => api(method, path, body));
    after(button, result);
  } catch (error) {
    flash(error.message);
  }
});

document.addEventListener("submit", async (event) => {
  const form = event.target.closest("form[data-api-form]");
  if (!form) return;
  event.preventDefault();
  const [method, path] = split(form.dataset.apiForm);
  const submit = form.querySelector("[type=submit]") ?? form;
  try {
    const body = formBody(form);
    const result = await busy(submit, () => api(method, fill(path, body), body));
    after(form, result);
  } catch (error) {
    flash(error instanceof SyntaxError ? `Not valid JSON: ${error.message}` : error.message);
  }
});

// Local times for <time data-unix="…"> (the server renders UTC).
for (const node of document.querySelectorAll("time[data-unix]")) {
  const moment = new Date(Number(node.dataset.unix) * 1000);
  node.title = moment.toISOString();
}
