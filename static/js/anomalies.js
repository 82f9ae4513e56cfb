// Anomaly review queue: single-key verdicts, undo, prefetching, live re-ranking, grid mode.
// The page never waits for the server between candidates: a buffer of upcoming candidates
// (JSON + images) is kept full, verdicts are POSTed in order in the background, and a
// finished re-rank job replaces the buffer without reloading the page.
"use strict";
(function () {
  const app = document.getElementById("review-app");
  if (!app) return;
  const $ = id => document.getElementById(id);
  const setId = app.dataset.scoreSet, canReview = app.dataset.canReview === "1";
  const urls = { queue: app.dataset.queueUrl, reviews: app.dataset.reviewsUrl,  // reversed by the template
                 undo: app.dataset.undoUrl, ranking: app.dataset.rankingUrl };
  const BATCH = 12, LOW = 6, PRELOAD = 5, GRID = 24;
  const S = { current: null, buffer: [], history: [], sent: [], rankBy: "personal", survey: "",
              mode: "single", gridItems: [], gridSel: 0, fetching: null, chain: Promise.resolve(),
              images: new Map(), timings: [], jobId: null, first: app.dataset.first || "" };
  const everyInput = $("rerank-every");
  const saved = localStorage.getItem("ls-ano-rerank-every");
  if (everyInput && saved) everyInput.value = saved;
  if (everyInput) everyInput.addEventListener("change", () => localStorage.setItem("ls-ano-rerank-every", everyInput.value));

  // ------------------------------------------------------------ small helpers
  function el(tag, attrs, text) {
    const e = document.createElement(tag);
    Object.entries(attrs || {}).forEach(([k, v]) => { if (k === "class") e.className = v; else e.setAttribute(k, v); });
    if (text !== undefined) e.textContent = text;
    return e;
  }
  function toast(message, kind) {
    const t = $("toast"); t.textContent = message; t.className = "toast " + (kind || ""); t.hidden = false;
    clearTimeout(toast.timer); toast.timer = setTimeout(() => { t.hidden = true; }, 4000);
  }
  const pct = p => (100 * p).toFixed(p > 0.999 ? 2 : 1) + "%";
  function thumb(item, caption, cls) {
    const a = el("a", { href: item.url, class: "mini " + (cls || ""), title: item.source_id + " · distance " + item.distance });
    const img = el("img", { src: item.thumb, width: 72, height: 72, alt: item.source_id, loading: "lazy" });
    a.append(img, el("span", { class: "mini-cap" }, caption));
    return a;
  }
  function held() { return [S.current, ...S.buffer].filter(Boolean).map(c => c.id); }

  // ------------------------------------------------------------ fetching and prefetching
  async function fetchBatch(n, extraExclude, includeHeld) {
    const exclude = [...new Set([...(includeHeld ? [] : held()), ...S.sent.slice(-300), ...(extraExclude || [])])];
    const q = new URLSearchParams({ n: n, rank_by: S.rankBy, exclude: exclude.join(",") });
    if (S.survey) q.set("survey", S.survey);
    if (S.first) { q.set("first", S.first); S.first = ""; }
    const data = await LS.getJSON(urls.queue + "?" + q);
    updateStatus(data);
    return data;
  }
  function refill() {
    if (S.fetching || S.buffer.length >= LOW) return S.fetching;
    S.fetching = fetchBatch(BATCH).then(data => {
      const have = new Set(held());
      data.candidates.forEach(c => { if (!have.has(c.id)) S.buffer.push(c); });
      preloadAhead();
      if (!S.current) advance();
    }).catch(e => toast("Could not load candidates: " + e.message, "error")).finally(() => { S.fetching = null; });
    return S.fetching;
  }
  function preload(c) {
    if (S.images.has(c.id)) return;
    const urls = [c.image, ...c.bands.map(b => b.url), ...c.similar.map(s => s.thumb),
                  ...(c.why ? c.why.neighbours.map(n => n.thumb) : [])];
    S.images.set(c.id, urls.map(u => { const i = new Image(); i.src = u; return i; }));
    if (S.images.size > 80) S.images.delete(S.images.keys().next().value);
  }
  function preloadAhead() { S.buffer.slice(0, PRELOAD).forEach(preload); }

  // ------------------------------------------------------------ showing a candidate
  function advance(t0) {
    S.current = S.buffer.shift() || null;
    show(S.current, t0);
    refill();
  }
  function show(c, t0) {
    $("candidate").hidden = !c; $("queue-empty").hidden = !!c || !!S.fetching;
    if (!c) { if (S.mode === "grid") renderGrid(); return; }
    preload(c);
    const img = $("cand-composite");
    img.alt = c.source_id + " colour composite";
    if (t0 !== undefined) {
      // switch time: from the key event to the first animation frame that has the new composite loaded
      const done = () => requestAnimationFrame(() => { S.timings.push(performance.now() - t0); });
      img.addEventListener("load", done, { once: true });
      img.src = c.image;
      if (img.complete && img.naturalWidth) { img.removeEventListener("load", done); done(); }
    } else img.src = c.image;
    app.dataset.current = c.id;
    $("cand-source").textContent = c.source_id;
    $("cand-survey").textContent = c.survey_name;
    $("cand-link").href = c.url;
    const v = $("cand-verdict");
    v.hidden = !c.verdict; if (c.verdict) v.textContent = "you said " + c.verdict.label;
    const bands = $("cand-bands"); bands.replaceChildren();
    c.bands.forEach(b => { const f = el("figure"); f.append(el("img", { src: b.url, width: 128, height: 128, alt: b.name + " band" }),
      el("figcaption", { class: "band band-" + b.name.toLowerCase() }, b.name)); bands.append(f); });
    const kv = $("cand-kv"); kv.replaceChildren();
    [["RA", c.ra === null ? "—" : c.ra.toFixed(6) + "°  " + c.ra_hms], ["Dec", c.dec === null ? "—" : c.dec.toFixed(6) + "°  " + c.dec_dms],
     ["Queue position", c.rank.position === null ? "—" : "#" + c.rank.position],
     ["Anomaly (combined)", "top " + pct(1 - c.anomaly.combined)]].forEach(([k, val]) => kv.append(el("dt", {}, k), el("dd", { class: "mono" }, val)));
    const ranks = $("cand-ranks"); ranks.replaceChildren();
    Object.entries(c.anomaly.ranks).sort((a, b) => b[1] - a[1]).forEach(([m, p]) => {
      const row = el("div", { class: "rank-bar", title: m + " percentile " + pct(p) });
      const track = el("span", { class: "track" }), fill = el("span", { class: "fill" });
      fill.style.width = (100 * p).toFixed(1) + "%"; track.append(fill);
      row.append(el("span", { class: "name" }, m), track, el("span", { class: "val" }, pct(p))); ranks.append(row);
    });
    const meta = $("cand-metadata"); meta.replaceChildren();
    Object.entries(c.metadata).sort().forEach(([k, val]) => { const tr = el("tr"); tr.append(el("th", { class: "mono" }, k), el("td", { class: "mono" }, String(val))); meta.append(tr); });
    showWhy(c);
    const sim = $("similar-row"); sim.replaceChildren();
    c.similar.forEach(s => sim.append(thumb(s, s.distance.toFixed(3))));
    $("similar-note").hidden = !c.similar_note; $("similar-note").textContent = c.similar_note;
    preloadAhead();
  }
  function showWhy(c) {
    const text = $("why-text"), row = $("why-neighbours"); row.replaceChildren();
    const top = Object.entries(c.anomaly.ranks).sort((a, b) => b[1] - a[1])[0];
    const anomaly = "Anomaly rank top " + pct(1 - c.anomaly.combined) + (top ? " (most unusual by " + top[0] + ", top " + pct(1 - top[1]) + ")" : "") + ".";
    if (!c.why) { text.textContent = anomaly + " No personal ranking yet: your verdicts will teach the queue."; return; }
    let words = "Predicted interest " + c.why.predicted_interest.toFixed(1) + (c.why.uncertainty !== null ? " ± " + c.why.uncertainty.toFixed(1) : "") +
      " from the galaxies you scored nearest to it (below). " + anomaly;
    if (c.why.artifact_penalty > 0.2) words += " Pushed down: it looks like something you tagged as an artifact.";
    text.textContent = words;
    c.why.neighbours.forEach(n => row.append(thumb(n, n.artifact ? "artifact" : "you: " + n.interest, n.artifact ? "artifact" : "v" + n.interest)));
  }
  function updateStatus(data) {
    $("n-remaining").textContent = data.remaining;
    updateCounts(data.counts);
    const r = data.ranking, status = $("rank-status");
    if (data.source === "personal" && r) {
      status.textContent = "Ordered by what you found interesting (" + r.n_reviews + " verdicts, fitted in " + (r.seconds || 0).toFixed(1) + " s)";
      app.dataset.rankingId = r.id;
    } else status.textContent = data.source === "combined" ? "Ordered by combined anomaly score (no personal ranking in use)" : "Ordered by the " + data.source + " score";
    if (data.pending_job && !S.jobId) watchJob(data.pending_job);
  }
  function updateCounts(c) {
    if (!c) return;
    $("n-reviewed").textContent = c.reviewed; $("n-interesting").textContent = c.interesting; $("n-artifacts").textContent = c.artifacts;
  }

  // ------------------------------------------------------------ verdicts, undo, skip
  function send(which, body) {
    S.chain = S.chain.then(() => LS.postJSON(urls[which], body));  // in order: an undo never overtakes its verdict
    return S.chain;
  }
  function take(c) {
    if (S.current === c) S.current = S.buffer.shift() || null;
    else S.buffer = S.buffer.filter(x => x !== c);
  }
  function verdict(c, value, t0) {
    if (!c || !canReview) return;
    const body = value === "a" ? { galaxy_id: c.id, artifact: true } : { galaxy_id: c.id, interest: value };
    body.rerank_every = everyInput ? parseInt(everyInput.value, 10) || 10 : 10;
    S.history.push({ c: c, value: value }); S.sent.push(c.id);
    const wasCurrent = S.current === c;
    take(c);
    if (S.mode === "single" && wasCurrent) { show(S.current, t0); refill(); } else { markTile(c, value); refill(); }
    send("reviews", body).then(reply => {
      updateCounts(reply.counts);
      if (reply.rerank_job) watchJob(reply.rerank_job);
    }).catch(e => {
      toast("Verdict on " + c.source_id + " was not saved: " + e.message, "error");
      S.history = S.history.filter(h => h.c !== c); S.sent = S.sent.filter(id => id !== c.id);
      if (S.current) S.buffer.unshift(S.current); S.current = c; show(c);
      S.chain = Promise.resolve();
    });
  }
  function undo() {
    const last = S.history.pop();
    if (!last) { toast("Nothing to undo."); return; }
    S.sent = S.sent.filter(id => id !== last.c.id);
    if (S.current) S.buffer.unshift(S.current);
    S.current = last.c;
    if (S.mode === "grid") renderGrid(); else show(S.current);
    send("undo", { galaxy_id: last.c.id }).then(reply => { updateCounts(reply.counts); toast("Undone: " + last.c.source_id); })
      .catch(e => { toast("Undo failed: " + e.message, "error"); S.chain = Promise.resolve(); });
  }
  function skip() { if (!S.current) return; S.buffer.push(S.current); advance(performance.now()); }

  // ------------------------------------------------------------ re-ranking
  function watchJob(job) {
    S.jobId = job.id;
    const box = $("rerank-box"), bar = $("rerank-progress");
    box.hidden = false; LS.renderProgress(bar, job);
    LS.pollJob(job.id, j => LS.renderProgress(bar, j), { every: 600, first: 400 }).then(job => {
      S.jobId = null; box.hidden = true;
      if (job.status === "succeeded") reorder(job); else toast("Re-ranking " + job.status + ": " + (job.message || ""), "error");
    });
  }
  async function reorder(job) {
    try {
      const before = S.buffer.map(c => c.id).join(",");
      // ask without holding the page's candidates back, and with the one on screen in front (`first`),
      // so it stays on screen and gets its new "why" even when the new order puts it further down
      const shown = S.current;
      if (shown) S.first = String(shown.id);
      const data = await fetchBatch(BATCH, [], true);
      const fresh = shown && data.candidates.find(c => c.id === shown.id);
      S.buffer = data.candidates.filter(c => !shown || c.id !== shown.id);
      if (fresh) { S.current = fresh; if (S.mode === "single") show(fresh); }
      if (!S.current) advance();
      preloadAhead();
      if (S.mode === "grid") renderGrid();
      const moved = before !== S.buffer.map(c => c.id).join(",");
      app.dataset.reranked = String((parseInt(app.dataset.reranked || "0", 10)) + 1);
      toast("Queue re-ranked from your " + ((data.ranking && data.ranking.n_reviews) || 0) + " verdicts" + (moved ? "." : " (order unchanged)."), "ok");
    } catch (e) { toast("Could not reload the queue: " + e.message, "error"); }
  }
  function rerankNow() {
    if (!canReview) return;
    LS.postJSON(urls.ranking, {}).then(reply => watchJob(reply.job)).catch(e => toast("Re-rank failed: " + e.message, "error"));
  }
  async function restart() {
    S.current = null; S.buffer = []; S.images.clear();
    try {
      const data = await fetchBatch(BATCH);
      S.buffer = data.candidates; advance();
      if (S.mode === "grid") fillGrid();
    } catch (e) { toast("Could not load candidates: " + e.message, "error"); }
  }

  // ------------------------------------------------------------ grid mode
  async function fillGrid() {
    if (S.buffer.length + 1 < GRID) {
      try {
        const data = await fetchBatch(GRID);
        const have = new Set(held());
        data.candidates.forEach(c => { if (!have.has(c.id)) S.buffer.push(c); });
        if (!S.current) S.current = S.buffer.shift() || null;
      } catch (e) { toast("Could not load candidates: " + e.message, "error"); }
    }
    renderGrid();
  }
  function renderGrid() {
    S.gridItems = [S.current, ...S.buffer].filter(Boolean).slice(0, GRID);
    S.gridSel = Math.min(S.gridSel, Math.max(S.gridItems.length - 1, 0));
    const grid = $("anomaly-grid"); grid.replaceChildren();
    S.gridItems.forEach((c, i) => {
      const cell = el("div", { class: "cell" + (i === S.gridSel ? " selected" : ""), "data-id": c.id, tabindex: "-1" });
      cell.append(el("img", { src: c.image, alt: c.source_id, loading: "lazy" }),
                  el("div", { class: "caption" }, c.source_id + " · top " + pct(1 - c.anomaly.combined)));
      cell.addEventListener("click", () => { S.gridSel = i; renderGrid(); });
      cell.addEventListener("dblclick", () => openSingle(c));
      grid.append(cell);
    });
  }
  function markTile(c, value) {
    const cell = document.querySelector('#anomaly-grid .cell[data-id="' + c.id + '"]');
    if (!cell) return;
    cell.classList.add("scored"); cell.append(el("span", { class: "verdict-badge " + (value === "a" ? "artifact" : "v" + value) }, value === "a" ? "artifact" : String(value)));
    const next = S.gridItems.findIndex((x, i) => i > S.gridSel && !document.querySelector('#anomaly-grid .cell[data-id="' + x.id + '"].scored'));
    if (next >= 0) selectTile(next);
  }
  function selectTile(i) {
    const cells = [...document.querySelectorAll("#anomaly-grid .cell")];
    if (!cells.length) return;
    S.gridSel = Math.max(0, Math.min(cells.length - 1, i));
    cells.forEach((c, j) => c.classList.toggle("selected", j === S.gridSel));
    cells[S.gridSel].scrollIntoView({ block: "nearest" });
  }
  function gridColumns() {
    const cells = [...document.querySelectorAll("#anomaly-grid .cell")];
    if (cells.length < 2) return 1;
    const idx = cells.findIndex(c => c.offsetTop !== cells[0].offsetTop);
    return idx === -1 ? cells.length : idx;
  }
  function openSingle(c) {
    if (S.current !== c) { take(c); if (S.current) S.buffer.unshift(S.current); S.current = c; }
    setMode("single");
  }
  function setMode(mode) {
    S.mode = mode; app.classList.toggle("mode-grid", mode === "grid"); app.classList.toggle("mode-single", mode === "single");
    $("single-view").hidden = mode !== "single"; $("grid-view").hidden = mode !== "grid";
    document.querySelectorAll(".mode-switch button").forEach(b => b.classList.toggle("on", b.dataset.mode === mode));
    if (mode === "grid") { S.gridSel = 0; fillGrid(); } else show(S.current);
  }

  // ------------------------------------------------------------ keyboard
  function flash(key) {
    const hint = document.querySelector('.key-hint[data-key="' + (key === "Backspace" || key === "z" ? "u" : key) + '"]');
    if (!hint) return;
    hint.classList.add("pressed"); setTimeout(() => hint.classList.remove("pressed"), 150);
  }
  function handle(key, ev) {
    const t0 = ev && ev.timeStamp ? ev.timeStamp : performance.now();  // event time: includes any wait for the main thread
    flash(key);
    const gridCand = () => S.gridItems[S.gridSel];
    const target = S.mode === "grid" ? gridCand() : S.current;
    if (/^[0-5]$/.test(key)) { if (target && !(S.mode === "grid" && isScored(target))) verdict(target, parseInt(key, 10), t0); return true; }
    switch (key) {
      case "a": case "A": if (target && !(S.mode === "grid" && isScored(target))) verdict(target, "a", t0); return true;
      case "u": case "z": case "Backspace": undo(); return true;
      case "s": skip(); return true;
      case "ArrowRight": if (S.mode === "grid") selectTile(S.gridSel + 1); else skip(); return true;
      case "g": setMode(S.mode === "grid" ? "single" : "grid"); return true;
      case "r": rerankNow(); return true;
      case "o": if (target) window.open(target.url, "_blank"); return true;
      case "?": toggleHelp(); return true;
      case "Escape": toggleHelp(false); return true;
    }
    if (S.mode !== "grid") return false;
    const cols = gridColumns();
    const moves = { ArrowLeft: -1, h: -1, l: 1, ArrowUp: -cols, k: -cols, ArrowDown: cols, j: cols };
    if (key in moves) { selectTile(S.gridSel + moves[key]); return true; }
    if (key === "Enter" && gridCand()) { openSingle(gridCand()); return true; }
    if (key === "n") { S.buffer = S.buffer.filter(c => !S.gridItems.includes(c)); if (S.gridItems.includes(S.current)) S.current = S.buffer.shift() || null; S.gridSel = 0; fillGrid(); return true; }
    return false;
  }
  function isScored(c) { return !!document.querySelector('#anomaly-grid .cell[data-id="' + c.id + '"].scored'); }
  const help = $("kbd-help");
  function toggleHelp(show) { help.hidden = show === undefined ? !help.hidden : !show; }
  document.querySelectorAll("[data-help-toggle]").forEach(b => b.addEventListener("click", () => toggleHelp()));
  help.addEventListener("click", ev => { if (ev.target === help) toggleHelp(false); });
  document.addEventListener("keydown", ev => {
    const t = ev.target;
    if (ev.ctrlKey || ev.metaKey || ev.altKey) return;
    if (t && (t.isContentEditable || ["INPUT", "SELECT", "TEXTAREA"].includes(t.tagName))) return;
    const key = ev.key.length === 1 && !/[0-9?]/.test(ev.key) ? ev.key.toLowerCase() : ev.key;
    if (handle(key, ev)) ev.preventDefault();
  });
  document.querySelectorAll(".key-hint").forEach(b => b.addEventListener("click", () => handle(b.dataset.key)));
  document.querySelectorAll(".mode-switch button").forEach(b => b.addEventListener("click", () => setMode(b.dataset.mode)));
  const rerankButton = $("rerank-now"); if (rerankButton) rerankButton.addEventListener("click", rerankNow);
  $("rank-by").addEventListener("change", ev => { S.rankBy = ev.target.value; restart(); });
  const surveySel = $("survey-filter"); if (surveySel) surveySel.addEventListener("change", ev => { S.survey = ev.target.value; restart(); });

  // For people measuring the page (and the e2e test): switch times and the upcoming order.
  window.LSAnomaly = { timings: S.timings, upcoming: () => S.buffer.map(c => c.id), current: () => S.current && S.current.id };
  restart();
})();
