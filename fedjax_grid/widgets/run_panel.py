"""``RunPanel``: Run / Stop buttons, a progress bar and a live dashboard.

Run builds a :class:`~fedjax_grid.runner.engine.FederatedRun` from the
``ConfigPanel``'s config and drives it in a background thread, so the kernel
stays free (other cells, the cluster panel, Stop). After every round the
callback moves the progress bar, writes a one-line status, and redraws the
dashboard (``fedjax_grid.plots.dashboard``) into an ``ipywidgets.Output``.
Stop sets a flag that ``FederatedRun.run(should_stop=...)`` checks between
rounds: the round in flight finishes, its checkpoint is written, and the run
can be resumed (here with *resume*, or with ``fedjax-grid run --resume``).

Before the first round the start-up stages (data, model, grid, the first round
that compiles the model) are listed with their times as they happen. Rounds
count from 1 everywhere ("round 3/6" = 3 of 6 rounds done), as in the records.
A grid given to the panel that was closed since (a notebook's last cell) is
noticed at Run: the run then starts its own cluster from ``config.grid``.
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

    Attributes: ``run`` (the current ``FederatedRun``, None before the first Run),
    ``thread``, ``error`` (the exception that ended the last run, if any),
    ``figure`` (the last dashboard), ``rows`` (round rows seen by the callback).
    """

    def __init__(self, config_panel: ConfigPanel, *, grid=None, out_dir=None,
                 resume: bool = False, live_plot: bool = True, plot_every: int = 1,
                 runs_root=None):
        from fedjax_grid.grid import run_dirs
        self.config_panel = config_panel
        self.grid = grid
        self.out_dir = out_dir
        self.runs_root = run_dirs.DEFAULT_ROOT if runs_root is None else runs_root
        self.live_plot = live_plot
        self.plot_every = max(1, int(plot_every))
        self.run = None
        self.thread: Optional[threading.Thread] = None
        self.error: Optional[BaseException] = None
        self.figure = None
        self.rows: list[dict] = []
        self.redraws = 0
        self.round_callbacks: list[Callable[[dict], None]] = []
        self._stop = threading.Event()
        self.run_button = W.Button(description="Run", icon="play", button_style="success")
        self.stop_button = W.Button(description="Stop", icon="stop", button_style="danger",
                                    disabled=True)
        self.resume = W.Checkbox(value=resume, description="resume", indent=False)
        self.progress = W.IntProgress(value=0, min=0, max=1, description="rounds",
                                      style=_STYLE, layout={"width": "420px"})
        self.status = W.HTML()
        self.stage_log = W.HTML()
        self.output = W.Output()
        self.run_button.on_click(lambda _: self.start())
        self.stop_button.on_click(lambda _: self.stop())
        self.box = W.VBox([W.HBox([self.run_button, self.stop_button, self.resume]),
                           self.progress, self.status, self.stage_log, self.output])

    def _ipython_display_(self):
        from IPython.display import display
        display(self.box)

    # -- control --------------------------------------------------------------
    @property
    def running(self) -> bool:
        return self.thread is not None and self.thread.is_alive()

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
        except UserError as e:
            self.status.value = _html(f"not started: {e}", ERROR_STYLE)
            return None
        notes = []
        if self.grid is not None and getattr(self.grid, "closed", False):
            self.grid = None  # closed since (e.g. by the notebook's last cell): use our own
            notes.append("the grid given to this panel is closed: this run starts its own "
                         f"cluster from config.grid ({_grid_words(cfg.grid)})")
        try:
            out_dir, new_dir = self._out_dir(cfg, self.resume.value)
        except UserError as e:
            self.status.value = _html(f"not started: {e}", ERROR_STYLE)
            return None
        self._stop.clear()
        self.error, self.rows, self.run = None, [], None
        self._stage_lines = list(notes)
        self.stage_log.value = _lines_html(self._stage_lines)
        self.progress.max = cfg.training.rounds
        self.progress.value = 0
        self.progress.bar_style = ""
        self.run_button.disabled, self.stop_button.disabled = True, False
        self.status.value = _html(f"{cfg.name}: loading data and building the model ...")
        self.thread = threading.Thread(target=self._work,
                                       args=(cfg, self.resume.value, out_dir, new_dir),
                                       name=f"fedjax_grid-run-{cfg.name}", daemon=True)
        self.thread.start()
        return self.thread

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
        """Ask the run to stop after the round in flight (a checkpoint is written)."""
        self._stop.set()
        if self.running:
            self.stop_button.disabled = True
            self.status.value = _html("stopping after the current round ...")

    def wait(self, timeout: Optional[float] = None) -> bool:
        """Block until the run's thread ends (or ``timeout`` s); True when it ended."""
        if self.thread is None:
            return True
        self.thread.join(timeout)
        return not self.thread.is_alive()

    @property
    def stopped(self) -> bool:
        """True when the last run ended because Stop was pressed before its last round."""
        return self._stop.is_set() and self.run is not None and not self.run.done

    # -- the background thread ---------------------------------------------------
    def _work(self, cfg, resume: bool, out_dir, new_dir: bool) -> None:
        from fedjax_grid.grid import run_dirs
        from fedjax_grid.runner import FederatedRun
        run = None
        t0 = time.time()
        try:
            run = FederatedRun(cfg, out_dir=out_dir, resume=resume, grid=self.grid,
                               on_stage=self._on_stage)
            self.run = run
            self.progress.value = run.round
            run.start()
            self._stage_lines.append(f"{len(run.note_workers())} workers; output folder "
                                     f"{run.out_dir.resolve()}")
            self.stage_log.value = _lines_html(self._stage_lines)
            run.run(callback=self._on_round, should_stop=self._stop.is_set)
            if run.done:
                self.progress.bar_style = "success"
                msg = f"{cfg.name}: finished {run.round} rounds in {time.time() - t0:.1f} s"
            else:
                self.progress.bar_style = "warning"
                msg = (f"{cfg.name}: stopped after round {run.round} of "
                       f"{cfg.training.rounds}; checkpoint in {run.out_dir} (tick resume "
                       f"or `fedjax-grid run --resume --out {run.out_dir}`)")
            self.status.value = _html(msg, OK_STYLE)
            if self.live_plot and self.rows and (len(self.rows) % self.plot_every):
                self._redraw()
        except BaseException as e:  # noqa: BLE001 - reported in the panel, kept in .error
            self.error = e
            self.progress.bar_style = "danger"
            text = str(e) if isinstance(e, UserError) else \
                f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
            self.status.value = _html(f"failed: {text}", ERROR_STYLE)
            if not isinstance(e, UserError):
                self.output.append_stderr(traceback.format_exc())
        finally:
            if run is not None:
                try:
                    run.close()  # closes only a cluster the run opened itself
                except Exception:  # noqa: BLE001
                    pass
                if new_dir and (run.ckpt_dir).is_dir():
                    run_dirs.point_latest(run.out_dir)
            self.run_button.disabled, self.stop_button.disabled = False, True

    def _on_round(self, row: dict) -> None:
        self.rows.append(row)
        self.progress.value = self.run.round
        acc = row.get("global_accuracy", float("nan"))
        self.status.value = _html(
            f"round {row['round']}/{self.progress.max}: global accuracy {100 * acc:.1f} %, "
            f"clients ok {row['clients_ok']}/{row['clients_sampled']}, "
            f"{row['round_time_s']:.1f} s")
        from fedjax_grid.grid.records import round_warnings
        warnings = round_warnings(row)
        if warnings:
            self.status.value += _html("warning: " + warnings[0], ERROR_STYLE)
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
                                          total=self.run.config.training.rounds)
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
