"""Notebook 01 in a real browser: JupyterLab on 127.0.0.1, headless Chromium, Selenium.

The researcher's path, in a git repository holding the repository's notebooks as they
are committed (no injected parameters): open ``notebooks/01_quickstart.ipynb``, Run All
(its last cell closes the grid); the panels render as widgets with whole-word labels and
only the chosen mode's fields; choosing the full-scale study preset and pressing **Run**
shows the estimated cost and waits for **Start anyway** -- **Cancel** starts nothing;
the quickstart preset runs (the panel notices the closed grid and starts its own
cluster), shows its stages, progress and dashboard, and **Stop** ends it with a resume
hint; the runs panel lists the runs and plots them; **Save** leaves ``git status`` clean
(fedjax_grid's Jupyter extension writes the committed form, the full notebook goes to
``runs/notebooks/``) and ``notebooks/sync.py --check`` passes. Screenshots of each step go
to ``benchmarks/out/browser/`` (or ``$FEDJAX_GRID_BROWSER_OUT``).

Needs the Debian packages ``chromium`` and ``chromium-driver`` and
``pip install -e ".[browser]"`` (selenium, jupyterlab); skipped, saying which is
missing, without them. Run with ``python -m pytest tests/browser -s``.
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

import pytest

from tests.notebooks.nbrun import NOTEBOOKS, REPO

pytestmark = pytest.mark.slow

CHROMIUM = os.environ.get("FEDJAX_GRID_CHROMIUM") or shutil.which("chromium") or \
    shutil.which("chromium-browser")
CHROMEDRIVER = os.environ.get("FEDJAX_GRID_CHROMEDRIVER") or shutil.which("chromedriver")
SHOTS = pathlib.Path(os.environ.get("FEDJAX_GRID_BROWSER_OUT", REPO / "benchmarks" / "out" / "browser"))
NOTEBOOK = "notebooks/01_quickstart.ipynb"
STUDY_PRESET = "paper-vgg16-cifar10-independent"
#: local epochs of the run that is stopped: rounds long enough for Stop to land inside one
LONG_EPOCHS = 6


def _missing() -> list[str]:
    missing = []
    if not CHROMIUM:
        missing.append("chromium (apt-get install chromium)")
    if not CHROMEDRIVER:
        missing.append("chromedriver (apt-get install chromium-driver)")
    for mod, pkg in (("selenium", "selenium"), ("jupyterlab", "jupyterlab")):
        if importlib.util.find_spec(mod) is None:
            missing.append(f"{pkg} (pip install -e '.[browser]')")
    if not shutil.which("git"):
        missing.append("git")
    return missing


if _missing():
    pytest.skip("the real-browser test needs " + ", ".join(_missing()), allow_module_level=True)

from selenium import webdriver  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.common.keys import Keys  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _git(repo, *args) -> str:
    return subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True,
                          text=True).stdout


def _env(root: pathlib.Path) -> dict:
    return {**os.environ, "PYTHONPATH": os.pathsep.join(
        p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p),
        "JUPYTERLAB_SETTINGS_DIR": str(root / "user-settings"),
        "JUPYTERLAB_WORKSPACES_DIR": str(root / "workspaces"),
        "JUPYTER_RUNTIME_DIR": str(root / "runtime")}


def _repository(root: pathlib.Path) -> pathlib.Path:
    """A git repository with the notebooks folder, .gitattributes and .gitignore, committed,
    and the notebooks' git filter configured (python notebooks/sync.py --install-filter)."""
    repo = root / "repo"
    shutil.copytree(NOTEBOOKS, repo / "notebooks",
                    ignore=shutil.ignore_patterns("__pycache__", ".ipynb_checkpoints", "runs"))
    for name in (".gitattributes", ".gitignore"):
        shutil.copy(REPO / name, repo / name)
    _git(repo, "init", "-q")
    _git(repo, "add", "-A")
    _git(repo, "-c", "user.email=t@example.org", "-c", "user.name=t", "commit", "-qm", "notebooks")
    subprocess.run([sys.executable, "notebooks/sync.py", "--install-filter"], cwd=repo,
                   check=True, capture_output=True, env=_env(root))
    return repo


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """JupyterLab serving the repository, on 127.0.0.1 with a token, fedjax_grid's extension on."""
    root = tmp_path_factory.mktemp("lab")
    repo = _repository(root)
    settings = root / "user-settings" / "@jupyterlab" / "notebook-extension"
    settings.mkdir(parents=True)
    # Render every cell (no virtual scrolling), so the whole page can be searched.
    (settings / "tracker.jupyterlab-settings").write_text(json.dumps({"windowingMode": "none"}))
    port, token = _free_port(), secrets.token_hex(16)
    log = open(root / "jupyterlab.log", "w")
    # The extension is what `pip install .` (jupyter-config/) or `sync.py --install` enable.
    proc = subprocess.Popen(
        [sys.executable, "-m", "jupyterlab", "--no-browser", "--ip=127.0.0.1", f"--port={port}",
         f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={repo}",
         "--ServerApp.open_browser=False", "--LabApp.news_url=None",
         "--ServerApp.jpserver_extensions={'fedjax_grid.jupyter_hygiene': True}",
         "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
         *(["--allow-root"] if hasattr(os, "geteuid") and os.geteuid() == 0 else [])],
        cwd=repo, env=_env(root), stdout=log, stderr=subprocess.STDOUT)
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
                tail = (root / "jupyterlab.log").read_text()[-2000:]
                raise RuntimeError(f"JupyterLab did not start: {tail}")
            time.sleep(0.5)
        yield {"url": url, "token": token, "root": root, "repo": repo}
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


