// A job's page, live. The curves grow from the job's event stream (an EventSource on the API's
// GET /v1/fine_tuning/jobs/{id}/events?stream=true: same origin, so the session cookie authenticates it), picking up
// after the last event the server rendered. Any other event refreshes the server-rendered parts in place (status,
// buttons, facts, checkpoints, eval, events list: the elements marked data-live), never reloading the page.
import { api, flash } from "/console/static/console.js";

const EVENTS_SHOWN = 50;
const EVAL_POLL_MS = 5000;
const EVAL_POLLS = 120;

const root = document.querySelector("[data-job-id]");
const jobId = root.dataset.jobId;
const curves = document.getElementById("curves");
const liveState = document.querySelector("[data-live-state]");

// --- the curves ---------------------------------------------------------------------------------------------------

const series = { trainLoss: [], validLoss: [], trainAccuracy: [], validAccuracy: [] };
let charts = [];

function lineChart(canvas, datasets, yTitle, percent) {
  return new Chart(canvas, {
    type: "line",
    data: { datasets },
    options: {
      animation: false,
      parsing: false,
      normalized: true,
      responsive: true,
      maintainAspectRatio: false,
      interaction: { mode: "nearest", axis: "x", intersect: false },
      // Thousands of steps are drawn as ~500 points that keep the curve's shape (largest-triangle sampling).
      plugins: { decimation: { enabled: true, algorithm: "lttb", samples: 500 } },
      scales: {
        x: { type: "linear", title: { display: true, text: "step" }, ticks: { precision: 0 } },
        y: {
          title: { display: true, text: yTitle },
          ticks: percent ? { callback: (value) => `${Math.round(value * 100)}%` } : {},
        },
      },
    },
  });
}

function dataset(label, data, color, sparse) {
  // Validation is measured at epoch ends only: its few points are drawn as dots joined by a line.
  return {
    label,
    data,
    borderColor: color,
    backgroundColor: color,
    borderWidth: sparse ? 2 : 1.5,
    pointRadius: sparse ? 3 : 0,
    spanGaps: true,
  };
}

if (typeof Chart === "undefined") {
  curves.querySelector("[data-charts]")?.replaceChildren(
    Object.assign(document.createElement("p"), {
      className: "error",
      textContent: "The chart library is missing: run `make install` on the gateway's machine.",
    }),
  );
} else {
  charts = [
    lineChart(
      document.getElementById("loss-chart"),
      [
        dataset("Training loss", series.trainLoss, "#1d5fb4", false),
        dataset("Validation loss", series.validLoss, "#c26a00", true),
      ],
      "loss",
      false,
    ),
    lineChart(
      document.getElementById("accuracy-chart"),
      [
        dataset("Training token accuracy", series.trainAccuracy, "#1f7a3a", false),
        dataset("Validation token accuracy", series.validAccuracy, "#8a2be2", true),
      ],
      "token accuracy",
      true,
    ),
  ];
}

function push(points, x, y) {
  if (typeof y !== "number" || !Number.isFinite(y)) return;
  // A resumed run reports again the steps after its last saved state: the newer values replace the older ones.
  while (points.length && points.at(-1).x >= x) points.pop();
  points.push({ x, y });
}

function plot(data, { progress = true } = {}) {
  const x = data?.step;
  if (typeof x !== "number") return false;
  push(series.trainLoss, x, data.train_loss);
  push(series.validLoss, x, data.valid_loss ?? data.full_valid_loss);
  push(series.trainAccuracy, x, data.train_mean_token_accuracy);
  push(series.validAccuracy, x, data.valid_mean_token_accuracy ?? data.full_valid_mean_token_accuracy);
  if (progress) showProgress(data);
  return true;
}

function drawn() {
  curves.dataset.points = String(series.trainLoss.length);
  const some = series.trainLoss.length > 0;
  curves.querySelector("[data-testid=curves-empty]").hidden = some;
  curves.querySelector("[data-charts]").hidden = !some;
  for (const chart of charts) chart.update("none");
}

function showProgress(data) {
  const bar = document.querySelector("[data-testid=job-progress]");
  const label = document.querySelector("[data-progress-label]");
  if (!bar || !(data.total_steps > 0)) return;
  const done = Math.min(1, data.step / data.total_steps);
  bar.hidden = false;
  bar.value = done;
  if (label) label.textContent = `${Math.round(done * 100)}% of the steps (step ${data.step} of ${data.total_steps})`;
}

const embedded = JSON.parse(document.getElementById("job-metrics").textContent);
const rowData = (row) => Object.fromEntries(embedded.keys.map((key, i) => [key, row[i]]));
for (const row of embedded.rows) plot(rowData(row), { progress: false });
if (embedded.rows.length) showProgress(rowData(embedded.rows.at(-1)));
drawn();

// --- the rest of the page, refreshed in place ---------------------------------------------------------------------

let refreshing = null;
let again = false;

function busyTyping(node) {
  // Leave alone a part someone is typing in (an alias name): it is refreshed with the next event.
  const focused = document.activeElement;
  if (focused && node.contains(focused) && focused.matches("input, select, textarea")) return true;
  return [...node.querySelectorAll("[data-alias-form] input[name=alias]")].some((input) => input.value !== "");
}

