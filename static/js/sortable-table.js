/*
 * Tables with class "sortable": each column header becomes a button that sorts the rows by that
 * column, ascending first, then descending. A cell's data-sort-value (the raw figure, "" for none)
 * is sorted on when present, else its text; headers with data-sort-type="number" sort numerically.
 * Rows without a value stay last in both directions. aria-sort tells screen readers the order.
 */
(function () {
  "use strict";

  function value(row, index) {
    const cell = row.cells[index];
    if (!cell) return "";
    return (cell.dataset.sortValue !== undefined ? cell.dataset.sortValue : cell.textContent).trim();
  }

  function sortBy(table, header, index) {
    const ascending = header.getAttribute("aria-sort") !== "ascending";
    const numeric = header.dataset.sortType === "number";
    const body = table.tBodies[0];
    const rows = Array.from(body.rows);
    rows.sort(function (x, y) {
      const a = value(x, index);
      const b = value(y, index);
      if (a === "" || b === "") return (a === "") - (b === "");
      const order = numeric ? parseFloat(a) - parseFloat(b) : a.localeCompare(b, undefined, { sensitivity: "base" });
      return ascending ? order : -order;
    });
    rows.forEach(function (row) { body.appendChild(row); });
    Array.from(table.tHead.rows[0].cells).forEach(function (th) { th.removeAttribute("aria-sort"); });
    header.setAttribute("aria-sort", ascending ? "ascending" : "descending");
  }

  document.querySelectorAll("table.sortable").forEach(function (table) {
    Array.from(table.tHead.rows[0].cells).forEach(function (header, index) {
      // A button, not a click on the cell: reachable with Tab and pressed with Enter or Space.
      const button = document.createElement("button");
      button.type = "button";
      button.className = "sort-button";
      while (header.firstChild) button.appendChild(header.firstChild);
      header.appendChild(button);
      button.addEventListener("click", function () { sortBy(table, header, index); });
    });
  });
})();
