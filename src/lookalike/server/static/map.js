// lookalike map: many points on a canvas, with pan (drag, arrow keys), zoom (wheel, + and -), hover and
// click on a point (a grid finds the nearest), and lasso selection (shift+drag, or drag in select
// mode). The points are drawn into a pixel buffer (no GPU needed) once per zoom level, colouring and
// selection, over the view and half a view around it (the layer); a frame copies the layer into the
// view at the pan's offset, so panning costs the same at any number of points. Zoomed in far enough
// that few points are in view, each visible point is drawn as its thumbnail. Used by the web page and
// by the page `lookalike map --out map.html` writes, which inlines this file.
"use strict";

const THUMBS_AT = 150; // at most this many points in view: each drawn as its thumbnail
const LAYER_MARGIN = 0.5; // the layer reaches this share of the view's width and height beyond each side

// A palette that tells 20 groups apart; group i > 19 gets a hue by the golden angle.
const MAP_PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
  "#bcbd22", "#17becf", "#aec7e8", "#ffbb78", "#98df8a", "#ff9896", "#c5b0d5", "#c49c94", "#f7b6d2", "#c7c7c7",
  "#dbdb8d", "#9edae5"];

function mapColor(i) {
  if (i < MAP_PALETTE.length) return MAP_PALETTE[i];
  return `hsl(${Math.round((i * 137.508) % 360)}, 65%, 50%)`;
}

// The colours of CSS colour strings as 0xAABBGGRR (the byte order of a little-endian pixel buffer),
// painted side by side on one canvas and read back at once: a read-back per colour costs about as
// much as drawing the whole layer once there are a few hundred folders.
function mapPixels(css) {
  const canvas = document.createElement("canvas");
  canvas.width = Math.max(1, css.length);
  canvas.height = 1;
  const c = canvas.getContext("2d");
  css.forEach((colour, i) => {
    c.fillStyle = colour;
    c.fillRect(i, 0, 1, 1);
  });
  const d = c.getImageData(0, 0, canvas.width, 1).data;
  return css.map((_, i) => (255 << 24 | d[4 * i + 2] << 16 | d[4 * i + 1] << 8 | d[4 * i]) >>> 0);
}

// The legend of a colouring: each group (largest first, at most 40) as a list item with its colour,
// `label(group, index)`, and, when `central` is given, a row of the elements `central(group)` makes
// (a cluster's most central images); then how many smaller groups are left out.
function mapLegend(groups, label, central) {
  const items = groups.map((g, index) => ({ g, index }))
    .sort((a, b) => b.g.size - a.g.size || a.index - b.index).slice(0, 40).map(({ g, index }) => {
      const li = document.createElement("li");
      const swatch = document.createElement("span");
      swatch.className = "swatch";
      swatch.style.background = mapColor(index);
      li.append(swatch, label(g, index));
      if (central) {
        const row = document.createElement("div");
        row.className = "central";
        row.append(...central(g));
        li.append(row);
      }
      return li;
    });
  if (groups.length > items.length) {
    items.push(Object.assign(document.createElement("li"), { className: "muted",
      textContent: `and ${groups.length - items.length} smaller` }));
  }
  return items;
}

// A selection as TSV text (a header line, then one line of fields per row; a tab or line break in a
// field becomes a space) and a URL to download it from (the previous one is released).
function mapTsv(header, rows, previousUrl) {
  const clean = (field) => String(field).replace(/[\t\r\n]/g, " ");
  const text = [header, ...rows].map((fields) => fields.map(clean).join("\t")).join("\n") + "\n";
  if (previousUrl) URL.revokeObjectURL(previousUrl);
  return { text, url: URL.createObjectURL(new Blob([text], { type: "text/tab-separated-values" })) };
}

