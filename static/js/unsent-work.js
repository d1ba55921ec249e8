/*
 * Unsent work: what a labeler has done on a task page and the server has not stored yet (a ranking
 * with its ratings and flags, a demonstration draft). One store for every task page, in the
 * browser's localStorage, so a reload, a failed submit (503), an expired session or a closed tab
 * loses nothing.
 *
 * A page keeps its work under its kind and assignment id. Submitting marks the work as sent but keeps
 * it: if the server could not store it, the labeler goes back and finds it. When a page of the same
 * kind opens for another assignment, work that was sent is dropped. Skipping drops the work at once.
 * sendOnce() wires the task form to this: one POST however often the labeler clicks or presses keys.
 * With storage disabled or full every call does nothing: this is a convenience copy, never the record.
 */
(function (root) {
  "use strict";

  const SENT = ":sent";

  function withStorage(action, fallback) {
    try {
      return action(root.localStorage);
    } catch (error) {
      return fallback;
    }
  }

  function open(kind, assignmentId) {
    const prefix = kind + ":";
    const key = prefix + assignmentId;
    withStorage(function (storage) {
      Object.keys(storage).forEach(function (name) {
        if (!name.startsWith(prefix) || !name.endsWith(SENT)) return;
        const sent = name.slice(0, -SENT.length);
        if (sent !== key) storage.removeItem(sent); // this page's own is kept for a resubmit
        storage.removeItem(name);
      });
    });
    return {
      load: function () {
        return withStorage(function (storage) {
          const raw = storage.getItem(key);
          if (raw === null) return null;
          try { return JSON.parse(raw); } catch (error) { return raw; } // a draft kept as plain text
        }, null);
      },
      save: function (value) { withStorage(function (storage) { storage.setItem(key, JSON.stringify(value)); }); },
      remove: function () {
        withStorage(function (storage) { storage.removeItem(key); storage.removeItem(key + SENT); });
      },
      markSent: function () { withStorage(function (storage) { storage.setItem(key + SENT, "1"); }); },
    };
  }

  // The task form sends its work once: a second click or Ctrl+Enter while it is on its way sends nothing,
  // and nothing is sent while `problem()` names one (it is shown with `refuse`). `beforeSend()` fills the
  // form's hidden fields. Returns `sending()` (is a POST on its way) and `reset()` (a page restored from
  // the back/forward cache may send again).
  function sendOnce(form, work, options) {
    let sending = false;
    form.addEventListener("submit", function (event) {
      const problem = options.problem();
      if (sending || problem) {
        event.preventDefault();
        if (problem) options.refuse(problem);
        return;
      }
      if (options.beforeSend) options.beforeSend();
      sending = true;
      options.showMessage("Submitting…", "info");
      work.markSent();
      // Disabled after the browser has collected the form data, so a double click sends one POST.
      root.setTimeout(function () { options.button.disabled = true; }, 0);
    });
    const skipForm = document.getElementById("skip-form");
    if (skipForm) skipForm.addEventListener("submit", function () { work.remove(); }); // of no further use
    return {
      sending: function () { return sending; },
      reset: function () { sending = false; },
    };
  }

  root.unsentWork = { open: open, sendOnce: sendOnce };
})(window);
