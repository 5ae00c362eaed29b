/* Injected into Locust's web UI: while the Queue tab is open, the queuestorm charts show above its table, in the
   UI's light or dark theme. */
(function () {
  "use strict";
  function dark() {
    var rgb = (getComputedStyle(document.body).backgroundColor.match(/\d+/g) || [255, 255, 255]).map(Number);
    return rgb[0] + rgb[1] + rgb[2] < 384;
  }
  setInterval(function () {
    var box = document.getElementById("queuestorm-charts");
    var theme = dark() ? "dark" : "light";
    if (box && (new URLSearchParams(location.search).get("tab") !== "queue" || box.dataset.theme !== theme)) {
      box.parentNode.removeChild(box);
      box = null;
    }
    var table = document.querySelector(".MuiTableContainer-root");
    if (box || !table || new URLSearchParams(location.search).get("tab") !== "queue") return;
    box = document.createElement("div");
    box.id = "queuestorm-charts";
    box.dataset.theme = theme;
    var page = "./queuestorm/" + (theme === "dark" ? "?theme=dark" : "");
    box.innerHTML = '<a href="' + page + '" target="_blank" style="display:block;margin:8px 0;color:inherit">' +
      'Queue charts in their own page &#8599;</a>' +
      // in=tab: the tab's own table below already lists the processes, so the charts page leaves its copy out
      '<iframe src="' + page + (page.indexOf("?") < 0 ? "?" : "&") + 'in=tab" title="queue charts" ' +
      'style="width:100%;height:880px;border:0"></iframe>';
    table.parentNode.insertBefore(box, table);
  }, 500);
})();