// points: {x, y: Float32Array in [0, 1]}; opts: {label(i), thumb(i) -> URL or null, onHover(i, event) /
// onHover(-1), onClick(i), onSelect(indices: Int32Array)}.
class LookalikeMap {
  constructor(canvas, points, opts) {
    this.canvas = canvas;
    this.ctx = canvas.getContext("2d");
    this.x = points.x;
    this.y = points.y;
    this.n = this.x.length;
    this.opts = opts;
    this.colors = new Uint32Array(this.n).fill(mapPixels(["#555"])[0]);
    this.selected = new Uint8Array(this.n);
    this.marked = -1; // the point of the query on screen, ringed
    this.hovered = -1;
    this.selectMode = false;
    this.thumbs = new Map(); // index -> HTMLImageElement
    this.visible = 0; // points in view in the last frame
    this.frames = 0; // frames drawn (the benchmark counts them)
    this.layers = 0; // layers drawn
    this.drawMs = 0; // time spent drawing frames, layers included
    this.layer = document.createElement("canvas");
    this.layerCtx = this.layer.getContext("2d");
    this.stale = true; // the layer is to be drawn anew at the next frame
    this.inLayer = new Int32Array(this.n); // the points in the layer: the first `inLayerCount`
    this.inLayerCount = 0;
    this._grid();
    this._listen();
    this.resize();
  }

  // Colour each point: groups[i] is its group, colours[g] the CSS colour of group g.
  setColors(groups, colours) {
    const pixels = mapPixels(colours);
    for (let i = 0; i < this.n; i++) this.colors[i] = pixels[groups[i]];
    this.redraw();
  }

  setMarked(i) { this.marked = i; this.draw(); }

  clearSelection() {
    this.selected.fill(0);
    this.redraw();
  }

  // Draw the next frame with the layer drawn anew (the colours or the selection changed).
  redraw() {
    this.stale = true;
    this.draw();
  }

  // Fit every point in view.
  fit() {
    const w = this.canvas.width, h = this.canvas.height, pad = (this.n <= THUMBS_AT ? 36 : 12) * this.dpr;
    this.scale = Math.max(1, Math.min(w, h) - 2 * pad);
    this.tx = (w - this.scale) / 2;
    this.ty = (h - this.scale) / 2;
    this.base = this.scale;
    this.draw();
  }

  resize() {
    this.dpr = window.devicePixelRatio || 1;
    const rect = this.canvas.getBoundingClientRect();
    const w = Math.max(1, Math.round(rect.width * this.dpr)), h = Math.max(1, Math.round(rect.height * this.dpr));
    if (w === this.canvas.width && h === this.canvas.height && this.image) return;
    this.canvas.width = w;
    this.canvas.height = h;
    this.mx = Math.round(w * LAYER_MARGIN);
    this.my = Math.round(h * LAYER_MARGIN);
    this.layer.width = w + 2 * this.mx;
    this.layer.height = h + 2 * this.my;
    this.image = this.layerCtx.createImageData(this.layer.width, this.layer.height);
    this.pixels = new Uint32Array(this.image.data.buffer);
    this.stale = true;
    this.fit();
  }

  // Zoom by `factor` around the canvas point (px, py) in device pixels.
  zoom(factor, px, py) {
    const s = Math.min(Math.max(this.scale * factor, this.base * 0.5), this.base * 4000);
    const f = s / this.scale;
    this.tx = px - (px - this.tx) * f;
    this.ty = py - (py - this.ty) * f;
    this.scale = s;
    this.draw();
  }

  pan(dx, dy) {
    this.tx += dx;
    this.ty += dy;
    this.draw();
  }

  draw() {
    if (this._pending) return;
    this._pending = requestAnimationFrame(() => {
      this._pending = 0;
      this.render();
    });
  }

