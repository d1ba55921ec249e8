/*
 * A training job's page: the learning curve per logged step (a reward-model run: train loss and validation
 * accuracy; with data-curves="loss", an SFT run: train and validation loss) and, while the job is not
 * finished, its progress polled every two seconds.
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

  const lossOnly = script.dataset.curves === "loss";
  // [key, label, axis] of the two curves.
  const curves = lossOnly
    ? [["loss", "Train loss", "loss"], ["eval_loss", "Validation loss", "loss"]]
    : [["train_loss", "Train loss", "loss"], ["validation_accuracy", "Validation accuracy", "accuracy"]];
  const colours = ["#3056d3", "#1f7a4d"];

  const chart = new window.Chart(canvas, {
    type: "line",
    data: {
      datasets: curves.map(function (curve, i) {
        return { label: curve[1], data: series(history, curve[0]), yAxisID: curve[2],
          borderColor: colours[i], backgroundColor: colours[i], pointRadius: i ? 3 : 0, borderWidth: 2 };
      }),
    },
    options: {
      animation: false,
      parsing: false,
      interaction: { mode: "nearest", intersect: false },
      scales: {
        x: { type: "linear", title: { display: true, text: "step" } },
        loss: { position: "left", title: { display: true, text: "loss" }, beginAtZero: true },
        accuracy: { display: !lossOnly, position: "right", min: 0, max: 1,
          title: { display: true, text: "accuracy" }, grid: { drawOnChartArea: false } },
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
        curves.forEach(function (curve, i) { chart.data.datasets[i].data = series(run.history, curve[0]); });
        chart.update();
        window.setTimeout(poll, 2000);
      })
      .catch(function () { window.setTimeout(poll, 5000); });
  }
  window.setTimeout(poll, 2000);
})();
