// Latent map page, part 3: links that reproduce a view.  The URL's query carries
//   x0, x1, y0, y1   the map's viewport (map coordinates)
//   colour           the colour layer key
//   mode             map | both | sky  (view=... from older links is read too)
//   mosaic=1         cutouts drawn at their map positions
//   collection=<id>  or  ids=<id,id,...>   the selection (a collection while it is unchanged)
// map.js reads it once at start (LatentMapLink.read) and the page keeps it current with
// history.replaceState as the view changes (LatentMapLink.update); "Copy link" copies it.
"use strict";

window.LatentMapLink = (function () {
  const MAX_IDS = 500;  // a longer selection is not put in the URL (save it as a collection)
  const KEYS = ["x0", "x1", "y0", "y1", "colour", "mode", "view", "mosaic", "collection", "ids"];

  function num(q, k) { const v = parseFloat(q.get(k)); return Number.isFinite(v) ? v : null; }

  function read(meta) {
    const q = new URLSearchParams(location.search);
    const out = {};
    const [x0, x1, y0, y1] = ["x0", "x1", "y0", "y1"].map(k => num(q, k));
    if ([x0, x1, y0, y1].every(v => v !== null) && x1 > x0 && y1 > y0) out.ranges = { x0, x1, y0, y1 };
    const colour = q.get("colour");
    if (colour && meta.layers.some(l => l.key === colour)) out.colour = colour;
    const mode = q.get("mode") || q.get("view");
    if (["map", "both", "sky"].includes(mode)) out.mode = mode;
    if (q.get("mosaic") === "1") out.mosaic = true;
    const ids = (q.get("ids") || "").split(",").filter(s => /^\d+$/.test(s)).map(Number);
    if (ids.length) out.ids = ids.slice(0, 20000);
    if (/^\d+$/.test(q.get("collection") || "")) out.collection = +q.get("collection");
    return out;
  }

  // The current view as query parameters (other parameters, e.g. backend, are kept).
  function query(M) {
    const q = new URLSearchParams(location.search);
    KEYS.forEach(k => q.delete(k));
    const xr = M.fig.x_range, yr = M.fig.y_range;
    const r = v => String(+v.toPrecision(7));
    q.set("x0", r(Math.min(xr.start, xr.end))); q.set("x1", r(Math.max(xr.start, xr.end)));
    q.set("y0", r(Math.min(yr.start, yr.end))); q.set("y1", r(Math.max(yr.start, yr.end)));
    if (M.layer) q.set("colour", M.layer);
    q.set("mode", M.view);
    if (M.mosaic === true) q.set("mosaic", "1");
    const ids = [...M.selectedIds];
    if (M.linkCollection && sameSet(ids, M.linkCollection.ids)) q.set("collection", M.linkCollection.id);
    else if (ids.length && ids.length <= MAX_IDS) q.set("ids", ids.sort((a, b) => a - b).join(","));
    return q.toString().replace(/%2C/gi, ",").replace(/%3A/gi, ":");  // both are fine in a query: readable links
  }

  function sameSet(a, b) {
    if (a.length !== b.length) return false;
    const s = new Set(b);
    return a.every(x => s.has(x));
  }

  let timer = null;
  function update(M) {
    if (M.restoringLink) return;
    clearTimeout(timer);
    timer = setTimeout(() => {
      const url = location.pathname + "?" + query(M) + location.hash;
      if (url !== location.pathname + location.search + location.hash) history.replaceState(history.state, "", url);
    }, 150);
  }

  async function copy(M, statusEl) {
    clearTimeout(timer);
    const url = location.origin + location.pathname + "?" + query(M);
    history.replaceState(history.state, "", url);
    let ok = false;
    try {
      if (navigator.clipboard && window.isSecureContext) { await navigator.clipboard.writeText(url); ok = true; }
    } catch (e) { /* fall back below */ }
    if (!ok) {  // plain http or no permission: the old select-and-copy way
      const box = document.createElement("textarea");
      box.value = url; box.setAttribute("readonly", ""); box.className = "offscreen";
      document.body.appendChild(box); box.select();
      try { ok = document.execCommand("copy"); } catch (e) { ok = false; }
      box.remove();
    }
    if (statusEl) statusEl.textContent = ok ? "Link copied" : "Copy this link from the address bar";
    return url;
  }

  return { read, update, copy, query };
})();
