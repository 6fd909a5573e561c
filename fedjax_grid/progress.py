"""Terminal feedback of ``fedjax-grid run``: start-up stages, then a progress bar.

Stage lines go to stdout (``log``), the bar and the interruption line to stderr
(``stream``), so that stderr of a failed run is exactly one ``error: ...`` line.
``Console(name, total)`` prints each start-up stage (see :mod:`fedjax_grid.grid.stages`)
as it begins (``loading and partitioning digits (4 clients, iid) ...``) and ends
(`` 1.2 s (1437 training / 360 test images)``), then shows a tqdm bar once the
first round is done (so its rate and ETA leave out the start-up and the
compilation). Rounds are counted from 1: after round k the bar reads ``k/N``.
"""
from __future__ import annotations

import sys
import time

from fedjax_grid.grid.stages import format_event


class Console:
    """Stage lines and a round bar on ``stream`` (stderr by default); ``quiet``: neither."""

    def __init__(self, name: str, total: int, stream=None, log=None, quiet: bool = False):
        self.name, self.total = name, int(total)
        self.stream = stream if stream is not None else sys.stderr
        self.log = log if log is not None else sys.stdout
        self.quiet = quiet
        self.bar = None
        self.t0 = time.perf_counter()
        self._mid_line = False  # a stage line was started and not ended

    def _write(self, text: str) -> None:
        if not self.quiet:
            self.log.write(text)
            self.log.flush()

    def end_line(self) -> None:
        """End a stage line left open (before an error is printed)."""
        if self._mid_line:
            self._write("\n")
            self._mid_line = False

    def stage(self, event: dict) -> None:
        """Print a start-up event (the ``on_stage`` callback of ``FederatedRun``)."""
        if event["status"] == "start":
            if self._mid_line:
                self._write("\n")
            self._write(f"[{time.perf_counter() - self.t0:5.1f} s] {format_event(event)}")
            self._mid_line = True
        else:
            self._write(format_event(event) + "\n")
            self._mid_line = False

    def round_done(self, row: dict, rounds_done: int) -> None:
        """Advance the bar after a round (``rounds_done``: rounds done so far, 1-based count)."""
        if self.quiet:
            return
        from fedjax_grid.grid.records import accuracy_text
        postfix = (f"round {rounds_done}/{self.total}, accuracy {accuracy_text(row)}, "
                   f"clients ok {row['clients_ok']}/{row['clients_sampled']}")
        if self.bar is None:
            from tqdm.auto import tqdm
            self.bar = tqdm(total=self.total, initial=rounds_done, desc=self.name, unit="round",
                            file=self.stream, dynamic_ncols=True, postfix=postfix)
        else:
            self.bar.set_postfix_str(postfix, refresh=False)  # shown with the new count
            self.bar.update(rounds_done - self.bar.n)

    def warn(self, message: str) -> None:
        """``warning: message`` on ``stream``, on a line of its own above the bar."""
        self.end_line()
        text = f"warning: {message}"
        if self.bar is not None:
            self.bar.write(text, file=self.stream)
        else:
            self.stream.write(text + "\n")
            self.stream.flush()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None

    def interrupted(self, message: str) -> None:
        """Close the bar and print ``message`` on a line of its own (after the ``^C``)."""
        self.close()
        self.end_line()
        self.stream.write("\n" + message + "\n")
        self.stream.flush()
        self._mid_line = False


def describe_outputs(out_dir) -> dict[str, list[str]]:
    """The files a run wrote, by kind: records, plots, checkpoints (paths relative to out_dir)."""
    import pathlib
    out = pathlib.Path(out_dir)
    kinds: dict[str, list[str]] = {"records": [], "plots": [], "checkpoints": []}
    for p in sorted(out.iterdir()) if out.is_dir() else []:
        if p.name.startswith(".") or not p.is_file():
            continue
        if p.suffix in (".csv", ".parquet", ".json"):
            kinds["records"].append(p.name)
        elif p.suffix == ".png":
            kinds["plots"].append(p.name)
    ckpts = sorted((out / "checkpoints").glob("ckpt-*.npz"))
    kinds["checkpoints"] = [f"checkpoints/{p.name}" for p in ckpts]
    return kinds


class RoundBar:
    """A round progress bar for notebooks (``tqdm.auto``: a widget in Jupyter, text elsewhere).

    Pass it as ``run.run(callback=RoundBar(run))`` (or ``callback=bar`` of a bar made once
    for several runs with ``RoundBar(total=..., desc=...)``): every finished round moves it
    and shows the accuracy; ``also`` is called with each row too (e.g. a panel's refresh).
    Rounds count from 1, as everywhere: after round k the bar reads ``k/N``.
    """

    def __init__(self, run=None, *, total: int | None = None, desc: str | None = None,
                 also=None):
        from tqdm.auto import tqdm
        total = total if total is not None else run.config.training.rounds
        desc = desc if desc is not None else (run.config.name if run is not None else "rounds")
        initial = run.round if run is not None else 0
        self.bar = tqdm(total=total, initial=initial, desc=desc, unit="round")
        self.also = also

    def __call__(self, row: dict) -> None:
        acc = row.get("global_accuracy", float("nan"))
        self.bar.set_postfix_str(f"accuracy {100 * acc:.1f} %, round {row['round']}",
                                 refresh=False)
        self.bar.update(1)
        if self.also is not None:
            self.also(row)

    def close(self) -> None:
        self.bar.close()
