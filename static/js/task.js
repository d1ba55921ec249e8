/*
 * Behaviour shared by both task pages: the lease countdown, the skip form, and instructions
 * that stay collapsed once the labeler has collapsed them (per queue, in localStorage).
 */
(function () {
  "use strict";

  // Lease countdown. The clock is the browser's; a few seconds of skew do not matter here.
  const lease = document.querySelector("[data-lease-expires]");
  if (lease) {
    const expires = Date.parse(lease.dataset.leaseExpires);
    const text = lease.querySelector("[data-lease-text]") || lease;
    const tick = function () {
      const left = Math.round((expires - Date.now()) / 1000);
      lease.classList.toggle("is-soon", left > 0 && left <= 5 * 60);
      lease.classList.toggle("is-expired", left <= 0);
      if (left <= 0) {
        text.textContent = "Lease expired: your label is still taken if the prompt needs it";
        return;
      }
      const hours = Math.floor(left / 3600);
      const minutes = Math.floor((left % 3600) / 60);
      const seconds = left % 60;
      if (hours > 0) text.textContent = hours + " h " + minutes + " min left";
      else if (left >= 10 * 60) text.textContent = minutes + " min left";
      else text.textContent = minutes + ":" + String(seconds).padStart(2, "0") + " left";
    };
    if (!Number.isNaN(expires)) {
      tick();
      window.setInterval(tick, 1000);
    }
  }

  // "Other" needs a note; the server checks it too.
  const skipForm = document.getElementById("skip-form");
  if (skipForm) {
    const note = skipForm.querySelector('textarea[name="note"]');
    const sync = function () {
      const chosen = skipForm.querySelector('input[name="reason"]:checked');
      note.required = Boolean(chosen && chosen.value === "other");
    };
    skipForm.addEventListener("change", sync);
    sync();
  }

  document.querySelectorAll("details[data-remember]").forEach(function (details) {
    const key = "details:" + details.dataset.remember;
    try {
      if (window.localStorage.getItem(key) === "closed") details.open = false;
    } catch (error) { /* storage disabled: keep the default */ }
    details.addEventListener("toggle", function () {
      try {
        if (details.open) window.localStorage.removeItem(key);
        else window.localStorage.setItem(key, "closed");
      } catch (error) { /* storage disabled */ }
    });
  });
})();
