/*
 * A training run's page: the learning curve (train loss and validation accuracy per logged step)
 * and, while the run is not finished, its progress polled every two seconds.
 */
(function () {
  "use strict";

  const script = document.currentScript;
  const canvas = document.getElementById("learning-curve");
  const history = JSON.parse(document.getElementById("run-history").textContent || "[]");

  function series(rows, key) {
    return rows.filter(function (row) { return row[key] !== undefined && row[key] !== null; })
      .map(function (row) { return { x: row.step, y: row[key] }; });
  }

  const chart = new window.Chart(canvas, {
    type: "line",
    data: {
      datasets: [
        { label: "Train loss", data: series(history, "train_loss"), yAxisID: "loss",
          borderColor: "#3056d3", backgroundColor: "#3056d3", pointRadius: 0, borderWidth: 2 },
        { label: "Validation accuracy", data: series(history, "validation_accuracy"), yAxisID: "accuracy",
          borderColor: "#1f7a4d", backgroundColor: "#1f7a4d", pointRadius: 3, borderWidth: 2 },
      ],
    },
    options: {
      animation: false,
      parsing: false,
      interaction: { mode: "nearest", intersect: false },
      scales: {
        x: { type: "linear", title: { display: true, text: "step" } },
        loss: { position: "left", title: { display: true, text: "loss" }, beginAtZero: true },
        accuracy: { position: "right", min: 0, max: 1, title: { display: true, text: "accuracy" },
          grid: { drawOnChartArea: false } },
      },
    },
  });

  if (script.dataset.finished === "1") return;

  const bar = document.getElementById("run-progress-bar");
  const text = document.getElementById("run-progress-text");
  const status = document.getElementById("run-status");

  function poll() {
    fetch(script.dataset.progressUrl, { headers: { Accept: "application/json" } })
      .then(function (response) { return response.json(); })
      .then(function (run) {
        if (run.finished) { window.location.reload(); return; }
        status.textContent = run.status;
        bar.value = Math.round(run.progress_percent);
        text.textContent = "Step " + run.step + " of " + run.total_steps + " · " + Math.round(run.progress_percent) + "%" +
          (run.eta_seconds ? " · about " + run.eta_seconds + " s left" : "");
        chart.data.datasets[0].data = series(run.history, "train_loss");
        chart.data.datasets[1].data = series(run.history, "validation_accuracy");
        chart.update();
        window.setTimeout(poll, 2000);
      })
      .catch(function () { window.setTimeout(poll, 5000); });
  }
  window.setTimeout(poll, 2000);
})();
