/*
 * The demonstration page: live character count, live Markdown preview (rendered and sanitised
 * by the server, so the preview is exactly what reviewers will see), a local draft that survives
 * a reload (unsent-work.js), Ctrl+Enter to submit, and refusing empty or oversized text before it
 * is sent.
 */
(function () {
  "use strict";

  const form = document.getElementById("demo-form");
  const textarea = document.getElementById("demo-text");
  const preview = document.getElementById("demo-preview");
  const count = document.getElementById("demo-count");
  const message = document.getElementById("demo-message");
  const submitButton = document.getElementById("demo-submit");
  const csrfToken = form.querySelector('input[name="csrfmiddlewaretoken"]').value;
  const max = parseInt(textarea.dataset.max, 10) || Infinity;
  const work = window.unsentWork.open("demonstration-draft", textarea.dataset.assignment);
  const numberFormat = new Intl.NumberFormat("en-US");
  const PREVIEW_DELAY_MS = 250;

  let previewTimer = null;
  let sender = null; // sendOnce's, once the form is wired
  let previewRequest = 0; // only the newest response may write the preview

  function problem() {
    if (!textarea.value.trim()) return "Write your answer before submitting.";
    if (textarea.value.length > max) {
      return "Your answer is " + numberFormat.format(textarea.value.length - max) + " characters over the limit.";
    }
    return "";
  }

  function updateCount() {
    const length = textarea.value.length;
    count.textContent = numberFormat.format(length) + " / " + numberFormat.format(max) + " characters";
    count.classList.toggle("is-near", length > max * 0.9 && length <= max);
    count.classList.toggle("is-over", length > max);
    submitButton.disabled = (sender !== null && sender.sending()) || Boolean(problem());
    if (message.dataset.kind === "problem" && !problem()) showMessage("");
  }

  function showMessage(text, kind) {
    message.textContent = text;
    message.dataset.kind = kind || "";
  }

  function showPlaceholder() {
    preview.replaceChildren();
    const p = document.createElement("p");
    p.className = "muted preview-placeholder";
    p.textContent = preview.dataset.placeholder;
    preview.append(p);
  }

  async function renderPreview() {
    const text = textarea.value;
    const request = ++previewRequest;
    if (!text.trim()) {
      showPlaceholder();
      return;
    }
    preview.setAttribute("aria-busy", "true");
    try {
      const body = new FormData();
      body.append("text", text);
      const response = await fetch(preview.dataset.url, {
        method: "POST",
        body: body,
        headers: { "X-CSRFToken": csrfToken },
        credentials: "same-origin",
      });
      if (!response.ok) throw new Error("HTTP " + response.status);
      const html = await response.text();
      // The fragment comes from our own server, which escapes raw HTML and sanitises with nh3.
      if (request === previewRequest) preview.innerHTML = html;
    } catch (error) {
      if (request === previewRequest) {
        preview.replaceChildren();
        const p = document.createElement("p");
        p.className = "muted preview-placeholder";
        p.textContent = "The preview is unavailable right now; your text is not affected.";
        preview.append(p);
      }
    } finally {
      if (request === previewRequest) preview.removeAttribute("aria-busy");
    }
  }

  function schedulePreview() {
    window.clearTimeout(previewTimer);
    previewTimer = window.setTimeout(renderPreview, PREVIEW_DELAY_MS);
  }

  function saveDraft() {
    if (textarea.value.trim()) work.save(textarea.value);
    else work.remove();
  }

  function restoreDraft() {
    if (textarea.dataset.hadInitial || textarea.value) return;
    const draft = work.load();
    if (typeof draft === "string" && draft) {
      textarea.value = draft;
      showMessage("Restored the draft you had not submitted yet.", "info");
    }
  }

  textarea.addEventListener("input", function () {
    updateCount();
    schedulePreview();
    saveDraft();
  });

  sender = window.unsentWork.sendOnce(form, work, {
    problem: problem,
    refuse: function (why) {
      showMessage(why, "problem");
      textarea.focus();
    },
    showMessage: showMessage,
    button: submitButton,
  });

  document.addEventListener("keydown", function (event) {
    if (event.key === "Enter" && (event.ctrlKey || event.metaKey) && !event.isComposing) {
      // From the skip note, Ctrl+Enter belongs to the skip form (and is left to the browser).
      if (event.target.closest && event.target.closest("#skip-form")) return;
      event.preventDefault();
      form.requestSubmit();
    }
  });

  // A page restored from the back/forward cache must be usable again.
  window.addEventListener("pageshow", function (event) {
    if (event.persisted) {
      sender.reset();
      updateCount();
    }
  });

  // Keep the preview as tall as the textarea when the labeler resizes it.
  if (window.ResizeObserver) {
    new ResizeObserver(function () {
      preview.style.height = textarea.offsetHeight + "px";
    }).observe(textarea);
  }

  // A border shows the submit bar is floating over the editor (long instructions or prompt).
  const actions = form.querySelector(".demo-actions");
  const sentinel = document.createElement("div");
  actions.after(sentinel);
  if (window.IntersectionObserver) {
    new IntersectionObserver(function (entries) {
      actions.classList.toggle("is-stuck", !entries[0].isIntersecting);
    }, { rootMargin: "0px 0px 16px 0px" }).observe(sentinel);
  }

  restoreDraft();
  updateCount();
  if (textarea.value.trim()) renderPreview();
  else showPlaceholder();
})();
