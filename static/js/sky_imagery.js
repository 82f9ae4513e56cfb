// Latent map page, part 4: the sky view on the survey's real imagery, where one fits.
//
// When the map's survey has a HiPS (meta.hips, webapp/embeddings/services/hips.py) and the sky view is
// opened, the browser probes the HiPS server (PROBE_MS timeout).  If it answers, "Imagery"
// loads Aladin Lite (npm aladin-lite, served from /static/vendor/, never a CDN; an ES module
// with WebAssembly inside: the page's CSP adds 'wasm-unsafe-eval' for it) over the sky panel,
// with the map's catalogue points (/maps/<id>/hips.json: id, ra, dec, colour of the colour
// layer) as an overlay.  Offline, or with no HiPS, the sky view stays today's bokeh scatter and
// #sky-imagery-note says why.  State for tests: #sky-imagery-note[data-state] is
// "none" | "probing" | "fallback" | "available" | "shown".
"use strict";

(function () {
  const PROBE_MS = 2500;
  const HIPS_SERVER = "https://alasky.cds.unistra.fr";
  const M = window.LatentMapPage;
  const metaNode = document.getElementById("map-meta");
  if (!M || !metaNode) return;
  const meta = JSON.parse(metaNode.textContent);
  const $ = id => document.getElementById(id);
  const S = { state: "none", aladin: null, A: null, layer: null };
  window.LatentSkyImagery = S;

  function note(state, text) {
    S.state = state;
    const el = $("sky-imagery-note");
    if (!el) return;
    el.dataset.state = state;
    el.textContent = text;
    el.hidden = !text;
  }

  async function probe() {
    const ctrl = new AbortController();
    const timer = setTimeout(() => ctrl.abort(), PROBE_MS);
    try {
      const res = await fetch(`${HIPS_SERVER}/${meta.hips}/properties`, { signal: ctrl.signal, mode: "cors", credentials: "omit" });
      return res.ok;
    } catch (e) {
      return false;
    } finally {
      clearTimeout(timer);
    }
  }

  // The overlay's points, grouped by colour (one Aladin catalogue per colour).
  S.overlay = async function (layer) {
    const data = await LS.getJSON(meta.urls.hips_overlay + "?layer=" + encodeURIComponent(layer || ""));
    const groups = new Map();
    for (const p of data.points) {
      if (!groups.has(p.colour)) groups.set(p.colour, []);
      groups.get(p.colour).push(p);
    }
    return { data, groups };
  };

  async function show() {
    const box = $("sky-imagery");
    box.hidden = false;
    note("shown", `HiPS imagery: ${meta.hips} (Aladin Lite) · toggle to return to the scatter`);
    if (S.aladin && S.layer === M.layer) return;
    if (!S.A) {
      const mod = await import(box.dataset.aladinSrc);
      S.A = mod.default;
      await S.A.init;
    }
    const { data, groups } = await S.overlay(M.layer);
    const A = S.A;
    if (!S.aladin) {
      S.aladin = A.aladin(box, { survey: meta.hips, fov: data.fov || 1, cooFrame: "ICRS",
                                 target: data.center ? `${data.center[0]} ${data.center[1]}` : "0 0",
                                 showReticle: false, showCooGridControl: false });
    } else {
      S.aladin.removeLayers();
    }
    for (const [colour, points] of groups) {
      const cat = A.catalog({ name: "Latent Sky " + colour, sourceSize: 8, color: colour });
      S.aladin.addCatalog(cat);
      cat.addSources(points.map(p => A.source(p.ra, p.dec, { id: p.id })));
    }
    S.layer = M.layer;
  }

  function hide() {
    $("sky-imagery").hidden = true;
    note("available", "HiPS imagery available for this survey");
  }

  async function onView(view) {
    const button = $("sky-imagery-toggle");
    if (view !== "sky") { if (S.state === "shown") hide(); button.hidden = true; return; }
    if (!meta.hips) { note("none", ""); return; }
    if (S.state === "none" && !S.probing) {
      S.probing = true;
      note("probing", "Looking for the survey's HiPS imagery…");
      const vendor = $("sky-imagery").dataset.aladinSrc;
      const ok = vendor && await probe();
      if (!ok) {
        note("fallback", vendor ? "Sky imagery needs the HiPS server (offline?): showing the catalogue scatter"
                                : "Aladin Lite is not installed (npm ci): showing the catalogue scatter");
        return;
      }
      note("available", "HiPS imagery available for this survey");
    }
    if (S.state === "available" || S.state === "shown") button.hidden = false;
  }

  function start() {
    const button = $("sky-imagery-toggle");
    if (!button) return;
    button.addEventListener("click", () => {
      const on = S.state !== "shown";
      button.setAttribute("aria-pressed", String(on));
      (on ? show() : Promise.resolve(hide())).catch(e => note("fallback", "Sky imagery failed: " + e.message));
    });
    document.addEventListener("ls:map-view", ev => onView(ev.detail));
    document.addEventListener("ls:map-layer", () => { if (S.state === "shown") show().catch(() => {}); });
  }
  start();
})();
