// lookalike web page: search by upload, drag-and-drop, paste, webcam or (when the server fetches them)
// an image's address; click a result to search again.
// Searches live in the URL (?id=12&mode=nearest&k=12&metric=cosine, or ?upload=HASH&... for an
// upload), so back and forward replay them. Uploads are kept in memory for the life of the page;
// after a reload the server searches with a recent upload by its content hash, and the page shows
// the thumbnail it kept in sessionStorage. mode=all shows nearest, random and farthest rows together.
"use strict";

const $ = (id) => document.getElementById(id);
const MODES = ["nearest", "random", "farthest"];
const uploads = new Map(); // history token -> {blob, name, url, hash}; an address: {address, name, hash}
let uploadCount = 0;
let current = null; // the query on screen: {id}, {upload} (a token) or {hash} (an upload after a reload)
let inflight = null; // AbortController of the running search
let stream = null; // the webcam MediaStream while it is on
let maxUpload = Infinity; // bytes, from /api/stats

function options() {
  const form = $("options");
  const k = Math.min(1000, Math.max(1, parseInt(form.k.value, 10) || 12));
  form.k.value = k;
  return { mode: form.mode.value, k, metric: form.metric.value, exclude: form.exclude.checked };
}

function setOptions(opts) {
  const form = $("options");
  if (opts.mode) form.mode.value = opts.mode;
  if (opts.k) form.k.value = opts.k;
  if (opts.metric) form.metric.value = opts.metric;
  form.exclude.checked = Boolean(opts.exclude);
}

// An upload's content hash (BLAKE2b-128, hex): nothing else from the address reaches a request path.
const UPLOAD_HASH = /^[0-9a-f]{32}$/;

function hashOf(query) {
  return query.hash || (query.upload !== undefined && uploads.has(query.upload) ? uploads.get(query.upload).hash : null);
}

function queryUrl(query, opts) {
  const params = new URLSearchParams();
  if (query.id !== undefined) params.set("id", query.id);
  else if (hashOf(query)) params.set("upload", hashOf(query));
  params.set("mode", opts.mode);
  params.set("k", opts.k);
  params.set("metric", opts.metric);
  if (opts.exclude) params.set("exclude_self", "true");
  return "?" + params.toString();
}

// The thumbnail and name of an upload, kept for this tab so a reload can show what it searches with.
function remember(hash, upload) {
  if (!upload.blob) { // an image the server fetched: its name only (the page loads nothing from elsewhere)
    sessionStorage.setItem(`upload:${hash}`, JSON.stringify({ name: upload.name }));
    return;
  }
  createImageBitmap(upload.blob).then((bitmap) => {
    const scale = Math.min(1, 320 / Math.max(bitmap.width, bitmap.height));
    const canvas = document.createElement("canvas");
    canvas.width = Math.round(bitmap.width * scale);
    canvas.height = Math.round(bitmap.height * scale);
    canvas.getContext("2d").drawImage(bitmap, 0, 0, canvas.width, canvas.height);
    sessionStorage.setItem(`upload:${hash}`, JSON.stringify({ name: upload.name, thumb: canvas.toDataURL("image/jpeg", 0.85) }));
  }).catch(() => { /* not decodable by the browser, or storage full: only the thumbnail is lost */ });
}

function remembered(hash) {
  try {
    return JSON.parse(sessionStorage.getItem(`upload:${hash}`)) || {};
  } catch (_) {
    return {};
  }
}

