// The live page of a crawl: reads /events (Server-Sent Events) and shows the latest
// snapshot and the newest finished tasks. Every value from the crawl is inserted with
// textContent, never as markup: product names may hold "<script>" and must show as text.
"use strict";

(function () {
  const MAX_TASKS = 200;
  const byId = (id) => document.getElementById(id);

  function setText(id, value) {
    byId(id).textContent = value;
  }

  function cell(row, value, className) {
    const td = document.createElement("td");
    td.textContent = value === null || value === undefined ? "" : String(value);
    if (className) td.className = className;
    row.appendChild(td);
    return td;
  }

  function count(value) {
    return value === null || value === undefined ? "?" : Math.round(value).toLocaleString("en");
  }

  function rate(value) {
    if (value === null || value === undefined) return "–";
    return value < 10 ? value.toFixed(1) : Math.round(value).toLocaleString("en");
  }

  function duration(seconds) {
    if (seconds === null || seconds === undefined || !isFinite(seconds)) return "?";
    const whole = Math.round(seconds);
    if (whole < 60) return whole + "s";
    const minutes = Math.floor(whole / 60);
    if (minutes < 60) return minutes + "m" + String(whole % 60).padStart(2, "0") + "s";
    return Math.floor(minutes / 60) + "h" + String(minutes % 60).padStart(2, "0") + "m";
  }

  function replaceRows(tbody, rows) {
    tbody.replaceChildren(...rows);
  }

  function showSnapshot(s) {
    setText("spider", s.spider || "");
    setText("job", s.job ? "job " + s.job : "");
    const progress = byId("progress");
    if (s.progress !== null && s.progress !== undefined) {
      progress.value = s.progress;
      setText("percent", (s.progress * 100).toFixed(1) + "%");
    } else {
      progress.removeAttribute("value");
      setText("percent", "–");
    }
    setText("eta", s.finished ? "done" : duration(s.eta.seconds));
    setText("eta-band", !s.finished && s.eta.band !== null ? "±" + duration(s.eta.band) : "");
    setText("stage", s.stage || "");
    setText("pages-rate", rate(s.rates.pages));
    setText("items-rate", rate(s.rates.items));
    setText("elapsed", duration(s.elapsed));

    const stageRows = Object.entries(s.stages).map(([name, stage]) => {
      const row = document.createElement("tr");
      cell(row, name);
      cell(row, count(stage.done), "num");
      cell(row, count(stage.failed), "num");
      cell(row, (stage.estimated ? "~" : "") + count(stage.remaining), "num");
      cell(row, (stage.estimated ? "~" : "") + count(stage.total), "num");
      cell(row, rate(stage.rate), "num");
      return row;
    });
    replaceRows(byId("stages").tBodies[0], stageRows);

    const counts = [
      ["items stored", s.items.stored],
      ["items scraped", s.items.scraped],
      ["items invalid", s.items.invalid],
      ["requests sent", s.requests.sent],
      ["in flight", s.requests.in_flight],
      ["queued", s.requests.queued],
      ["delayed", s.requests.delayed],
      ["retries", s.requests.retries],
      ["dead letters", s.requests.dead_letters],
      ["memory (MiB)", s.memory_bytes / 1048576],
    ];
    const dl = byId("counts");
    const parts = [];
    for (const [label, value] of counts) {
      const dt = document.createElement("dt");
      dt.textContent = label;
      const dd = document.createElement("dd");
      dd.textContent = count(value);
      parts.push(dt, dd);
    }
    dl.replaceChildren(...parts);

    const domains = new Set([...Object.keys(s.domains), ...Object.keys(s.breakers)]);
    const domainRows = [...domains].sort().map((domain) => {
      const slot = s.domains[domain] || {};
      const row = document.createElement("tr");
      cell(row, domain);
      const state = s.breakers[domain] || "–";
      cell(row, state, "breaker breaker-" + state.replace(/[^a-z_]/g, ""));
      cell(row, slot.concurrency, "num");
      cell(row, slot.delay === undefined ? "" : slot.delay.toFixed(2) + " s", "num");
      cell(row, slot.active, "num");
      return row;
    });
    replaceRows(byId("domains").tBodies[0], domainRows);
  }

  function showTask(t) {
    if (t.outcome === "started") return; // in flight: bottleneck.js shows it
    const row = document.createElement("tr");
    row.className = "task task-" + String(t.outcome).replace(/[^a-z]/g, "");
    cell(row, new Date(t.t * 1000).toLocaleTimeString("en-GB"));
    cell(row, t.outcome);
    cell(row, t.stage || "");
    const what = cell(row, "");
    if (t.name) {
      const name = document.createElement("span");
      name.className = "product-name";
      name.textContent = t.name;
      what.appendChild(name);
      if (t.manufacturer) {
        const by = document.createElement("span");
        by.className = "muted";
        by.textContent = " by " + t.manufacturer;
        what.appendChild(by);
      }
    } else {
      what.textContent = t.page ? "listing page " + t.page : t.url || "";
    }
    what.title = t.url || "";
    const details = [];
    if (t.status) details.push(String(t.status));
    if (t.duration_ms !== undefined) details.push(t.duration_ms + " ms");
    if (t.failure_class) details.push(t.failure_class);
    if (t.attempt) details.push("attempt " + t.attempt);
    if (t.delay !== undefined) details.push("retry in " + t.delay + " s");
    if (t.reason) details.push(t.reason);
    cell(row, details.join(" · "));
    const tbody = byId("tasks").tBodies[0];
    tbody.insertBefore(row, tbody.firstChild);
    while (tbody.rows.length > MAX_TASKS) tbody.deleteRow(-1);
  }

  function setConnection(state, text) {
    const node = byId("connection");
    node.dataset.state = state;
    node.textContent = text;
  }

  // Links to the files the crawl writes (the Atom feed, the report), shown only when set.
  fetch("links")
    .then((answer) => (answer.ok ? answer.json() : {}))
    .then((links) => {
      for (const name of ["feed", "report"]) {
        if (!links[name]) continue;
        const link = byId(name + "-link");
        link.setAttribute("href", links[name]);
        link.hidden = false;
        byId("links").hidden = false;
      }
    })
    .catch(() => {});

  const source = new EventSource("events");
  window.matterEvents = source; // shared with bottleneck.js: one stream per page
  window.matterCell = cell; // and its one way of putting a crawl's value in a table
  source.addEventListener("open", () => setConnection("live", "live"));
  source.addEventListener("error", () => {
    if (byId("connection").dataset.state !== "closed") setConnection("lost", "reconnecting…");
  });
  source.addEventListener("snapshot", (event) => showSnapshot(JSON.parse(event.data)));
  source.addEventListener("task", (event) => showTask(JSON.parse(event.data)));
  source.addEventListener("closed", (event) => {
    const closed = JSON.parse(event.data);
    setConnection("closed", "crawl closed (" + closed.reason + ")");
    source.close();
  });
})();
