// "Select all" for the disagreement review: ticks every prompt checkbox on the page.
(function () {
  const all = document.getElementById("select-all");
  if (!all) return;
  const boxes = () => document.querySelectorAll('input[type=checkbox][name=prompt]');
  all.addEventListener("change", () => boxes().forEach((box) => { box.checked = all.checked; }));
})();
