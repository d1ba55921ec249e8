/*
 * The ranking page: order the answers best first, by drag-and-drop or entirely by keyboard.
 *
 * The ranking itself is ranking-model.js's (createRanking): every change goes through it and
 * `render()` then brings the chips, cards, counters and the hidden `groups` input in line with it.
 * Unsent work (the ranking, ratings and flags) is kept by unsent-work.js.
 */
(function () {
  "use strict";

  const form = document.getElementById("rank-form");
  const unplacedList = document.getElementById("unplaced");
  const rankedList = document.getElementById("ranked");
  const groupsInput = form.querySelector('input[name="groups"]');
  const submitButton = document.getElementById("rank-submit");
  const message = document.getElementById("rank-message");
  const announcer = document.getElementById("rank-announcer");
  const help = document.getElementById("kbd-help");
  const work = window.unsentWork.open("ranking", form.dataset.assignment);
  const reducedMotion = window.matchMedia("(prefers-reduced-motion: reduce)").matches;

  const answers = new Map(); // id -> {id, number, card, chip}
  const byNumber = new Map(); // display number -> id
  document.querySelectorAll(".answer-card").forEach(function (card) {
    const id = Number(card.dataset.answerId);
    const number = Number(card.dataset.number);
    const chip = unplacedList.querySelector('.chip[data-answer-id="' + id + '"]');
    answers.set(id, { id: id, number: number, card: card, chip: chip });
    byNumber.set(number, id);
  });
  const total = answers.size;
  const model = window.createRanking(
    Array.from(answers.values()).sort(function (a, b) { return a.number - b.number; }).map(function (a) { return a.id; })
  );

  let ranksCache = new Map(); // id -> rank, refreshed by render()
  let selected = null;
  let sender = null; // sendOnce's, once the form is wired

  // ---- rendering -------------------------------------------------------------------------

  function ratingOf(id) {
    const checked = answers.get(id).card.querySelector('input[type="radio"]:checked');
    return checked ? Number(checked.value) : null;
  }

  function flagCount(id) {
    return answers.get(id).card.querySelectorAll('.flags input[type="checkbox"]:checked').length;
  }

  // `nextId`: the answer ranked just below (undefined for the last and for answers to place).
  function renderChip(answer, rank, index, nextId) {
    const chip = answer.chip;
    const inRanking = rank !== null;
    const tied = inRanking && model.isTied(answer.id);
    chip.classList.toggle("is-ranked", inRanking);
    chip.classList.toggle("is-tied", tied);
    chip.classList.toggle("has-tie-below", nextId !== undefined && model.isTied(nextId));
    chip.classList.toggle("is-selected", selected === answer.id);
    chip.querySelector(".chip-rank").textContent = inRanking ? String(rank) : "";
    const tie = chip.querySelector(".chip-tie");
    tie.setAttribute("aria-pressed", tied ? "true" : "false");
    tie.disabled = !inRanking || index === 0;
    tie.hidden = !inRanking;

    let label = "Answer " + answer.number;
    if (inRanking) label += ", rank " + rank + (tied ? ", tied with the answer above" : "");
    chip.setAttribute("aria-label", label);

    const badges = chip.querySelector(".chip-badges");
    badges.replaceChildren();
    const rating = ratingOf(answer.id);
    if (rating !== null) {
      const badge = document.createElement("span");
      badge.className = "chip-badge chip-badge--rating";
      badge.title = "Quality " + rating + " of 7";
      badge.textContent = rating + "/7";
      badges.append(badge);
    }
    const flagged = flagCount(answer.id);
    if (flagged) {
      const badge = document.createElement("span");
      badge.className = "chip-badge chip-badge--flag";
      badge.title = flagged + (flagged === 1 ? " flag" : " flags");
      badge.textContent = "⚑" + flagged;
      badges.append(badge);
    }
  }

  function renderCard(answer, rank) {
    const card = answer.card;
    const status = card.querySelector("[data-status]");
    card.classList.toggle("is-selected", selected === answer.id);
    card.classList.toggle("is-ranked", rank !== null);
    if (rank === null) {
      status.textContent = "Not placed";
    } else {
      const tiedWith = model.placed().filter(function (other) {
        return other !== answer.id && ranksCache.get(other) === rank;
      }).map(function (other) { return answers.get(other).number; });
      status.textContent = "Rank " + rank + (tiedWith.length ? " · tied with " + tiedWith.join(", ") : "");
    }
  }

  function render() {
    ranksCache = model.ranks();
    const unplaced = model.unplaced();
    const placed = model.placed();
    unplaced.forEach(function (id) {
      const answer = answers.get(id);
      unplacedList.append(answer.chip);
      renderChip(answer, null, -1, undefined);
      renderCard(answer, null);
    });
    placed.forEach(function (id, index) {
      const answer = answers.get(id);
      rankedList.append(answer.chip);
      renderChip(answer, ranksCache.get(id), index, placed[index + 1]);
      renderCard(answer, ranksCache.get(id));
    });
    unplacedList.classList.toggle("is-empty", unplaced.length === 0);
    rankedList.classList.toggle("is-empty", placed.length === 0);
    document.querySelector("[data-unplaced-count]").textContent = String(unplaced.length);
    document.querySelector("[data-ranked-count]").textContent = placed.length + " / " + total;

    groupsInput.value = JSON.stringify(model.groups());
    const complete = unplaced.length === 0;
    const sending = sender !== null && sender.sending();
    submitButton.disabled = sending || !complete;
    if (!sending) {
      if (complete) {
        showMessage("All " + total + " answers are placed. Ready to submit.", "ready");
      } else if (message.dataset.kind !== "problem" || placed.length === 0) {
        showMessage(
          unplaced.length === 1 ? "Place 1 more answer to submit." : "Place " + unplaced.length + " more answers to submit.",
          "pending"
        );
      } else {
        showMessage("Place every answer before submitting: " + unplaced.length + " not placed yet.", "problem");
      }
    }
    save();
  }

  function showMessage(text, kind) {
    message.textContent = text;
    message.dataset.kind = kind;
  }

  function announce(text) {
    // Re-setting the same text is not announced; clear first.
    announcer.textContent = "";
    window.setTimeout(function () { announcer.textContent = text; }, 20);
  }

  // The ranking, ratings and flags: everything a reload or a failed submit (503) must not lose.
  function save() {
    const ratings = {};
    const flags = {};
    answers.forEach(function (answer) {
      const rating = ratingOf(answer.id);
      if (rating !== null) ratings[answer.id] = rating;
      const boxes = answer.card.querySelectorAll('.flags input[type="checkbox"]:checked');
      if (boxes.length) flags[answer.id] = Array.from(boxes, function (box) { return box.value; });
    });
    work.save({ groups: model.groups(), ratings: ratings, flags: flags });
  }

  function restoreMarks(saved) {
    answers.forEach(function (answer) {
      const rating = saved.ratings && saved.ratings[answer.id];
      const flags = (saved.flags && saved.flags[answer.id]) || [];
      answer.card.querySelectorAll('.rating input[type="radio"]').forEach(function (radio) {
        if (rating) radio.checked = Number(radio.value) === rating;
      });
      answer.card.querySelectorAll('.flags input[type="checkbox"]').forEach(function (box) {
        if (flags.includes(box.value)) box.checked = true;
      });
    });
  }

  // ---- selection -------------------------------------------------------------------------

  function scrollCardIntoView(card) {
    const rect = card.getBoundingClientRect();
    const top = parseFloat(getComputedStyle(card).scrollMarginTop) || 0;
    if (rect.top >= top && rect.bottom <= window.innerHeight) return;
    card.scrollIntoView({ block: "start", behavior: reducedMotion ? "auto" : "smooth" });
  }

  // Scroll only the side panel (it scrolls on its own when short screens cut it), never the page.
  function revealInPanel(element) {
    const panel = element.closest(".rank-panel");
    if (!panel || panel.scrollHeight <= panel.clientHeight) return;
    const rect = element.getBoundingClientRect();
    const panelRect = panel.getBoundingClientRect();
    if (rect.top < panelRect.top) panel.scrollTop -= panelRect.top - rect.top + 8;
    else if (rect.bottom > panelRect.bottom) panel.scrollTop += rect.bottom - panelRect.bottom + 8;
  }

  function select(id, options) {
    selected = id;
    render();
    if (id === null) return;
    const answer = answers.get(id);
    if (!options || options.scroll !== false) scrollCardIntoView(answer.card);
    revealInPanel(answer.chip);
  }

  function moveSelection(step) {
    const order = model.order();
    let index = order.indexOf(selected);
    if (index < 0) index = step > 0 ? -1 : order.length;
    const next = order[Math.max(0, Math.min(order.length - 1, index + step))];
    select(next);
    announce(describe(next));
  }

  function describe(id) {
    const answer = answers.get(id);
    if (!model.isPlaced(id)) return "Answer " + answer.number + ", not placed.";
    const rank = model.ranks().get(id);
    return "Answer " + answer.number + ", rank " + rank + (model.isTied(id) ? ", tied with the answer above." : ".");
  }

  function needSelection() {
    if (selected !== null) return true;
    showMessage("Select an answer first: press its number (1–" + total + ").", "hint");
    return false;
  }

  // ---- actions (keyboard, buttons and drag-and-drop all end here) ----------------------

  function place(id) {
    if (!model.place(id)) return;
    render();
    announce(describe(id));
  }

  function unplace(id) {
    if (!model.takeOut(id)) return;
    render();
    announce("Answer " + answers.get(id).number + " is back in To place.");
  }

  function move(id, step) {
    if (!model.isPlaced(id)) {
      showMessage("Answer " + answers.get(id).number + " is not placed yet: press Enter to place it.", "hint");
      return;
    }
    if (!model.move(id, step)) return;
    render();
    revealInPanel(answers.get(id).chip);
    announce(describe(id));
  }

  function toggleTie(id) {
    if (!model.isPlaced(id)) {
      showMessage("Place answer " + answers.get(id).number + " first, then tie it with the answer above.", "hint");
      return;
    }
    if (!model.toggleTie(id)) {
      showMessage("The top answer has no answer above it to tie with.", "hint");
      return;
    }
    render();
    announce(describe(id));
  }

  function rate(id, value) {
    const card = answers.get(id).card;
    card.querySelectorAll('.rating input[type="radio"]').forEach(function (radio) {
      radio.checked = value !== null && Number(radio.value) === value;
    });
    render();
    announce(value === null
      ? "Rating of answer " + answers.get(id).number + " cleared."
      : "Answer " + answers.get(id).number + " rated " + value + " of 7.");
  }

  function trySubmit() {
    if (sender.sending()) return;
    if (model.unplaced().length) {
      showMessage("Place every answer before submitting: " + model.unplaced().length + " not placed yet.", "problem");
      announce(message.textContent);
      return;
    }
    form.requestSubmit();
  }

  // ---- wiring ------------------------------------------------------------------------------

  sender = window.unsentWork.sendOnce(form, work, {
    problem: function () {
      const missing = model.unplaced().length;
      return missing ? "Place every answer before submitting: " + missing + " not placed yet." : null;
    },
    refuse: function (why) { showMessage(why, "problem"); },
    beforeSend: function () { groupsInput.value = JSON.stringify(model.groups()); },
    showMessage: showMessage,
    button: submitButton,
  });

  answers.forEach(function (answer) {
    answer.chip.addEventListener("click", function (event) {
      const tie = event.target.closest(".chip-tie");
      if (tie) {
        toggleTie(answer.id);
        return;
      }
      select(answer.id);
    });
    answer.chip.addEventListener("dblclick", function (event) {
      if (event.target.closest(".chip-tie")) return;
      if (!model.isPlaced(answer.id)) place(answer.id);
    });
    answer.card.addEventListener("click", function (event) {
      // Links inside an answer keep working; anything else in the card selects it.
      if (event.target.closest("a")) return;
      if (selected !== answer.id) select(answer.id, { scroll: false });
    });
    answer.card.addEventListener("change", function () { render(); });
    // Show a readable snippet (the rendered text, not its Markdown) on the chip.
    const words = answer.card.querySelector(".answer-body").textContent.replace(/\s+/g, " ").trim();
    answer.chip.querySelector("[data-snippet]").textContent = words.length > 90 ? words.slice(0, 89) + "…" : words;
    answer.chip.title = words.length > 240 ? words.slice(0, 239) + "…" : words;
  });

  function isTyping(target) {
    if (!target || !target.tagName) return false;
    if (target.isContentEditable) return true;
    if (target.tagName === "TEXTAREA" || target.tagName === "SELECT") return true;
    if (target.tagName !== "INPUT") return false;
    return !["radio", "checkbox", "button", "submit", "reset"].includes(target.type);
  }

  // Enter on these does something of its own; on radios and checkboxes it does nothing, so it is ours.
  function isNativelyActivated(target) {
    return Boolean(target.closest && target.closest("button, a, summary, select"));
  }

  document.addEventListener("keydown", function (event) {
    if (event.defaultPrevented || event.isComposing || isTyping(event.target)) return;
    const ctrl = event.ctrlKey || event.metaKey;
    if (ctrl && event.key === "Enter") {
      event.preventDefault();
      trySubmit();
      return;
    }
    if (ctrl || event.altKey) return;

    const digit = /^(?:Digit|Numpad)([0-9])$/.exec(event.code);
    if (event.shiftKey && digit) {
      const value = Number(digit[1]);
      if (value > 7) return;
      event.preventDefault();
      if (needSelection()) rate(selected, value === 0 ? null : value);
      return;
    }
    if (!event.shiftKey && /^[1-9]$/.test(event.key)) {
      const id = byNumber.get(Number(event.key));
      if (id === undefined) return;
      event.preventDefault();
      select(id);
      announce(describe(id));
      return;
    }

    // Arrows inside a radio group or a scrollable answer keep their native meaning.
    const nativeArrows = event.target.closest && event.target.closest('input[type="radio"], .answer-body');
    switch (event.key) {
      case "ArrowDown":
      case "ArrowUp": {
        const step = event.key === "ArrowDown" ? 1 : -1;
        if (event.shiftKey) {
          event.preventDefault();
          if (needSelection()) move(selected, step);
        } else if (!nativeArrows) {
          event.preventDefault();
          moveSelection(step);
        }
        return;
      }
      case "Enter":
        if (isNativelyActivated(event.target)) return;
        if (!needSelection()) return;
        event.preventDefault();
        // Enter only ever places: pressing it twice must not undo the first press.
        if (!model.isPlaced(selected)) place(selected);
        else showMessage("Answer " + answers.get(selected).number + " is already ranked: Shift+↑/↓ moves it, Delete takes it out.", "hint");
        return;
      case "Backspace":
      case "Delete":
        if (!needSelection()) return;
        event.preventDefault();
        unplace(selected);
        return;
      case "t":
      case "T":
        if (!needSelection()) return;
        event.preventDefault();
        toggleTie(selected);
        return;
      case "?":
        event.preventDefault();
        help.open = !help.open;
        if (help.open) revealInPanel(help);
        return;
      case "Escape":
        if (help.open) help.open = false;
        else if (selected !== null) select(null);
        return;
      default:
    }
  });

  function onDragEnd(event) {
    const id = Number(event.item.dataset.answerId);
    const moved = event.from !== event.to || event.oldDraggableIndex !== event.newDraggableIndex;
    if (!moved) {
      select(id, { scroll: false });
      return;
    }
    if (event.from === rankedList) model.takeOut(id);
    if (event.to === rankedList) model.putIn(id, event.newDraggableIndex);
    selected = id;
    render();
    announce(describe(id));
  }

  const sortableOptions = {
    group: "ranking",
    animation: reducedMotion ? 0 : 150,
    draggable: ".chip",
    filter: ".chip-tie",
    preventOnFilter: false,
    forceFallback: true, // pointer events: the same behaviour with mouse, pen and touch
    fallbackOnBody: true,
    fallbackTolerance: 4,
    ghostClass: "chip--ghost",
    chosenClass: "chip--chosen",
    dragClass: "chip--drag",
    scroll: true,
    bubbleScroll: true,
    onStart: function () { document.body.classList.add("is-dragging"); },
    onEnd: function (event) {
      document.body.classList.remove("is-dragging");
      onDragEnd(event);
    },
  };
  if (window.Sortable) {
    window.Sortable.create(unplacedList, Object.assign({}, sortableOptions, { sort: false }));
    window.Sortable.create(rankedList, sortableOptions);
  }

  // Start from the rejected submit's ranking, else from unsent work, else nothing.
  let initial = null;
  try {
    const raw = JSON.parse(document.getElementById("initial-groups").textContent);
    initial = raw ? JSON.parse(raw) : null;
  } catch (error) {
    initial = null;
  }
  if (!model.restore(initial)) {
    const saved = work.load();
    if (saved && model.restore(Array.isArray(saved) ? saved : saved.groups)) restoreMarks(saved);
  }
  render();

  // Radios and checkboxes restored by the browser (reload, back button) update the badges.
  window.addEventListener("pageshow", function (event) {
    if (event.persisted) sender.reset();
    render();
  });
})();
