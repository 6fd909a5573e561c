"""RunPanel and ClusterPanel on a real LocalCluster: real rounds, real checkpoints."""
import pathlib
import re
import time

import pandas as pd
import pytest

from fedjax_grid import cli
from fedjax_grid.widgets import ClusterPanel, ConfigPanel, RunPanel, worker_table
from tests.widgets.conftest import tiny_config


def test_run_records_rounds_without_blocking(grid, tmp_path):
    panel = RunPanel(ConfigPanel(tiny_config(rounds=2)), grid=grid, out_dir=tmp_path / "run")
    cluster = ClusterPanel(grid, records=panel)  # before the run: it refreshes itself
    assert cluster.table["tasks_done"].sum() == 0
    seen = []
    panel.status.observe(lambda change: seen.append(change["new"]), "value")
    t0 = time.time()
    panel.run_button.click()
    click_s = time.time() - t0
    # the click returns at once: the run is in the thread, not finished yet
    assert panel.thread is not None and panel.thread.is_alive() and panel.progress.value == 0
    assert panel.run_button.disabled and not panel.stop_button.disabled
    assert panel.wait(timeout=300), "the run did not finish"
    assert click_s < 0.25 * (time.time() - t0), click_s  # relative to the run it started
    assert panel.error is None, panel.status.value
    rounds = panel.run.records.rounds()
    assert list(rounds["round"]) == [1, 2] and (rounds["clients_ok"] == 4).all()
    assert panel.progress.value == 2 == panel.progress.max
    assert [r["round"] for r in panel.rows] == [1, 2]
    assert panel.redraws == 2  # the live dashboard was redrawn every round
    (out,) = panel.output.outputs
    assert out["data"]["image/png"].startswith("iVBORw0KGgo")  # base64 of a PNG header
    assert len(panel.figure.axes) >= 4
    assert "finished 2 rounds" in panel.status.value
    assert not panel.run_button.disabled and panel.stop_button.disabled
    assert (tmp_path / "run" / "rounds.csv").is_file()
    # Start-up stages before the first round, then rounds counted from 1, in percent.
    for text in ("loading and partitioning digits", "building vgg11",
                 "round 1/2: compiling the model on the workers"):
        assert any(text in v for v in seen), seen
        assert re.search(re.escape(text) + r".*: \d+\.\d s", panel.stage_log.value), \
            panel.stage_log.value
    assert any(re.search(r"round 1/2: global accuracy \d+\.\d %", v) for v in seen), seen
    assert any(re.search(r"round 2/2: global accuracy", v) for v in seen), seen
    assert "round 2/2 · accuracy" in panel.figure.get_suptitle()

    table = cluster.table  # refreshed after every round, no refresh() call
    assert set(table["address"]) == set(grid.workers())
    assert table["threads"].tolist() == [1, 1]
    assert table["tasks_done"].sum() == 8 and table["failures"].sum() == 0
    assert (table["memory_gib"] > 0).all()
    assert grid.dashboard_link in cluster.html.value
    for addr in table["address"]:
        assert addr in cluster.html.value
    page = cluster.html.value
    assert re.search(r'<a href="http://127\.0\.0\.1:\d+/status" target="_blank"[^>]* '
                     r'style="[^"]*underline', page), page  # a link that looks like one
    assert "<th" in page and ">tasks ok</th>" in page and ">memory (GiB)</th>" in page
    assert "padding" in page  # headers do not run together


