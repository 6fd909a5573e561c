"""``RunPanel``: Run / Stop buttons, the run's cost estimate, a progress bar and a live dashboard.

Run builds a :class:`~fedjax_grid.runner.engine.FederatedRun` from the
``ConfigPanel``'s config and drives it in a background thread, so the kernel
stays free (other cells, the cluster panel, Stop). Before the first round the
panel measures one training step of the run's model (``experiments.cost``; on a
worker of the grid when it has one, cached per machine) and shows the estimated
wall time and bytes; a run estimated above ``confirm_above_s`` (10 min by default)
waits for **Start anyway** (or **Cancel**) -- choosing a full-scale study preset
cannot start hours of work by accident. **Estimate** shows the estimate without
running. After every round the callback moves the progress bar, writes a
one-line status, and redraws the dashboard (``fedjax_grid.plots.dashboard``)
into an ``ipywidgets.Output``. Stop sets a flag that ``FederatedRun.run(should_stop=...)``
checks between rounds and inside them: the round in flight is cut at once -- its tasks
cancelled (workers stop training at their next step) and recorded as ``stopped`` --
the model stays the last checkpoint's, and the run can be resumed (here with *resume*,
or with ``fedjax-grid run --resume``), which runs that round again.
Resuming a finished run says so and what it reached, and starts nothing.

Every Run starts from a clean panel (status, stages, progress, dashboard); a
config edited since shows "not started" instead of the last run's state. A run
that ends -- finished, stopped or failed after a round -- writes its figures
(``global_accuracy.png``, ``local_loss.png``) beside its records, and its
per-round scalars go to TensorBoard / MLflow when ``tracking`` asks. The start-up
stages (data, model, grid, the first round that compiles the model) are listed
with their times as they happen; the Dask dashboard of the run's grid is linked.
Rounds count from 1 everywhere ("round 3/6" = 3 of 6 rounds done), as in the
records. A grid given to the panel that was closed since (a notebook's last
cell) is noticed at Run: the run then starts its own cluster from ``config.grid``.
"""
from __future__ import annotations

import base64
import html
import pathlib
import threading
import time
import traceback
from typing import Callable, Optional

import ipywidgets as W

from fedjax_grid.errors import UserError
from fedjax_grid.widgets.config_panel import ERROR_STYLE, OK_STYLE, ConfigPanel

_STYLE = {"description_width": "80px"}
WARN_STYLE = "color:#8a5d00"


def _html(text: str, style: str = "") -> str:
    return f'<span style="{style}">{html.escape(text)}</span>'


