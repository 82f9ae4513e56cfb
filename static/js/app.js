// Latent Sky shared front-end helpers: URLs from the page, CSRF-aware fetch, job polling,
// live job progress and bokeh plots.  Every page loads this file first; pages carry no inline
// script (Content-Security-Policy: script-src 'self').
"use strict";
window.LS = window.LS || {};

// URLs reversed by the server (webapp/context_processors.py), from the #ls-urls json_script.
LS.urls = (() => {
  const node = document.getElementById("ls-urls");
  return node ? JSON.parse(node.textContent) : {};
})();
// A URL template from the server with "{id}" where the id goes.
LS.fill = (template, id) => template.replace("{id}", encodeURIComponent(id));
// LS.url("galaxy_api", 42) gives /api/galaxies/42/.
LS.url = function (name, id) {
  const template = LS.urls[name];
  if (template === undefined) throw new Error("no URL named " + name + " on this page");
  return id === undefined ? template : LS.fill(template, id);
};

LS.csrf = function () {
  const m = document.cookie.match(/(?:^|; )csrftoken=([^;]+)/);
  return m ? decodeURIComponent(m[1]) : "";
};

async function readReply(res) {
  let data = null;
  try { data = await res.json(); } catch (e) { data = { error: res.statusText }; }
  if (!res.ok) { const err = new Error(data.error || res.statusText); err.status = res.status; err.data = data; throw err; }
  return data;
}

// GET a JSON endpoint; a non-2xx reply throws an Error with .status and .data (the JSON error).
LS.getJSON = async function (url) {
  return readReply(await fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } }));
};

LS.postJSON = async function (url, body) {
  return readReply(await fetch(url, {
    method: "POST", credentials: "same-origin",
    headers: { "Content-Type": "application/json", "X-CSRFToken": LS.csrf(), "Accept": "application/json" },
    body: JSON.stringify(body || {}),
  }));
};

LS.FINISHED = new Set(["succeeded", "failed", "cancelled"]);

// Poll one job until it finishes: onUpdate(job) after every reply (a failed request is retried
// on the next tick).  Resolves with the finished job.
LS.pollJob = function (jobId, onUpdate, { every = 2000, first = every } = {}) {
  return new Promise(resolve => {
    async function tick() {
      try {
        const job = await LS.getJSON(LS.url("job_api", jobId));
        if (onUpdate) onUpdate(job);
        if (LS.FINISHED.has(job.status)) { resolve(job); return; }
      } catch (e) { /* server busy or restarting: next tick */ }
      setTimeout(tick, every);
    }
    setTimeout(tick, first);
  });
};

// Several jobs at once (ids), or every active job (no ids): the jobs list reply.
LS.getJobs = function (ids) {
  const q = ids && ids.length ? "?ids=" + ids.join(",") : "?active=1";
  return LS.getJSON(LS.url("jobs_api") + q);
};

LS.renderProgress = function (el, job) {
  const bar = el.querySelector(".bar"), label = el.querySelector(".label");
  const pct = Math.round((job.progress || 0) * 100);
  bar.style.width = pct + "%";
  bar.className = "bar status-" + job.status;
  label.textContent = job.status + " · " + pct + "%";
  el.dataset.status = job.status;
};

// Poll the jobs API for every progress bar on the page that is not finished yet.
LS.watchJobs = function () {
  async function tick() {
    const bars = [...document.querySelectorAll(".progress[data-job-id]")].filter(b => !LS.FINISHED.has(b.dataset.status));
    const badge = document.getElementById("active-jobs-badge");
    try {
      const ids = [...new Set(bars.map(b => b.dataset.jobId))];
      const data = await LS.getJobs(ids);
      for (const job of data.jobs) {
        document.querySelectorAll('.progress[data-job-id="' + job.id + '"]').forEach(el => LS.renderProgress(el, job));
        document.querySelectorAll('[data-job-row="' + job.id + '"], [data-live-job="' + job.id + '"]').forEach(row => {
          const msg = row.querySelector(".job-message"); if (msg) msg.textContent = job.message || "";
          const st = row.querySelector(".job-status"); if (st) st.textContent = job.status;
          const at = row.querySelector(".job-attempts"); if (at) at.textContent = job.attempts;
        });
        if (LS.FINISHED.has(job.status)) document.dispatchEvent(new CustomEvent("ls:job-finished", { detail: job }));
      }
      if (badge && !ids.length) {
        const active = data.jobs.length; badge.hidden = active === 0; badge.textContent = active;
      }
    } catch (e) { /* server restarting: try again next tick */ }
    setTimeout(tick, bars.length ? 1000 : 4000);
  }
  tick();
};

