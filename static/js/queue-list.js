/*
 * The queue list: a small bar chart of the labels submitted per day for each queue, from the
 * "labels-per-day" JSON the page embeds ({days: [...], queues: {id: [count per day]}}).
 */
(function () {
  "use strict";

  const data = JSON.parse(document.getElementById("labels-per-day").textContent);

  document.querySelectorAll("canvas[data-queue]").forEach(function (canvas) {
    new window.Chart(canvas, {
      type: "bar",
      data: {
        labels: data.days,
        datasets: [{ label: "Labels", data: data.queues[canvas.dataset.queue] || [], backgroundColor: "#3056d3" }],
      },
      options: {
        animation: false,
        maintainAspectRatio: false,
        plugins: { legend: { display: false } },
        scales: {
          x: { ticks: { maxTicksLimit: 4, maxRotation: 0 }, grid: { display: false } },
          y: { beginAtZero: true, ticks: { precision: 0, maxTicksLimit: 4 } },
        },
      },
    });
  });
})();