function showQuery(query, name) {
  const img = $("query-img");
  const upload = query.upload !== undefined ? uploads.get(query.upload) : null;
  const src = query.id !== undefined ? `/api/thumbs/${query.id}` : upload ? upload.url : remembered(query.hash).thumb;
  img.hidden = !src;
  if (src) img.src = src;
  img.alt = `Query image ${name}`;
  $("query-name").textContent = name;
  $("query-folder").textContent = "";
  const open = $("query-open");
  const full = query.id !== undefined ? `/api/images/${query.id}` : upload ? upload.url || upload.address : null;
  open.hidden = !full;
  if (full) open.href = full;
  $("query").hidden = false;
  document.dispatchEvent(new CustomEvent("lookalike:query", { detail: query })); // the map rings it
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

// One search request; an upload is posted the first time and searched by its hash after that.
async function fetchSearch(query, opts, mode, signal) {
  const params = new URLSearchParams({ mode, k: opts.k, metric: opts.metric });
  if (opts.exclude) params.set("exclude_self", "true");
  const upload = query.upload !== undefined ? uploads.get(query.upload) : null;
  let response;
  if (upload && !upload.hash && upload.address) {
    const body = new FormData();
    body.append("url", upload.address);
    response = await fetch(`/api/query/url?${params}`, { method: "POST", body, signal });
  } else if (upload && !upload.hash) {
    const body = new FormData();
    body.append("file", upload.blob, upload.name);
    response = await fetch(`/api/query?${params}`, { method: "POST", body, signal });
  } else if (hashOf(query)) {
    response = await fetch(`/api/uploads/${hashOf(query)}/query?${params}`, { signal });
  } else {
    params.set("id", query.id);
    response = await fetch(`/api/query?${params}`, { signal });
  }
  if (response.status === 404 && upload && upload.hash) { // the server restarted: post the image again
    upload.hash = null;
    return fetchSearch(query, opts, mode, signal);
  }
  if (!response.ok) {
    const message = await errorText(response);
    if (response.status === 404 && query.hash) {
      const name = remembered(query.hash).name || "that upload";
      throw new Error(`the server no longer holds ${name} (it keeps recent uploads until it restarts): ` +
        "drop, paste or choose the image again");
    }
    throw new Error(message);
  }
  const data = await response.json();
  if (upload && !upload.hash && data.query.upload) {
    upload.hash = data.query.upload;
    remember(upload.hash, upload);
  }
  return data;
}

// Run a search and show it; history: "push" a new entry, "replace" the current one, or "none".
async function runQuery(query, opts, history) {
  setOptions(opts);
  if (history !== "none") {
    const state = { ...query, ...opts };
    const url = queryUrl(query, opts);
    if (history === "push") window.history.pushState(state, "", url);
    else window.history.replaceState(state, "", url);
  }
  current = query;
  const upload = query.upload !== undefined ? uploads.get(query.upload) : null;
  const label = upload ? upload.name : query.hash ? remembered(query.hash).name || "earlier upload" : `image ${query.id}`;
  showQuery(query, label);
  if (inflight) inflight.abort();
  const controller = new AbortController();
  inflight = controller;
  showError("");
  setBusy(true, "Searching…");
  $("dupes").hidden = true;
  const modes = opts.mode === "all" ? MODES : [opts.mode];
  try {
    const first = await fetchSearch(query, opts, modes[0], controller.signal);
    const rest = await Promise.all(modes.slice(1).map((m) => fetchSearch(query, opts, m, controller.signal)));
    const rows = [first, ...rest];
    if (upload && window.history.state && window.history.state.upload === query.upload) {
      window.history.replaceState(window.history.state, "", queryUrl(query, opts)); // now with the hash
    }
    $("query-name").textContent = first.query.name;
    if (first.query.folder) $("query-folder").textContent = `in ${first.query.folder}`;
    render(rows, opts, modes.length > 1);
    setBusy(false, summary(rows, first.query.name));
  } catch (err) {
    if (err.name === "AbortError") return;
    $("results").replaceChildren();
    setBusy(false, "");
    showError(`Search failed: ${err.message}`);
  } finally {
    if (inflight === controller) inflight = null;
  }
  // After the search, so that the server reuses the upload's vector instead of embedding it twice.
  if (upload && upload.blob) checkDuplicates(upload, query, controller.signal);
}

function rowTitle(data) {
  return data.seed !== null && data.seed !== undefined ? `${data.mode} (seed ${data.seed})` : data.mode;
}

function summary(rows, name) {
  const counts = rows.map((d) => `${d.results.length} ${rowTitle(d)}`);
  const n = rows.reduce((sum, d) => sum + d.results.length, 0);
  const list = counts.length > 1 ? `${counts.slice(0, -1).join(", ")} and ${counts.at(-1)}` : counts[0];
  return `${list} result${n === 1 ? "" : "s"} for ${name} (${rows[0].metric} distance)`;
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

function card(r, data, opts) {
  const li = document.createElement("li");
  const a = document.createElement("a");
  a.href = queryUrl({ id: r.id }, opts);
  a.dataset.id = r.id;
  a.title = `Search with ${r.name} (in ${r.folder})`;
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
  const folder = document.createElement("div");
  folder.className = "folder";
  folder.textContent = r.folder;
  a.append(img, meta, name, folder);
  li.append(a);
  return li;
}

// One grid of result cards, or (the three modes together) one titled grid per mode.
function render(rows, opts, titled) {
  const blocks = rows.map((data) => {
    const list = document.createElement("ol");
    list.className = "grid";
    list.dataset.mode = data.mode;
    list.append(...data.results.map((r) => card(r, data, opts)));
    if (!titled) return [list];
    const heading = document.createElement("h2");
    heading.textContent = rowTitle(data);
    list.setAttribute("aria-label", data.mode);
    return [heading, list];
  });
  $("results").replaceChildren(...blocks.flat());
  $("results").classList.toggle("rows", titled);
}

function queryFile(blob, name) {
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
  runQuery({ upload: token }, options(), "push");
}

// Search with the image at an address the user typed or pasted; the server fetches it.
function queryAddress(address) {
  let parsed;
  try {
    parsed = new URL(address);
  } catch (_) {
    showError(`${address} is not an http or https address`);
    return;
  }
  if (parsed.protocol !== "http:" && parsed.protocol !== "https:") {
    showError("Only http and https addresses can be fetched");
    return;
  }
  const name = decodeURIComponent(parsed.pathname.split("/").filter(Boolean).pop() || parsed.hostname);
  const token = ++uploadCount;
  uploads.set(token, { address: parsed.href, name });
  runQuery({ upload: token }, options(), "push");
}

function fromState(state) {
  const params = new URLSearchParams(window.location.search);
  const opts = {
    mode: (state && state.mode) || params.get("mode") || "nearest",
    k: (state && state.k) || params.get("k") || 12,
    metric: (state && state.metric) || params.get("metric") || "cosine",
    exclude: state ? Boolean(state.exclude) : params.get("exclude_self") === "true",
  };
  if (state && state.upload !== undefined && uploads.has(state.upload)) {
    runQuery({ upload: state.upload }, opts, "none");
  } else if (params.get("id") !== null) {
    runQuery({ id: parseInt(params.get("id"), 10) }, opts, "none");
  } else if (UPLOAD_HASH.test(params.get("upload") || "")) {
    runQuery({ hash: params.get("upload") }, opts, "none"); // an upload of an earlier page: by its hash
  } else {
    setOptions(opts);
    current = null;
    $("query").hidden = true;
    $("results").replaceChildren();
    setBusy(false, state && state.upload !== undefined
      ? "That upload is no longer in this page: drop, paste or choose the image again."
      : params.get("upload") !== null
        ? "That link does not name an upload (its upload= is not a content hash): choose the image again."
        : "Choose a query image to search the index.");
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
  canvas.toBlob((blob) => queryFile(blob, `webcam-${new Date().toISOString().slice(11, 19)}.jpg`),
    "image/jpeg", 0.92);
}

async function loadStats() {
  try {
    const response = await fetch("/api/stats");
    if (!response.ok) throw new Error(await errorText(response));
    const s = await response.json();
    maxUpload = s.max_upload_bytes;
    $("address").hidden = !s.fetch_urls;
    $("stats").textContent = `${s.count} image${s.count === 1 ? "" : "s"} · ${s.model}${s.layer ? " " + s.layer : ""} (${s.dims}-d) · ${s.index_type} search`;
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
    if (file.files.length) queryFile(file.files[0], file.files[0].name);
    file.value = "";
  });
  document.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
  document.addEventListener("dragleave", (e) => { if (!e.relatedTarget) drop.classList.remove("over"); });
  document.addEventListener("drop", (e) => {
    e.preventDefault();
    drop.classList.remove("over");
    const f = e.dataTransfer && e.dataTransfer.files[0];
    if (f) queryFile(f, f.name);
  });
  document.addEventListener("paste", (e) => {
    const f = e.clipboardData && e.clipboardData.files[0];
    if (f) queryFile(f, f.name || "pasted image");
  });

  $("address").addEventListener("submit", (e) => {
    e.preventDefault();
    queryAddress($("url").value.trim());
  });
  $("camera").addEventListener("click", () => (stream ? stopWebcam() : startWebcam()));
  $("stop").addEventListener("click", stopWebcam);
  $("capture").addEventListener("click", capture);

  $("options").addEventListener("change", () => { if (current) runQuery(current, options(), "push"); });
  $("results").addEventListener("click", (e) => {
    const a = e.target.closest("a[data-id]");
    if (!a || e.button !== 0 || e.ctrlKey || e.metaKey || e.shiftKey || e.altKey) return;
    e.preventDefault();
    runQuery({ id: parseInt(a.dataset.id, 10) }, options(), "push");
  });
  window.addEventListener("popstate", (e) => fromState(e.state));

  loadStats();
  fromState(window.history.state);
}

init();