# suite budget (~13 s): the panel's resume of a finished run stays in the default run
# (test_a_panel_run_writes_figures_links_the_dashboard_and_resumes_finished_runs)
@pytest.mark.slow
def test_stop_then_resume_from_cli_then_from_panel(grid, tmp_path):
    out = tmp_path / "run"
    config_panel = ConfigPanel(tiny_config(rounds=3))
    panel = RunPanel(config_panel, grid=grid, out_dir=out)
    panel.round_callbacks.append(lambda row: panel.stop_button.click())  # Stop after round 0
    panel.run_button.click()
    assert panel.wait(timeout=300)
    assert panel.error is None, panel.status.value
    assert panel.stopped and panel.run.round == 1 and not panel.run.done
    assert list(panel.run.records.rounds()["round"]) == [1]
    assert "stopped after round 1 of 3" in panel.status.value
    assert len(list((out / "checkpoints").glob("ckpt-*"))) == 1
    # round 2, launched ahead, was cut: the dashboard is drawn again after the Stop and its
    # timeline shows those tasks as 'stopped'
    stopped = panel.run.records.tasks().query("status == 'stopped'")
    assert len(stopped) and set(stopped["round"]) == {2}
    assert panel.redraws == 2, panel.redraws
    legends = [t.get_text() for ax in panel.figure.axes if ax.get_legend() is not None
               for t in ax.get_legend().get_texts()]
    assert "stopped" in legends, legends

    # The CLI continues the run the panel stopped (one more round) ...
    saved = config_panel.save(tmp_path / "saved.json")
    addr = grid.client.scheduler.address
    rc = cli.main(["run", "--config", str(saved), "--out", str(out), "--resume", "--rounds", "1",
                   "--scheduler", addr, "--quiet", "--no-plots"])
    assert rc == 0
    assert list(pd.read_csv(out / "rounds.csv")["round"]) == [1, 2]

    # ... and the panel finishes what the CLI left, from the run's config.json.
    again = ConfigPanel()
    again.load(out / "config.json")
    panel2 = RunPanel(again, grid=grid, out_dir=out, resume=True)
    panel2.start()
    assert panel2.wait(timeout=300)
    assert panel2.error is None, panel2.status.value
    assert panel2.run.done and list(panel2.run.records.rounds()["round"]) == [1, 2, 3]
    assert panel2.progress.value == 3


def test_invalid_config_is_not_started(grid, tmp_path):
    config_panel = ConfigPanel(tiny_config())
    config_panel.widgets["training.rounds"].value = 0
    panel = RunPanel(config_panel, grid=grid, out_dir=tmp_path / "x")
    panel.run_button.click()
    assert panel.thread is None and panel.run is None
    assert "not started" in panel.status.value and "training.rounds=0" in panel.status.value


def test_existing_checkpoints_without_resume_are_reported(grid, tmp_path):
    (tmp_path / "r" / "checkpoints" / "ckpt-00000001").mkdir(parents=True)
    panel = RunPanel(ConfigPanel(tiny_config()), grid=grid, out_dir=tmp_path / "r")
    panel.start()
    assert panel.wait(timeout=120)
    assert panel.error is not None and "--resume" in panel.status.value
    assert panel.progress.bar_style == "danger" and not panel.run_button.disabled


def test_worker_table_counts_and_departed_workers():
    workers = {"tcp://127.0.0.1:1": {"name": "desktop-0", "nthreads": 2, "memory_limit": 2**31},
               "tcp://127.0.0.1:2": {"name": "desktop-1", "nthreads": 1, "memory_limit": 2**30}}
    tasks = pd.DataFrame({"worker": ["tcp://127.0.0.1:1"] * 3 + ["tcp://127.0.0.1:9", ""],
                          "status": ["ok", "ok", "failed", "ok", "offline"]})
    t = worker_table(workers, tasks).set_index("address")
    assert t.loc["tcp://127.0.0.1:1", ["tasks_done", "failures", "threads"]].tolist() == [2, 1, 2]
    assert t.loc["tcp://127.0.0.1:1", "memory_gib"] == 2.0
    assert t.loc["tcp://127.0.0.1:2", "tasks_done"] == 0
    assert t.loc["tcp://127.0.0.1:9", "name"] == "(gone)"  # ran a task, then left
    assert len(t) == 3  # offline tasks have no worker and add no row


