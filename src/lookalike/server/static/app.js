// lookalike web page: search by upload, drag-and-drop, paste or webcam; click a result to search again.
// Searches by indexed image live in the URL (?id=12&mode=nearest&k=12&metric=cosine), so back and
// forward replay them; uploads are kept in memory for the life of the page.
"use strict";

const $ = (id) => document.getElementById(id);
const uploads = new Map(); // history token -> {blob, name, url}
let uploadCount = 0;
let current = null; // the query on screen: {id} or {upload}
let inflight = null; // AbortController of the running search
let stream = null; // the webcam MediaStream while it is on
let maxUpload = Infinity; // bytes, from /api/stats

function options() {
  const form = $("options");
  const k = Math.min(1000, Math.max(1, parseInt(form.k.value, 10) || 12));
  form.k.value = k;
  return { mode: form.mode.value, k, metric: form.metric.value };
}

function setOptions(opts) {
  const form = $("options");
  if (opts.mode) form.mode.value = opts.mode;
  if (opts.k) form.k.value = opts.k;
  if (opts.metric) form.metric.value = opts.metric;
}

function searchUrl(query, opts) {
  const params = new URLSearchParams();
  if (query.id !== undefined) params.set("id", query.id);
  params.set("mode", opts.mode);
  params.set("k", opts.k);
  params.set("metric", opts.metric);
  return "?" + params.toString();
}

function showQuery(query, name) {
  const img = $("query-img");
  img.src = query.id !== undefined ? `/api/thumbs/${query.id}` : uploads.get(query.upload).url;
  img.alt = `Query image ${name}`;
  $("query-name").textContent = name;
  $("query").hidden = false;
}

function setBusy(busy, message) {
  $("results").setAttribute("aria-busy", String(busy));
  document.body.classList.toggle("busy", busy);
  $("status").textContent = message;
}

function showError(message) {
  const box = $("error");
  box.textContent = message;
  box.hidden = !message;
}

async function errorText(response) {
  try {
    const body = await response.json();
    if (typeof body.detail === "string") return body.detail;
    if (Array.isArray(body.detail)) return body.detail.map((d) => `${d.loc.at(-1)}: ${d.msg}`).join("; ");
  } catch (_) { /* not JSON */ }
  return `${response.status} ${response.statusText}`;
}

// Run a search and show it; history: "push" a new entry, "replace" the current one, or "none".
async function search(query, opts, history) {
  setOptions(opts);
  if (history !== "none") {
    const state = { ...query, ...opts };
    const url = searchUrl(query, opts);
    if (history === "push") window.history.pushState(state, "", url);
    else window.history.replaceState(state, "", url);
  }
  current = query;
  const upload = query.upload !== undefined ? uploads.get(query.upload) : null;
  showQuery(query, upload ? upload.name : `image ${query.id}`);
  if (inflight) inflight.abort();
  const controller = new AbortController();
  inflight = controller;
  showError("");
  setBusy(true, "Searching…");
  const params = new URLSearchParams({ mode: opts.mode, k: opts.k, metric: opts.metric });
  $("dupes").hidden = true;
  try {
    let response;
    if (upload) {
      const body = new FormData();
      body.append("file", upload.blob, upload.name);
      response = await fetch(`/api/search?${params}`, { method: "POST", body, signal: controller.signal });
    } else {
      params.set("id", query.id);
      response = await fetch(`/api/search?${params}`, { signal: controller.signal });
    }
    if (!response.ok) throw new Error(await errorText(response));
    const data = await response.json();
    if (!upload) $("query-name").textContent = data.query.name;
    render(data, opts);
    setBusy(false, `${data.results.length} ${data.mode} result${data.results.length === 1 ? "" : "s"} ` +
      `for ${data.query.name} (${data.metric} distance)`);
  } catch (err) {
    if (err.name === "AbortError") return;
    $("results").replaceChildren();
    setBusy(false, "");
    showError(`Search failed: ${err.message}`);
  } finally {
    if (inflight === controller) inflight = null;
  }
  // After the search, so that the server reuses the upload's vector instead of embedding it twice.
  if (upload) checkDuplicates(upload, query, controller.signal);
}

// Say whether an uploaded image is already in the index (the server's "near" dedup preset), unless
// another query has been shown meanwhile.
async function checkDuplicates(upload, query, signal) {
  let text;
  try {
    const body = new FormData();
    body.append("file", upload.blob, upload.name);
    const response = await fetch("/api/duplicates", { method: "POST", body, signal });
    if (!response.ok) throw new Error(await errorText(response));
    const data = await response.json();
    const shown = data.results.slice(0, 3).map((r) => `${r.name} (${r.distance.toFixed(3)})`).join(", ");
    const more = data.results.length > 3 ? ` and ${data.results.length - 3} more` : "";
    text = data.results.length
      ? `Already in the index: ${shown}${more}`
      : `Not in the index: no image within ${data.preset || "cosine distance"} ${data.threshold} of it`;
  } catch (err) {
    if (err.name === "AbortError") return;
    text = `Duplicate check failed: ${err.message}`;
  }
  if (current !== query) return;
  $("dupes").textContent = text;
  $("dupes").hidden = false;
}

