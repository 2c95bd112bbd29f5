// The map on the web page: every indexed image as a point (GET /api/map/binary), coloured by folder or by
// k-means cluster. Hover shows its thumbnail, a click searches with it (the result rows of app.js), and
// a lasso selection lists the selected images (id, folder, name) to copy or download as TSV.
"use strict";

const mapState = { view: null, data: null, selection: [], tsvUrl: null };

async function openMap() {
  const open = $("map").hidden;
  $("map").hidden = !open;
  $("map-open").setAttribute("aria-pressed", String(open));
  if (!open || mapState.view) return;
  $("map-status").textContent = "loading the map…";
  try {
    for (;;) {
      const early = window.mapFetch; // index.html's, for a map in the address; used once
      window.mapFetch = null;
      const response = await (early || fetch("/api/map/binary"));
      if (response.status === 202) {
        $("map-status").textContent = `${(await response.json()).detail}…`;
        await new Promise((resolve) => setTimeout(resolve, 2000));
        continue;
      }
      if (!response.ok) throw new Error(await errorText(response));
      showMap(readMap(await response.arrayBuffer()));
      return;
    }
  } catch (err) {
    $("map-status").textContent = `The map cannot be shown: ${err.message}`;
  }
}

// The map in typed arrays (lookalike.map.payload.binary): a magic, the JSON header's length and the
// header, then each column at its offset from the first multiple of 8 after the header, viewed in
// place. The names are decoded on first need (`data.name(i)`): the first frame does not wait for them.
function readMap(buffer) {
  const bytes = new Uint8Array(buffer), magic = "LKMAP1\0\0";
  if (String.fromCharCode(...bytes.subarray(0, 8)) !== magic) throw new Error("not a map");
  const length = new DataView(buffer).getUint32(8, true);
  const data = JSON.parse(new TextDecoder().decode(bytes.subarray(12, 12 + length)));
  const start = Math.ceil((12 + length) / 8) * 8;
  const kinds = { float64: Float64Array, float32: Float32Array, int32: Int32Array, utf8: Uint8Array };
  const columns = {};
  for (const [name, kind, offset, size] of data.columns) {
    columns[name] = new kinds[kind](buffer, start + offset, size / kinds[kind].BYTES_PER_ELEMENT);
  }
  let names = null;
  return Object.assign(data, columns, {
    name: (i) => {
      if (!names) names = new TextDecoder().decode(columns.names).split("\0");
      return names[i];
    },
  });
}

function showMap(data) {
  const n = data.count;
  mapState.data = data;
  mapState.byId = new Map();
  for (let i = 0; i < n; i++) mapState.byId.set(data.ids[i], i);
  mapState.view = new LookalikeMap($("map-canvas"), { x: data.x, y: data.y }, {
    thumb: (i) => `/api/thumbs/${data.ids[i]}`,
    onHover: mapTip,
    onClick: (i) => runQuery({ id: data.ids[i] }, options(), "push"),
    onSelect: mapSelected,
  });
  $("map-color").value = data.color;
  colourMap();
  if (current && current.id !== undefined) markQuery(current.id);
  $("map-status").textContent = `${n} image${n === 1 ? "" : "s"} · drag to pan, wheel to zoom, ` +
    "shift+drag (or Select) to draw around images, click one to search with it";
  $("map").dataset.ready = "true";
}

// Colour by folder or cluster, and list the groups: folders with their sizes, or clusters with their
// sizes and most central images (a click searches with one).
function colourMap() {
  const data = mapState.data, by = $("map-color").value;
  const groups = by === "folder" ? data.folders : data.clusters;
  mapState.view.setColors(by === "folder" ? data.folder : data.cluster, groups.map((_, g) => mapColor(g)));
  const label = (g, index) => (by === "folder" ? `${g.name} · ${g.size}` : `cluster ${index + 1} · ${g.size}`);
  const central = (g) => g.central.slice(0, 4).map((id) => {
    const a = document.createElement("a");
    a.href = queryUrl({ id }, options());
    a.dataset.id = id;
    const img = document.createElement("img");
    img.src = `/api/thumbs/${id}`;
    img.alt = data.name(mapState.byId.get(id));
    img.loading = "lazy";
    a.append(img);
    return a;
  });
  $("map-legend").replaceChildren(...mapLegend(groups, label, by === "cluster" ? central : null));
}

function mapTip(i, e) {
  const tip = $("map-tip");
  if (i < 0) {
    tip.hidden = true;
    return;
  }
  const data = mapState.data, id = data.ids[i];
  const img = tip.querySelector("img");
  if (img.dataset.id !== String(id)) {
    img.dataset.id = id;
    img.src = `/api/thumbs/${id}`;
    img.alt = data.name(i);
    tip.querySelector(".name").textContent = data.name(i);
    tip.querySelector(".folder").textContent = data.folders[data.folder[i]].name;
  }
  const stage = $("map-canvas").getBoundingClientRect();
  const left = e.clientX - stage.left + 14, top = e.clientY - stage.top + 14;
  tip.style.left = `${Math.min(left, stage.width - 180)}px`;
  tip.style.top = `${Math.min(top, stage.height - 200)}px`;
  tip.hidden = false;
}

function markQuery(id) {
  if (!mapState.view) return;
  const i = mapState.byId.get(id);
  mapState.view.setMarked(i === undefined ? -1 : i);
}

// The selection as TSV: a header, then id, folder and name per image (names never carry a path,
// as everywhere in the server's answers; `lookalike map --json` has the paths).
function mapSelected(indices) {
  const data = mapState.data;
  const rows = Array.from(indices, (i) => [data.ids[i], data.folders[data.folder[i]].name, data.name(i)]);
  const tsv = mapTsv(["id", "folder", "name"], rows, mapState.tsvUrl);
  mapState.selection = tsv.text;
  mapState.tsvUrl = tsv.url;
  $("map-download").href = tsv.url;
  $("map-count").textContent = `${indices.length} selected`;
  $("map-list").value = tsv.text.split("\n").slice(1, -1).join("\n");
  $("map-selection").hidden = indices.length === 0;
}

function initMap() {
  $("map-open").addEventListener("click", openMap);
  $("map-color").addEventListener("change", colourMap);
  $("map-fit").addEventListener("click", () => mapState.view && mapState.view.fit());
  $("map-select").addEventListener("click", () => {
    if (!mapState.view) return;
    mapState.view.selectMode = !mapState.view.selectMode;
    $("map-select").setAttribute("aria-pressed", String(mapState.view.selectMode));
  });
  $("map-clear").addEventListener("click", () => {
    mapState.view.clearSelection();
    mapSelected(new Int32Array(0));
  });
  $("map-copy").addEventListener("click", async () => {
    try {
      await navigator.clipboard.writeText(mapState.selection);
      $("map-copy").textContent = "Copied";
    } catch (_) {
      $("map-list").select(); // no clipboard access: leave the lines selected for Ctrl+C
    }
    setTimeout(() => { $("map-copy").textContent = "Copy"; }, 1500);
  });
  $("map-legend").addEventListener("click", (e) => {
    const a = e.target.closest("a[data-id]");
    if (!a || e.button !== 0 || e.ctrlKey || e.metaKey || e.shiftKey || e.altKey) return;
    e.preventDefault();
    runQuery({ id: parseInt(a.dataset.id, 10) }, options(), "push");
  });
  document.addEventListener("lookalike:query", (e) => markQuery(e.detail.id));
  if (new URLSearchParams(window.location.search).get("map") === "1") openMap();
}

initMap();
