/*
 * The agreement page's labeler-by-labeler heat map (chartjs-chart-matrix), from the "heat-map-data"
 * JSON: {labels: [...], cells: [{x, y, rate, n, color}]}; the cell colours come from the server,
 * like the fallback table's. Each cell also shows its rate, so the chart reads without hovering.
 */
(function () {
  "use strict";

  const data = JSON.parse(document.getElementById("heat-map-data").textContent);
  const canvas = document.getElementById("heat-map-chart");
  const size = data.labels.length;
  canvas.parentNode.style.height = 80 + 40 * size + "px";

  function rateText(cell) {
    return cell.rate === null ? "—" : cell.rate.toFixed(2);
  }

  const cellText = {
    id: "cellText",
    afterDatasetsDraw: function (chart) {
      const ctx = chart.ctx;
      ctx.save();
      ctx.fillStyle = "#1d2330";
      ctx.textAlign = "center";
      ctx.textBaseline = "middle";
      chart.getDatasetMeta(0).data.forEach(function (element, i) {
        const center = element.getCenterPoint();
        ctx.fillText(rateText(data.cells[i]), center.x, center.y);
      });
      ctx.restore();
    },
  };

  new window.Chart(canvas, {
    type: "matrix",
    data: {
      datasets: [{
        label: "Pairwise agreement",
        data: data.cells,
        backgroundColor: function (context) { return context.raw ? context.raw.color : "transparent"; },
        borderColor: "#ffffff",
        borderWidth: 1,
        width: function (context) { const area = context.chart.chartArea; return area ? area.width / size - 2 : 0; },
        height: function (context) { const area = context.chart.chartArea; return area ? area.height / size - 2 : 0; },
      }],
    },
    options: {
      animation: false,
      maintainAspectRatio: false,
      plugins: {
        legend: { display: false },
        tooltip: {
          callbacks: {
            title: function () { return ""; },
            label: function (context) {
              const cell = context.raw;
              return cell.y + " and " + cell.x + ": " + rateText(cell) + " (" + cell.n + " pairs)";
            },
          },
        },
      },
      scales: {
        x: { type: "category", labels: data.labels, offset: true, position: "top", grid: { display: false } },
        // The plugin reverses y by default; the first labeler goes on top, as in the table.
        y: { type: "category", labels: data.labels, offset: true, reverse: false, grid: { display: false } },
      },
    },
    plugins: [cellText],
  });
})();
