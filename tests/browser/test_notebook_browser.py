"""Notebook 01 in a real browser: JupyterLab on 127.0.0.1, headless Chromium, Selenium.

The researcher's path: open the notebook, Run All (its last cell closes the grid),
then click **Run** in the run panel (it must notice the closed grid and start its
own cluster), watch the start-up stages, the progress bar and the live dashboard,
click **Stop**, and read the resume hint. Screenshots of each step go to
``benchmarks/out/browser/`` (or ``$FEDJAX_GRID_BROWSER_OUT``).

Needs the Debian packages ``chromium`` and ``chromium-driver`` and
``pip install -e ".[browser]"`` (selenium, jupyterlab); skipped, saying which is
missing, without them. Run with ``python -m pytest -m slow tests/browser -s``.
"""
from __future__ import annotations

import importlib.util
import json
import os
import pathlib
import re
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.request

import nbformat
import pytest

from tests.notebooks.nbrun import NOTEBOOKS, REPO, inject_parameters

pytestmark = pytest.mark.slow

CHROMIUM = os.environ.get("FEDJAX_GRID_CHROMIUM") or shutil.which("chromium") or \
    shutil.which("chromium-browser")
CHROMEDRIVER = os.environ.get("FEDJAX_GRID_CHROMEDRIVER") or shutil.which("chromedriver")
SHOTS = pathlib.Path(os.environ.get("FEDJAX_GRID_BROWSER_OUT", REPO / "benchmarks" / "out" / "browser"))
#: The panel's run: enough rounds that Stop lands mid-run.
ROUNDS = 6


def _missing() -> list[str]:
    missing = []
    if not CHROMIUM:
        missing.append("chromium (apt-get install chromium)")
    if not CHROMEDRIVER:
        missing.append("chromedriver (apt-get install chromium-driver)")
    for mod, pkg in (("selenium", "selenium"), ("jupyterlab", "jupyterlab")):
        if importlib.util.find_spec(mod) is None:
            missing.append(f"{pkg} (pip install -e '.[browser]')")
    return missing


if _missing():
    pytest.skip("the real-browser test needs " + ", ".join(_missing()), allow_module_level=True)

from selenium import webdriver  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """JupyterLab serving a folder with notebook 01 (small parameters), on 127.0.0.1 with a token."""
    root = tmp_path_factory.mktemp("lab")
    nb = nbformat.read(NOTEBOOKS / "01_quickstart.ipynb", as_version=4)
    inject_parameters(nb, {"ROUNDS": ROUNDS, "NUM_CLIENTS": 4, "WIDTH": 0.125,
                           "MAX_TEST_EXAMPLES": 256, "WORKERS": 2, "OUT_ROOT": str(root / "runs")})
    nbformat.write(nb, root / "01_quickstart.ipynb")
    settings = root / "user-settings" / "@jupyterlab" / "notebook-extension"
    settings.mkdir(parents=True)
    # Render every cell (no virtual scrolling), so the whole page can be searched.
    (settings / "tracker.jupyterlab-settings").write_text(json.dumps({"windowingMode": "none"}))
    port, token = _free_port(), secrets.token_hex(16)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p),
        "JUPYTERLAB_SETTINGS_DIR": str(root / "user-settings"),
        "JUPYTER_RUNTIME_DIR": str(root / "runtime")}
    log = open(root / "jupyterlab.log", "w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "jupyterlab", "--no-browser", "--ip=127.0.0.1", f"--port={port}",
         f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={root}",
         "--ServerApp.open_browser=False", "--LabApp.news_url=None",
         "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
         *(["--allow-root"] if hasattr(os, "geteuid") and os.geteuid() == 0 else [])],
        cwd=root, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        t_end = time.time() + 120
        while True:
            try:
                with urllib.request.urlopen(f"{url}/api/status?token={token}", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.time() > t_end:
                raise RuntimeError(f"JupyterLab did not start: {(root / 'jupyterlab.log').read_text()[-2000:]}")
            time.sleep(0.5)
        yield {"url": url, "token": token, "root": root}
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for arg in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--window-size=1400,1800",
                f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}"):
        opts.add_argument(arg)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
    driver.set_page_load_timeout(120)
    yield driver
    driver.quit()


