// Latent map page, part 1: loads points into the bokeh figures (webapp/embeddings/maps/plots.py), colour layers,
// density/mosaic overlays, views, go-to and keyboard shortcuts (panel + selection: map_panels.js;
// links that reproduce the view: map_link.js; SAMP: samp.js; sky imagery: sky_imagery.js).
// Bokeh events reach window.LatentMapPage.on*() through JS callbacks attached here (hookEvents).
"use strict";

(function () {
  const meta = JSON.parse(document.getElementById("map-meta").textContent);
  const AUTO_THUMBS = 250;      // dense maps: show cutouts automatically when this few points are in view
  const $ = id => document.getElementById(id);
  const M = { layer: meta.default_layer, mosaic: false, selectedIds: new Set(), legend: null,
              view: document.getElementById("map-page").dataset.view, total: meta.n, timers: {} };
  window.LatentMapPage = M;

  // ------------------------------------------------------------------ fetch helpers
  const getJSON = LS.getJSON;

  function parseBinary(buf, spec, count) {
    const ctor = { f4: Float32Array, f8: Float64Array, i4: Int32Array, u4: Uint32Array };
    const out = {};
    let offset = 0;
    for (const item of spec.split(",")) {
      const [name, dtype] = item.split(":");
      const C = ctor[dtype];
      out[name] = new C(buf, offset, count);
      offset += count * C.BYTES_PER_ELEMENT;
    }
    return out;
  }

  // ------------------------------------------------------------------ tiles (maps above the tile threshold)
  // Level z has 2^z x 2^z tiles over the square world box [bx, by, bx + side, by + side]; x from the
  // left, y from the bottom.  A view uses the level whose tiles are about a quarter of its width, so
  // ~4-5 tiles across; point tiles keep at most points_per_tile points each (a uniform sample, nested
  // across levels), density tiles are PNGs at the deepest level up to density_levels.
  const T = meta.tiles && meta.tiles.ready ? meta.tiles : null;
  const MAX_TILES = 36;  // a very wide, flat view asks for a coarser level instead of more tiles

  function zoomFor(viewW, maxZ) {
    const side = T.box[2];
    return Math.max(0, Math.min(maxZ, Math.floor(Math.log2(side / Math.max(viewW, 1e-12))) + 2));
  }

  function tilesIn(z, [x0, y0, x1, y1]) {
    const [bx, by, side] = T.box, n = 1 << z, s = side / n;
    const clamp = v => Math.max(0, Math.min(n - 1, v));
    const xa = clamp(Math.floor((x0 - bx) / s)), xb = clamp(Math.floor((x1 - bx) / s));
    const ya = clamp(Math.floor((y0 - by) / s)), yb = clamp(Math.floor((y1 - by) / s));
    const out = [];
    for (let y = ya; y <= yb; y++) for (let x = xa; x <= xb; x++) out.push([x, y, bx + x * s, by + y * s, s]);
    return out;
  }

  function viewTiles(maxZ) {
    const view = bbox(M.fig);
    let z = zoomFor(view[2] - view[0], maxZ), tiles = tilesIn(z, view);
    while (tiles.length > MAX_TILES && z > 0) tiles = tilesIn(--z, view);
    return { z, tiles };
  }

  async function getPointTile(z, x, y) {
    const url = `${T.url}/points/${z}/${x}/${y}` + (M.layer ? "?layer=" + encodeURIComponent(M.layer) : "");
    const res = await fetch(url, { credentials: "same-origin" });
    if (!res.ok) throw new Error((await res.json()).error || res.statusText);
    const count = +res.headers.get("X-Count");
    return { arrays: parseBinary(await res.arrayBuffer(), res.headers.get("X-Fields"), count), count,
             total: +res.headers.get("X-Total") };
  }

  // Points of every tile in view, joined: the same shape getPoints returns.
  async function getTilePoints() {
    const { z, tiles } = viewTiles(T.point_levels);
    const parts = await Promise.all(tiles.map(([x, y]) => getPointTile(z, x, y)));
    const count = parts.reduce((a, p) => a + p.count, 0);
    const arrays = {};
    for (const name of ["id", "x", "y", "c", "ra", "dec"]) {
      const C = parts.length ? parts[0].arrays[name].constructor : Float32Array;
      const out = new C(count);
      let at = 0;
      for (const p of parts) { out.set(p.arrays[name], at); at += p.count; }
      arrays[name] = out;
    }
    M.tileZ = z;
    M.tileCapped = parts.some(p => p.count < p.total);
    return { arrays, count, total: parts.reduce((a, p) => a + p.total, 0) };
  }

  function densityTiles() {
    const { z, tiles } = viewTiles(T.density_levels);
    const layer = T.layers.includes(M.layer) ? "?layer=" + encodeURIComponent(M.layer) : "";
    const data = { url: [], x: [], y: [], w: [], h: [] };
    for (const [x, y, left, bottom, s] of tiles) {
      data.url.push(`${T.url}/density/${z}/${x}/${y}${layer}`);
      data.x.push(left); data.y.push(bottom); data.w.push(s); data.h.push(s);
    }
    return data;
  }

  async function getPoints(params) {
    if (T) return getTilePoints();
    const q = new URLSearchParams({ format: "bin", ...params });
    const res = await fetch(meta.urls.points + "?" + q, { credentials: "same-origin" });
    if (!res.ok) throw new Error((await res.json()).error || res.statusText);
    const count = +res.headers.get("X-Count");
    const arrays = parseBinary(await res.arrayBuffer(), res.headers.get("X-Fields"), count);
    return { arrays, count, total: +res.headers.get("X-Total") };
  }

  // ------------------------------------------------------------------ embedding, backend
  // Bokeh's WebGL is about half as fast as its canvas where the browser's GL is software
  // (SwiftShader, llvmpipe: GPU-less or headless machines), so there the item is switched to
  // canvas before it is embedded; ?backend=webgl or ?backend=canvas decides explicitly.
  function chooseBackend() {
    const asked = new URLSearchParams(location.search).get("backend");
    if (asked === "webgl" || asked === "canvas") return asked;
    try {
      const gl = document.createElement("canvas").getContext("webgl");
      if (!gl) return "canvas";
      const info = gl.getExtension("WEBGL_debug_renderer_info");
      const renderer = String(gl.getParameter(info ? info.UNMASKED_RENDERER_WEBGL : gl.RENDERER));
      return /swiftshader|llvmpipe|software|basic render/i.test(renderer) ? "canvas" : "webgl";
    } catch (e) { return "webgl"; }
  }

  function setBackend(node, backend) {  // every figure in the serialised document
    if (Array.isArray(node)) { node.forEach(n => setBackend(n, backend)); return; }
    if (!node || typeof node !== "object") return;
    if ("output_backend" in node) node.output_backend = backend;
    Object.values(node).forEach(v => setBackend(v, backend));
  }

  async function embed() {
    const item = JSON.parse($("map-item").textContent);
    M.backend = chooseBackend();
    if (M.backend === "canvas") {
      setBackend(item.doc, "canvas");
      const q = new URLSearchParams(location.search);
      q.set("backend", "webgl");
      $("backend-tag").href = "?" + q;
      $("backend-tag").hidden = false;
    }
    await Bokeh.embed.embed_item(item, "map-root");
  }

  // ------------------------------------------------------------------ bokeh models
  function models() {
    const doc = window.Bokeh && Bokeh.documents && Bokeh.documents[0];
    if (!doc) return false;
    const get = name => doc.get_model_by_name(name);
    M.doc = doc; M.src = get("points"); M.mapper = get("mapper"); M.fig = get("map"); M.sky = get("sky");
    M.overlay = get("map_overlay"); M.skyOverlay = get("sky_overlay"); M.highlight = get("highlight");
    M.colorbar = get("colorbar"); M.scatter = get("map_points"); M.skyScatter = get("sky_points");
    return !!(M.src && M.fig && M.mapper);
  }

  function bbox(fig) {
    const xr = fig.x_range, yr = fig.y_range;
    return [Math.min(xr.start, xr.end), Math.min(yr.start, yr.end), Math.max(xr.start, xr.end), Math.max(yr.start, yr.end)];
  }

  // ------------------------------------------------------------------ points
  async function loadPoints() {
    if (meta.tiles && !T) {  // above the threshold the map is only served as tiles
      $("map-status").textContent = "map tiles are being built" + (meta.tiles.job ? ` (job ${meta.tiles.job})` : "") + "; reload when it finishes";
      return;
    }
    // Sky positions only once the sky view has been opened (a third less to send at first).
    const params = { fields: "id,x,y,c" + (M.skyWanted ? ",ra,dec" : ""), layer: M.layer };
    if (meta.dense) Object.assign(params, viewParams());
    const started = performance.now();
    const { arrays, count, total } = await getPoints(params);
    performance.mark("map:points-fetched");
    if (T) $("map-canvas").dataset.tileZ = M.tileZ;
    M.total = total;
    styleScatter(denseNow() ? "density" : "points", count);  // size before the first draw: fill rate dominates
    M.src.data = { x: arrays.x, y: arrays.y, id: arrays.id, c: arrays.c,
                   ra: arrays.ra || nans(count), dec: arrays.dec || nans(count) };
    M.indexOf = null;
    reselect();
    $("map-canvas").dataset.pointsLoaded = count;
    performance.mark("map:points-set");
    requestAnimationFrame(() => requestAnimationFrame(() => {
      if (!window.__mapFirstRender) window.__mapFirstRender = performance.now();
      $("map-canvas").dataset.rendered = "1";
    }));
    status(count, total, performance.now() - started);
    updateOverlays();
  }

  function status(count, total) {
    const shown = count < total ? `${count.toLocaleString()} of ${total.toLocaleString()} in view` : `${count.toLocaleString()} galaxies`;
    $("map-status").textContent = shown + (denseNow() ? " · density shown" : "");
  }

  function indexOfId(id) {
    if (!M.indexOf) {
      M.indexOf = new Map();
      const ids = M.src.data.id;
      for (let i = 0; i < ids.length; i++) M.indexOf.set(ids[i], i);
    }
    return M.indexOf.get(id);
  }

  function reselect() {
    if (!M.selectedIds.size) return;
    const idx = [];
    for (const id of M.selectedIds) { const i = indexOfId(id); if (i !== undefined) idx.push(i); }
    M.restoring = true;
    M.src.selected.indices = idx;
    M.restoring = false;
  }

  // ------------------------------------------------------------------ colour layers
  async function setLayer(key) {
    M.layer = key;
    const legend = await getJSON(meta.urls.layers + "?key=" + encodeURIComponent(key));
    if (T) {  // the same tiles again, with this layer's values
      applyLegend(legend);
      await loadPoints();
      linkChanged();
      document.dispatchEvent(new CustomEvent("ls:map-layer", { detail: key }));
      return;
    }
    const arrays = await sameRows("c", { layer: key });
    if (!arrays) return loadPoints();
    applyLegend(legend);
    M.src.data = { ...M.src.data, c: arrays.c };
    reselect();
    linkChanged();
    document.dispatchEvent(new CustomEvent("ls:map-layer", { detail: key }));
  }

  // More fields for the points already shown (the server returns the same rows for the same
  // view and limit); null when the rows changed meanwhile, so the caller reloads everything.
  async function sameRows(fields, extra = {}) {
    const params = { fields: "id," + fields, ...extra };
    if (meta.dense) Object.assign(params, viewParams());
    const { arrays } = await getPoints(params);
    const ids = M.src.data.id;
    const n = ids ? ids.length : 0;
    if (arrays.id.length !== n || (n && (ids[0] !== arrays.id[0] || ids[n - 1] !== arrays.id[n - 1]))) return null;
    return arrays;
  }

  async function ensureSky() {
    if (M.skyWanted || !M.sky) return;
    M.skyWanted = true;
    if (T) return;  // point tiles carry RA/Dec already
    const arrays = await sameRows("ra,dec");
    if (!arrays) return loadPoints();
    M.src.data = { ...M.src.data, ra: arrays.ra, dec: arrays.dec };
    reselect();
  }

  function viewParams() { return { bbox: bbox(M.fig).join(","), limit: meta.view_limit }; }
  function nans(n) { return new Float32Array(n).fill(NaN); }

  function applyLegend(legend) {
    M.legend = legend;
    const box = $("legend");
    if (legend.kind === "categorical") {
      const pal = meta.palettes.categorical.slice(0, Math.max(1, legend.categories.length));
      M.mapper.palette = pal.length > 1 ? pal : [pal[0], pal[0]];
      M.mapper.low = -0.5; M.mapper.high = legend.categories.length - 0.5;
      M.colorbar.visible = false;
      box.innerHTML = `<div class="legend-title">${esc(legend.label)}</div>` + legend.categories.map((c, i) =>
        `<div class="legend-row"><span class="swatch" style="background:${pal[i]}"></span>${esc(c)} <span class="muted">${legend.counts[i].toLocaleString()}</span></div>`).join("") +
        (legend.missing ? `<div class="legend-row"><span class="swatch" style="background:${meta.palettes.missing}"></span>no value <span class="muted">${legend.missing.toLocaleString()}</span></div>` : "");
    } else {
      M.mapper.palette = meta.palettes.numeric;
      M.mapper.low = legend.low; M.mapper.high = legend.high;
      M.colorbar.title = legend.label + (legend.unit ? "" : "");
      M.colorbar.visible = true;
      box.innerHTML = `<div class="legend-title">${esc(legend.label)}</div><div class="muted small">colour bar: 2nd–98th percentile` +
        (legend.missing ? ` · ${legend.missing.toLocaleString()} without value (grey)` : "") + `</div>`;
    }
    box.dataset.kind = legend.kind;
    box.dataset.key = legend.key;
  }

  // ------------------------------------------------------------------ overlays (density, mosaic)
  function denseNow() { return T ? !!M.tileCapped : meta.dense && M.total > meta.view_limit; }

  function updateOverlays() {
    clearTimeout(M.timers.overlay);
    M.timers.overlay = setTimeout(() => {
      const [x0, y0, x1, y1] = bbox(M.fig);
      const width = Math.max(200, M.fig.inner_width || 800);
      const autoThumbs = meta.dense && M.total <= AUTO_THUMBS && M.mosaic !== "off";
      if (M.mosaic === true || autoThumbs) {
        const cells = Math.max(6, Math.min(48, Math.round(width / 56)));
        const tile = Math.max(32, Math.min(96, Math.ceil(width / cells)));
        const url = `${meta.urls.mosaic}?bbox=${[x0, y0, x1, y1].join(",")}&cells=${cells}&tile=${tile}&v=${meta.checksum}`;
        M.overlay.data = { url: [url], x: [x0], y: [y0], w: [x1 - x0], h: [y1 - y0] };
        styleScatter("mosaic");
        fixOverlayToGrid(url);
      } else if (T && denseNow()) {
        M.overlay.data = densityTiles();
        styleScatter("density");
      } else if (denseNow()) {
        const url = `${meta.urls.density}?bbox=${[x0, y0, x1, y1].join(",")}&bins=${Math.min(512, Math.round(width / 2))}&v=${meta.checksum}`;
        M.overlay.data = { url: [url], x: [x0], y: [y0], w: [x1 - x0], h: [y1 - y0] };
        styleScatter("density");
      } else {
        M.overlay.data = { url: [], x: [], y: [], w: [], h: [] };
        styleScatter("points");
      }
      document.getElementById("mosaic-toggle").setAttribute("aria-pressed", String(M.mosaic === true || autoThumbs));
    }, 120);
  }

  // Smaller, fainter points when many are drawn or when they sit over a density image/mosaic.
  function styleScatter(mode, count) {
    const n = count ?? (M.src.data.x ? M.src.data.x.length : 0);
    const size = n > 60000 ? 2.5 : n > 15000 ? 3.5 : 5;
    M.scatter.glyph.size = size;
    M.scatter.glyph.fill_alpha = mode === "mosaic" ? 0.25 : mode === "density" ? 0.35 : (n > 60000 ? 0.6 : 0.85);
    if (M.skyScatter) { M.skyScatter.glyph.size = size; M.skyScatter.glyph.fill_alpha = n > 60000 ? 0.6 : 0.85; }
  }

  // A mosaic grid is square-celled, so it covers a slightly larger box than the view:
  // place the image on the box the server reports.
  async function fixOverlayToGrid(url) {
    try {
      const res = await fetch(url.replace("?", "?format=json&"), { credentials: "same-origin" });
      const g = await res.json();
      if (M.overlay.data.url[0] !== url) return;
      const [x0, y0, x1, y1] = g.bbox;
      M.overlay.data = { url: [url], x: [x0], y: [y0], w: [x1 - x0], h: [y1 - y0] };
    } catch (e) { /* keep the approximate placement */ }
  }

  function updateSkyOverlay() {
    if (!M.sky || !meta.dense) return;
    const [x0, y0, x1, y1] = bbox(M.sky);
    const url = `${meta.urls.density}?space=sky&flip=x&bbox=${[x0, y0, x1, y1].join(",")}&bins=256&v=${meta.checksum}`;
    M.skyOverlay.data = { url: [url], x: [x1], y: [y0], w: [x1 - x0], h: [y1 - y0] };
  }

  // ------------------------------------------------------------------ bokeh event hooks
  // Plain JS callbacks, not CustomJS: CustomJS compiles its code with `new Function`, which the
  // Content-Security-Policy forbids (no 'unsafe-eval').  Assigning js_event_callbacks (rather than
  // mutating it) is what subscribes the figure to the event.
  function onBokehEvent(model, name, fn) {
    const old = model.js_event_callbacks;
    const callbacks = old instanceof Map ? new Map(old) : new Map(Object.entries(old || {}));
    callbacks.set(name, [...(callbacks.get(name) || []), fn]);
    model.js_event_callbacks = callbacks;
  }
  function hookEvents() {
    for (const [fig, which] of [[M.fig, "map"], [M.sky, "sky"]]) {
      if (!fig) continue;
      onBokehEvent(fig, "rangesupdate", () => M.onRanges(which));
      onBokehEvent(fig, "tap", ev => M.onTap(ev, which));
    }
    M.src.selected.properties.indices.change.connect(() => M.onSelect());
  }

  M.onRanges = function (which) {
    if (which === "map") linkChanged();
    clearTimeout(M.timers[which]);
    M.timers[which] = setTimeout(() => {
      if (which === "sky") return updateSkyOverlay();
      if (meta.dense) loadPoints().catch(showError); else updateOverlays();
    }, 220);
  };

  M.onTap = function (ev, which) {
    const fig = which === "sky" ? M.sky : M.fig;
    const xs = which === "sky" ? M.src.data.ra : M.src.data.x;
    const ys = which === "sky" ? M.src.data.dec : M.src.data.y;
    const sx = fig.inner_width / Math.abs(fig.x_range.end - fig.x_range.start);
    const sy = fig.inner_height / Math.abs(fig.y_range.end - fig.y_range.start);
    let best = -1, bestD = 12 * 12;  // within 12 px
    for (let i = 0; i < xs.length; i++) {
      const dx = (xs[i] - ev.x) * sx, dy = (ys[i] - ev.y) * sy, d = dx * dx + dy * dy;
      if (d < bestD) { bestD = d; best = i; }
    }
    if (best >= 0) P.openPanel(M.src.data.id[best]);
  };

  M.onSelect = function () {
    if (M.restoring) return P.renderSelection();
    const ids = M.src.data.id;
    M.selectedIds = new Set(M.src.selected.indices.map(i => ids[i]));
    linkChanged();
    clearTimeout(M.timers.select);
    M.timers.select = setTimeout(P.renderSelection, 80);
  };

  // ------------------------------------------------------------------ view, mosaic, go to
  function setView(view) {
    M.view = view;
    const page = $("map-page");
    page.dataset.view = view;
    page.className = "map-page view-" + view;
    document.querySelectorAll("[data-view-button]").forEach(b => b.classList.toggle("on", b.dataset.viewButton === view));
    M.fig.visible = view !== "sky";
    if (M.sky) M.sky.visible = view !== "map";
    requestAnimationFrame(() => requestAnimationFrame(() => { fitView(); refreshToolbars(); }));  // the frame changed shape: fit again
    setTimeout(refreshToolbars, 300);
    if (view !== "map") { ensureSky().catch(showError); updateSkyOverlay(); }
    linkChanged();
    document.dispatchEvent(new CustomEvent("ls:map-view", { detail: view }));
  }

  // Bokeh lays a toolbar out while its figure is being re-sized by a view change and can measure
  // it as 0 px wide, folding every tool into the "⋮" menu; its size then ends where it started, so
  // no resize event corrects it.  Measure the visible toolbars again once the layout has settled.
  function refreshToolbars() {
    for (const fig of [M.fig, M.sky]) {
      if (!fig || !fig.visible) continue;
      const view = Bokeh.index.find_one(fig.toolbar);
      if (view && typeof view._after_resize === "function") view._after_resize();
    }
  }

  function toggleMosaic() {
    const autoOn = meta.dense && M.total <= AUTO_THUMBS;
    M.mosaic = M.mosaic === true || (autoOn && M.mosaic !== "off") ? (autoOn ? "off" : false) : true;
    updateOverlays();
    linkChanged();
  }

  async function goTo(text) {
    text = text.trim();
    if (!text) return;
    const q = /^\d+$/.test(text) ? "ids=" + text : "source=" + encodeURIComponent(text);
    let found = [];
    try { found = (await getJSON(`${meta.urls.galaxies}?${q}&set=${meta.set_id}`)).results; } catch (e) { /* shown below */ }
    if (!found.length) { $("map-status").textContent = `no galaxy ${text} in this map`; return; }
    await P.openPanel(found[0].id);
    const g = M.panelGalaxy;
    if (g && g.x !== undefined) centreOn(g.x, g.y);
  }

  function centreOn(x, y) {
    const xr = M.fig.x_range, yr = M.fig.y_range;
    const w = Math.abs(xr.end - xr.start) / 2, h = Math.abs(yr.end - yr.start) / 2;
    xr.setv({ start: x - w, end: x + w }); yr.setv({ start: y - h, end: y + h });
  }

  // At start, a link's viewport (map_link.js); afterwards the whole map.
  function fitView() {
    const r = M.linkRanges;
    if (!r) return resetView();
    M.fig.x_range.setv({ start: r.x0, end: r.x1 });
    M.fig.y_range.setv({ start: r.y0, end: r.y1 });
  }
  function linkChanged() { if (window.LatentMapLink && M.started) LatentMapLink.update(M); }

  // Fit the map's bounds into the frame with one scale on both axes (UMAP distances are isotropic).
  function resetView() {
    const [x0, y0, x1, y1] = meta.bounds;
    const w = Math.max(x1 - x0, 1e-6) * 1.08, h = Math.max(y1 - y0, 1e-6) * 1.08;
    const pw = M.fig.inner_width || 800, ph = M.fig.inner_height || 600;
    const scale = Math.max(w / pw, h / ph);  // map units per pixel
    const cx = (x0 + x1) / 2, cy = (y0 + y1) / 2;
    M.fig.x_range.setv({ start: cx - scale * pw / 2, end: cx + scale * pw / 2 });
    M.fig.y_range.setv({ start: cy - scale * ph / 2, end: cy + scale * ph / 2 });
  }

  // Page coordinates of a galaxy's point (tests and benchmarks drive the map with these).
  M.screenOf = function (id, which = "map") {
    const i = indexOfId(id);
    if (i === undefined) return null;
    const fig = which === "sky" ? M.sky : M.fig;
    const view = Bokeh.index.find_one(fig);
    const rect = view.el.getBoundingClientRect();
    const x = view.frame.x_scale.compute(which === "sky" ? M.src.data.ra[i] : M.src.data.x[i]);
    const y = view.frame.y_scale.compute(which === "sky" ? M.src.data.dec[i] : M.src.data.y[i]);
    return { x: rect.left + x, y: rect.top + y };
  };

  function activate(toolName) {
    const figs = M.view === "sky" && M.sky ? [M.sky] : [M.fig];
    for (const fig of figs) {
      const prefix = fig === M.sky ? "sky" : "map";
      const tool = fig.toolbar.tools.find(t => t.name === `${prefix}_${toolName}`);
      if (tool) tool.active = true;
    }
  }

  // ------------------------------------------------------------------ keyboard
  function onKey(ev) {
    const typing = ["INPUT", "SELECT", "TEXTAREA"].includes(document.activeElement.tagName);
    if (ev.key === "Escape") {
      if (!$("kbd-help").hidden) { $("kbd-help").hidden = true; return; }
      if (typing) { document.activeElement.blur(); return; }
      P.clearSelection(); P.closePanel(); return;
    }
    if (typing || ev.ctrlKey || ev.metaKey || ev.altKey) return;
    const actions = {
      m: toggleMosaic, l: () => activate("lasso"), b: () => activate("box"), p: () => activate("pan"),
      c: () => $("colour-select").focus(), g: () => $("goto-input").focus(), r: resetView,
      s: () => { const order = M.sky ? ["map", "both", "sky"] : ["map"]; setView(order[(order.indexOf(M.view) + 1) % order.length]); },
      "?": () => { $("kbd-help").hidden = !$("kbd-help").hidden; },
    };
    if (actions[ev.key]) { ev.preventDefault(); actions[ev.key](); }
  }

  // ------------------------------------------------------------------ helpers
  function esc(s) { return String(s ?? "").replace(/[&<>"']/g, c => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c])); }
  function fmt(v, d) { return v === null || v === undefined ? "—" : Number(v).toFixed(d); }
  function showError(e) { $("map-status").textContent = "error: " + e.message; }

  // Side panel and selection drawer live in map_panels.js.
  const P = window.LatentMapPanels(M, { meta, $, getJSON, esc, fmt, reselect });
  M.P = P; M.setLayer = setLayer; M.setView = setView; M.resetView = resetView; M.centreOn = centreOn;

  // ------------------------------------------------------------------ start
  async function start() {
    await embed();
    while (!models()) await new Promise(r => setTimeout(r, 20));
    hookEvents();
    performance.mark("map:bokeh-ready");
    document.addEventListener("keydown", onKey);
    $("colour-select").addEventListener("change", ev => setLayer(ev.target.value).catch(showError));
    document.querySelectorAll("[data-view-button]").forEach(b => b.addEventListener("click", () => setView(b.dataset.viewButton)));
    $("mosaic-toggle").addEventListener("click", toggleMosaic);
    $("side-close").addEventListener("click", P.closePanel);
    $("clear-selection").addEventListener("click", P.clearSelection);
    $("collection-form").addEventListener("submit", P.addToCollection);
    $("task-form").addEventListener("submit", P.sendToTask);
    $("goto-form").addEventListener("submit", ev => { ev.preventDefault(); goTo($("goto-input").value); });
    document.querySelectorAll("[data-help-toggle]").forEach(b => b.addEventListener("click", () => { $("kbd-help").hidden = !$("kbd-help").hidden; }));
    // A link that reproduces a view (map_link.js): colour, mode, mosaic, viewport, selection.
    const link = window.LatentMapLink ? LatentMapLink.read(meta) : {};
    if (link.colour) { M.layer = link.colour; $("colour-select").value = link.colour; }
    if (link.mode && (link.mode === "map" || M.sky)) M.view = link.mode;
    if (link.mosaic) M.mosaic = true;
    M.linkRanges = link.ranges || null;
    $("copy-link").addEventListener("click", () => LatentMapLink.copy(M, $("map-status")));
    bindSamp();
    M.skyWanted = M.view !== "map" && !!M.sky;  // opened on the sky view: fetch positions with the points
    setView(M.view);
    await new Promise(r => requestAnimationFrame(r));
    if (!meta.focus) fitView();
    try {
      const legend = getJSON(meta.urls.layers + "?key=" + encodeURIComponent(M.layer));
      await loadPoints();
      applyLegend(await legend);
      if (meta.collection_ids.length && !link.ids) {
        M.linkCollection = { id: link.collection, ids: meta.collection_ids };
        P.selectIds(meta.collection_ids);
      }
      if (link.ids) P.selectIds(link.ids);
      if (meta.focus) await goTo(String(meta.focus));
    } catch (e) { showError(e); }
    await new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)));
    M.linkRanges = null;  // from now on, "reset" and view changes fit the whole map
    M.started = true;
    $("map-page").dataset.ready = "1";
    linkChanged();
  }

  // SAMP (samp.js): send the selection; a table TOPCAT sends back becomes the selection.
  function bindSamp() {
    if (!LS.samp) return;
    LS.samp.listen((ids, info) => {
      P.selectIds(ids);
      linkChanged();
      if (info.highlight) P.openPanel(info.highlight);
    }, meta.set_id);
    $("samp-send").addEventListener("click", () =>
      LS.samp.send({ kind: "ids", galaxy_ids: [...M.selectedIds], name: `Latent Sky map ${meta.map_id} selection` }, $("samp-send")));
    $("samp-connect").addEventListener("click", async () => {
      try { await LS.samp.connect($("samp-connect")); $("samp-status").textContent = "SAMP: connected — tables sent here become the selection"; }
      catch (e) { $("samp-status").textContent = e.message; $("samp-status").dataset.state = "error"; }
    });
    document.addEventListener("ls:samp-connected", ev => $("samp-connect").setAttribute("aria-pressed", String(!!ev.detail)));
  }
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start); else start();
})();