class RunPanel:
    """Run the panel's experiment in a thread; ``display(panel)`` shows it.

    config_panel: the ``ConfigPanel`` whose config is run (read when Run is pressed).
    grid: an open ``GridHandle`` to run on (shared with a ``ClusterPanel``); None:
    the run opens its own cluster from ``config.grid`` and closes it at the end.
    out_dir: output directory (default: ``config.out_dir``, else a new
    ``<runs_root>/<name>/<YYYYmmdd-HHMMSS>`` per run, or ``<runs_root>/<name>/latest``
    with *resume*; ``runs_root`` defaults to ``runs``).
    resume: initial value of the *resume* checkbox (continue from the checkpoint).
    live_plot: redraw the dashboard every ``plot_every`` rounds.
    confirm_above_s: runs estimated longer than this wait for **Start anyway**
    (default ``experiments.cost.confirm_above_s()``, 600 s); ``None``: no estimate.

    Attributes: ``run`` (the current ``FederatedRun``, None before the first Run),
    ``thread``, ``error`` (the exception that ended the last run, if any),
    ``figure`` (the last dashboard), ``rows`` (round rows seen by the callback),
    ``estimate`` (the last ``experiments.cost.Estimate``), ``waiting`` (True while a
    run waits for its confirmation), ``round_callbacks`` / ``finished_callbacks``
    (called with each round's row / with the panel when a run's thread ends).
    """

    def __init__(self, config_panel: ConfigPanel, *, grid=None, out_dir=None,
                 resume: bool = False, live_plot: bool = True, plot_every: int = 1,
                 runs_root=None, confirm_above_s="default"):
        from fedjax_grid.experiments.cost import confirm_above_s as default_threshold
        from fedjax_grid.grid import run_dirs
        self.config_panel = config_panel
        self.grid = grid
        self.out_dir = out_dir
        self.runs_root = run_dirs.DEFAULT_ROOT if runs_root is None else runs_root
        self.live_plot = live_plot
        self.plot_every = max(1, int(plot_every))
        self.confirm_above_s = default_threshold() if confirm_above_s == "default" \
            else confirm_above_s
        self.run = None
        self.thread: Optional[threading.Thread] = None
        self.error: Optional[BaseException] = None
        self.figure = None
        self.estimate = None
        self.rows: list[dict] = []
        self.redraws = 0
        self.round_callbacks: list[Callable[[dict], None]] = []
        self.finished_callbacks: list[Callable[["RunPanel"], None]] = []
        self._stop = threading.Event()
        self._decided = threading.Event()
        self._confirmed = False
        self._build_widgets(resume)
        config_panel.change_callbacks.append(self._on_config_change)

    def _build_widgets(self, resume: bool) -> None:
        self.run_button = W.Button(description="Run", icon="play", button_style="success")
        self.stop_button = W.Button(description="Stop", icon="stop", button_style="danger",
                                    disabled=True)
        self.estimate_button = W.Button(description="Estimate", icon="calculator",
                                        tooltip="measure a training step and estimate the run")
        self.confirm_button = W.Button(description="Start anyway", icon="check",
                                       button_style="warning")
        self.cancel_button = W.Button(description="Cancel", icon="times")
        self.confirm_box = W.HBox([self.confirm_button, self.cancel_button],
                                  layout={"display": "none"})
        self.resume = W.Checkbox(value=resume, description="resume", indent=False)
        self.progress = W.IntProgress(value=0, min=0, max=1, description="rounds",
                                      style=_STYLE, layout={"width": "420px"})
        self.estimate_html = W.HTML()
        self.status = W.HTML()
        self.link = W.HTML(_dashboard_line(self.grid))
        self.stage_log = W.HTML()
        self.output = W.Output()
        self.run_button.on_click(lambda _: self.start())
        self.stop_button.on_click(lambda _: self.stop())
        self.estimate_button.on_click(lambda _: self.start_estimate())
        self.confirm_button.on_click(lambda _: self.decide(True))
        self.cancel_button.on_click(lambda _: self.decide(False))
        self.box = W.VBox([W.HBox([self.run_button, self.stop_button, self.estimate_button,
                                   self.resume]),
                           self.estimate_html, self.confirm_box, self.progress, self.status,
                           self.link, self.stage_log, self.output])

    def _ipython_display_(self):
        from IPython.display import display
        display(self.box)

    # -- control --------------------------------------------------------------
    @property
    def running(self) -> bool:
        return self.thread is not None and self.thread.is_alive()

    @property
    def waiting(self) -> bool:
        """True while a run waits for **Start anyway** / **Cancel**."""
        return self.running and self.confirm_box.layout.display != "none"

    def _on_config_change(self) -> None:
        """A config edited while idle: the last run's state and estimate no longer apply."""
        if self.running:
            return
        self.estimate = None
        self.estimate_html.value = ""
        self.status.value = _html("not started (press Run, or Estimate to see its cost first)")
        self.link.value = _dashboard_line(self.grid)   # a grid closed since: no dead link

    def start(self) -> Optional[threading.Thread]:
        """Start a run in a background thread (what the Run button does).

        Returns the thread, or None when the config is invalid (message shown)
        or a run is already in progress.
        """
        if self.running:
            self.status.value = _html("a run is already in progress", ERROR_STYLE)
            return None
        try:
            cfg = self.config_panel.config
            notes = self._check_grid(cfg)
            out_dir, new_dir = self._out_dir(cfg, self.resume.value)
        except UserError as e:
            self.status.value = _html(f"not started: {e}", ERROR_STYLE)
            return None
        self._reset(cfg, notes)
        self.run_button.disabled, self.stop_button.disabled = True, False
        self.estimate_button.disabled = True
        self.status.value = _html(f"{cfg.name}: loading data and building the model ...")
        self.thread = threading.Thread(target=self._work,
                                       args=(cfg, self.resume.value, out_dir, new_dir),
                                       name=f"fedjax_grid-run-{cfg.name}", daemon=True)
        self.thread.start()
        return self.thread

    def _check_grid(self, cfg) -> list[str]:
        if self.grid is not None and getattr(self.grid, "closed", False):
            self.grid = None  # closed since (e.g. by the notebook's last cell): use our own
            return ["the grid given to this panel is closed: this run starts its own "
                    f"cluster from config.grid ({_grid_words(cfg.grid)})"]
        return []

    def _reset(self, cfg, notes: list[str]) -> None:
        """Clear everything a previous run left: status, stages, progress, dashboard."""
        self._stop.clear()
        self._decided.clear()
        self._confirmed = False
        self.error, self.rows, self.run, self.figure = None, [], None, None
        self._stage_lines = list(notes)
        self.stage_log.value = _lines_html(self._stage_lines)
        self.progress.max = cfg.training.rounds
        self.progress.value = 0
        self.progress.bar_style = ""
        self.output.outputs = ()
        self.link.value = _dashboard_line(self.grid)

    def _out_dir(self, cfg, resume: bool):
        """(output folder or None for FederatedRun's default, whether it is a new per-run one)."""
        from fedjax_grid.grid import run_dirs
        if self.out_dir is not None or cfg.out_dir:
            return self.out_dir or cfg.out_dir, False
        if resume:
            latest = run_dirs.latest_run_dir(cfg.name, self.runs_root)
            if latest is None:
                raise UserError(f"resume: no run of {cfg.name!r} in "
                                f"{str(pathlib.Path(self.runs_root) / cfg.name)!r} to continue")
            return latest, False
        return run_dirs.new_run_dir(cfg.name, self.runs_root), True

    def _on_stage(self, event: dict) -> None:
        """A start-up event: the status says what runs now, the log what took how long."""
        from fedjax_grid.grid.stages import format_event
        if event["status"] == "start":
            self.status.value = _html(f"{event['text']} ...")
        else:
            self._stage_lines.append(f"{event['text']}: {format_event(event).strip()}")
            self.stage_log.value = _lines_html(self._stage_lines)

    def stop(self) -> None:
        """Stop the run now: the round in flight is cut (its tasks cancelled and recorded as
        ``stopped``), the last checkpoint stays to resume from; a run waiting for its
        confirmation is cancelled."""
        self._stop.set()
        if self.waiting:
            self.decide(False)
        elif self.running:
            self.stop_button.disabled = True
            self.status.value = _html("stopping: cancelling the tasks in flight ...")

    def decide(self, start: bool) -> None:
        """Answer the confirmation of a run estimated above the threshold."""
        self._confirmed = bool(start)
        self._decided.set()

    def wait(self, timeout: Optional[float] = None) -> bool:
        """Block until the run's thread ends (or ``timeout`` s); True when it ended."""
        if self.thread is None:
            return True
        self.thread.join(timeout)
        return not self.thread.is_alive()

    @property
    def stopped(self) -> bool:
        """True when the last run ended because Stop was pressed before its last round
        (or its last evaluation) was done."""
        return self._stop.is_set() and self.run is not None and (
            not self.run.done or self.run.evaluation_pending)

    # -- estimate ----------------------------------------------------------------------
    def start_estimate(self) -> Optional[threading.Thread]:
        """Estimate the config's cost in a background thread (the Estimate button)."""
        if self.running:
            return None
        try:
            cfg = self.config_panel.config
        except UserError as e:
            self.status.value = _html(f"no estimate: {e}", ERROR_STYLE)
            return None
        self.estimate_button.disabled = True
        self.estimate_html.value = _html(f"{cfg.name}: measuring a training step of "
                                         f"{cfg.model.name} to estimate the run ...")
        thread = threading.Thread(target=self._estimate_only, args=(cfg,), daemon=True,
                                  name=f"fedjax_grid-estimate-{cfg.name}")
        thread.start()
        return thread

    def _estimate_only(self, cfg) -> None:
        from fedjax_grid.experiments.cost import estimate_config
        try:
            self._show_estimate(estimate_config(cfg, grid=self._open_grid()))
        except UserError as e:
            self.estimate_html.value = _html(f"no estimate: {e}", ERROR_STYLE)
        except Exception as e:  # noqa: BLE001 - shown, not raised in a widget thread
            self.estimate_html.value = _html(f"no estimate: {type(e).__name__}: {e}", ERROR_STYLE)
        finally:
            self.estimate_button.disabled = self.running

    def _open_grid(self):
        return None if self.grid is None or getattr(self.grid, "closed", False) else self.grid

    def _show_estimate(self, est) -> None:
        self.estimate = est
        above = self.confirm_above_s is not None and est.needs_confirmation(self.confirm_above_s)
        self.estimate_html.value = _html(est.summary(), WARN_STYLE if above else "")

    def _estimate_and_confirm(self, run) -> bool:
        """Measure, show the estimate; above the threshold wait for the user's answer.
        Returns whether to start."""
        from fedjax_grid.experiments.cost import duration_text, estimate_run
        if self.confirm_above_s is None:
            return True
        self.status.value = _html(f"measuring a training step of {run.config.model.name} "
                                  "to estimate the run ...")
        est = estimate_run(run, grid=self._open_grid())
        self._show_estimate(est)
        if not est.needs_confirmation(self.confirm_above_s) or self._stop.is_set():
            return not self._stop.is_set()
        self.status.value = _html(
            f"{run.config.name} is estimated at {duration_text(est.wall_s)}, above "
            f"{duration_text(self.confirm_above_s)}: press Start anyway to run it, or Cancel",
            WARN_STYLE)
        self.confirm_box.layout.display = None
        try:
            self._decided.wait()
        finally:
            self.confirm_box.layout.display = "none"
        if not self._confirmed:
            self.status.value = _html(f"not started: {run.config.name} cancelled (estimated "
                                      f"{duration_text(est.wall_s)}); nothing was written",
                                      OK_STYLE)
        return self._confirmed

    # -- the background thread ---------------------------------------------------
    def _work(self, cfg, resume: bool, out_dir, new_dir: bool) -> None:
        from fedjax_grid.runner import FederatedRun
        run, tracker, t0 = None, None, time.time()
        try:
            run = FederatedRun(cfg, out_dir=out_dir, resume=resume, grid=self.grid,
                               on_stage=self._on_stage)
            self.run = run
            self.progress.value = run.round
            if resume and run.done and not run.evaluation_pending:
                from fedjax_grid.runner.run_index import finished_text
                self.status.value = _html(finished_text(cfg, run.records.rounds(), run.out_dir),
                                          OK_STYLE)
                return
            if not self._estimate_and_confirm(run):
                return
            tracker = self._tracker(cfg, run, out_dir)
            self._rounds(run, tracker)
            self.status.value = _html(self._end_text(cfg, run, t0), OK_STYLE)
            # the last round not drawn yet, or a Stop's 'stopped' tasks: the timeline shows them
            if self.live_plot and self.rows and (len(self.rows) % self.plot_every
                                                 or run.stopped is not None):
                self._redraw()
        except BaseException as e:  # noqa: BLE001 - reported in the panel, kept in .error
            self._failed(e)
        finally:
            self._finish(run, tracker, new_dir)

    def _tracker(self, cfg, run, out_dir):
        from fedjax_grid import tracking
        if not (cfg.tracking.tensorboard or cfg.tracking.mlflow):
            return None
        return tracking.Tracker(cfg, run.out_dir)

    def _rounds(self, run, tracker) -> None:
        run.start()
        self.link.value = _dashboard_line(run.grid)
        self._stage_lines.append(f"{len(run.note_workers())} workers; output folder "
                                 f"{run.out_dir.resolve()}")
        self.stage_log.value = _lines_html(self._stage_lines)
        self._tracker_now = tracker
        run.run(callback=self._on_round, should_stop=self._stop.is_set)

    def _end_text(self, cfg, run, t0: float) -> str:
        if run.done and not run.evaluation_pending:
            self.progress.bar_style = "success"
            return f"{cfg.name}: finished {run.round} rounds in {time.time() - t0:.1f} s"
        self.progress.bar_style = "warning"
        cut = run.stopped
        during = f"stopped after round {run.round} of {cfg.training.rounds}"
        if run.evaluation_pending:
            during += (f", during its evaluation (round {run.round} is kept; its accuracy is "
                       "measured on resume)")
        if cut is not None and cut.tasks:
            during += (f", during round {cut.round}: its {cut.tasks} task(s) cancelled or "
                       "not applied, recorded as 'stopped'")
        return (f"{cfg.name}: {during}; checkpoint in {run.out_dir} (tick resume or "
                f"`fedjax-grid run --resume --out {run.out_dir}`)")

    def _failed(self, e: BaseException) -> None:
        self.error = e
        self.progress.bar_style = "danger"
        text = str(e) if isinstance(e, UserError) else \
            f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
        self.status.value = _html(f"failed: {text}", ERROR_STYLE)
        if not isinstance(e, UserError):
            self.output.append_stderr(traceback.format_exc())

    def _finish(self, run, tracker, new_dir: bool) -> None:
        """Close the run (and a cluster it opened), write its figures, point 'latest'."""
        from fedjax_grid.grid import run_dirs
        if run is not None:
            try:
                run.close()  # closes only a cluster the run opened itself
            except Exception:  # noqa: BLE001
                pass
            if self.rows:
                self._write_figures(run)
            if new_dir and run.ckpt_dir.is_dir():
                run_dirs.point_latest(run.out_dir)
            elif new_dir and run.out_dir.is_dir() and not any(run.out_dir.iterdir()):
                run.out_dir.rmdir()   # cancelled before anything was written
        if tracker is not None:
            tracker.close("FINISHED" if run is not None and run.done else "KILLED")
        self._tracker_now = None
        self.run_button.disabled, self.stop_button.disabled = False, True
        self.estimate_button.disabled = False
        for fn in list(self.finished_callbacks):
            try:
                fn(self)
            except Exception:  # noqa: BLE001 - a listener must not break the panel
                pass

    def _write_figures(self, run) -> None:
        from fedjax_grid import plots
        try:
            written = plots.run_figures(run.config, run.records, run.out_dir)
        except (UserError, OSError) as e:
            self._stage_lines.append(f"figures not written: {e}")
        else:
            self._stage_lines.append("figures: " + ", ".join(p.name for p in written))
        self.stage_log.value = _lines_html(self._stage_lines)

    def _on_round(self, row: dict) -> None:
        self.rows.append(row)
        self.progress.value = self.run.round
        from fedjax_grid.grid.records import accuracy_text
        self.status.value = _html(
            f"round {row['round']}/{self.progress.max}: global accuracy {accuracy_text(row)}, "
            f"clients ok {row['clients_ok']}/{row['clients_sampled']}, "
            f"{row['round_time_s']:.1f} s")
        from fedjax_grid.grid.records import round_warnings
        warnings = round_warnings(row)
        if warnings:
            self.status.value += _html("warning: " + warnings[0], ERROR_STYLE)
        if getattr(self, "_tracker_now", None) is not None:
            self._tracker_now.log_round(row)
        if self.live_plot and len(self.rows) % self.plot_every == 0:
            self._redraw()
        for fn in list(self.round_callbacks):
            fn(row)

    def _redraw(self) -> None:
        """Redraw the dashboard into the Output (thread-safe: no ``with output``)."""
        from fedjax_grid import plots
        rec = self.run.records
        try:
            self.figure = plots.dashboard(rec.rounds(), rec.tasks(), fig=self.figure,
                                          name=self.run.config.name,
                                          total=self.run.config.training.rounds,
                                          mode=self.run.config.server.mode)
        except UserError:
            return
        png = figure_png(self.figure)
        # Replace the Output's contents directly: ``with output`` / ``clear_output``
        # route by the kernel's current message and are not safe from a thread.
        self.output.outputs = ({"output_type": "display_data",
                                "data": {"image/png": base64.b64encode(png).decode("ascii"),
                                         "text/plain": f"<dashboard after round {self.run.round}>"},
                                "metadata": {}},)
        self.redraws += 1


def _dashboard_line(grid) -> str:
    """A clickable link to the grid's Dask dashboard, or what there is instead."""
    if grid is None or getattr(grid, "closed", False):
        return "Dask dashboard: linked here once the run's cluster is up"
    link = html.escape(getattr(grid, "dashboard_link", None) or "", quote=True)
    if not link:
        return "Dask dashboard: off (grid.dashboard_address is null)"
    return (f'Dask dashboard: <a href="{link}" target="_blank" rel="noopener" '
            f'style="color:#1565c0;text-decoration:underline">{link}</a>')


def _lines_html(lines) -> str:
    return "<br>".join(html.escape(line) for line in lines)


def _grid_words(grid) -> str:
    if grid.scheduler:
        return f"scheduler {grid.scheduler}"
    return f"a LocalCluster of {grid.workers} workers on {grid.host}"


def figure_png(fig, dpi: int = 80) -> bytes:
    """PNG bytes of a matplotlib Figure (Agg canvas, no pyplot)."""
    import io
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    return buf.getvalue()
