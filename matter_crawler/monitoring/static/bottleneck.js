// The live page's "Where the crawl is held back" section: the bottleneck verdict, CPU,
// bandwidth, queues per stage, and the tasks in flight with their age. Its own file (and its
// own EventSource listeners on the page's one stream, app.js's) so that it stays apart from
// the rest of the page. Values from the crawl go in with textContent, never as markup.
"use strict";

(function () {
  const MAX_IN_FLIGHT = 100;
  const byId = (id) => document.getElementById(id);
  const inFlight = new Map(); // task id -> {t, stage, url}
  let clockSkew = 0; // the crawl's clock minus ours, from the latest snapshot

  const cell = window.matterCell; // app.js's, loaded first: values as text, never markup

  function bytes(perSecond) {
    if (perSecond === null || perSecond === undefined) return "–";
    if (perSecond < 1024) return Math.round(perSecond) + " B/s";
    if (perSecond < 1024 * 1024) return (perSecond / 1024).toFixed(1) + " kB/s";
    return (perSecond / 1024 / 1024).toFixed(1) + " MB/s";
  }

  function showSnapshot(s) {
    clockSkew = s.time - Date.now() / 1000;
    const b = s.bottleneck || {};
    const verdict = byId("bottleneck-verdict");
    verdict.textContent = b.verdict || "–";
    verdict.dataset.verdict = b.verdict || "";
    byId("bottleneck-reason").textContent = b.reason || "";
    byId("cpu").textContent = s.cpu_percent === null || s.cpu_percent === undefined
      ? "–" : Math.round(s.cpu_percent) + "%";
    byId("bandwidth").textContent = bytes(s.bytes_per_second);
    byId("writer").textContent = s.writer_busy === null || s.writer_busy === undefined
      ? "–" : Math.round(s.writer_busy * 100) + "%";
    const tbody = byId("queues").tBodies[0];
    const rows = Object.keys(s.queues || {}).map((stage) => {
      const row = document.createElement("tr");
      cell(row, stage);
      cell(row, s.queues[stage].queued, "num");
      cell(row, s.queues[stage].in_flight, "num");
      return row;
    });
    tbody.replaceChildren(...rows);
    if (s.finished) inFlight.clear();
    showInFlight();
  }

  function showTask(t) {
    if (t.id === undefined) return;
    if (t.outcome === "started") {
      inFlight.set(t.id, t);
    } else {
      inFlight.delete(t.id);
    }
  }

  function showInFlight() {
    const now = Date.now() / 1000 + clockSkew;
    const tasks = Array.from(inFlight.entries()).sort((a, b) => a[1].t - b[1].t);
    byId("in-flight-count").textContent = String(tasks.length);
    const rows = tasks.slice(0, MAX_IN_FLIGHT).map(([id, t]) => {
      const row = document.createElement("tr");
      row.className = "in-flight";
      cell(row, id, "num");
      cell(row, Math.max(0, now - t.t).toFixed(1) + " s", "num age");
      cell(row, t.stage || "");
      const what = cell(row, t.url || "");
      what.title = t.url || "";
      return row;
    });
    byId("in-flight").tBodies[0].replaceChildren(...rows);
  }

  const source = window.matterEvents;
  if (!source) return;
  source.addEventListener("snapshot", (event) => showSnapshot(JSON.parse(event.data)));
  source.addEventListener("task", (event) => showTask(JSON.parse(event.data)));
  source.addEventListener("closed", () => {
    inFlight.clear();
    showInFlight();
  });
  setInterval(showInFlight, 1000); // ages grow between events
})();
