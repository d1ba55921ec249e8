/*
 * The ranking model, without the page: plain data, no DOM, so it is tested on its own.
 *
 * A ranking is a list of {id, tied}, best first, where `tied` means "tied with the answer directly
 * above"; answers not in it are still to place, always listed in display order. Two rules keep tie
 * groups stable while answers move: taking an answer out never merges its neighbours into one group,
 * and an answer put strictly inside a tie group joins that group. groups() gives the tie groups the
 * server takes; ranks() the competition ranks it stores (1, 2, 2, 4).
 */
(function (root) {
  "use strict";

  // `answerIds`: every answer of the task, in display order.
  function createRanking(answerIds) {
    const known = new Set(answerIds);
    let ranked = [];

    function indexOf(id) {
      return ranked.findIndex(function (item) { return item.id === id; });
    }

    function normalise() {
      if (ranked.length) ranked[0].tied = false;
    }

    function takeOut(id) {
      const index = indexOf(id);
      if (index < 0) return false;
      const item = ranked[index];
      const next = ranked[index + 1];
      // The answer below inherits whether a group started here, so the groups around stay apart.
      if (next && next.tied && !item.tied) next.tied = false;
      ranked.splice(index, 1);
      normalise();
      return true;
    }

    function putIn(id, index) {
      index = Math.max(0, Math.min(index, ranked.length));
      const below = ranked[index];
      ranked.splice(index, 0, { id: id, tied: Boolean(below && below.tied) });
      normalise();
    }

    function unplaced() {
      return answerIds.filter(function (id) { return indexOf(id) < 0; });
    }

    function groups() {
      const result = [];
      ranked.forEach(function (item) {
        if (item.tied && result.length) result[result.length - 1].push(item.id);
        else result.push([item.id]);
      });
      return result;
    }

    function ranks() {
      const result = new Map();
      let rank = 0;
      ranked.forEach(function (item, index) {
        if (!item.tied || index === 0) rank = index + 1;
        result.set(item.id, rank);
      });
      return result;
    }

    return {
      indexOf: indexOf,
      isPlaced: function (id) { return indexOf(id) >= 0; },
      // Tied with the answer above (never true for the top answer).
      isTied: function (id) { const index = indexOf(id); return index > 0 && ranked[index].tied; },
      placed: function () { return ranked.map(function (item) { return item.id; }); },
      unplaced: unplaced,
      // To place first, then the ranking: the order the keyboard walks.
      order: function () { return unplaced().concat(ranked.map(function (item) { return item.id; })); },
      takeOut: takeOut,
      putIn: putIn,
      place: function (id) {
        if (!known.has(id) || indexOf(id) >= 0) return false;
        putIn(id, ranked.length);
        return true;
      },
      // One step up (-1) or down (+1); false when the answer is not placed or is at that end already.
      move: function (id, step) {
        const index = indexOf(id);
        const target = index + step;
        if (index < 0 || target < 0 || target >= ranked.length) return false;
        takeOut(id);
        putIn(id, target);
        return true;
      },
      // Tie with the answer above, or untie; false when there is no answer above.
      toggleTie: function (id) {
        const index = indexOf(id);
        if (index <= 0) return false;
        ranked[index].tied = !ranked[index].tied;
        return true;
      },
      groups: groups,
      ranks: ranks,
      // Start again from tie groups (a rejected submit's, or unsent work); unknown or repeated ids are
      // dropped. True when anything was placed.
      restore: function (list) {
        if (!Array.isArray(list)) return false;
        const seen = new Set();
        const restored = [];
        list.forEach(function (group) {
          if (!Array.isArray(group)) return;
          let first = true;
          group.forEach(function (raw) {
            const id = Number(raw);
            if (!known.has(id) || seen.has(id)) return;
            seen.add(id);
            restored.push({ id: id, tied: !first });
            first = false;
          });
        });
        ranked = restored;
        normalise();
        return restored.length > 0;
      },
    };
  }

  root.createRanking = createRanking;
  if (typeof module === "object" && module.exports) module.exports = { createRanking: createRanking };
})(typeof window !== "undefined" ? window : globalThis);
