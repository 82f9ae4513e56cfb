// Latent Sky labeling page: keyboard-driven, prefetched queue, optimistic saves, undo.
//
// The next galaxy is already in the browser (its images decoded) when a person answers,
// so it appears at once; the answer is POSTed in the background, in order, and an
// undo waits for the save it retracts.  The page measures answer -> next galaxy on
// screen and shows it (document.body.dataset.lastSwitchMs holds the latest value).
"use strict";
(function () {
  const bootEl = document.getElementById("label-boot");
  if (!bootEl) return;
  const boot = JSON.parse(bootEl.textContent);
  const PREFETCH = 10;      // galaxies fetched per queue request
  const LOW_WATER = 4;      // fetch more when fewer than this remain locally
  const REFILL_RETRY_MS = 1500;  // queue empty while a refill job picks galaxies: ask again after this
  const RECENT = 8;         // thumbnails in "your last answers"
  const $ = (id) => document.getElementById(id);
  const state = {
    queue: [], current: null, history: [], pending: Promise.resolve(), fetching: null,
    view: -1, zoom: 1, panX: 0, panY: 0, myCount: (boot.user && boot.user.answered) || 0,
    timings: [], empty: false,
  };
  const imageCache = new Map();   // url -> decoded Image, so showing it costs nothing
  const classes = boot.task.classes || [];

  // ---------------------------------------------------------------- images
  function preload(url) {
    if (!url || imageCache.has(url)) return;
    const img = new Image();
    img.decoding = "async";
    img.src = url;
    imageCache.set(url, img);
    if (img.decode) img.decode().catch(() => {});
    if (imageCache.size > 400) imageCache.delete(imageCache.keys().next().value);
  }
  function preloadItem(item) {
    preload(item.image_url);
    if (item.strip) { preload(item.strip.url); return; }   // one atlas per batch: thumbnail + bands
    (item.bands || []).forEach(b => preload(b.url));
    preload(item.thumb_url);
  }
  // A small image of the item: a cell of the batch's sprite atlas when there is one, else an <img>.
  function smallImage(item, position, url, px) {
    if (item.strip && position) {
      const cell = document.createElement("i");
      cell.className = "strip-sprite";
      cell.setAttribute("role", "img");
      Object.assign(cell.style, { width: px + "px", height: px + "px", backgroundImage: 'url("' + item.strip.url + '")',
                                  backgroundSize: item.strip.background_size, backgroundPosition: position });
      return cell;
    }
    const img = document.createElement("img");
    img.alt = ""; img.width = px; img.height = px; img.src = url;
    return img;
  }

  // ---------------------------------------------------------------- queue
  function knownIds() {
    const ids = state.queue.map(q => q.galaxy_id);
    if (state.current) ids.push(state.current.galaxy_id);
    state.history.slice(-20).forEach(h => ids.push(h.item.galaxy_id));
    return ids;
  }
  function refill() {
    if (state.fetching) return state.fetching;
    const url = boot.urls.queue + "?n=" + PREFETCH + "&exclude=" + knownIds().join(",");
    state.fetching = LS.getJSON(url)
      .then(data => {
        const known = new Set(knownIds());
        data.items.filter(it => !known.has(it.galaxy_id)).forEach(it => { preloadItem(it); state.queue.push(it); });
        updateProgress(data.progress);
        // the server is picking more galaxies in a job: ask again shortly
        if (!data.items.length && data.refilling) setTimeout(refill, REFILL_RETRY_MS);
        if (!state.current && (state.queue.length || !data.refilling)) advance(null);
      })
      .catch(err => setSaveState("Could not load more galaxies: " + err.message, true))
      .finally(() => { state.fetching = null; });
    return state.fetching;
  }
  function advance(t0) {
    const next = state.queue.shift() || null;
    if (next) show(next, t0); else showEmpty();
    if (state.queue.length < LOW_WATER) refill();
  }

  // ---------------------------------------------------------------- showing
  function show(item, t0) {
    state.current = item;
    state.empty = false;
    $("empty-queue").hidden = true;
    $("viewer").hidden = false;
    $("answers").classList.remove("disabled");
    state.view = -1;
    resetZoom();
    const img = showImage(item.image_url, item.source_id + " colour composite");
    renderBands(item);
    $("reason").textContent = item.reason || "picked by the task's strategy";
    $("reason").dataset.source = item.source;
    const p = item.prediction;
    $("model-guess").textContent = p ? ("current model: " + (p.class !== undefined
      ? p.class + " (" + Math.round(100 * p.probability) + "%)"
      : p.value.toPrecision(4) + " ± " + p.sigma.toPrecision(3))) : "no model prediction yet";
    renderMeta(item);
    if (t0 !== null && t0 !== undefined) measure(img, t0);
    const input = $("value-input");
    if (input) { input.value = ""; input.focus(); }
    document.body.dataset.galaxy = item.galaxy_id;
  }
  // Put the prefetched, already decoded <img> on stage (no decode, no network on the hot path).
  function showImage(url, alt) {
    const old = $("composite");
    let img = imageCache.get(url);                          // decoded, or still loading: never fetch twice
    if (img) imageCache.delete(url); else { img = new Image(); img.src = url; }
    img.id = "composite";
    img.className = "composite-large";
    img.alt = alt;
    img.draggable = false;
    img.style.transform = old.style.transform;
    if (img !== old) old.replaceWith(img);
    return img;
  }
  function measure(img, t0) {
    const done = () => requestAnimationFrame(() => {
      const ms = performance.now() - t0;
      state.timings.push(ms);
      document.body.dataset.lastSwitchMs = ms.toFixed(1);
      $("timing").textContent = "next in " + Math.round(ms) + " ms";
    });
    if (img.complete && img.naturalWidth) done(); else img.addEventListener("load", done, { once: true });
  }
  function showEmpty() {
    state.current = null;
    state.empty = true;
    $("empty-queue").hidden = false;
    $("viewer").hidden = true;
    $("answers").classList.add("disabled");
    $("band-strip").innerHTML = "";
    $("reason").textContent = "—";
    document.body.dataset.galaxy = "";
  }
  function renderBands(item) {
    const strip = $("band-strip");
    strip.innerHTML = "";
    const sprites = item.strip || { bands: [] };
    const all = [{ name: "composite", url: item.thumb_url, index: -1, sprite: sprites.composite }].concat(
      (item.bands || []).map((b, i) => ({ name: b.name, url: b.url, index: i, sprite: sprites.bands[i] })));
    if (all.length < 2) return;
    all.forEach(b => {
      const fig = document.createElement("button");
      fig.type = "button";
      fig.className = "band-thumb" + (b.index === state.view ? " on" : "");
      fig.title = b.index < 0 ? "colour composite" : b.name + " band";
      fig.innerHTML = '<span class="band band-' + String(b.name).toLowerCase() + '"></span>';
      fig.prepend(smallImage(item, b.sprite, b.url, 64));
      fig.querySelector("span").textContent = b.name;
      fig.addEventListener("click", () => setView(b.index));
      strip.appendChild(fig);
    });
  }
  function setView(index) {
    const item = state.current;
    if (!item) return;
    state.view = index;
    showImage(index < 0 ? item.image_url : item.bands[index].large_url,
              item.source_id + (index < 0 ? " colour composite" : " " + item.bands[index].name + " band"));
    $("view-caption").textContent = (index < 0 ? "colour composite" : item.bands[index].name + " band, asinh stretch")
      + (item.field_arcsec ? " · " + item.field_arcsec.toFixed(1) + "″ across" : "");
    [...$("band-strip").children].forEach((el, i) => el.classList.toggle("on", i - 1 === index));
  }
  function renderMeta(item) {
    const link = $("detail-link");
    link.textContent = item.source_id;
    link.href = item.detail_url;
    const rows = [["Survey", item.survey_name], ["RA", item.ra_hms ? item.ra_hms + "  (" + item.ra.toFixed(5) + "°)" : "—"],
      ["Dec", item.dec_dms ? item.dec_dms + "  (" + item.dec.toFixed(5) + "°)" : "—"]];
    Object.keys(item.metadata || {}).sort().forEach(k => rows.push([k, String(item.metadata[k])]));
    const dl = $("meta-list");
    dl.innerHTML = "";
    rows.forEach(([k, v]) => {
      const dt = document.createElement("dt"), dd = document.createElement("dd");
      dt.textContent = k; dd.textContent = v; dd.className = "mono";
      dl.append(dt, dd);
    });
    $("view-caption").textContent = "colour composite" + (item.field_arcsec ? " · " + item.field_arcsec.toFixed(1) + "″ across" : "");
  }

  // ---------------------------------------------------------------- zoom and pan
  function applyZoom() {
    $("composite").style.transform = "scale(" + state.zoom + ") translate(" + state.panX + "px," + state.panY + "px)";
    $("zoom-badge").textContent = state.zoom.toFixed(state.zoom < 10 ? 1 : 0).replace(/\.0$/, "") + "×";
  }
  function zoomBy(f) { state.zoom = Math.min(8, Math.max(1, state.zoom * f)); if (state.zoom === 1) { state.panX = state.panY = 0; } applyZoom(); }
  function resetZoom() { state.zoom = 1; state.panX = state.panY = 0; applyZoom(); }
  const viewer = $("viewer");
  viewer.addEventListener("wheel", ev => { ev.preventDefault(); zoomBy(ev.deltaY < 0 ? 1.25 : 0.8); }, { passive: false });
  let drag = null;
  viewer.addEventListener("pointerdown", ev => { if (state.zoom > 1) { drag = { x: ev.clientX, y: ev.clientY, px: state.panX, py: state.panY }; viewer.setPointerCapture(ev.pointerId); } });
  viewer.addEventListener("pointermove", ev => { if (drag) { state.panX = drag.px + (ev.clientX - drag.x) / state.zoom; state.panY = drag.py + (ev.clientY - drag.y) / state.zoom; applyZoom(); } });
  viewer.addEventListener("pointerup", () => { drag = null; });
  viewer.addEventListener("dblclick", resetZoom);

  // ---------------------------------------------------------------- answering
  async function post(url, body) {
    for (let attempt = 0; ; attempt++) {
      try {
        return await LS.postJSON(url, body);
      } catch (err) {
        if (err.status || attempt >= 3) throw err;            // the server said no: don't retry
        setSaveState("Network trouble, retrying…", true);
        await new Promise(r => setTimeout(r, 500 * (attempt + 1)));
      }
    }
  }
  function answer(kind, extra, label) {
    const item = state.current;
    if (!item) return;
    const t0 = performance.now();
    const body = Object.assign({ galaxy_id: item.galaxy_id, kind: kind }, extra || {});
    const entry = { item: item, label: label, kind: kind };
    entry.saved = state.pending = state.pending.catch(() => {}).then(() => post(boot.urls.label, body))
      .then(res => { updateProgress(res.progress); updateUser(res.user); setSaveState("Saved."); return res; })
      .catch(err => {
        setSaveState("Not saved (" + (err.message || "error") + "): " + item.source_id + " is back in your queue.", true);
        state.history = state.history.filter(h => h !== entry);
        preloadItem(item);
        state.queue.unshift(item);
        dropRecent(item.galaxy_id);
        throw err;
      });
    state.history.push(entry);
    if (kind !== "skip") { state.myCount++; $("my-count").textContent = state.myCount; }
    addRecent(item, label);
    advance(t0);
  }
  function undo() {
    const entry = state.history.pop();
    if (!entry) { setSaveState("Nothing to undo."); return; }
    if (state.current) { preloadItem(state.current); state.queue.unshift(state.current); }
    dropRecent(entry.item.galaxy_id);
    if (entry.kind !== "skip") { state.myCount = Math.max(0, state.myCount - 1); $("my-count").textContent = state.myCount; }
    show(entry.item, performance.now());
    state.pending = state.pending.catch(() => {}).then(() => entry.saved)
      .then(() => post(boot.urls.undo, { galaxy_id: entry.item.galaxy_id }))
      .then(res => { updateProgress(res.progress); updateUser(res.user); setSaveState("Undone: " + entry.item.source_id + " (" + entry.label + ")."); })
      .catch(err => setSaveState("Undo failed: " + (err.message || "error"), true));
  }

  // ---------------------------------------------------------------- counters and history
  function updateProgress(p) {
    if (!p) return;
    $("next-round").textContent = p.next_round;
    $("queue-count").textContent = p.queue_remaining;
    const fill = $("round-fill"), text = $("round-text");
    if (p.training_round) {
      fill.style.width = "100%";
      text.textContent = "round " + p.training_round + " is training…";
    } else if (p.round_every) {
      fill.style.width = Math.min(100, 100 * p.since_last_round / p.round_every) + "%";
      text.textContent = p.since_last_round + " / " + p.round_every + " labels until retrain"
        + (p.auto_round_wait_s > 0 ? " · retrains in " + p.auto_round_wait_s + " s (automatic rounds are spaced out)" : "");
    } else {
      fill.style.width = "0%";
      text.textContent = p.since_last_round + " new labels · rounds on demand";
    }
  }
  function updateUser(u) { if (u) { state.myCount = u.answered; $("my-count").textContent = u.answered; } }
  function addRecent(item, label) {
    const strip = $("recent");
    const a = document.createElement("a");
    a.href = item.detail_url; a.target = "_blank"; a.rel = "noopener";
    a.dataset.galaxy = item.galaxy_id;
    a.innerHTML = '<span></span>';
    a.prepend(smallImage(item, item.strip && item.strip.composite, item.thumb_url, 56));
    a.querySelector("span").textContent = label;
    strip.prepend(a);
    while (strip.children.length > RECENT) strip.lastChild.remove();
  }
  function dropRecent(galaxyId) {
    const el = $("recent").querySelector('[data-galaxy="' + galaxyId + '"]');
    if (el) el.remove();
  }
  function setSaveState(text, bad) {
    const el = $("save-state");
    el.textContent = text;
    el.classList.toggle("bad", !!bad);
  }

  // ---------------------------------------------------------------- controls
  document.querySelectorAll("button.answer").forEach(btn => btn.addEventListener("click", () => {
    const k = parseInt(btn.dataset.class, 10);
    answer("value", { class_index: k }, classes[k].name);
  }));
  const unsureBtn = $("unsure");
  if (unsureBtn) unsureBtn.addEventListener("click", () => answer("unsure", {}, "unsure"));
  $("skip").addEventListener("click", () => answer("skip", {}, "skipped"));
  $("undo").addEventListener("click", undo);
  const valueForm = $("value-form");
  if (valueForm) valueForm.addEventListener("submit", ev => {
    ev.preventDefault();
    const input = $("value-input"), v = parseFloat(input.value);
    if (!isFinite(v)) { setSaveState("Type a number first.", true); return; }
    if ((input.min !== "" && v < parseFloat(input.min)) || (input.max !== "" && v > parseFloat(input.max))) {
      setSaveState("Outside the task's range " + input.min + " – " + input.max + ".", true); return;
    }
    answer("value", { value: v }, String(v));
  });
  const help = $("kbd-help");
  document.querySelectorAll("[data-help-toggle]").forEach(b => b.addEventListener("click", () => { help.hidden = !help.hidden; }));
  help.addEventListener("click", ev => { if (ev.target === help) help.hidden = true; });

  document.addEventListener("keydown", ev => {
    if (ev.ctrlKey || ev.metaKey || ev.altKey) return;
    const inInput = ev.target.matches("input, textarea, select");
    if (ev.key === "Escape") { help.hidden = true; if (inInput) ev.target.blur(); return; }
    if (inInput) return;
    if (ev.key === "?") { help.hidden = !help.hidden; ev.preventDefault(); return; }
    if (ev.repeat) return;                                  // a held key must not label a run of galaxies
    const k = boot.keys[ev.key];
    if (k !== undefined) { ev.preventDefault(); answer("value", { class_index: k }, classes[k].name); return; }
    switch (ev.key) {
      case "0": if (boot.task.allow_unsure) { ev.preventDefault(); answer("unsure", {}, "unsure"); } break;
      case "s": ev.preventDefault(); answer("skip", {}, "skipped"); break;
      case "u": case "Backspace": ev.preventDefault(); undo(); break;
      case "+": case "=": zoomBy(1.5); break;
      case "-": zoomBy(1 / 1.5); break;
      case "b": if (state.current) { const n = (state.current.bands || []).length; setView(n ? ((state.view + 2) % (n + 1)) - 1 : -1); } break;
      default: break;
    }
  });

  updateProgress(boot.progress);
  $("my-count").textContent = state.myCount;
  // For people debugging, and for tests: is the next galaxy's image already decoded?
  function nextReady() {
    const next = state.queue[0];
    if (!next) return false;
    const img = imageCache.get(next.image_url);
    return !!(img && img.complete && img.naturalWidth);
  }
  window.LSLabel = { state: state, nextReady: nextReady };
  refill();
})();
