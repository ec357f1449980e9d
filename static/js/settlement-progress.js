// Keeps the organizers' settlement counts current while settlement runs. Without
// JavaScript the page still works: it has a Refresh link.
document.addEventListener("DOMContentLoaded", function () {
  var table = document.getElementById("settlement-counts");
  if (!table || !window.fetch) { return; }
  async function update() {
    try {
      var response = await fetch(table.dataset.source, { headers: { Accept: "application/json" } });
      if (!response.ok) { return; }
      var data = await response.json();
      table.querySelectorAll("[data-status]").forEach(function (cell) {
        cell.textContent = String(data.counts[cell.dataset.status] || 0);
      });
      if (["funded", "settling", "unfunded"].indexOf(data.status) === -1) { return; }
    } catch (error) { /* try again on the next tick */ }
    window.setTimeout(update, 5000);
  }
  window.setTimeout(update, 5000);
});
