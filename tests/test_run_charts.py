"""What a headless run leaves behind: the --html report with the queue section, and the --plot PNG."""

import json
import struct

import pytest

from helpers import locust, tails
from queuestorm.html_report import MARK, add_section


def png_size(path) -> tuple[int, int]:
    with open(path, "rb") as f:
        head = f.read(24)
    assert head[:8] == b"\x89PNG\r\n\x1a\n" and head[12:16] == b"IHDR", head
    return struct.unpack(">II", head[16:24])


def embedded_doc(page: str) -> dict:
    start = page.index("QueueView.render(") + len("QueueView.render(")
    end = page.index(', document.getElementById("queuestorm"))', start)
    return json.loads(page[start:end].replace("<\\/", "</"))


def test_headless_run_leaves_a_report_with_the_queue_charts_and_a_plot(tmp_path, redis_url, queue, run_id):
    pytest.importorskip("matplotlib", reason="--plot needs matplotlib: pip install -e '.[plot]'")
    faults = tmp_path / "faults.yaml"
    faults.write_text("- {kind: client-kill, at: 1}\n")
    html, png, report = tmp_path / "run.html", tmp_path / "run.png", tmp_path / "verdict.json"
    result = locust("--users", "3", "--spawn-rate", "3", "--run-time", "3s", "--rate", "100", "--queue", queue,
                    "--faults", str(faults), "--html", str(html), "--plot", str(png), "--report", str(report),
                    env={"REDIS_URL": redis_url, "QS_RUN_ID": run_id})
    assert result.returncode == 0, tails(result)
    assert png_size(png) == (1200, 900)
    page = html.read_text()
    assert page.count(MARK) == 1 and "QSCharts" in page and "<script src=" not in page.split(MARK)[1]
    doc = embedded_doc(page)
    verdict = json.loads(report.read_text())
    assert doc["run_id"] == run_id and len(doc["points"]) >= 3
    assert doc["verdict"]["verdict"] == verdict["verdict"] == "pass"
    assert doc["verdict"]["enqueued"] == verdict["enqueued"] == doc["points"][-1]["enqueued"]
    assert [f["kind"] for f in doc["faults"]] == ["client-kill"]


def test_the_section_goes_in_once_before_the_end_of_the_body():
    doc = {"run_id": "r", "protocol": "list", "points": [], "faults": [], "verdict": {"verdict": "pass",
                                                                                      "lost_ids": ["</script>"]}}
    page = add_section("<html><body><div id=root></div></body></html>", doc)
    assert page.endswith("</section></body></html>") and page.count(MARK) == 1
    assert add_section(page, doc) == page
    assert embedded_doc(page)["verdict"]["lost_ids"] == ["</script>"]


@pytest.mark.parametrize("plot, message", [
    ("chart.jpg", "--plot 'chart.jpg' must name a .png file"),
    ("/nonexistent-dir/x.png", "--plot '/nonexistent-dir/x.png': cannot write in /nonexistent-dir"),
])
def test_bad_plot_paths_exit_2_with_one_line(plot, message):
    result = locust("--users", "1", "--run-time", "1s", "--embedded", "fakeredis", "--plot", plot, timeout=60)
    assert result.returncode == 2, result.stderr[-2000:]
    errors = [line for line in result.stderr.splitlines() if "queuestorm: error:" in line]
    assert errors == [f"queuestorm: error: {message}"]


def test_plot_without_matplotlib_says_how_to_install_it(tmp_path):
    shadow = tmp_path / "shadow" / "matplotlib"
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text("raise ImportError('No module named matplotlib')\n")
    result = locust("--users", "1", "--run-time", "1s", "--embedded", "fakeredis", "--plot", str(tmp_path / "p.png"),
                    env={"PYTHONPATH": str(tmp_path / "shadow")}, timeout=60)
    assert result.returncode == 2, result.stderr[-2000:]
    assert "queuestorm: error: --plot needs matplotlib, which is not installed: pip install 'queuestorm[plot]'" \
        in result.stderr
    assert "Traceback" not in result.stderr
