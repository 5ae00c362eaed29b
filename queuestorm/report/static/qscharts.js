/* qscharts: a tiny dependency-free line chart on <canvas>, shipped with queuestorm so the charts work offline.
   QSCharts.line(canvas, {title, unit, series: [{name, color, points: [[x, y|null], ...]}],
                          markers: [{x, x2, label}], xunit})
   draws the series over a shared x axis (seconds, or `xunit`), null values leave gaps, markers are shaded spans or lines.
   After drawing, canvas.dataset.points holds the number of non-null points drawn. */
(function (global) {
  "use strict";
  var PAD = {left: 58, right: 14, top: 30, bottom: 34};

  function niceStep(range, ticks) {
    var raw = range / Math.max(ticks, 1);
    var mag = Math.pow(10, Math.floor(Math.log10(raw || 1)));
    var n = raw / mag;
    return (n <= 1 ? 1 : n <= 2 ? 2 : n <= 5 ? 5 : 10) * mag;
  }

  function fmt(v) {
    var a = Math.abs(v);
    if (a >= 1e6) return (v / 1e6).toFixed(1).replace(/\.0$/, "") + "M";
    if (a >= 1e3) return (v / 1e3).toFixed(1).replace(/\.0$/, "") + "k";
    if (a > 0 && a < 1) return v.toFixed(2);
    return String(Math.round(v * 10) / 10);
  }

  function extent(series, markers, index) {
    var lo = Infinity, hi = -Infinity;
    series.forEach(function (s) {
      s.points.forEach(function (p) {
        var v = p[index];
        if (v === null || v === undefined || isNaN(v)) return;
        if (v < lo) lo = v;
        if (v > hi) hi = v;
      });
    });
    if (index === 0) (markers || []).forEach(function (m) { hi = Math.max(hi, m.x2 || m.x); lo = Math.min(lo, m.x); });
    return lo === Infinity ? null : [lo, hi];
  }

  function line(canvas, spec) {
    var ratio = global.devicePixelRatio || 1;
    var width = canvas.clientWidth || canvas.width, height = canvas.clientHeight || canvas.height;
    canvas.width = width * ratio;
    canvas.height = height * ratio;
    var ctx = canvas.getContext("2d");
    ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
    ctx.clearRect(0, 0, width, height);
    var dark = spec.dark;
    var ink = dark ? "#ddd" : "#333", grid = dark ? "#444" : "#e4e4e4";
    ctx.font = "12px sans-serif";
    ctx.fillStyle = ink;
    ctx.fillText(spec.title + (spec.unit ? " (" + spec.unit + ")" : ""), PAD.left, 16);

    var series = spec.series || [], markers = spec.markers || [];
    var xs = extent(series, markers, 0), ys = extent(series, [], 1);
    var drawn = 0;
    var plotW = width - PAD.left - PAD.right, plotH = height - PAD.top - PAD.bottom;
    if (!xs) {
      ctx.fillStyle = dark ? "#999" : "#888";
      ctx.fillText("waiting for data...", PAD.left + 10, PAD.top + plotH / 2);
      canvas.dataset.points = "0";
      return;
    }
    var x0 = Math.min(0, xs[0]), x1 = Math.max(xs[1], x0 + 1);
    var y0 = Math.min(0, ys ? ys[0] : 0), y1 = ys ? ys[1] : 1;
    if (y1 <= y0) y1 = y0 + 1;
    var yStep = niceStep(y1 - y0, 4);
    y1 = Math.ceil(y1 / yStep) * yStep;
    function X(v) { return PAD.left + (v - x0) / (x1 - x0) * plotW; }
    function Y(v) { return PAD.top + plotH - (v - y0) / (y1 - y0) * plotH; }

    ctx.strokeStyle = grid;
    ctx.lineWidth = 1;
    ctx.textAlign = "right";
    ctx.fillStyle = ink;
    for (var yv = y0; yv <= y1 + yStep / 2; yv += yStep) {
      ctx.beginPath(); ctx.moveTo(PAD.left, Y(yv)); ctx.lineTo(PAD.left + plotW, Y(yv)); ctx.stroke();
      ctx.fillText(fmt(yv), PAD.left - 6, Y(yv) + 4);
    }
    ctx.textAlign = "center";
    var xStep = niceStep(x1 - x0, 6);
    for (var xv = Math.ceil(x0 / xStep) * xStep; xv <= x1; xv += xStep) {
      ctx.fillText(fmt(xv) + (spec.xunit === undefined ? "s" : spec.xunit), X(xv), PAD.top + plotH + 16);
    }

    markers.forEach(function (m) {
      ctx.fillStyle = m.error ? "rgba(220,40,40,0.18)" : "rgba(255,140,0,0.18)";
      var a = X(m.x), b = X(m.x2 && m.x2 > m.x ? m.x2 : m.x);
      if (b - a >= 2) ctx.fillRect(a, PAD.top, b - a, plotH);
      ctx.strokeStyle = m.error ? "#d22" : "#e67e00";
      ctx.beginPath(); ctx.moveTo(a, PAD.top); ctx.lineTo(a, PAD.top + plotH); ctx.stroke();
      ctx.fillStyle = ctx.strokeStyle;
      ctx.textAlign = "left";
      ctx.fillText(m.label, a + 3, PAD.top + 12);
    });

    ctx.lineWidth = 2;
    function missing(p) { return !p || p[1] === null || p[1] === undefined || isNaN(p[1]); }
    series.forEach(function (s) {
      ctx.strokeStyle = ctx.fillStyle = s.color;
      ctx.beginPath();
      var pen = false;
      s.points.forEach(function (p, i) {
        if (missing(p)) { pen = false; return; }
        drawn++;
        if (pen) ctx.lineTo(X(p[0]), Y(p[1])); else ctx.moveTo(X(p[0]), Y(p[1]));
        pen = true;
        if (missing(s.points[i - 1]) && missing(s.points[i + 1])) {  // a lone value: a dot
          ctx.fillRect(X(p[0]) - 3, Y(p[1]) - 3, 6, 6);
        }
      });
      ctx.stroke();
    });

    var lx = PAD.left + plotW;
    ctx.textAlign = "right";
    for (var i = series.length - 1; i >= 0; i--) {
      var s = series[i], last = null;
      for (var j = s.points.length - 1; j >= 0 && last === null; j--) last = s.points[j][1];
      var text = s.name + (last === null || last === undefined ? "" : " " + fmt(last));
      ctx.fillStyle = s.color;
      ctx.fillText(text, lx, 16);
      lx -= ctx.measureText(text).width + 14;
      ctx.fillRect(lx + 4, 8, 8, 8);
    }
    canvas.dataset.points = String(drawn);
  }

  global.QSCharts = {line: line};
})(typeof window !== "undefined" ? window : this);
