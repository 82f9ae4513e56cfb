"use strict";
// "More like these": tick results, submit their ids (the page reloads with ?ids=).
(function () {
  const form = document.getElementById("results-form");
  if (!form) return;
  const button = document.getElementById("more-like-selected");
  const picked = () => [...form.querySelectorAll("input[name=pick]:checked")].map(i => i.value);
  form.addEventListener("change", () => { button.disabled = picked().length === 0; });
  form.addEventListener("submit", ev => {
    document.getElementById("picked-ids").value = picked().join(",");
    form.querySelectorAll("input[name=pick]").forEach(i => { i.disabled = true; });
  });
})();