// The bokeh model called `name` in any document on the page (each plot is its own document).
LS.bokehModel = function (name) {
  for (const doc of (window.Bokeh && Bokeh.documents) || []) {
    const model = doc.get_model_by_name(name);
    if (model) return model;
  }
  return null;
};

// Live loss curve on a job page: refresh the Bokeh source named "loss".
LS.watchLoss = function (jobId) {
  return LS.pollJob(jobId, job => {
    const pts = (job.metrics && job.metrics.loss) || [];
    const src = LS.bokehModel("loss");
    if (src) src.data = { step: pts.map(p => p[0]), loss: pts.map(p => p[1]) };
  }, { every: 2000, first: 0 });
};

// Bokeh plots: {% bokeh_plot %} writes a div[data-bokeh-item] and the json_item in a
// json_script block.  Resolves once every plot on the page is drawn.
LS.embedPlots = function () {
  const nodes = [...document.querySelectorAll("[data-bokeh-item]")];
  if (!nodes.length || !window.Bokeh) return Promise.resolve([]);
  return Promise.all(nodes.map(node =>
    Bokeh.embed.embed_item(JSON.parse(document.getElementById(node.dataset.bokehItem).textContent), node)));
};

document.addEventListener("DOMContentLoaded", () => {
  if (document.querySelector(".topbar .mainnav")) LS.watchJobs();
  LS.plotsReady = LS.embedPlots().then(() => {
    const live = document.querySelector("[data-live-job]");
    if (live && window.Bokeh) LS.watchLoss(live.dataset.liveJob);
  });
  // Sprite atlases (grids, results, collections, reviewed rows): CSS draws the atlas; this only
  // watches it (the same URL, so no second request) to mark it ready or broken, since a CSS
  // background reports neither.
  document.querySelectorAll(".sprite-grid[data-atlas]").forEach(grid => {
    const probe = new Image();
    probe.addEventListener("load", () => { grid.dataset.atlasReady = "1"; }, { once: true });
    probe.addEventListener("error", () => grid.classList.add("atlas-broken"), { once: true });
    probe.src = grid.dataset.atlas;
  });
  // A "Copy" button copies the text of the element its data-copy selector names.
  document.querySelectorAll("button[data-copy]").forEach(button => button.addEventListener("click", () => {
    const node = document.querySelector(button.dataset.copy);
    if (node && navigator.clipboard) navigator.clipboard.writeText(node.textContent.trim()).then(() => { button.textContent = "Copied"; });
  }));
  // A form with data-confirm asks first ("Delete this collection?").
  document.querySelectorAll("form[data-confirm]").forEach(form =>
    form.addEventListener("submit", ev => { if (!confirm(form.dataset.confirm)) ev.preventDefault(); }));
  // A page with [data-reload-on-job] reloads when a job finishes: "any" job, or "row": one of
  // the jobs shown in a [data-live-job-row] on the page.
  const reload = document.querySelector("[data-reload-on-job]");
  document.addEventListener("ls:job-finished", (ev) => {
    const live = document.querySelector('[data-live-job="' + ev.detail.id + '"]');
    if (live && !live.dataset.reloaded) { live.dataset.reloaded = "1"; setTimeout(() => location.reload(), 600); return; }
    if (!reload) return;
    if (reload.dataset.reloadOnJob === "any") setTimeout(() => location.reload(), 800);
    else if (document.querySelector('[data-live-job-row="' + ev.detail.id + '"]')) setTimeout(() => location.reload(), 600);
  });
});
