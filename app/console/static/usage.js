// The usage page's charts (Chart.js, the global `Chart` from /console/vendor/chart.js): the figures are computed
// server-side and embedded in #usage-data; this only draws them. `window.usageCharts` holds the charts by canvas id.
import { flash } from "/console/static/console.js";

const PALETTE = ["#1d5fb4", "#1f7a3a", "#a86b00", "#a12622", "#6a3fa0", "#0f7f86", "#b4418e", "#5b6770"];

function labelsOf(data) {
  const hourly = data.bucket_width === "1h";
  const format = hourly
    ? { hour: "2-digit", minute: "2-digit" }
    : { month: "short", day: "numeric" };
  return data.starts.map((start) => new Date(start * 1000).toLocaleString([], format));
}

function datasets(series, figure, { line = false } = {}) {
  return series.map((s, i) => {
    const color = PALETTE[i % PALETTE.length];
    return {
      label: s.label,
      data: figure(s),
      backgroundColor: line ? color : `${color}cc`,
      borderColor: color,
      borderWidth: line ? 2 : 0,
      ...(line ? { type: "line", tension: 0.25, pointRadius: 2, fill: false } : {}),
    };
  });
}

function draw(id, labels, sets, { stacked = false, type = "bar" } = {}) {
  const canvas = document.getElementById(id);
  return new Chart(canvas, {
    type,
    data: { labels, datasets: sets },
    options: {
      responsive: true,
      maintainAspectRatio: false,
      animation: false,
      interaction: { mode: "index", intersect: false },
      plugins: { legend: { position: "bottom", labels: { boxWidth: 12 } } },
      scales: {
        x: { stacked },
        y: { stacked, beginAtZero: true, ticks: { precision: 0 } },
      },
    },
  });
}

const source = document.getElementById("usage-data");
if (source) {
  const data = JSON.parse(source.textContent);
  if (typeof Chart === "undefined") {
    flash("The charts need the console's front-end packages: run `make install` on the gateway.");
  } else {
    const labels = labelsOf(data);
    const tokens = (s) => s.input_tokens.map((n, i) => n + s.output_tokens[i]);
    const requests = (s) => s.requests;
    window.usageCharts = {
      "tokens-by-model": draw("tokens-by-model", labels, datasets(data.models, tokens), { stacked: true }),
      "requests-by-model": draw("requests-by-model", labels, datasets(data.models, requests)),
      "tokens-by-key": draw("tokens-by-key", labels, datasets(data.keys, tokens), { stacked: true }),
      "requests-by-key": draw("requests-by-key", labels, datasets(data.keys, requests, { line: true }), {
        type: "line",
      }),
    };
  }
}
