// Latent map page, part 2: the side panel (a tapped galaxy and its 12 nearest neighbours)
// and the selection drawer (thumbnails, add to collection, send to labeling task).
// map.js calls window.LatentMapPanels(M, helpers) once and uses the functions it returns.
"use strict";

window.LatentMapPanels = function (M, { meta, $, getJSON, esc, fmt, reselect }) {
  const SELECTION_THUMBS = 120; // thumbnails drawn in the selection drawer

  // ------------------------------------------------------------------ side panel
  async function openPanel(id) {
    const panel = $("side-panel"), content = $("side-content");
    panel.hidden = false;
    content.innerHTML = `<p class="muted">Loading galaxy ${id}…</p>`;
    try {
      const [nb, g] = await Promise.all([
        getJSON(`${LS.fill(meta.urls.neighbours, id)}?k=12&map=${meta.map_id}&set=${meta.set_id}`),
        getJSON(LS.url("galaxy_api", id))]);
      const metaRows = Object.entries(g.metadata || {}).map(([k, v]) => `<tr><th class="mono">${esc(k)}</th><td class="mono">${esc(String(v))}</td></tr>`).join("");
      content.innerHTML = `
        <div class="side-galaxy" data-galaxy="${g.id}">
          <a href="${g.url}"><img src="${LS.url("thumbnail", g.id)}?size=160" width="160" height="160" alt="${esc(g.source_id)}"></a>
          <div><h2 class="mono">${esc(g.source_id)}</h2>
            <div class="muted small">${esc(g.survey)} · RA ${fmt(g.ra, 5)}° · Dec ${fmt(g.dec, 5)}°</div>
            <div class="toolbar"><a class="button small" href="${g.url}">Open page</a>
              <a class="button small" href="${meta.urls.search}?galaxy=${g.id}&set=${meta.set_id}">Find similar</a>
              <button type="button" class="small" id="select-neighbours">Select these 13</button></div></div>
        </div>
        ${metaRows ? `<table class="table compact metadata-table">${metaRows}</table>` : ""}
        <h3>12 nearest neighbours <span class="muted small">1 − cosine</span></h3>
        <div class="grid neighbour-grid" id="neighbour-grid">${nb.results.map(r => `
          <a class="cell" href="${r.url}" title="${esc(r.source_id)}" data-id="${r.id}">
            <img src="${r.thumb_url || LS.url("thumbnail", r.id) + "?size=96"}" width="96" height="96" alt="${esc(r.source_id)}" loading="lazy">
            <span class="caption"><span class="mono">${esc(r.source_id)}</span><span class="dist">${r.distance.toFixed(3)}</span></span></a>`).join("")}</div>`;
      const ringed = nb.results.filter(r => r.x !== undefined);
      M.highlight.data = { x: [nb.galaxy.x, ...ringed.map(r => r.x)].filter(v => v !== undefined),
                           y: [nb.galaxy.y, ...ringed.map(r => r.y)].filter(v => v !== undefined),
                           kind: ["query", ...ringed.map(() => "neighbour")].slice(0, ringed.length + (nb.galaxy.x !== undefined ? 1 : 0)) };
      $("select-neighbours").addEventListener("click", () => selectIds([g.id, ...nb.results.map(r => r.id)]));
      M.panelGalaxy = nb.galaxy;
    } catch (e) {
      content.innerHTML = `<p class="msg error">${esc(e.message)}</p>`;
    }
  }

  function closePanel() { $("side-panel").hidden = true; M.highlight.data = { x: [], y: [], kind: [] }; }

  function selectIds(ids) {
    M.selectedIds = new Set(ids);
    reselect();
    renderSelection();
  }

  // ------------------------------------------------------------------ selection drawer
  function renderSelection() {
    const ids = [...M.selectedIds];
    const drawer = $("selection");
    drawer.hidden = ids.length === 0;
    $("selection-count").textContent = ids.length.toLocaleString();
    const shown = ids.slice(0, SELECTION_THUMBS);
    const grid = $("selection-grid");
    // Cells first (empty squares), then one sprite atlas for all of them: one image request
    // instead of SELECTION_THUMBS; single thumbnails only if the atlas cannot be had.
    grid.classList.remove("sprite-grid", "atlas-broken");
    grid.innerHTML = shown.map(id =>
      `<a class="cell" href="${LS.url("galaxy", id)}" data-id="${id}"><span class="sprite" role="img" aria-label="galaxy ${id}"></span></a>`).join("") +
      (ids.length > SELECTION_THUMBS ? `<div class="more muted">+${(ids.length - SELECTION_THUMBS).toLocaleString()} more</div>` : "");
    if (shown.length) drawSelectionAtlas(grid, shown);
    $("more-like-these").href = `${meta.urls.search}?set=${meta.set_id}&ids=${ids.slice(0, 500).join(",")}`;
    if (ids.length) { loadCollections(); loadTasks(); }
  }

  async function drawSelectionAtlas(grid, shown) {
    const want = shown.join(",");
    grid.dataset.want = want;
    let sprites = null;
    try {
      sprites = await getJSON(`${LS.url("thumb_atlas_api")}?size=72&ids=${want}`);
    } catch (e) { sprites = null; }
    if (grid.dataset.want !== want) return;          // the selection changed meanwhile
    const cells = grid.querySelectorAll(".cell .sprite");
    if (!sprites) {
      cells.forEach((cell, i) => {
        cell.outerHTML = `<img src="${LS.url("thumbnail", shown[i])}?size=72" width="72" height="72" alt="galaxy ${shown[i]}" loading="lazy">`;
      });
      return;
    }
    grid.style.setProperty("--atlas", `url("${sprites.url}")`);
    grid.style.setProperty("--atlas-size", sprites.background_size);
    cells.forEach((cell, i) => { cell.style.backgroundPosition = sprites.positions[i]; });
    grid.classList.add("sprite-grid");
    const probe = new Image();
    probe.addEventListener("error", () => grid.classList.add("atlas-broken"), { once: true });
    probe.src = sprites.url;
  }

  function toast(text, ok = true) {
    const t = $("selection-toast");
    t.innerHTML = text;
    t.className = "toast small " + (ok ? "ok" : "bad");
  }

  async function loadCollections() {
    if (M.collectionsLoaded) return;
    M.collectionsLoaded = true;
    try {
      const data = await getJSON(meta.urls.collections);
      $("collection-names").innerHTML = data.collections.map(c => `<option value="${esc(c.name)}">`).join("");
    } catch (e) { M.collectionsLoaded = false; }
  }

  async function loadTasks() {
    if (M.tasksLoaded) return;
    M.tasksLoaded = true;
    const select = $("task-select");
    try {
      const data = await getJSON(meta.urls.tasks);
      const tasks = data.tasks || data.results || [];
      select.innerHTML = `<option value="">Labeling task…</option>` +
        tasks.map(t => `<option value="${t.id}">${esc(t.name)}${t.kind ? " · " + esc(t.kind) : ""}</option>`).join("");
      if (!tasks.length) select.innerHTML = `<option value="">no labeling tasks yet</option>`;
    } catch (e) {
      select.innerHTML = `<option value="">labeling unavailable</option>`;
      $("send-to-task").disabled = true;
    }
  }

  async function addToCollection(ev) {
    ev.preventDefault();
    const name = $("collection-name").value.trim();
    const ids = [...M.selectedIds];
    try {
      const data = await LS.postJSON(meta.urls.collections, { name, galaxy_ids: ids });
      toast(`Added ${data.added.toLocaleString()} to <a href="${data.collection.url}">${esc(data.collection.name)}</a> (${data.collection.count.toLocaleString()} in total)`);
      M.collectionsLoaded = false;
    } catch (e) { toast(esc(e.message), false); }
  }

  async function sendToTask(ev) {
    ev.preventDefault();
    const task = $("task-select").value;
    if (!task) return toast("Choose a labeling task first", false);
    try {
      const data = await LS.postJSON(LS.url("task_enqueue_api", task), { galaxy_ids: [...M.selectedIds] });
      toast(`${esc(data.message || data.enqueued + " galaxies queued")} · <a href="${data.label_url}">label now</a>`);
    } catch (e) { toast(esc(e.message), false); }
  }

  function clearSelection() { M.selectedIds = new Set(); M.src.selected.indices = []; renderSelection(); }

  return { openPanel, closePanel, selectIds, renderSelection, addToCollection, sendToTask, clearSelection };
};
