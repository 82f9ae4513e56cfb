// Catalogue pages: keyboard navigation of the galaxy grid and detail page, help overlay.
"use strict";
(function () {
  const help = document.getElementById("kbd-help");
  const grid = document.getElementById("galaxy-grid");
  const detail = document.getElementById("detail-nav");

  function typing(ev) {
    const t = ev.target;
    return t && (t.isContentEditable || ["INPUT", "SELECT", "TEXTAREA"].includes(t.tagName));
  }
  function toggleHelp(show) {
    if (!help) return;
    help.hidden = show === undefined ? !help.hidden : !show;
  }
  document.querySelectorAll("[data-help-toggle]").forEach(b => b.addEventListener("click", () => toggleHelp()));
  if (help) help.addEventListener("click", ev => { if (ev.target === help) toggleHelp(false); });

  // Sort dropdown applies at once.
  document.querySelectorAll("select[data-autosubmit]").forEach(s => s.addEventListener("change", () => s.form.submit()));

  // Only numeric keys accept < and >.
  const filterForm = document.getElementById("filter-form");
  if (filterForm) {
    const key = filterForm.querySelector("select[name=key]"), op = filterForm.querySelector("select[name=op]");
    const sync = () => {
      const opt = key.selectedOptions[0];
      const text = opt && (opt.dataset.kind === "text" || opt.value === "source_id");
      [...op.options].forEach(o => { o.disabled = text && o.value !== "="; });
      if (text) op.value = "=";
    };
    key.addEventListener("change", sync); sync();
  }

  // ---------------------------------------------------------------- grid
  let cells = grid ? [...grid.querySelectorAll(".cell")] : [];
  function columns() {
    if (cells.length < 2) return 1;
    const top = cells[0].offsetTop;
    const idx = cells.findIndex(c => c.offsetTop !== top);
    return idx === -1 ? cells.length : idx;
  }
  function focusCell(i) {
    if (!cells.length) return;
    i = Math.max(0, Math.min(cells.length - 1, i));
    cells[i].focus({ preventScroll: true });
    cells[i].scrollIntoView({ block: "nearest" });
  }
  function current() { return cells.indexOf(document.activeElement); }
  function move(delta) {
    const i = current();
    focusCell(i === -1 ? (delta > 0 ? 0 : cells.length - 1) : i + delta);
  }

  document.addEventListener("keydown", ev => {
    if (ev.ctrlKey || ev.metaKey || ev.altKey) return;
    if (ev.key === "Escape") { toggleHelp(false); if (typing(ev)) ev.target.blur(); return; }
    if (typing(ev)) return;
    if (ev.key === "?") { toggleHelp(); ev.preventDefault(); return; }
    if (grid) {
      const go = url => { if (url) window.location.href = url; };
      switch (ev.key) {
        case "j": case "ArrowRight": move(1); break;
        case "k": case "ArrowLeft": move(-1); break;
        case "ArrowDown": move(columns()); break;
        case "ArrowUp": move(-columns()); break;
        case "Enter": if (current() === -1) return; cells[current()].click(); break;
        case "n": go(grid.dataset.next); break;
        case "p": go(grid.dataset.prev); break;
        case "/": { const v = document.querySelector("#filter-form input[name=value]"); if (v) v.focus(); break; }
        default: return;
      }
      ev.preventDefault();
    } else if (detail) {
      const go = url => { if (url) window.location.href = url; };
      switch (ev.key) {
        case "ArrowLeft": go(detail.dataset.prev); break;
        case "ArrowRight": go(detail.dataset.next); break;
        case "g": go(detail.dataset.back); break;
        default: return;
      }
      ev.preventDefault();
    }
  });

  // Show when a thumbnail failed (e.g. store being replaced) instead of a broken-image icon.
  document.querySelectorAll(".cell img, .strip img").forEach(img => {
    img.addEventListener("error", () => img.classList.add("broken"), { once: true });
  });
})();