def _wait(driver, what: str, fn, timeout: float):
    """Poll ``fn(driver)`` until it returns something truthy; fail naming ``what``."""
    try:
        return WebDriverWait(driver, timeout, poll_frequency=0.5).until(lambda d: fn(d))
    except Exception:  # noqa: BLE001 - a TimeoutException: say what did not happen
        _shot(driver, f"FAILED-{re.sub(r'[^a-z0-9]+', '-', what.lower())[:40]}")
        raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}") from None


def _shot(driver, name: str) -> pathlib.Path:
    SHOTS.mkdir(parents=True, exist_ok=True)
    path = SHOTS / f"{name}.png"
    driver.save_screenshot(str(path))
    if name.startswith("FAILED"):
        path.with_suffix(".html").write_text(driver.page_source)
    return path


def _click_menu(driver, menu: str, item: str) -> None:
    driver.find_element(By.XPATH, f"//li[contains(@class,'lm-MenuBar-item')]"
                                  f"[.//div[normalize-space(.)='{menu}']]").click()
    _wait(driver, f"the {item!r} menu item",
          lambda d: d.find_elements(By.XPATH, f"//li[contains(@class,'lm-Menu-item')]"
                                              f"[.//div[normalize-space(.)='{item}']]"), 20)[0].click()


def _prompts(driver) -> list[str]:
    return [e.text.strip() for e in driver.find_elements(
        By.CSS_SELECTOR, ".jp-CodeCell .jp-InputArea-prompt")]


def _panel_text(driver, css: str) -> str:
    return " ".join(e.text for e in driver.find_elements(By.CSS_SELECTOR, css))


def _button(driver, label: str):
    return driver.find_element(By.XPATH, f"//button[contains(@class,'widget-button') and "
                                         f"normalize-space(.)='{label}']")


def _status(driver) -> str:
    """The run panel's status line and stage log (the HTML widgets below its progress bar)."""
    box = driver.find_element(By.XPATH, "//div[contains(@class,'widget-vbox')]"
                                        "[.//div[contains(@class,'widget-hprogress')]]")
    return box.text


def _progress_percent(driver) -> float:
    bar = driver.find_element(By.CSS_SELECTOR, ".widget-hprogress .progress-bar")
    style = bar.get_attribute("style") or ""
    m = re.search(r"width:\s*([\d.]+)%", style)
    return float(m.group(1)) if m else 0.0