def _button(driver, label: str, within: str | None = None):
    """The widget button labelled ``label`` (in the panel holding a button ``within``)."""
    scope = "" if within is None else \
        f"//div[contains(@class,'widget-vbox')][.//button[normalize-space(.)='{within}']]"
    return driver.find_element(By.XPATH, f"{scope}//button[contains(@class,'widget-button') and "
                                         f"normalize-space(.)='{label}']")


_RUN_PANEL = ("//div[contains(@class,'widget-vbox')][.//div[contains(@class,'widget-hprogress')]"
              "[.//label[normalize-space(.)='rounds']]]")


def _status(driver) -> str:
    """The run panel's text: estimate, status line, dashboard link and stage log."""
    return driver.find_element(By.XPATH, _RUN_PANEL).text


def _progress_percent(driver) -> float:
    bar = driver.find_element(By.XPATH, _RUN_PANEL + "//div[contains(@class,'widget-hprogress')]"
                                                     "//div[contains(@class,'progress-bar')]")
    m = re.search(r"width:\s*([\d.]+)%", bar.get_attribute("style") or "")
    return float(m.group(1)) if m else 0.0


def _choose(driver, label: str, option: str) -> None:
    """Pick ``option`` in the dropdown labelled ``label`` that offers it (hidden ones too, as
    a user would after opening its section; data's and server's 'mode' differ by options):
    select it and send the change event the widget listens to."""
    selects = driver.find_elements(By.XPATH, f"//div[contains(@class,'widget-dropdown')]"
                                             f"[.//label[normalize-space(.)='{label}']]//select")
    for select in selects:
        ok = driver.execute_script(
            "const s = arguments[0]; const i = [...s.options].findIndex(o => o.text === arguments[1]);"
            "if (i < 0) return false; s.selectedIndex = i;"
            "s.dispatchEvent(new Event('change', {bubbles: true})); return true;", select, option)
        if ok:
            return
    raise AssertionError(f"no {label!r} dropdown offers {option!r}")


def _selected(driver, label: str) -> str:
    """The option shown by the first dropdown labelled ``label``."""
    select = driver.find_element(By.XPATH, f"//div[contains(@class,'widget-dropdown')]"
                                           f"[.//label[normalize-space(.)='{label}']]//select")
    return driver.execute_script("const s = arguments[0]; return s.options[s.selectedIndex].text;",
                                 select)


def _shown_labels(driver) -> dict:
    """Visible widget labels -> whether their text fits (not cut with an ellipsis)."""
    return driver.execute_script(
        "const out = {}; for (const l of document.querySelectorAll('.widget-label')) {"
        "  if (l.offsetParent === null || !l.textContent.trim()) continue;"
        "  out[l.textContent.trim()] = l.scrollWidth <= l.clientWidth + 1; } return out;")


def _open_accordion(driver, title: str) -> None:
    heads = driver.find_elements(By.XPATH, f"//*[contains(@class,'Collapse-header')]"
                                           f"[normalize-space(.)='{title}']")
    assert heads, f"no accordion section {title!r}"
    heads[0].click()


@pytest.fixture(scope="module")
def notebook(lab, browser):
    """Notebook 01 opened and Run All done (its last cell closed the grid)."""
    d = browser
    d.get(f"{lab['url']}/lab/tree/{NOTEBOOK}?token={lab['token']}")
    _wait(d, "the notebook to open", lambda d: d.find_elements(By.CSS_SELECTOR, ".jp-Notebook .jp-Cell"), 120)
    time.sleep(3)
    for label in ("Select", "No"):   # a kernel choice (python3 preselected), news
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
    t0 = time.time()
    _click_menu(d, "Run", "Run All Cells")
    n_code = len(_prompts(d))
    _wait(d, "every cell to run", lambda d: (lambda p: len(p) == n_code and all(
        re.fullmatch(r"\[\d+\]:", x) for x in p))(_prompts(d)), 600)
    return {"driver": d, "run_all_s": time.time() - t0, "repo": lab["repo"]}


