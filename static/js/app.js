// Latent Sky shared front-end helpers: CSRF-aware fetch and live job progress.
"use strict";
window.LS = window.LS || {};

LS.csrf = function () {
  const m = document.cookie.match(/(?:^|; )csrftoken=([^;]+)/);
  return m ? decodeURIComponent(m[1]) : "";
};

LS.postJSON = async function (url, body) {
  const res = await fetch(url, {
    method: "POST", credentials: "same-origin",
    headers: { "Content-Type": "application/json", "X-CSRFToken": LS.csrf(), "Accept": "application/json" },
    body: JSON.stringify(body || {}),
  });
  let data = null;
  try { data = await res.json(); } catch (e) { data = { error: res.statusText }; }
  if (!res.ok) { const err = new Error(data.error || res.statusText); err.status = res.status; err.data = data; throw err; }
  return data;
};

LS.renderProgress = function (el, job) {
  const bar = el.querySelector(".bar"), label = el.querySelector(".label");
  const pct = Math.round((job.progress || 0) * 100);
  bar.style.width = pct + "%";
  bar.className = "bar status-" + job.status;
  label.textContent = job.status + " · " + pct + "%";
  el.dataset.status = job.status;
};

// Poll /api/jobs/ for every progress bar on the page that is not finished yet.
LS.watchJobs = function () {
  const finished = new Set(["succeeded", "failed", "cancelled"]);
  async function tick() {
    const bars = [...document.querySelectorAll(".progress[data-job-id]")].filter(b => !finished.has(b.dataset.status));
    const badge = document.getElementById("active-jobs-badge");
    try {
      const ids = [...new Set(bars.map(b => b.dataset.jobId))];
      const url = ids.length ? "/api/jobs/?ids=" + ids.join(",") : "/api/jobs/?active=1";
      const res = await fetch(url, { credentials: "same-origin" });
      if (res.ok) {
        const data = await res.json();
        for (const job of data.jobs) {
          document.querySelectorAll('.progress[data-job-id="' + job.id + '"]').forEach(el => LS.renderProgress(el, job));
          document.querySelectorAll('[data-job-row="' + job.id + '"], [data-live-job="' + job.id + '"]').forEach(row => {
            const msg = row.querySelector(".job-message"); if (msg) msg.textContent = job.message || "";
            const st = row.querySelector(".job-status"); if (st) st.textContent = job.status;
            const at = row.querySelector(".job-attempts"); if (at) at.textContent = job.attempts;
          });
          if (finished.has(job.status)) document.dispatchEvent(new CustomEvent("ls:job-finished", { detail: job }));
        }
        if (badge && !ids.length) {
          const active = data.jobs.length; badge.hidden = active === 0; badge.textContent = active;
        }
      }
    } catch (e) { /* server restarting: try again next tick */ }
    setTimeout(tick, bars.length ? 1000 : 4000);
  }
  tick();
};

// Live loss curve on a job page: refresh the Bokeh source named "loss".
LS.watchLoss = function (jobId) {
  async function tick() {
    try {
      const res = await fetch("/api/jobs/" + jobId + "/", { credentials: "same-origin" });
      const job = await res.json();
      const pts = (job.metrics && job.metrics.loss) || [];
      const doc = window.Bokeh && Bokeh.documents && Bokeh.documents[0];
      const src = doc && doc.get_model_by_name("loss");
      if (src) src.data = { step: pts.map(p => p[0]), loss: pts.map(p => p[1]) };
      if (["succeeded", "failed", "cancelled"].includes(job.status)) return;
    } catch (e) { /* retry */ }
    setTimeout(tick, 2000);
  }
  tick();
};

document.addEventListener("DOMContentLoaded", () => {
  if (document.querySelector(".topbar .mainnav")) LS.watchJobs();
  const live = document.querySelector("[data-live-job]");
  if (live && window.Bokeh) LS.watchLoss(live.dataset.liveJob);
  document.addEventListener("ls:job-finished", (ev) => {
    const live = document.querySelector('[data-live-job="' + ev.detail.id + '"]');
    if (live && !live.dataset.reloaded) { live.dataset.reloaded = "1"; setTimeout(() => location.reload(), 600); }
  });
});
