// digestflow report page: draws the Plotly figures embedded as JSON, fills the map's
// neighbour panel on a click, and makes every table searchable and sortable.
// No network, no dependency but the Plotly bundle inlined before this script.
(function () {
  "use strict";

  const ready = [];
  const plotted = {};

  // ---- figures: <script type="application/json" class="figure" data-target="ID">
  for (const node of document.querySelectorAll("script.figure")) {
    const figure = JSON.parse(node.textContent);
    const target = document.getElementById(node.dataset.target);
    const config = figure.config || { displaylogo: false, responsive: true };
    plotted[target.id] = Plotly.newPlot(target, figure.data, figure.layout, config).then(() => {
      target.dataset.plotted = "1";
      return target;
    });
    ready.push(plotted[target.id]);
  }

  // ---- the map's nearest papers (precomputed in Python, embedded as JSON)
  const mapData = document.getElementById("map-data");
  const panel = document.getElementById("neighbours");

  let parsed = null;

  function showNeighbours(index) {
    const data = parsed || (parsed = JSON.parse(mapData.textContent));
    const heading = document.createElement("h3");
    heading.textContent = "Nearest to: " + data.titles[index];
    const list = document.createElement("ol");
    data.neighbours[index].forEach((other, rank) => {
      const item = document.createElement("li");
      const link = document.createElement("a");
      link.href = "#neighbours";
      link.textContent = data.titles[other];
      link.addEventListener("click", (event) => {
        event.preventDefault();
        showNeighbours(other);
      });
      const cosine = document.createElement("span");
      cosine.className = "cos";
      cosine.textContent = " cosine " + data.cosines[index][rank].toFixed(3);
      item.append(link, cosine);
      list.append(item);
    });
    panel.replaceChildren(heading, list);
    panel.dataset.paper = String(index);
  }

  if (mapData && panel && plotted["plot-embedding-map"]) {
    ready.push(
      plotted["plot-embedding-map"].then((map) => {
        map.on("plotly_click", (event) => {
          const point = event.points && event.points[0];
          if (point && point.customdata !== undefined) showNeighbours(point.customdata);
        });
      })
    );
  }

  // ---- tables: a search box above each, click a header to sort
  function cellKey(cell) {
    return cell.dataset.v !== undefined ? Number(cell.dataset.v) : cell.textContent;
  }

  function compare(a, b) {
    const blankA = a === "", blankB = b === "";
    if (blankA || blankB) return blankA - blankB; // blanks last either way
    if (typeof a === "number" && typeof b === "number") return a - b;
    return String(a).localeCompare(String(b));
  }

  function sortBy(header) {
    const table = header.closest("table");
    const column = header.cellIndex;
    const ascending = header.getAttribute("aria-sort") !== "ascending";
    for (const other of header.parentElement.cells) other.removeAttribute("aria-sort");
    header.setAttribute("aria-sort", ascending ? "ascending" : "descending");
    const body = table.tBodies[0];
    const rows = Array.from(body.rows).map((row, i) => [cellKey(row.cells[column]), i, row]);
    rows.sort((x, y) => {
      const blank = (x[0] === "") - (y[0] === "");
      if (blank) return blank;
      return (ascending ? compare(x[0], y[0]) : compare(y[0], x[0])) || x[1] - y[1];
    });
    body.append(...rows.map((r) => r[2]));
  }

  for (const header of document.querySelectorAll("table.data th")) {
    header.title = "click to sort";
    header.addEventListener("click", () => sortBy(header));
  }

  for (const box of document.querySelectorAll("input.filter")) {
    const table = document.getElementById(box.dataset.table);
    const counter = document.getElementById(box.dataset.table + "-count");
    const total = table.tBodies[0].rows.length;
    box.addEventListener("input", () => {
      const terms = box.value.toLowerCase().split(/\s+/).filter(Boolean);
      let shown = 0;
      for (const row of table.tBodies[0].rows) {
        const text = row.textContent.toLowerCase();
        const hit = terms.every((term) => text.includes(term));
        row.hidden = !hit;
        shown += hit;
      }
      counter.textContent = terms.length ? shown + " of " + total + " rows match" : "";
    });
  }

  Promise.all(ready).then(() => {
    window.digestflowReady = performance.now();
    document.body.dataset.ready = "1";
  });
  window.digestflow = { showNeighbours: showNeighbours, sortBy: sortBy };
})();