function render(data, opts) {
  const items = data.results.map((r) => {
    const li = document.createElement("li");
    const a = document.createElement("a");
    a.href = searchUrl({ id: r.id }, opts);
    a.dataset.id = r.id;
    a.title = `Search with ${r.name}`;
    const img = document.createElement("img");
    img.src = `/api/thumbs/${r.id}`;
    img.alt = r.name;
    img.loading = "lazy";
    const meta = document.createElement("div");
    meta.className = "meta";
    const rank = document.createElement("span");
    rank.className = "rank";
    rank.textContent = `#${r.rank}`;
    const distance = document.createElement("span");
    distance.className = "distance";
    distance.textContent = r.distance.toFixed(3);
    distance.title = `${data.metric} distance ${r.distance}`;
    meta.append(rank, distance);
    const name = document.createElement("div");
    name.className = "name";
    name.textContent = r.name;
    a.append(img, meta, name);
    li.append(a);
    return li;
  });
  $("results").replaceChildren(...items);
}

function searchFile(blob, name) {
  if (!blob) return;
  if (blob.type && !blob.type.startsWith("image/")) {
    showError(`${name} is not an image (${blob.type})`);
    return;
  }
  if (blob.size > maxUpload) {
    const mb = (n) => (n / 1048576).toFixed(1);
    showError(`${name} is ${mb(blob.size)} MB; the server accepts up to ${mb(maxUpload)} MB`);
    return;
  }
  const token = ++uploadCount;
  uploads.set(token, { blob, name, url: URL.createObjectURL(blob) });
  search({ upload: token }, options(), "push");
}

function fromState(state) {
  const params = new URLSearchParams(window.location.search);
  const opts = {
    mode: (state && state.mode) || params.get("mode") || "nearest",
    k: (state && state.k) || params.get("k") || 12,
    metric: (state && state.metric) || params.get("metric") || "cosine",
  };
  if (state && state.upload !== undefined && uploads.has(state.upload)) {
    search({ upload: state.upload }, opts, "none");
  } else if (params.get("id") !== null) {
    search({ id: parseInt(params.get("id"), 10) }, opts, "none");
  } else {
    setOptions(opts);
    current = null;
    $("query").hidden = true;
    $("results").replaceChildren();
    setBusy(false, state && state.upload !== undefined
      ? "That upload is no longer in memory; choose the image again." : "Choose a query image to search the index.");
  }
}

async function startWebcam() {
  if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
    showError("The webcam needs a secure page: open lookalike on localhost (127.0.0.1) or over HTTPS.");
    return;
  }
  try {
    stream = await navigator.mediaDevices.getUserMedia({ video: true, audio: false });
  } catch (err) {
    showError(`Cannot use the webcam: ${err.message || err.name}`);
    return;
  }
  const video = $("video");
  video.srcObject = stream;
  $("webcam").hidden = false;
  $("camera").setAttribute("aria-pressed", "true");
  video.addEventListener("loadeddata", () => { $("capture").disabled = false; }, { once: true });
}

function stopWebcam() {
  if (stream) stream.getTracks().forEach((t) => t.stop());
  stream = null;
  $("video").srcObject = null;
  $("webcam").hidden = true;
  $("capture").disabled = true;
  $("camera").setAttribute("aria-pressed", "false");
}

function capture() {
  const video = $("video");
  const canvas = document.createElement("canvas");
  canvas.width = video.videoWidth;
  canvas.height = video.videoHeight;
  canvas.getContext("2d").drawImage(video, 0, 0);
  canvas.toBlob((blob) => searchFile(blob, `webcam-${new Date().toISOString().slice(11, 19)}.jpg`),
    "image/jpeg", 0.92);
}

async function loadStats() {
  try {
    const response = await fetch("/api/stats");
    if (!response.ok) throw new Error(await errorText(response));
    const s = await response.json();
    maxUpload = s.max_upload_bytes;
    $("stats").textContent = `${s.count} images · ${s.model}${s.layer ? " " + s.layer : ""} (${s.dims}-d) · ${s.index_type} search`;
  } catch (err) {
    $("stats").textContent = `index unavailable: ${err.message}`;
  }
}

function init() {
  const drop = $("drop");
  const file = $("file");
  const pick = () => file.click();
  drop.addEventListener("click", pick);
  drop.addEventListener("keydown", (e) => {
    if (e.key === "Enter" || e.key === " ") { e.preventDefault(); pick(); }
  });
  $("choose").addEventListener("click", pick);
  file.addEventListener("change", () => {
    if (file.files.length) searchFile(file.files[0], file.files[0].name);
    file.value = "";
  });
  document.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
  document.addEventListener("dragleave", (e) => { if (!e.relatedTarget) drop.classList.remove("over"); });
  document.addEventListener("drop", (e) => {
    e.preventDefault();
    drop.classList.remove("over");
    const f = e.dataTransfer && e.dataTransfer.files[0];
    if (f) searchFile(f, f.name);
  });
  document.addEventListener("paste", (e) => {
    const f = e.clipboardData && e.clipboardData.files[0];
    if (f) searchFile(f, f.name || "pasted image");
  });

  $("camera").addEventListener("click", () => (stream ? stopWebcam() : startWebcam()));
  $("stop").addEventListener("click", stopWebcam);
  $("capture").addEventListener("click", capture);

  $("options").addEventListener("change", () => { if (current) search(current, options(), "push"); });
  $("results").addEventListener("click", (e) => {
    const a = e.target.closest("a[data-id]");
    if (!a || e.button !== 0 || e.ctrlKey || e.metaKey || e.shiftKey || e.altKey) return;
    e.preventDefault();
    search({ id: parseInt(a.dataset.id, 10) }, options(), "push");
  });
  window.addEventListener("popstate", (e) => fromState(e.state));

  loadStats();
  fromState(window.history.state);
}

init();