  // One frame: the layer copied into the view at the pan's offset (drawn anew first when it is stale,
  // the zoom changed or the view left it), the points in view counted, then the overlays.
  render() {
    const t0 = performance.now();
    let ox = Math.round(this.tx - this.layerTx), oy = Math.round(this.ty - this.layerTy);
    if (this.stale || this.scale !== this.layerScale || Math.abs(ox) > this.mx || Math.abs(oy) > this.my) {
      this._drawLayer();
      ox = oy = 0;
    }
    this.ctx.drawImage(this.layer, ox - this.mx, oy - this.my);
    const w = this.canvas.width, h = this.canvas.height, s = this.scale, tx = this.tx, ty = this.ty;
    let visible = 0;
    for (let k = 0; k < this.inLayerCount; k++) {
      const i = this.inLayer[k], sx = this.x[i] * s + tx, sy = this.y[i] * s + ty;
      if (sx >= 0 && sy >= 0 && sx < w && sy < h) visible++;
    }
    this.visible = visible;
    this._overlays(visible);
    this.frames++;
    this.drawMs += performance.now() - t0;
  }

  // The layer: the view and a margin around it, every point in it as a square of 1 to 5 pixels
  // (larger as one zooms in), the selected ones outlined in black.
  _drawLayer() {
    const lw = this.layer.width, lh = this.layer.height, px = this.pixels;
    px.fill(0xfffafafa);
    const zoom = this.scale / this.base;
    const size = Math.max(1, Math.min(5, Math.round((1 + Math.log2(zoom)) * this.dpr * (this.n > 20000 ? 1 : 2))));
    const half = size >> 1;
    const s = this.scale, tx = this.tx + this.mx - half, ty = this.ty + this.my - half;
    const xs = this.x, ys = this.y, colors = this.colors, inLayer = this.inLayer;
    const right = lw - size, bottom = lh - size;
    let count = 0;
    for (let i = 0; i < this.n; i++) {
      const sx = (xs[i] * s + tx) | 0, sy = (ys[i] * s + ty) | 0;
      if (sx < 0 || sy < 0 || sx > right || sy > bottom) continue;
      inLayer[count++] = i;
      const c = colors[i];
      for (let r = 0, at = sy * lw + sx; r < size; r++, at += lw) {
        for (let k = 0; k < size; k++) px[at + k] = c;
      }
    }
    this.inLayerCount = count;
    const ctx = this.layerCtx, d = this.dpr, box = size + 3 * d;
    ctx.putImageData(this.image, 0, 0);
    ctx.lineWidth = 2 * d;
    ctx.strokeStyle = "#111";
    for (let k = 0; k < count; k++) {
      const i = inLayer[k];
      if (this.selected[i]) ctx.strokeRect(xs[i] * s + tx + half - box / 2, ys[i] * s + ty + half - box / 2, box, box);
    }
    this.layerTx = this.tx;
    this.layerTy = this.ty;
    this.layerScale = this.scale;
    this.stale = false;
    this.layers++;
  }

  // Over the layer: thumbnails when few points are in view (the selected ones outlined), the rings of
  // the query and of the hovered point, and the lasso being drawn.
  _overlays(visible) {
    const ctx = this.ctx, d = this.dpr;
    if (visible <= THUMBS_AT && this.opts.thumb) {
      this._drawThumbs();
      ctx.lineWidth = 2 * d;
      ctx.strokeStyle = "#111";
      for (let k = 0; k < this.inLayerCount; k++) {
        const i = this.inLayer[k];
        if (!this.selected[i]) continue;
        const [sx, sy] = this.toScreen(i);
        ctx.strokeRect(sx - 30 * d, sy - 30 * d, 60 * d, 60 * d);
      }
    }
    for (const [i, colour, r] of [[this.marked, "#2557d6", 9], [this.hovered, "#111", 7]]) {
      if (i < 0) continue;
      const [sx, sy] = this.toScreen(i);
      ctx.beginPath();
      ctx.arc(sx, sy, r * d, 0, 2 * Math.PI);
      ctx.strokeStyle = colour;
      ctx.lineWidth = 2 * d;
      ctx.stroke();
    }
    if (this.lasso && this.lasso.length > 1) {
      ctx.beginPath();
      ctx.moveTo(this.lasso[0][0], this.lasso[0][1]);
      for (const [lx, ly] of this.lasso) ctx.lineTo(lx, ly);
      ctx.closePath();
      ctx.fillStyle = "rgba(37, 87, 214, 0.12)";
      ctx.fill();
      ctx.strokeStyle = "#2557d6";
      ctx.lineWidth = d;
      ctx.stroke();
    }
  }

