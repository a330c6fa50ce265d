"""What the UIs show, in a real browser: headless Chromium over ``kedro viz build``'s static
site and over ``kedro mlflow ui``, after one tracked ``kedro run --env=test``.

Needs the system packages ``chromium`` and ``chromium-driver`` and the ``selenium`` package
(dev extras; nothing is downloaded at test time): skipped without them. Screenshots go to the
test's temp folder; ``SAVE_SCREENSHOTS=docs/img python -m pytest -m browser`` also writes them
where the README shows them.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import TEST_MLFLOW_DB
from tests.test_viz import _registered_pipelines

pytestmark = [pytest.mark.browser, pytest.mark.e2e]

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
if not (CHROMIUM and CHROMEDRIVER):
    pytest.skip("no chromium + chromedriver (apt-get install chromium chromium-driver)",
                allow_module_level=True)  # fmt: skip
webdriver = pytest.importorskip("selenium.webdriver")
from selenium.common.exceptions import (  # noqa: E402
    StaleElementReferenceException,
    TimeoutException,
)
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

ENV = {
    **os.environ,
    "KEDRO_DISABLE_TELEMETRY": "1",
    "DO_NOT_TRACK": "1",
    "MLFLOW_WORKERS": "1",
}  # fmt: skip  (one server process starts in half the time)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start(cmd: list[str], cwd: Path, log: Path) -> subprocess.Popen:
    """A server in its own process group, so that stopping it stops its children too."""
    return subprocess.Popen(cmd, cwd=cwd, env=ENV, stdout=log.open("w"),
                            stderr=subprocess.STDOUT, start_new_session=True)  # fmt: skip


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)


def _wait_http(url: str, proc: subprocess.Popen, log: Path, timeout: float = 240) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if proc.poll() is not None:
            pytest.fail(f"{url}: server exited ({proc.returncode}):\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            time.sleep(0.5)
    pytest.fail(f"{url} did not answer in {timeout} s:\n{log.read_text()[-3000:]}")


@pytest.fixture(scope="module")
def browser() -> Iterator:
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                "--window-size=1400,900"):  # fmt: skip
        opts.add_argument(arg)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
    try:
        yield driver
    finally:
        driver.quit()


def _shot(driver, tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    driver.save_screenshot(str(path))
    if os.environ.get("SAVE_SCREENSHOTS"):
        dest = Path(os.environ["SAVE_SCREENSHOTS"])
        dest.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, dest / name)


def _body(driver) -> str:
    return driver.find_element(By.TAG_NAME, "body").text


def _click_if_present(driver, css: str) -> None:
    for el in driver.find_elements(By.CSS_SELECTOR, css):
        if el.is_displayed():
            el.click()
            time.sleep(0.3)


def test_kedro_viz_and_the_mlflow_ui_show_the_project(tracked_project: Path, browser, tmp_path):
    project = tracked_project
    # the MLflow UI takes longest to start: start it first, build the viz site meanwhile
    ml_port, viz_port = _free_port(), _free_port()
    ml_log, viz_log = tmp_path / "mlflow_ui.log", tmp_path / "viz_http.log"
    ml = _start([sys.executable, "-m", "kedro", "mlflow", "ui", "--env=test",
                 "--host", "127.0.0.1", "--port", str(ml_port)], project, ml_log)  # fmt: skip
    viz = None
    try:
        build = subprocess.run([sys.executable, "-m", "kedro", "viz", "build"], cwd=project,
                               env=ENV, capture_output=True, text=True, timeout=300)  # fmt: skip
        assert build.returncode == 0, build.stdout[-2000:] + build.stderr[-2000:]
        viz = _start([sys.executable, "-m", "http.server", str(viz_port), "--bind", "127.0.0.1",
                      "--directory", str(project / "build")], project, viz_log)  # fmt: skip
        _wait_http(f"http://127.0.0.1:{viz_port}/", viz, viz_log, timeout=30)
        _check_kedro_viz(browser, f"http://127.0.0.1:{viz_port}/", project, tmp_path)
        _wait_http(f"http://127.0.0.1:{ml_port}/health", ml, ml_log)
        _check_mlflow_ui(browser, f"http://127.0.0.1:{ml_port}", project, tmp_path)
    finally:
        _stop(ml)
        if viz is not None:
            _stop(viz)


def _check_kedro_viz(driver, url: str, project: Path, tmp_path: Path) -> None:
    driver.get(url)
    WebDriverWait(driver, 60).until(lambda d: d.find_elements(By.CSS_SELECTOR, ".pipeline-node"))
    _click_if_present(driver, ".feature-hints__close")  # the feature tour over the graph
    try:  # and its "you can revisit these hints" notice
        WebDriverWait(driver, 10).until(lambda d: "revisit these hints" not in _body(d))
    except TimeoutException:
        pass
    # the whole chain is wider than the window: Kedro-Viz draws only what is in view, so the
    # default view is checked for nodes of its first and last stages, a stage's own pipeline
    # (below) for the rest
    shown = {e.text for e in driver.find_elements(By.CSS_SELECTOR, ".pipeline-node__text")}
    assert {"generate_embedded_dataset", "evaluate_methods", "neighbors"} <= shown, sorted(shown)
    _shot(driver, tmp_path, "kedro_viz.png")
    driver.find_element(By.CSS_SELECTOR, ".pipeline-list").click()  # the pipeline menu
    WebDriverWait(driver, 10).until(
        lambda d: len(d.find_elements(By.CSS_SELECTOR, ".pipeline-list .menu-option")) > 1
    )
    listed = {e.text for e in driver.find_elements(By.CSS_SELECTOR, ".pipeline-list .menu-option")}
    expected = _registered_pipelines(project)
    assert expected <= listed, f"not in Kedro-Viz's pipeline menu: {sorted(expected - listed)}"
    [mix] = [e for e in driver.find_elements(By.CSS_SELECTOR, ".pipeline-list .menu-option")
             if e.text == "mix"]  # fmt: skip
    mix.click()
    want = {"mix_experts", "r2scp_model", "log_pytorch_model"}

    def node_texts(d) -> set[str]:  # the graph re-renders while it is read: retry on stale nodes
        try:
            return {e.text for e in d.find_elements(By.CSS_SELECTOR, ".pipeline-node__text")}
        except StaleElementReferenceException:
            return set()

    try:
        WebDriverWait(driver, 30).until(lambda d: want <= node_texts(d))
    except TimeoutException:
        missing = sorted(want - node_texts(driver))
        raise AssertionError(f"not drawn in the mix pipeline: {missing}") from None


def _check_mlflow_ui(driver, url: str, project: Path, tmp_path: Path) -> None:
    import mlflow

    client = mlflow.MlflowClient(f"sqlite:///{project / TEST_MLFLOW_DB}")
    exp = client.get_experiment_by_name("r2scp_pipeline")
    children = client.search_runs(
        [exp.experiment_id], "tags.method = 'r2scp' and tags.setting = 'audio_missing'"
    )
    assert len(children) >= 2, "no missing-rate child runs to compare"
    names = {r.info.run_name for r in children}
    # MLflow 3.17 opens experiments in its GenAI view unless the workflow type says otherwise
    # (the experimentKind tag alone is not read): the README links with ?workflowType=...
    query = urllib.parse.urlencode({
        "workflowType": "machine_learning",
        "searchFilter": "tags.method = 'r2scp' and tags.setting = 'audio_missing'",
    })  # fmt: skip
    driver.get(f"{url}/#/experiments/{exp.experiment_id}/runs?{query}")
    WebDriverWait(driver, 90).until(lambda d: "matching runs" in _body(d))
    _click_if_present(driver, "button[aria-label='Close']")  # the assistant side panel
    # the child runs sit under their parent (the kedro run): expand it
    expander = "span.ag-cell-value button[data-component-id*='runnamecellrenderer']"
    WebDriverWait(driver, 30).until(lambda d: d.find_elements(By.CSS_SELECTOR, expander))
    driver.find_elements(By.CSS_SELECTOR, expander)[0].click()
    WebDriverWait(driver, 30).until(lambda d: all(n in _body(d) for n in names))
    body = _body(driver)
    assert "Runs" in body and "Group by" in body and "matching runs" in body
    time.sleep(1)
    _shot(driver, tmp_path, "mlflow_runs.png")
    ids = [r.info.run_id for r in children]
    compare = urllib.parse.urlencode({"runs": json.dumps(ids),
                                      "experiments": json.dumps([exp.experiment_id]),
                                      "workflowType": "machine_learning"})  # fmt: skip
    driver.get(f"{url}/#/compare-runs?{compare}")
    WebDriverWait(driver, 90).until(lambda d: "missing_rate" in _body(d))
    body = _body(driver)
    assert f"Comparing {len(ids)} Runs" in body and all(n in body for n in names)
    assert "Parallel Coordinates Plot" in body and "setting" in body and "method" in body
    time.sleep(1)
    _shot(driver, tmp_path, "mlflow_compare.png")