async function refreshOnce() {
  const response = await fetch(window.location.pathname, { credentials: "same-origin", headers: { Accept: "text/html" } });
  if (!response.ok) return;
  const fresh = new DOMParser().parseFromString(await response.text(), "text/html");
  for (const node of document.querySelectorAll("[data-live]")) {
    const next = fresh.getElementById(node.id);
    if (next && !busyTyping(node)) node.replaceWith(document.adoptNode(next));
  }
}

function refresh() {
  if (refreshing) {
    again = true;
    return refreshing;
  }
  refreshing = (async () => {
    try {
      do {
        again = false;
        await refreshOnce();
      } while (again);
    } catch {
      // A network hiccup: the next event refreshes again.
    } finally {
      refreshing = null;
    }
  })();
  return refreshing;
}

let refreshTimer = null;
function refreshSoon() {
  clearTimeout(refreshTimer);
  refreshTimer = setTimeout(refresh, 150);
}

function utc(seconds) {
  return `${new Date(seconds * 1000).toISOString().replace("T", " ").slice(0, 19)} UTC`;
}

function listEvent(event) {
  const list = document.querySelector("[data-testid=events-list]");
  if (!list) return;
  const item = document.createElement("li");
  item.className = `event level-${event.level}`;
  const time = document.createElement("time");
  time.dataset.unix = String(event.created_at);
  time.textContent = utc(event.created_at);
  const text = document.createElement("span");
  text.textContent = event.message;
  item.append(time, " ", text);
  list.prepend(item);
  while (list.children.length > EVENTS_SHOWN) list.lastElementChild.remove();
}

// --- following the job --------------------------------------------------------------------------------------------

function setLive(text) {
  if (liveState) liveState.textContent = text;
}

async function pollEval() {
  for (let i = 0; i < EVAL_POLLS; i += 1) {
    if (document.getElementById("job-eval")?.dataset.evalStatus !== "in_progress") return;
    await new Promise((resolve) => setTimeout(resolve, EVAL_POLL_MS));
    await refresh();
  }
}

async function ended() {
  setLive("finished");
  await refresh();
  pollEval();
}

function follow(after) {
  const query = new URLSearchParams({ stream: "true" });
  if (after) query.set("after", after);
  const source = new EventSource(`/v1/fine_tuning/jobs/${encodeURIComponent(jobId)}/events?${query}`);
  source.onopen = () => setLive("live");
  source.onmessage = (message) => {
    if (message.data === "[DONE]") {
      source.close(); // else EventSource would reconnect
      ended();
      return;
    }
    const event = JSON.parse(message.data);
    if (event.type === "metrics") {
      if (plot(event.data)) drawn();
    } else {
      listEvent(event);
      refreshSoon(); // status, buttons, checkpoints, eval: as the server now renders them
    }
  };
  source.onerror = () => {
    // EventSource reconnects by itself, resuming with Last-Event-ID; CLOSED means it gave up (signed out?).
    setLive(source.readyState === EventSource.CLOSED ? "disconnected: reload to follow again" : "reconnecting…");
  };
}

if (root.dataset.terminal === "true") pollEval();
else follow(root.dataset.lastEventId);

// The buttons (data-then="none") act through the API; the page then shows the job as it now is.
document.addEventListener("api:done", () => refresh());

// --- a checkpoint as an alias version -----------------------------------------------------------------------------

document.addEventListener("submit", async (event) => {
  const form = event.target.closest("form[data-alias-form]");
  if (!form) return;
  event.preventDefault();
  const name = form.elements.alias.value.trim();
  const model = form.dataset.model;
  const creating = event.submitter?.value === "create";
  const note = `Checkpoint at step ${form.dataset.step} of ${jobId}`;
  const buttons = [...form.querySelectorAll("button")];
  buttons.forEach((button) => (button.disabled = true));
  form.setAttribute("aria-busy", "true");
  try {
    if (creating) await api("POST", "/v1/registry/aliases", { name, description: `Made from ${jobId}` });
    const version = await api("POST", `/v1/registry/aliases/${encodeURIComponent(name)}/versions`, {
      targets: [{ model }],
      note,
      // A new alias answers with its first version; on an existing one the person decides.
      activate: creating || form.elements.activate.checked,
    });
    const state = creating || form.elements.activate.checked ? "active" : "not active: promote it on the alias's page";
    flash(`${name} version ${version.version} is ${model} (${state}).`, "ok");
    const names = document.getElementById("alias-names");
    if (creating && names) names.append(Object.assign(document.createElement("option"), { value: name }));
    form.reset();
    form.closest("details")?.removeAttribute("open");
  } catch (error) {
    const hint = error.status === 404 && !creating ? " Use “New alias” to create it with this checkpoint." : "";
    flash(`${error.message}${hint}`);
  } finally {
    buttons.forEach((button) => (button.disabled = false));
    form.removeAttribute("aria-busy");
  }
});
