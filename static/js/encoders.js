/* Encoder pages: keyboard shortcuts, training-time estimate, live progress of running jobs. */
(function () {
  "use strict";
  // Measured on the 2-core development machine (benchmarks/results/throughput.json): image views
  // per second while training, per preset and input size. GPU workers are far faster.
  const CPU_VIEWS_PER_S = { small: { 32: 500, 48: 450, 64: 350, 96: 160 }, large: { 32: 40, 48: 25, 64: 15, 96: 7 } };

  function typing(ev) {
    const t = ev.target;
    return t && (t.isContentEditable || ["INPUT", "TEXTAREA", "SELECT"].includes(t.tagName));
  }

  function shortcuts() {
    document.addEventListener("keydown", (ev) => {
      if (ev.ctrlKey && ev.key === "Enter") {
        const form = document.getElementById("train-form") || document.getElementById("upload-form");
        if (form) { ev.preventDefault(); form.requestSubmit(); }
        return;
      }
      if (typing(ev) || ev.ctrlKey || ev.metaKey || ev.altKey) return;
      const target = { t: "train-encoder", u: "upload-encoder" }[ev.key];
      const link = target && document.getElementById(target);
      if (link) { ev.preventDefault(); link.click(); }
    });
  }

  function nearestSize(table, size) {
    const keys = Object.keys(table).map(Number).sort((a, b) => Math.abs(a - size) - Math.abs(b - size));
    return table[keys[0]];
  }

  function estimate() {
    const form = document.getElementById("train-form");
    const box = document.getElementById("train-estimate");
    const sizesNode = document.getElementById("survey-sizes");
    if (!form || !box || !sizesNode) return;
    const sizes = JSON.parse(sizesNode.textContent);
    function update() {
      const chosen = [...form.querySelectorAll('input[name="surveys"]:checked')].map((i) => i.value);
      const n = chosen.reduce((acc, slug) => acc + (sizes[slug] || 0), 0);
      const epochs = Number(form.elements.epochs.value) || 0;
      const preset = form.elements.preset.value;
      const px = Number(form.elements.image_size.value) || 32;
      if (!n || !epochs) { box.hidden = true; return; }
      const rate = nearestSize(CPU_VIEWS_PER_S[preset] || CPU_VIEWS_PER_S.small, px);
      const seconds = (2 * n * epochs) / rate;   // two augmented views per galaxy and epoch
      const human = seconds < 120 ? Math.round(seconds) + " s" : seconds < 7200 ? Math.round(seconds / 60) + " min" : (seconds / 3600).toFixed(1) + " h";
      box.hidden = false;
      box.textContent = `${n.toLocaleString()} galaxies × ${epochs} epochs: about ${human} on a 2-core CPU worker; a GPU worker is many times faster.`;
    }
    form.addEventListener("input", update);
    form.addEventListener("change", update);
    update();
  }

  function liveJobs() {
    const rows = [...document.querySelectorAll("[data-live-job-row]")];
    if (!rows.length) return;
    const ids = rows.map((r) => r.dataset.liveJobRow);
    async function tick() {
      try {
        const jobs = (await LS.getJobs(ids)).jobs || [];
        let running = 0;
        for (const job of jobs) {
          const row = document.querySelector(`[data-live-job-row="${job.id}"]`);
          if (!row) continue;
          const bar = row.querySelector(".bar");
          bar.style.width = (job.progress * 100).toFixed(1) + "%";
          bar.className = "bar status-" + job.status;
          row.querySelector(".muted").textContent = job.message || job.status;
          if (!LS.FINISHED.has(job.status)) running += 1;
        }
        if (!running) { setTimeout(() => location.reload(), 800); return; }
      } catch (e) { /* network hiccup: try again */ }
      setTimeout(tick, 2000);
    }
    setTimeout(tick, 2000);
  }

  // Job page of a training job: keep "Epochs done" current (the loss curve is app.js's).
  function liveEpochs() {
    const node = document.getElementById("job-epochs");
    if (!node) return;
    LS.pollJob(node.dataset.job, job => {
      const done = ((job.metrics && job.metrics.epoch_loss) || []).length;
      node.textContent = done + " / " + (node.dataset.epochs || "?");
    }, { every: 2000 });
  }

  document.addEventListener("DOMContentLoaded", () => { shortcuts(); estimate(); liveJobs(); liveEpochs(); });
})();