  // Thumbnails of the points in view, 56 px on their longer side, loaded on first need.
  _drawThumbs() {
    const w = this.canvas.width, h = this.canvas.height, side = 56 * this.dpr;
    for (let j = 0; j < this.inLayerCount; j++) {
      const i = this.inLayer[j], [sx, sy] = this.toScreen(i);
      if (sx < -side || sy < -side || sx > w + side || sy > h + side) continue;
      let img = this.thumbs.get(i);
      if (!img) {
        const url = this.opts.thumb(i);
        if (!url) continue;
        img = new Image();
        img.onload = () => this.draw();
        img.src = url;
        this.thumbs.set(i, img);
      }
      if (!img.complete || !img.naturalWidth) continue;
      const k = side / Math.max(img.naturalWidth, img.naturalHeight);
      const iw = img.naturalWidth * k, ih = img.naturalHeight * k;
      this.ctx.drawImage(img, sx - iw / 2, sy - ih / 2, iw, ih);
      this.ctx.strokeStyle = this._css(i);
      this.ctx.lineWidth = 2 * this.dpr;
      this.ctx.strokeRect(sx - iw / 2, sy - ih / 2, iw, ih);
    }
  }

  _css(i) {
    const c = this.colors[i];
    return `rgb(${c & 255}, ${(c >> 8) & 255}, ${(c >> 16) & 255})`;
  }

  toScreen(i) {
    return [this.x[i] * this.scale + this.tx, this.y[i] * this.scale + this.ty];
  }

  // Points bucketed in a G x G grid over [0, 1]^2, for finding the point under the pointer.
  _grid() {
    const G = this.G = Math.max(1, Math.min(512, Math.ceil(Math.sqrt(this.n / 4))));
    const cell = new Int32Array(this.n), start = new Int32Array(G * G + 1);
    for (let i = 0; i < this.n; i++) {
      const cx = Math.min(G - 1, Math.max(0, Math.floor(this.x[i] * G)));
      const cy = Math.min(G - 1, Math.max(0, Math.floor(this.y[i] * G)));
      cell[i] = cy * G + cx;
      start[cell[i] + 1]++;
    }
    for (let c = 0; c < G * G; c++) start[c + 1] += start[c];
    const order = new Int32Array(this.n), fill = start.slice(0, G * G);
    for (let i = 0; i < this.n; i++) order[fill[cell[i]]++] = i;
    this.cellStart = start;
    this.cellOrder = order;
  }

  // The point nearest the canvas point (px, py) within `radius` device pixels, or -1.
  pick(px, py, radius) {
    const G = this.G, s = this.scale, dx = (px - this.tx) / s, dy = (py - this.ty) / s, r = radius / s;
    const x0 = Math.max(0, Math.floor((dx - r) * G)), x1 = Math.min(G - 1, Math.floor((dx + r) * G));
    const y0 = Math.max(0, Math.floor((dy - r) * G)), y1 = Math.min(G - 1, Math.floor((dy + r) * G));
    let best = -1, bestD = r * r;
    for (let cy = y0; cy <= y1; cy++) {
      for (let cx = x0; cx <= x1; cx++) {
        const c = cy * G + cx;
        for (let k = this.cellStart[c]; k < this.cellStart[c + 1]; k++) {
          const i = this.cellOrder[k], ex = this.x[i] - dx, ey = this.y[i] - dy, d = ex * ex + ey * ey;
          if (d <= bestD) { best = i; bestD = d; }
        }
      }
    }
    return best;
  }

