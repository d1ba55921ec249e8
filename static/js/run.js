/*
 * A training job's page: the learning curve per logged step (data-curves names the kind of job: a reward-model
 * run's train loss and validation accuracy, an SFT run's train and validation loss, an RL run's mean reward,
 * KL and loss, a DPO run's loss and reward margin) and, while the job is not finished, its progress polled
 * every two seconds.
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

  // The curves of each kind of job: [history key, label, axis].
  const presets = {
    "reward-model": [["train_loss", "Train loss", "loss"], ["validation_accuracy", "Validation accuracy", "accuracy"]],
    sft: [["loss", "Train loss", "loss"], ["eval_loss", "Validation loss", "loss"]],
    rl: [["reward", "Mean reward", "loss"], ["kl", "KL to the reference", "loss"], ["loss", "Loss", "loss"]],
    dpo: [["loss", "Loss", "loss"], ["reward_margin", "Reward margin", "loss"],
      ["reward_accuracy", "Reward accuracy", "accuracy"]],
  };
  const curves = presets[script.dataset.curves || "reward-model"] || presets["reward-model"];
  const usesAccuracy = curves.some(function (curve) { return curve[2] === "accuracy"; });
  const colours = ["#3056d3", "#1f7a4d", "#b35900"];

  const chart = new window.Chart(canvas, {
    type: "line",
    data: {
      datasets: curves.map(function (curve, i) {
        return { label: curve[1], data: series(history, curve[0]), yAxisID: curve[2],
          borderColor: colours[i], backgroundColor: colours[i], pointRadius: i === 0 ? 0 : 3,
          borderWidth: 2 };
      }),
    },
    options: {
      animation: false,
      parsing: false,
      interaction: { mode: "nearest", intersect: false },
      scales: {
        x: { type: "linear", title: { display: true, text: "step" } },
        loss: { position: "left", beginAtZero: script.dataset.curves !== "rl",
          title: { display: true, text: script.dataset.curves === "rl" ? "reward, KL, loss" : "loss" } },
        accuracy: { display: usesAccuracy, position: "right", min: 0, max: 1,
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