@pytest.mark.slow
def test_run_after_the_grid_was_closed_opens_its_own(tmp_path):
    """Notebook 01 after Run All: its last cell closed the grid, then Run is clicked."""
    from fedjax_grid.grid.cluster import open_cluster
    cfg = tiny_config(rounds=1, **{"grid.workers": 1})
    grid = open_cluster(cfg.grid, local_directory=str(tmp_path / "dask"))
    panel = RunPanel(ConfigPanel(cfg), grid=grid, out_dir=tmp_path / "run")
    cluster = ClusterPanel(grid)
    grid.close()
    assert grid.closed
    cluster.refresh()
    assert "the grid is closed" in cluster.html.value and "Traceback" not in cluster.html.value
    panel.run_button.click()
    assert panel.wait(timeout=300)
    assert panel.error is None, panel.status.value
    assert "finished 1 rounds" in panel.status.value
    assert "the grid given to this panel is closed: this run starts its own cluster" in \
        panel.stage_log.value
    assert panel.output.outputs and "stderr" not in str(panel.output.outputs)  # no traceback


@pytest.mark.slow  # suite budget (two runs)
def test_default_output_folder_is_new_per_run(grid, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    panel = RunPanel(ConfigPanel(tiny_config(rounds=1)), grid=grid, live_plot=False)
    dirs = []
    for _ in range(2):  # Run twice: no 'already holds checkpoints'
        panel.start()
        assert panel.wait(timeout=300) and panel.error is None, panel.status.value
        dirs.append(panel.run.out_dir)
    assert dirs[0] != dirs[1] and dirs[0].parent == dirs[1].parent == pathlib.Path("runs/quickstart")
    assert (tmp_path / "runs" / "quickstart" / "latest").resolve() == (tmp_path / dirs[1]).resolve()


def test_a_long_run_waits_for_confirmation_and_cancel_starts_nothing(grid, tmp_path):
    """The estimate comes first; above the threshold Run waits for Start anyway / Cancel."""
    panel = RunPanel(ConfigPanel(tiny_config(rounds=2)), grid=grid, runs_root=tmp_path / "runs",
                     confirm_above_s=0.001)
    panel.run_button.click()
    t_end = time.time() + 300
    while not panel.waiting and panel.running and time.time() < t_end:
        time.sleep(0.2)
    assert panel.waiting, panel.status.value
    assert panel.estimate is not None and panel.estimate.needs_confirmation(0.001)
    assert re.search(r"estimate: \d+ (s|min) wall time", panel.estimate_html.value)
    assert "is estimated at" in panel.status.value and "Start anyway" in panel.status.value
    assert panel.confirm_box.layout.display != "none" and panel.progress.value == 0
    panel.cancel_button.click()
    assert panel.wait(timeout=60)
    assert "not started" in panel.status.value and "cancelled" in panel.status.value
    assert panel.run is not None and panel.run.round == 0 and panel.error is None
    assert not any((tmp_path / "runs").rglob("ckpt-*"))            # nothing was written
    assert panel.confirm_box.layout.display == "none" and not panel.run_button.disabled
    # Run again and confirm: it runs.
    panel.run_button.click()
    while not panel.waiting and panel.running:
        time.sleep(0.2)
    panel.confirm_button.click()
    assert panel.wait(timeout=300) and panel.error is None, panel.status.value
    assert panel.run.done and "finished 2 rounds" in panel.status.value


def test_a_panel_run_writes_figures_links_the_dashboard_and_resumes_finished_runs(grid, tmp_path):
    out = tmp_path / "run"
    config_panel = ConfigPanel(tiny_config(rounds=1))
    panel = RunPanel(config_panel, grid=grid, out_dir=out)
    assert grid.dashboard_link in panel.link.value            # linked before any run
    panel.run_button.click()
    assert panel.wait(timeout=300) and panel.error is None, panel.status.value
    assert (out / "global_accuracy.png").stat().st_size > 5000
    assert (out / "local_loss.png").stat().st_size > 5000
    assert "figures: global_accuracy.png, local_loss.png" in panel.stage_log.value
    assert panel.estimate is not None and "estimate:" in panel.estimate_html.value
    # Resume the finished run: it says so and what it reached; no round runs.
    panel.resume.value = True
    panel.run_button.click()
    assert panel.wait(timeout=120) and panel.error is None, panel.status.value
    assert re.search(r"is finished: 1/1 rounds, final global accuracy \d+\.\d %",
                     panel.status.value), panel.status.value
    assert panel.rows == [] and panel.output.outputs == ()     # the last run's dashboard is gone
    # Editing the config replaces the status: no previous run's state on display.
    config_panel.widgets["training.lr"].value = 0.02
    assert "not started" in panel.status.value and "finished" not in panel.status.value
    assert panel.estimate_html.value == ""


@pytest.mark.slow  # suite budget; the quickstart notebook test checks the panel lists its run
def test_runs_panel_lists_and_compares_the_runs_of_a_folder(grid, tmp_path):
    from fedjax_grid.widgets import RunsPanel
    root = tmp_path / "runs"
    sync = RunPanel(ConfigPanel(tiny_config(rounds=2, name="sync run")), grid=grid,
                    runs_root=root, live_plot=False)
    asy = RunPanel(ConfigPanel(tiny_config(rounds=2, name="async", **{
        "server.mode": "async", "server.concurrency": 2, "server.buffer_size": 2})),
        grid=grid, runs_root=root, live_plot=False)
    runs = RunsPanel(root, grid=grid, follow=sync)
    assert "no runs" in runs.html.value and grid.dashboard_link in runs.link.value
    for p in (sync, asy):
        p.start()
        assert p.wait(timeout=300) and p.error is None, p.status.value
    table = runs.table                       # refreshed by the followed panel at its end
    assert list(table["name"]) == ["sync run"]
    table = runs.refresh()
    assert sorted(table["name"]) == ["async", "sync run"]
    assert all(" " not in r and "," not in r for r in table["run"])   # folder names
    row = table.set_index("name").loc["async"]
    assert row["mode"] == "async" and row["status"] == "finished" and row["rounds"] == "2/2"
    assert 0 < row["best_accuracy"] <= 1 and row["wall_s"] > 0
    html = runs.html.value
    for header in ("run", "preset", "mode", "status", "rounds", "best accuracy", "wall time",
                   "compile time"):
        assert f">{header}</th>" in html, header
    assert re.search(r">\d+\.\d %</td>", html)
    runs.select.value = tuple(table["path"])
    runs.plot_button.click()
    assert runs.figure is not None, runs.status.value
    assert runs.figure.axes[0].get_xlabel() == "wall time without compilation (s)"   # async among them
    assert runs.output.outputs and "against wall time" in runs.status.value
    runs.export_button.click()
    assert "wrote TensorBoard event files for 2 run(s)" in runs.status.value, runs.status.value
    assert all(list((pathlib.Path(p) / "tensorboard").glob("events.out.tfevents.*"))
               for p in table["path"])


def test_an_unreachable_scheduler_fails_before_the_data_load(tmp_path):
    """The panel's own grid at a port nobody listens on: one line in the status after
    grid.connect_timeout_s, no start-up stage run (no data load, no compile), nothing
    written."""
    from fedjax_grid.errors import UserError
    from tests.faults.conftest import free_port
    port = free_port()
    cfg = tiny_config(rounds=1, **{"grid.scheduler": f"tcp://127.0.0.1:{port}",
                                   "grid.connect_timeout_s": 1})
    panel = RunPanel(ConfigPanel(cfg), out_dir=tmp_path / "run")
    t = time.monotonic()
    panel.run_button.click()
    assert panel.wait(timeout=60)
    assert isinstance(panel.error, UserError) and time.monotonic() - t < 30
    import html
    assert ("failed: cannot reach the Dask scheduler at "
            f"'tcp://127.0.0.1:{port}' within 1 s") in html.unescape(panel.status.value)
    assert panel.stage_log.value.count("loading") == 0, panel.stage_log.value
    assert not (tmp_path / "run").exists() or not any((tmp_path / "run").rglob("*.npz"))
