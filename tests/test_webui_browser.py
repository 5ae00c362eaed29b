"""The Queue tab in a real browser: headless Chromium (Debian's chromium and chromium-driver, no download) opens the
web UI of a run, the Queue tab, and waits until the charts have drawn real points; the screenshot is kept."""

import os
import shutil

import pytest

from helpers import free_port
from test_webui import get_json, start_web_run, wait_for

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed: pip install -e '.[browser]'")
if not (CHROMIUM and CHROMEDRIVER):
    pytest.skip("headless Chromium is not installed: apt-get install chromium chromium-driver (.ci/run tries)",
                allow_module_level=True)

from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

SCREENSHOT = os.environ.get("QS_SCREENSHOT", "")  # e.g. docs/images/webui-queue-tab.png to refresh the README's



RUN_CHARTS = "canvas.qs-chart:not(.qs-capacity-chart)"  # the run's four charts; a capacity search adds two

def browser():
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1400,1300"):
        options.add_argument(arg)
    return webdriver.Chrome(service=webdriver.ChromeService(executable_path=CHROMEDRIVER), options=options)


def drawn(canvas) -> int:
    return int(canvas.get_attribute("data-points") or 0)


def test_queue_tab_draws_the_run_live(tmp_path, redis_url, queue):
    port = free_port()
    faults = tmp_path / "faults.yaml"
    faults.write_text("- {kind: client-kill, at: 2}\n")
    proc = start_web_run(port, "--users", "4", "--spawn-rate", "4", "--run-time", "12s", "--rate", "300",
                         "--work-ms", "5", "--drain-concurrency", "4", "--grace", "3", "--autoquit", "20", "--queue", queue,
                         "--faults", str(faults), env={"REDIS_URL": redis_url})
    base = f"http://127.0.0.1:{port}"
    driver = None
    try:
        wait_for(lambda: get_json(base + "/queuestorm/stats"), lambda d: len(d["points"]) >= 1, timeout=30)
        driver = browser()
        driver.set_page_load_timeout(20)
        driver.get(base + "/")
        wait = WebDriverWait(driver, 25, poll_frequency=0.3)
        wait.until(lambda d: d.find_element(By.XPATH, "//button[@role='tab'][normalize-space()='Queue']")).click()
        frame = wait.until(lambda d: d.find_element(By.CSS_SELECTOR, "#queuestorm-charts iframe"))
        table = driver.find_element(By.CSS_SELECTOR, ".MuiTableContainer-root")
        wait.until(lambda d: all(name in table.text for name in ("queue (list)", f"inline-{proc.pid}-0", "locust")))
        driver.switch_to.frame(frame)
        charts = wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, RUN_CHARTS))
        assert len(charts) == 4
        wait.until(lambda d: all(drawn(c) >= 3 for c in d.find_elements(By.CSS_SELECTOR, RUN_CHARTS)[:2]))
        assert not driver.find_elements(By.ID, "qs-processes")  # the tab's table lists the processes, once
        driver.switch_to.default_content()
        assert len(driver.find_elements(By.CSS_SELECTOR, ".MuiTableContainer-root")) == 1
        if SCREENSHOT:
            driver.switch_to.frame(frame)
            wait.until(lambda d: drawn(d.find_element(By.ID, "qs-e2e")) >= 3)
            driver.switch_to.default_content()
        driver.save_screenshot(SCREENSHOT or str(tmp_path / "queue-tab.png"))
    finally:
        if driver is not None:
            driver.quit()
        proc.terminate()
        proc.communicate(timeout=30)


def test_the_queue_page_of_its_own_lists_the_processes(tmp_path, redis_url, queue):
    port = free_port()
    proc = start_web_run(port, "--users", "2", "--spawn-rate", "2", "--run-time", "20s", "--rate", "50",
                         "--autoquit", "5", "--queue", queue, env={"REDIS_URL": redis_url})
    base = f"http://127.0.0.1:{port}"
    driver = None
    try:
        wait_for(lambda: get_json(base + "/queuestorm/stats"), lambda d: len(d["points"]) >= 1, timeout=30)
        driver = browser()
        driver.get(base + "/queuestorm/")
        wait = WebDriverWait(driver, 25, poll_frequency=0.3)
        wait.until(lambda d: f"inline-{proc.pid}-0" in d.find_element(By.ID, "qs-processes").text)
    finally:
        if driver is not None:
            driver.quit()
        proc.terminate()
        proc.communicate(timeout=30)


def test_html_report_draws_the_queue_charts_offline(tmp_path, redis_url, queue):
    from helpers import locust

    html = tmp_path / "run.html"
    result = locust("--users", "2", "--spawn-rate", "2", "--run-time", "3s", "--rate", "100", "--queue", queue,
                    "--html", str(html), env={"REDIS_URL": redis_url})
    assert result.returncode == 0, result.stderr[-3000:]
    driver = browser()
    try:
        driver.get(html.as_uri())
        wait = WebDriverWait(driver, 15, poll_frequency=0.3)
        charts = wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#queuestorm-report " + RUN_CHARTS))
        assert len(charts) == 4 and all(drawn(c) >= 3 for c in charts[:2])
        assert "verdict: PASS" in driver.find_element(By.ID, "qs-verdict").text
    finally:
        driver.quit()