def test_run_all_renders_the_panels(notebook):
    d = notebook["driver"]
    errors = [e.text for e in d.find_elements(
        By.CSS_SELECTOR, ".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']")
        if "Traceback" in e.text or "Error" in e.text]
    assert not errors, errors[:2]
    page = d.find_element(By.TAG_NAME, "body").text
    for fallback in ("VBox(children", "RunPanel object", "ClusterPanel object", "ConfigPanel object",
                     "RunsPanel object", "Loading widget", "Error displaying widget"):
        assert fallback not in page, fallback
    assert "XLA's own log lines" in page and "Very slow compile" not in page
    for label in ("Run", "Stop", "Estimate"):
        assert _button(d, label).is_displayed()
    headers = [e.text for e in d.find_elements(By.CSS_SELECTOR, "table.fedjax-grid-workers th")]
    assert "tasks ok" in headers and "memory (GiB)" in headers, headers
    links = [a.get_attribute("href") for a in d.find_elements(By.XPATH, "//a[contains(@href,'/status')]")]
    assert any(re.match(r"http://127\.0\.0\.1:\d+/status", h or "") for h in links), links
    runs = [e.text for e in d.find_elements(By.CSS_SELECTOR, "table.fedjax-grid-runs td")]
    assert "run" in runs and "finished" in runs and "3/3" in runs, runs   # the notebook's run
    d.execute_script("arguments[0].scrollIntoView({block: 'center'})",
                     d.find_element(By.CSS_SELECTOR, "table.fedjax-grid-workers"))
    _shot(d, "1-after-run-all-cluster-panel")
    # The config panel: whole-word labels that fit, only the chosen mode's fields.
    _open_accordion(d, "server")
    _wait(d, "the server section", lambda d: "bn calibration examples" in _shown_labels(d), 20)
    labels = _shown_labels(d)
    assert "buffer size" not in labels and "concurrency" not in labels      # sync: hidden
    _choose(d, "mode", "async")
    _wait(d, "the async fields", lambda d: "buffer size" in _shown_labels(d), 20)
    labels = _shown_labels(d)
    assert {"concurrency", "max staleness"} <= set(labels)
    d.execute_script("arguments[0].scrollIntoView({block: 'center'})",
                     d.find_element(By.XPATH, "//label[normalize-space(.)='buffer size']"))
    _shot(d, "2-config-panel-server-async")
    cut = [text for text, fits in labels.items() if not fits]
    assert not cut, cut
    _open_accordion(d, "grid")
    _wait(d, "the grid section", lambda d: "deadline (s)" in _shown_labels(d), 20)
    assert "quorum" not in _shown_labels(d)                                  # async: hidden
    _choose(d, "mode", "sync")
    _wait(d, "the sync fields", lambda d: "quorum" in _shown_labels(d), 20)
    labels = _shown_labels(d)
    cut = [text for text, fits in labels.items() if not fits]
    assert not cut and "connect timeout (s)" in labels, cut


def test_a_study_preset_waits_for_confirmation_and_cancel_starts_nothing(notebook):
    d = notebook["driver"]
    _choose(d, "preset", STUDY_PRESET)                     # VGG-16, 50 clients, 90 rounds
    _wait(d, "the preset in the panel", lambda d: _selected(d, "source") == "cifar10", 60)
    _choose(d, "source", "digits")                          # the archive is not needed to estimate
    _wait(d, "digits in the panel", lambda d: _selected(d, "source") == "digits", 60)
    _button(d, "Run").click()
    _wait(d, "the closed grid to be noticed",
          lambda d: "the grid given to this panel is closed" in _status(d), 120)
    _wait(d, "the estimate and the confirmation", lambda d: _button(d, "Start anyway").is_displayed(), 600)
    text = _status(d)
    assert re.search(r"estimate: [\d.]+ h wall time \(\d+ (s|min) compile \+ 90 rounds x ", text), text
    assert re.search(r"paper-vgg16-cifar10-independent is estimated at [\d.]+ h, above 10 min: press "
                     r"Start anyway to run it, or Cancel", text), text
    assert _progress_percent(d) == 0 and "round 1/90" not in text
    d.execute_script("arguments[0].scrollIntoView({block: 'start'})", _button(d, "Run"))
    _shot(d, "3-study-preset-estimate-and-confirmation")
    _button(d, "Cancel").click()
    _wait(d, "the cancellation", lambda d: "not started" in _status(d), 60)
    assert "cancelled" in _status(d) and not _button(d, "Start anyway").is_displayed()
    assert not _button(d, "Run").get_attribute("disabled")


