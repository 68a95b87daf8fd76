// Datasets pages: the upload with a progress bar (XMLHttpRequest: fetch cannot report upload progress), a file page
// that waits for its validation, the token-length histogram, and prepare with the chosen fixes.
import { api, flash } from "/console/static/console.js";

const csrfToken = document.querySelector('meta[name="csrf-token"]')?.content ?? "";

function apiMessage(xhr) {
  try {
    const message = JSON.parse(xhr.responseText)?.error?.message;
    if (message) return message;
  } catch {
    // not JSON: fall through to the status line
  }
  return xhr.status ? `${xhr.status} ${xhr.statusText}` : "The upload failed: the gateway could not be reached.";
}

function upload(form) {
  const bar = form.querySelector("#upload-progress");
  const status = form.querySelector("#upload-status");
  const submit = form.querySelector("[type=submit]");
  const body = new FormData(form);
  const xhr = new XMLHttpRequest();
  const done = (ok) => {
    submit.disabled = false;
    submit.removeAttribute("aria-busy");
    if (!ok) form.querySelector(".upload-progress").hidden = true;
  };
  bar.value = 0;
  form.querySelector(".upload-progress").hidden = false;
  submit.disabled = true;
  submit.setAttribute("aria-busy", "true");
  status.textContent = "Uploading…";
  xhr.upload.addEventListener("progress", (event) => {
    if (!event.lengthComputable) return;
    bar.value = Math.round((event.loaded / event.total) * bar.max);
    status.textContent = `${Math.round((event.loaded / event.total) * 100)}%`;
  });
  xhr.upload.addEventListener("load", () => {
    bar.value = bar.max;
    status.textContent = "Uploaded; the gateway is storing the file…";
  });
  xhr.addEventListener("load", () => {
    if (xhr.status >= 200 && xhr.status < 300) {
      const file = JSON.parse(xhr.responseText);
      bar.value = bar.max;
      status.textContent = "Done; opening the file…";
      window.location.assign(`/console/datasets/${encodeURIComponent(file.id)}`);
      return;
    }
    done(false);
    flash(apiMessage(xhr));
  });
  xhr.addEventListener("error", () => {
    done(false);
    flash(apiMessage(xhr));
  });
  xhr.open("POST", "/v1/files");
  xhr.setRequestHeader("X-CSRF-Token", csrfToken);
  xhr.setRequestHeader("Accept", "application/json");
  xhr.send(body);
}

const uploadForm = document.getElementById("upload-form");
uploadForm?.addEventListener("submit", (event) => {
  event.preventDefault();
  if (!uploadForm.elements.file.files.length) {
    flash("Choose a file to upload.");
    return;
  }
  upload(uploadForm);
});

// A fine-tune file is validated in the background after its upload: wait for it, then show the report.
const page = document.getElementById("dataset");
if (page && page.dataset.validating !== undefined) {
  const poll = async () => {
    try {
      const file = await api("GET", `/v1/files/${encodeURIComponent(page.dataset.fileId)}`);
      if (file.status !== "uploaded") {
        window.location.reload();
        return;
      }
    } catch (error) {
      flash(error.message);
    }
    setTimeout(poll, 1000);
  };
  setTimeout(poll, 1000);
}

const canvas = document.getElementById("token-histogram");
const bins = JSON.parse(document.getElementById("token-histogram-data")?.textContent ?? "[]");
if (canvas && bins.length && window.Chart) {
  new window.Chart(canvas, {
    type: "bar",
    data: {
      labels: bins.map((bin) => (bin.start === bin.end ? `${bin.start}` : `${bin.start}–${bin.end}`)),
      datasets: [{ label: "Examples", data: bins.map((bin) => bin.count), backgroundColor: "#1d5fb4" }],
    },
    options: {
      responsive: true,
      maintainAspectRatio: false,
      animation: false,
      plugins: { legend: { display: false } },
      scales: {
        x: { title: { display: true, text: "tokens per example" } },
        y: { beginAtZero: true, ticks: { precision: 0 }, title: { display: true, text: "examples" } },
      },
    },
  });
}

const prepareForm = document.getElementById("prepare-form");
prepareForm?.addEventListener("submit", async (event) => {
  event.preventDefault();
  const submit = prepareForm.querySelector("[type=submit]");
  const fixes = [...prepareForm.querySelectorAll('input[name="fixes"]:checked')].map((box) => box.value);
  const body = { fixes };
  const split = prepareForm.elements.split.value;
  if (split !== "") body.split = Number(split);
  submit.disabled = true;
  submit.setAttribute("aria-busy", "true");
  try {
    const prepared = await api("POST", `/v1/datasets/${encodeURIComponent(prepareForm.dataset.prepare)}/prepare`, body);
    window.location.assign(`/console/datasets/${encodeURIComponent(prepared.training_file)}`);
  } catch (error) {
    flash(error.message);
    submit.disabled = false;
    submit.removeAttribute("aria-busy");
  }
});
