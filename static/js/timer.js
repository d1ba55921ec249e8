/*
 * Time spent on a task page: milliseconds while the page is visible (Page Visibility API).
 *
 * A labeler who switches to another tab, or whose laptop sleeps, is not counted. The count starts
 * from the script tag's data-initial (a rejected submit carries the time so far) and is written into
 * every `time_spent_ms` input of a form when that form is submitted; a reload of the same task goes
 * on from the time banked in this tab's session storage. The server caps it by the lease
 * age, so this is a measurement, not a trust boundary.
 */
(function () {
  "use strict";

  const script = document.currentScript;
  // Time banked before a reload of the same task survives in this tab's session storage.
  const storageKey = script && script.dataset.assignment ? "time-spent:" + script.dataset.assignment : null;
  let banked = Math.max(0, parseInt(script && script.dataset.initial, 10) || 0, readStored());

  function readStored() {
    try {
      return storageKey ? parseInt(window.sessionStorage.getItem(storageKey), 10) || 0 : 0;
    } catch (error) {
      return 0;  // storage disabled: count this page view only
    }
  }

  function store() {
    try {
      if (storageKey) window.sessionStorage.setItem(storageKey, String(elapsed()));
    } catch (error) { /* storage disabled or full */ }
  }
  let visibleSince = document.visibilityState === "visible" ? performance.now() : null;

  function elapsed() {
    const running = visibleSince === null ? 0 : performance.now() - visibleSince;
    return Math.round(banked + running);
  }

  function pause() {
    if (visibleSince !== null) {
      banked += performance.now() - visibleSince;
      visibleSince = null;
    }
  }

  function resume() {
    if (visibleSince === null) visibleSince = performance.now();
  }

  document.addEventListener("visibilitychange", function () {
    if (document.visibilityState === "visible") resume();
    else pause();
  });
  // bfcache: a page restored with the back button is visible again without a visibilitychange.
  window.addEventListener("pageshow", function () {
    if (document.visibilityState === "visible") resume();
  });
  window.addEventListener("pagehide", function () { pause(); store(); });

  function fill(form) {
    store();
    const value = String(elapsed());
    form.querySelectorAll('input[name="time_spent_ms"]').forEach(function (input) {
      input.value = value;
    });
  }

  // Capture phase: runs before any page handler, so the value is there even if a handler
  // only inspects the form; a handler that cancels the submit leaves a harmless fresh value.
  document.addEventListener("submit", function (event) { fill(event.target); }, true);

  window.taskTimer = { elapsed: elapsed, fill: fill };
})();
