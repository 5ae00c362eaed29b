/* The Queue view: charts, processes and verdict from a /queuestorm/stats document (live page and HTML report). */
(function (global) {
  "use strict";
  var CHARTS = [
    {id: "qs-depth", title: "Queue depth (backlog)", unit: "jobs", series: [["depth", "depth", "#1f77b4"]]},
    {id: "qs-rates", title: "Enqueue rate vs drain rate", unit: "jobs/s",
     series: [["enqueue", "enqueue_rate", "#2ca02c"], ["drain", "drain_rate", "#9467bd"]]},
    {id: "qs-e2e", title: "End-to-end latency", unit: "ms",
     series: [["p50", "e2e_ms.p50", "#17becf"], ["p95", "e2e_ms.p95", "#ff7f0e"], ["p99", "e2e_ms.p99", "#d62728"]]},
    {id: "qs-loss", title: "Loss counters", unit: "jobs",
     series: [["lost", "lost", "#e377c2"], ["unaccounted", "unaccounted", "#d62728"],
              ["duplicated", "duplicated", "#8c564b"],
              ["maybe enqueued", "maybe_enqueued", "#7f7f7f"]]}
  ];

  function get(point, path) {
    var v = point;
    path.split(".").forEach(function (k) { v = v === null || v === undefined ? null : v[k]; });
    return v === undefined ? null : v;
  }

  function esc(s) {
    return String(s === null || s === undefined ? "-" : s).replace(/[&<>"]/g, function (c) {
      return {"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;"}[c];
    });
  }

  function build(root) {
    root.innerHTML =
      '<div class="qs-head"><span id="qs-title"></span> <span id="qs-state"></span></div>' +
      '<div id="qs-verdict" class="qs-verdict" hidden></div>' +
      '<div class="qs-grid">' + CHARTS.map(function (c) {
        return '<canvas class="qs-chart" id="' + c.id + '"></canvas>';
      }).join("") + '</div>' +
      '<div id="qs-capacity" hidden><h3 id="qs-capacity-result"></h3><div class="qs-grid">' +
      '<canvas class="qs-chart qs-capacity-chart" id="qs-capacity-latency"></canvas>' +
      '<canvas class="qs-chart qs-capacity-chart" id="qs-capacity-backlog"></canvas></div></div>' +
      (root.dataset.processes === "off" ? "" : '<h3>Processes</h3><table class="qs-table" id="qs-processes"></table>');
  }

  /* --find-capacity: each step's latency and backlog growth against its target rate */
  function renderCapacity(capacity, root, dark) {
    var box = root.querySelector("#qs-capacity");
    box.hidden = !capacity;
    if (!capacity) return;
    var steps = (capacity.steps || []).slice().sort(function (a, b) { return a.target - b.target; });
    function series(name, key, color) {
      return {name: name, color: color, points: steps.map(function (s) { return [s.target, s[key]]; })};
    }
    root.querySelector("#qs-capacity-result").textContent = "Capacity search: sustainable " +
      (capacity.sustainable_rate === null ? "-" : capacity.sustainable_rate + " jobs/s") + " · first failing " +
      (capacity.first_failing_rate === null ? "-" : capacity.first_failing_rate + " jobs/s") + " · " +
      capacity.limiting_factor;
    QSCharts.line(root.querySelector("#qs-capacity-latency"), {
      title: "Latency per step vs target rate", unit: "ms", xunit: "/s", dark: dark,
      series: [series("e2e p99", "e2e_p99_ms", "#d62728"), series("enqueue p99", "enqueue_p99_ms", "#ff7f0e")]});
    QSCharts.line(root.querySelector("#qs-capacity-backlog"), {
      title: "Backlog growth per step vs target rate", unit: "jobs/s", xunit: "/s", dark: dark,
      series: [series("backlog slope", "backlog_slope", "#1f77b4"), series("achieved", "achieved", "#2ca02c")]});
  }

  function pair(a, b) { return a === null || a === undefined ? "-" : a + " / " + b; }

  function render(doc, root) {
    if (!root.querySelector("#qs-depth")) build(root);
    root.querySelector("#qs-title").textContent = "run " + doc.run_id + " · " + doc.protocol;
    root.querySelector("#qs-state").textContent = doc.state ? "· " + doc.state : "";
    var markers = (doc.faults || []).map(function (f) {
      return {x: f.at_s, x2: f.at_s + (f.duration_s || 0), label: f.kind, error: !!f.error};
    });
    var dark = root.classList.contains("dark");
    CHARTS.forEach(function (c) {
      QSCharts.line(root.querySelector("#" + c.id), {
        title: c.title, unit: c.unit, markers: markers, dark: dark,
        series: c.series.map(function (s) {
          return {name: s[0], color: s[2], points: doc.points.map(function (p) { return [p.t, get(p, s[1])]; })};
        })
      });
    });
    renderCapacity(doc.capacity, root, dark);
    var table = root.querySelector("#qs-processes");
    if (table) table.innerHTML = processRows(doc);
    renderVerdict(doc, root);
  }

  function processRows(doc) {
    var rows = [["process", "host", "pid", "memory MB last / max", "CPU % mean / max", "loop lag ms mean / max",
                 "ping ms", "backlog", "completed", "rate/s"]];
    var latest = doc.latest || {};
    rows.push(["queue", "", "", "", "", "", "", latest.depth, latest.completed, latest.drain_rate].map(esc));
    (doc.processes || []).forEach(function (p) {
      rows.push([p.name || p.role, p.host, p.pid, pair(p.rss_mb_last, p.rss_mb_max), pair(p.cpu_pct_mean, p.cpu_pct_max),
                 pair(p.lag_ms_mean, p.lag_ms_max), p.ping_ms_mean, p.backlog, p.completed, p.rate].map(esc));
    });
    return rows.map(function (r, i) {
      var tag = i ? "td" : "th";
      return "<tr>" + r.map(function (c) { return "<" + tag + ">" + (i ? c : esc(c)) + "</" + tag + ">"; }).join("") + "</tr>";
    }).join("");
  }

  function renderVerdict(doc, root) {
    var box = root.querySelector("#qs-verdict"), v = doc.verdict;
    if (v) {
      box.hidden = false;
      box.className = "qs-verdict " + (v.verdict === "pass" ? "qs-pass" : "qs-fail");
      var e2e = v.e2e_ms || {};
      box.innerHTML = "<b>verdict: " + esc(String(v.verdict).toUpperCase()) + "</b>" +
        (v.reasons && v.reasons.length ? " — " + esc(v.reasons.join("; ")) : "") +
        "<br>enqueued " + esc(v.enqueued) + " · maybe enqueued " + esc(v.maybe_enqueued) + " · completed " +
        esc(v.completed) + " · <b>lost " + esc(v.lost) + "</b> · unfinished " + esc(v.unfinished) +
        " · <b>duplicated " + esc(v.duplicated) + "</b>" +
        " · unexpected " + esc(v.unexpected) + " · recovered " + esc(v.recovered) +
        "<br>e2e p50 / p95 / p99 ms: " + esc(e2e.p50) + " / " + esc(e2e.p95) + " / " + esc(e2e.p99) +
        (v.lost_ids && v.lost_ids.length ? "<br>lost ids: " + esc(v.lost_ids.join(", ")) : "") +
        (v.duplicated_ids && v.duplicated_ids.length ? "<br>duplicated ids: " + esc(v.duplicated_ids.join(", ")) : "");
    } else {
      box.hidden = true;
    }
  }

  function poll(url, root, seconds) {
    var points = [], run = null;
    function tick() {
      var since = points.length ? "?since=" + points[points.length - 1].t : "";
      fetch(url + since, {cache: "no-store"}).then(function (r) { return r.json(); }).then(function (doc) {
        if (doc.started_at !== run) {  // a new test: start over, from its first point
          run = doc.started_at;
          if (points.length) { points = []; return; }
        }
        points = points.concat(doc.points).slice(-3600);
        doc.points = points;
        render(doc, root);
      }).catch(function () {}).then(function () { setTimeout(tick, seconds * 1000); });
    }
    tick();
  }

  global.QueueView = {render: render, poll: poll};
})(window);
