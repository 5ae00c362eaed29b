/* Injected into Locust's web UI: while the Queue tab is open, the queuestorm charts show above its table. */
(function () {
  "use strict";
  setInterval(function () {
    var box = document.getElementById("queuestorm-charts");
    if (new URLSearchParams(location.search).get("tab") !== "queue") {
      if (box) box.parentNode.removeChild(box);
      return;
    }
    var table = document.querySelector(".MuiTableContainer-root");
    if (box || !table) return;
    box = document.createElement("div");
    box.id = "queuestorm-charts";
    box.innerHTML = '<a href="./queuestorm/" target="_blank" style="display:block;margin:8px 0">' +
      'Queue charts in their own page &#8599;</a>' +
      '<iframe src="./queuestorm/" title="queue charts" style="width:100%;height:780px;border:0"></iframe>';
    table.parentNode.insertBefore(box, table);
  }, 500);
})();