  // Select the points inside a polygon of canvas points; the selection replaces the last one.
  selectPolygon(poly) {
    const pts = poly.map(([px, py]) => [(px - this.tx) / this.scale, (py - this.ty) / this.scale]);
    const xs = pts.map((p) => p[0]), ys = pts.map((p) => p[1]);
    const minX = Math.min(...xs), maxX = Math.max(...xs), minY = Math.min(...ys), maxY = Math.max(...ys);
    this.selected.fill(0);
    const found = [];
    for (let i = 0; i < this.n; i++) {
      const x = this.x[i], y = this.y[i];
      if (x < minX || x > maxX || y < minY || y > maxY) continue;
      let inside = false;
      for (let a = 0, b = pts.length - 1; a < pts.length; b = a++) {
        const [ax, ay] = pts[a], [bx, by] = pts[b];
        if ((ay > y) !== (by > y) && x < ((bx - ax) * (y - ay)) / (by - ay) + ax) inside = !inside;
      }
      if (inside) { this.selected[i] = 1; found.push(i); }
    }
    this.redraw();
    if (this.opts.onSelect) this.opts.onSelect(Int32Array.from(found));
  }

  _at(e) {
    const rect = this.canvas.getBoundingClientRect();
    return [(e.clientX - rect.left) * this.dpr, (e.clientY - rect.top) * this.dpr];
  }

  _listen() {
    const c = this.canvas;
    let drag = null; // {x, y, moved, lasso}
    c.addEventListener("pointerdown", (e) => {
      if (e.button !== 0) return;
      c.setPointerCapture(e.pointerId);
      const [x, y] = this._at(e);
      drag = { x, y, moved: false, lasso: e.shiftKey || this.selectMode };
      if (drag.lasso) this.lasso = [[x, y]];
    });
    c.addEventListener("pointermove", (e) => {
      const [x, y] = this._at(e);
      if (drag) {
        if (Math.abs(x - drag.x) + Math.abs(y - drag.y) > 4 * this.dpr) drag.moved = true;
        if (drag.lasso) {
          this.lasso.push([x, y]);
          this.draw();
        } else if (drag.moved) {
          this.pan(x - drag.x, y - drag.y);
          drag.x = x;
          drag.y = y;
        }
        return;
      }
      this._hover(this.pick(x, y, 8 * this.dpr), e);
    });
    c.addEventListener("pointerup", (e) => {
      if (!drag) return;
      const was = drag;
      drag = null;
      if (was.lasso && was.moved && this.lasso.length > 2) {
        const poly = this.lasso;
        this.lasso = null;
        this.selectPolygon(poly);
      } else if (!was.moved) {
        this.lasso = null;
        const [x, y] = this._at(e);
        const i = this.pick(x, y, 8 * this.dpr);
        if (i >= 0 && this.opts.onClick) this.opts.onClick(i);
        else this.draw();
      }
    });
    c.addEventListener("pointerleave", () => { if (!drag) this._hover(-1); });
    c.addEventListener("wheel", (e) => {
      e.preventDefault();
      const [x, y] = this._at(e);
      this.zoom(Math.exp(-e.deltaY * (e.deltaMode === 1 ? 0.05 : 0.0015)), x, y);
    }, { passive: false });
    c.addEventListener("keydown", (e) => {
      const step = 40 * this.dpr, mid = [c.width / 2, c.height / 2];
      const keys = { ArrowLeft: () => this.pan(step, 0), ArrowRight: () => this.pan(-step, 0),
        ArrowUp: () => this.pan(0, step), ArrowDown: () => this.pan(0, -step),
        "+": () => this.zoom(1.5, ...mid), "=": () => this.zoom(1.5, ...mid), "-": () => this.zoom(1 / 1.5, ...mid),
        "0": () => this.fit(), Escape: () => this.clearSelection() };
      if (keys[e.key]) { e.preventDefault(); keys[e.key](); }
    });
    new ResizeObserver(() => this.resize()).observe(c);
  }

  _hover(i, e) {
    if (i === this.hovered) {
      if (i >= 0 && this.opts.onHover) this.opts.onHover(i, e);
      return;
    }
    this.hovered = i;
    this.canvas.style.cursor = i >= 0 ? "pointer" : "";
    this.draw();
    if (this.opts.onHover) this.opts.onHover(i, e);
  }
}