def test_notebook_01_run_all_then_run_and_stop_in_the_panel(lab, browser):
    d = browser
    d.get(f"{lab['url']}/lab/tree/01_quickstart.ipynb?token={lab['token']}")
    _wait(d, "the notebook to open", lambda d: d.find_elements(By.CSS_SELECTOR, ".jp-Notebook .jp-Cell"), 120)
    time.sleep(3)
    # JupyterLab may ask which kernel to start (python3 is preselected) and about news.
    for label in ("Select", "No"):
        for b in d.find_elements(By.XPATH, f"//*[contains(@class,'jp-Dialog') or "
                                           f"contains(@class,'jp-Notification') or "
                                           f"contains(@class,'Toastify')]//button"
                                           f"[normalize-space(.)='{label}']"):
            if b.is_displayed():
                b.click()
    _wait(d, "the kernel to be idle",
          lambda d: d.find_elements(By.XPATH, "//*[contains(@class,'jp-Notebook-ExecutionIndicator')]"
                                              "[@data-status='idle']")
          or "Idle" in d.find_element(By.TAG_NAME, "body").text, 120)

    # 1. Run All: the notebook top to bottom (its last cell closes the grid).
    t0 = time.time()
    _click_menu(d, "Run", "Run All Cells")
    n_code = len(_prompts(d))
    _wait(d, "every cell to run", lambda d: (lambda p: len(p) == n_code and all(
        re.fullmatch(r"\[\d+\]:", x) for x in p))(_prompts(d)), 300)
    run_all_s = time.time() - t0
    errors = [e.text for e in d.find_elements(
        By.CSS_SELECTOR, ".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']")
        if "Traceback" in e.text or "Error" in e.text]
    assert not errors, errors[:2]
    page = d.find_element(By.TAG_NAME, "body").text
    # Widgets rendered as widgets, not as their text fallback.
    for fallback in ("VBox(children", "RunPanel object", "ClusterPanel object", "ConfigPanel object",
                     "Loading widget", "Error displaying widget"):
        assert fallback not in page, fallback
    assert _button(d, "Run").is_displayed() and _button(d, "Stop").is_displayed()
    _wait(d, "the progress bar widget", lambda d: d.find_elements(By.CSS_SELECTOR, ".widget-hprogress"), 5)
    headers = [e.text for e in d.find_elements(By.CSS_SELECTOR, "table.fedjax-grid-workers th")]
    assert "tasks ok" in headers and "memory (GiB)" in headers, headers
    links = [a.get_attribute("href") for a in d.find_elements(By.XPATH, "//a[contains(@href,'/status')]")]
    assert any(re.match(r"http://127\.0\.0\.1:\d+/status", h or "") for h in links), links
    cluster = d.find_element(By.CSS_SELECTOR, "table.fedjax-grid-workers")
    d.execute_script("arguments[0].scrollIntoView({block: 'center'})", cluster)
    _shot(d, "1-after-run-all-cluster-panel")
    d.execute_script("arguments[0].scrollIntoView({block: 'start'})", _button(d, "Run"))
    _shot(d, "2-after-run-all-run-panel")

    # 2. Run in the panel after the grid was closed: its own cluster, stages, then rounds.
    _button(d, "Run").click()
    _wait(d, "the closed grid to be noticed",
          lambda d: "the grid given to this panel is closed" in _status(d), 60)
    _wait(d, "a start-up stage with its time",
          lambda d: re.search(r"loading and partitioning digits.*: \d+\.\d s", _status(d)), 120)
    _shot(d, "3-run-start-up-stages")
    _wait(d, "round 1 in the status line",
          lambda d: re.search(r"round [1-5]/6: global accuracy \d+\.\d %", _status(d)), 300)
    _wait(d, "the progress bar to move", lambda d: _progress_percent(d) > 0, 30)
    _wait(d, "the dashboard image",
          lambda d: [i for i in d.find_elements(By.CSS_SELECTOR, ".widget-output img")
                     if (i.get_attribute("src") or "").startswith("data:image/png")
                     and i.size["width"] > 300], 60)
    moved = _progress_percent(d)
    d.execute_script("arguments[0].scrollIntoView({block: 'start'})", _button(d, "Run"))
    _shot(d, "4-running-progress-and-dashboard")

    # 3. Stop: the round in flight finishes, the hint says how to resume.
    _button(d, "Stop").click()
    _wait(d, "the run to stop",
          lambda d: re.search(r"stopped after round (\d) of 6", _status(d))
          or "finished 6 rounds" in _status(d), 300)
    status = _status(d)
    d.execute_script("arguments[0].scrollIntoView({block: 'start'})", _button(d, "Run"))
    _shot(d, "5-after-stop")
    m = re.search(r"stopped after round (\d) of 6", status)
    assert m, status  # Stop landed before the last round
    assert "fedjax-grid run --resume --out" in status
    assert "IOLoop is closed" not in d.find_element(By.TAG_NAME, "body").text
    assert 0 < moved <= 100 and _progress_percent(d) == pytest.approx(100 * int(m.group(1)) / 6, abs=1)
    print(f"run all {run_all_s:.1f} s; stopped after round {m.group(1)} of 6; "
          f"screenshots in {SHOTS}")