def test_run_and_stop_in_the_panel(notebook):
    d = notebook["driver"]
    _choose(d, "preset", "quickstart")                     # 8 rounds, estimated below 10 min
    _wait(d, "the status to forget the cancelled run", lambda d: "cancelled" not in _status(d), 20)
    # Rounds long enough that Stop lands inside one (still estimated below 10 min): typed
    # into the field as a user does, then Tab.
    _open_accordion(d, "training")
    _wait(d, "the training section", lambda d: "local epochs" in _shown_labels(d), 20)
    field = d.find_element(By.XPATH, "//div[contains(@class,'widget-inline-hbox')]"
                                     "[.//label[normalize-space(.)='local epochs']]//input")
    field.send_keys(Keys.CONTROL, "a")   # select what is there, type over it
    field.send_keys(str(LONG_EPOCHS), Keys.TAB)
    _wait(d, "the panel to take the epochs", lambda d: field.get_attribute("value") == str(LONG_EPOCHS), 20)
    _button(d, "Run").click()
    _wait(d, "the estimate", lambda d: re.search(r"estimate: \d+ (s|min) wall time", _status(d)), 300)
    _wait(d, "the run's own cluster (the notebook's grid is closed)",
          lambda d: "starting a LocalCluster of 2 worker processes" in _status(d), 300)
    _wait(d, "a start-up stage with its time",
          lambda d: re.search(r"loading and partitioning digits.*: \d+\.\d s", _status(d)), 300)
    _wait(d, "round 1 in the status line",
          lambda d: re.search(r"round [1-7]/8: global accuracy \d+\.\d %", _status(d)), 600)
    _wait(d, "the progress bar to move", lambda d: _progress_percent(d) > 0, 30)
    _wait(d, "the dashboard image",
          lambda d: [i for i in d.find_elements(By.XPATH, _RUN_PANEL + "//img")
                     if (i.get_attribute("src") or "").startswith("data:image/png")
                     and i.size["width"] > 300], 60)
    assert re.search(r"Dask dashboard: http://127\.0\.0\.1:\d+/status", _status(d)), _status(d)
    moved = _progress_percent(d)
    d.execute_script("arguments[0].scrollIntoView({block: 'start'})", _button(d, "Run"))
    _shot(d, "4-running-progress-and-dashboard")
    _watch_stop(d, _button(d, "Stop"))
    t_stop = time.time()
    _button(d, "Stop").click()
    _wait(d, "the run to stop", lambda d: re.search(r"stopped after round (\d) of 8", _status(d))
          or "finished 8 rounds" in _status(d), 600)
    poll_s = time.time() - t_stop
    stop_s = _stop_seconds(d)   # measured in the page: the click to the status text
    _wait(d, "the run's end (figures written, Run enabled)",
          lambda d: "figures: " in _status(d) and not _button(d, "Run").get_attribute("disabled"), 120)
    status = _status(d)
    d.execute_script("arguments[0].scrollIntoView({block: 'start'})", _button(d, "Run"))
    _shot(d, "5-after-stop")
    m = re.search(r"stopped after round (\d) of 8", status)
    assert m, status   # Stop landed before the last round
    assert "fedjax-grid run --resume --out" in status and "figures: global_accuracy.png" in status
    # Stop cut the round in flight instead of waiting for it: its tasks are recorded as
    # 'stopped' (cancelled in flight, or their updates not applied), no row for that round.
    done = int(m.group(1))
    cut = re.search(r"during round (\d+): its (\d+) task\(s\) cancelled or not applied, "
                    r"recorded as 'stopped'", status)
    assert cut and int(cut.group(1)) == done + 1, status
    folder = pathlib.Path(re.search(r"checkpoint in (\S+) \(tick resume", status).group(1))
    folder = folder if folder.is_absolute() else notebook["repo"] / "notebooks" / folder
    rounds, tasks = (_read_csv(folder / f) for f in ("rounds.csv", "tasks.csv"))
    assert [int(r["round"]) for r in rounds] == list(range(1, done + 1))
    stopped = [t for t in tasks if t["status"] == "stopped"]
    assert len(stopped) == int(cut.group(2)) and {int(t["round"]) for t in stopped} == {done + 1}
    round_s = sorted(float(r["round_time_s"]) for r in rounds)[len(rounds) // 2]
    print(f"\nStop to 'stopped' in the browser: {stop_s:.2f} s from the click to the text "
          f"on the page ({poll_s:.1f} s as Selenium's polling saw it; a round takes "
          f"{round_s:.1f} s here; {len(stopped)} tasks of round {done + 1} recorded as stopped)")
    assert stop_s < 0.5 * round_s, (stop_s, round_s)   # it did not wait for the round
    assert "IOLoop is closed" not in d.find_element(By.TAG_NAME, "body").text
    assert 0 < moved <= 100 and _progress_percent(d) == pytest.approx(100 * int(m.group(1)) / 8, abs=1)


def _watch_stop(driver, button) -> None:
    """Record in the page when ``button`` is clicked and when the run panel first shows
    that the run stopped (a MutationObserver: no polling between the two)."""
    driver.execute_script(
        "const button = arguments[0], xpath = arguments[1];"
        "const panel = document.evaluate(xpath, document, null,"
        "  XPathResult.FIRST_ORDERED_NODE_TYPE, null).singleNodeValue;"
        "window.__fedjaxStop = {click: null, shown: null};"
        "button.addEventListener('click', () => { window.__fedjaxStop.click = performance.now(); },"
        "  {capture: true, once: true});"
        "const seen = () => { if (window.__fedjaxStop.shown === null &&"
        "  /stopped after round \\d of 8|finished 8 rounds/.test(panel.innerText))"
        "  window.__fedjaxStop.shown = performance.now(); };"
        "new MutationObserver(seen).observe(panel,"
        "  {subtree: true, childList: true, characterData: true, attributes: true});",
        button, _RUN_PANEL)


def _stop_seconds(driver) -> float:
    """Seconds from the click on Stop to the panel's 'stopped' text, as the page saw them."""
    t = driver.execute_script("return window.__fedjaxStop;")
    assert t and t["click"] is not None and t["shown"] is not None, t
    return (t["shown"] - t["click"]) / 1000.0


def _read_csv(path: pathlib.Path) -> list[dict]:
    import csv
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_the_runs_panel_lists_and_plots_the_runs(notebook):
    d = notebook["driver"]
    _wait(d, "the panel's run in the runs table", lambda d: "stopped" in [
        e.text for e in d.find_elements(By.CSS_SELECTOR, "table.fedjax-grid-runs td")], 60)
    rows = d.find_elements(By.CSS_SELECTOR, "table.fedjax-grid-runs tbody tr")
    assert len(rows) == 2, [r.text for r in rows]
    assert re.search(r"%", rows[0].text) and re.search(r"\d+\.\d s", rows[0].text)
    select = d.find_element(By.XPATH, "//div[contains(@class,'widget-select-multiple')]//select")
    d.execute_script("for (const o of arguments[0].options) o.selected = true;"
                     "arguments[0].dispatchEvent(new Event('change', {bubbles: true}));", select)
    _button(d, "Plot", within="Export to TensorBoard").click()
    _wait(d, "the comparison figure",
          lambda d: [i for i in d.find_elements(By.XPATH, "//div[contains(@class,'widget-vbox')]"
                                                          "[.//button[normalize-space(.)='Plot']]//img")
                     if (i.get_attribute("src") or "").startswith("data:image/png")], 60)
    d.execute_script("arguments[0].scrollIntoView({block: 'start'})",
                     d.find_element(By.CSS_SELECTOR, "table.fedjax-grid-runs"))
    _shot(d, "6-runs-panel-compared")


def test_save_leaves_git_status_clean(notebook, lab):
    d, repo = notebook["driver"], lab["repo"]
    _click_menu(d, "File", "Save Notebook")
    _wait(d, "the notebook to be saved",
          lambda d: not d.find_elements(By.CSS_SELECTOR, ".jp-mod-dirty"), 60)
    _wait(d, "git status to be clean after the save (the extension writes the committed form)",
          lambda d: _git(repo, "status", "--porcelain", "--untracked-files=all") == "", 60)
    full = json.loads((repo / "runs" / "notebooks" / "01_quickstart.ipynb").read_text())
    outputs = sum(len(c.get("outputs", [])) for c in full["cells"])
    assert outputs >= 10, outputs                      # the outputs are kept, outside git
    check = subprocess.run([sys.executable, "notebooks/sync.py", "--check"], cwd=repo,
                           capture_output=True, text=True, env=_env(lab["root"]))
    assert check.returncode == 0, check.stdout + check.stderr
    print(f"run all {notebook['run_all_s']:.1f} s; git status clean after save; "
          f"screenshots in {SHOTS}")
