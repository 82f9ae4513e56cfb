"use strict";
// Show only the fields of the chosen task kind.
(function () {
  const kind = document.querySelector("#id_kind");
  function sync() { document.querySelectorAll("[data-kind]").forEach(el => { el.hidden = el.dataset.kind !== kind.value; }); }
  if (kind) { kind.addEventListener("change", sync); sync(); }
})();
