"""The ``fedjax-grid`` command line.

  fedjax-grid --version
  fedjax-grid run [--preset NAME | --config FILE] [--set key=value ...]
                  [--scheduler ADDR] [--workers N] [--out DIR] [--resume] [--more-rounds N]
  fedjax-grid presets
  fedjax-grid show-config [--preset NAME | --config FILE] [--set ...]
  fedjax-grid partition-report [--preset NAME | --config FILE] [--set ...] [--round R] [--out DIR]
  fedjax-grid prepare SOURCE [--path ARCHIVE] [--data-dir DIR]
  fedjax-grid certs DIR [--hosts 127.0.0.1,localhost]
  fedjax-grid grid up|status|down|...   (an emulated desktop grid: fedjax_grid.emulation.cli)

Bad input of any kind is reported as one line ``error: ...`` with exit code 2.
``run --help`` explains the output folders, the round numbers and ``--resume``.
"""
from __future__ import annotations

import argparse
import os
import pathlib
import re
import shutil
import signal
import sys
import time

from fedjax_grid.errors import SHOW_MAX, RunStalled, UserError, show, show_path

EXIT_USAGE = 2
#: Exit code after Ctrl-C (128 + SIGINT), with one line saying how to continue.
EXIT_INTERRUPTED = 130
#: Exit code when the user answers no to starting a run estimated above the threshold.
EXIT_DECLINED = 1
#: Exit code of a run stopped because it folded no update (``grid.max_rounds_without_update``).
EXIT_STALLED = 3
#: Upper bound of ``run --rounds`` (as for ``training.rounds``).
MAX_ROUNDS_FLAG = 100_000


def _shorten_tokens(message: str) -> str:
    """Truncate every run of more than SHOW_MAX non-space characters (echoed values)."""
    return re.sub(r"\S{%d,}" % (SHOW_MAX + 1),
                  lambda m: f"{m.group(0)[:SHOW_MAX - 1]}…({len(m.group(0))} characters)", message)


class _Parser(argparse.ArgumentParser):
    """One-line errors; ``choices_help=True`` appends the registries' choices to the help
    (built when help is shown, so other commands do not import the components)."""

    def __init__(self, *args, choices_help: bool = False, **kwargs):
        super().__init__(*args, **kwargs)
        self._choices_help = choices_help

    def error(self, message):  # one line, exit 2 (argparse prints usage too by default)
        raise UserError(_shorten_tokens(f"{self.prog}: {message}"))

    def format_help(self):
        if self._choices_help:
            self._choices_help = False
            self.epilog = "\n".join(t for t in (self.epilog, choices_text()) if t)
            self.formatter_class = argparse.RawDescriptionHelpFormatter
        return super().format_help()


def choices_text() -> str:
    """The choices of every registry with their parameters and defaults (help, ``presets``)."""
    from fedjax_grid.experiments.config import PARAMS_AT, REGISTRIES
    lines = ["choices (--set KEY=NAME, KEY=NAME(VALUE) or KEY={name: NAME, PARAM: VALUE};",
             "         one parameter: --set KEY.PARAM=VALUE):"]
    for key, registry in REGISTRIES.items():
        where = f"{key}, parameters in {PARAMS_AT[key]}" if key in PARAMS_AT else key
        lines.append(f"  {where}:")
        lines.extend(f"    {line}" for line in registry.describe().splitlines())
    return "\n".join(lines)


def _config_args(p: argparse.ArgumentParser) -> None:
    src = p.add_mutually_exclusive_group()
    src.add_argument("--preset", help="a preset name (see `fedjax-grid presets`; default: quickstart)")
    src.add_argument("--config", help="a JSON/YAML config file")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value (repeatable), e.g. --set training.lr=0.01, "
                        "--set partition.distribution=stratified(0.9), "
                        "--set server.optimizer.lr=0.02; a bare key (rounds=3) must name one "
                        "field or parameter")


RUN_EPILOG = """\
output folder:
  without --out each run gets its own folder runs/<name>/<YYYYmmdd-HHMMSS>, and
  runs/<name>/latest links to the newest one; the absolute path and the files
  written (records, plots, checkpoints) are printed at the end.

rounds:
  rounds are counted from 1 ("round 3/8" = 3 of 8 rounds done; the checkpoint
  ckpt-000003.npz holds the state after round 3). training.rounds is the run's
  total; --more-rounds N stops this invocation after N more rounds.

cost:
  before the first round the run's training step is measured (cached per machine)
  and the estimated wall time and bytes are printed; a run estimated above 10 min
  asks before it starts (--yes: start without asking; without a terminal it is
  refused in one line, exit 2, unless --yes is given).

examples:
  fedjax-grid run                                   # quickstart preset, LocalCluster on 127.0.0.1
  fedjax-grid run --preset paper-vgg16-cifar10-independent --out runs/vgg
  fedjax-grid run --resume --out runs/vgg           # continue runs/vgg with its config.json
  fedjax-grid run --resume                          # continue runs/quickstart/latest
  fedjax-grid run --resume --out runs/vgg --set training.rounds=120   # extend the run
  fedjax-grid run --scheduler tls://10.0.0.5:8786 --set grid.tls_dir=certs --more-rounds 2
"""


def _version_text() -> str:
    """This package's version and the versions a grid's machines must share."""
    import platform
    from importlib import metadata
    from fedjax_grid import __version__
    parts = []
    for dist in ("jax", "flax", "optax", "distributed"):
        try:
            parts.append(f"{dist} {metadata.version(dist)}")
        except metadata.PackageNotFoundError:
            parts.append(f"{dist} (not installed)")
    return f"fedjax-grid {__version__} (python {platform.python_version()}, {', '.join(parts)})"


class _Version(argparse.Action):
    """``--version``: one unwrapped line on stdout, exit 0."""

    def __call__(self, parser, namespace, values, option_string=None):
        print(_version_text())
        parser.exit(0)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="fedjax-grid", description="Federated learning on a desktop grid.")
    parser.add_argument("--version", action=_Version, nargs=0,
                        help="print the versions (they must match on every desktop) and exit")
    sub = parser.add_subparsers(dest="command", parser_class=_Parser)
    run = sub.add_parser("run", help="run a federated experiment", epilog=RUN_EPILOG,
                         formatter_class=argparse.RawDescriptionHelpFormatter, choices_help=True,
                         description="Run (or --resume) a federated experiment: the quickstart "
                                     "preset unless --preset/--config is given.")
    _config_args(run)
    run.add_argument("--scheduler", help="address of a Dask scheduler "
                                         "(default: a LocalCluster on grid.host, 127.0.0.1)")
    run.add_argument("--workers", type=int, help="LocalCluster worker processes (default: grid.workers)")
    run.add_argument("--allow-insecure", action="store_true",
                     help="accept a plain-TCP scheduler or LocalCluster on a non-loopback address "
                          "(grid.allow_insecure): anyone who reaches it can run code on every "
                          "desktop -- prefer TLS (fedjax-grid certs, tls://, grid.tls_dir)")
    run.add_argument("--out", help="output folder (default: a new runs/<name>/<YYYYmmdd-HHMMSS>; "
                                   "with --resume: runs/<name>/latest)")
    run.add_argument("--resume", action="store_true",
                     help="continue the run stored in --out from its last checkpoint, with its "
                          "config.json (a conflicting --config/--preset/--set is refused)")
    run.add_argument("--more-rounds", type=int, metavar="N",
                     help="stop after N more rounds in this invocation (the run's total stays "
                          "training.rounds; raise that with --set training.rounds=T)")
    run.add_argument("--rounds", dest="rounds_alias", type=int, help=argparse.SUPPRESS)
    run.add_argument("--no-plots", action="store_true", help="do not write PNG plots")
    run.add_argument("--yes", "-y", action="store_true",
                     help="start without asking even when the run is estimated longer than "
                          "10 min ($FEDJAX_GRID_CONFIRM_ABOVE_S seconds); without a terminal "
                          "such a run is refused unless --yes is given")
    run.add_argument("--quiet", action="store_true", help="no start-up stages, no progress bar")
    sub.add_parser("presets", help="list the presets and the choices of every plug-in point")
    show = sub.add_parser("show-config", help="print the resolved config as YAML", choices_help=True)
    _config_args(show)
    rep = sub.add_parser("partition-report", help="per-client label table and heatmap",
                         choices_help=True)
    _config_args(rep)
    rep.add_argument("--round", type=int, default=1,
                     help="round whose local sets to report (1 = the first; default 1)")
    rep.add_argument("--out", help="directory for partition.csv and partition.png")
    prep = sub.add_parser("prepare", help="write a source as a tfds array_record data set")
    prep.add_argument("source")
    prep.add_argument("--path", help="archive or folder of the source")
    prep.add_argument("--data-dir", help="where to write (default: the data dir)")
    certs = sub.add_parser("certs", help="create a CA and TLS certificates for a grid")
    certs.add_argument("directory")
    certs.add_argument("--hosts", default="127.0.0.1,localhost",
                       help="comma-separated host names/IPs for the certificates")
    replay = sub.add_parser("replay", help="re-fold an asynchronous run's arrival log and "
                            "compare with its last checkpoint, bit for bit")
    replay.add_argument("run_dir", metavar="RUN", help="the run's folder (its --out)")
    from fedjax_grid.emulation.cli import add_parser as add_grid_parser
    add_grid_parser(sub)
    return parser


def check_keys(args) -> None:
    """A config key given twice (two ``--set``, or ``--set`` and its flag) is refused."""
    from fedjax_grid.experiments.config import unique_overrides
    flags = {k: f"{flag} {value}" for k, flag, value in (
        ("grid.scheduler", "--scheduler", getattr(args, "scheduler", None)),
        ("grid.workers", "--workers", getattr(args, "workers", None)),
        ("grid.allow_insecure", "--allow-insecure", getattr(args, "allow_insecure", None) or None))
        if value is not None}
    unique_overrides(args.overrides, flags)


def resolve_config(args):
    from fedjax_grid.experiments import ExperimentConfig, get_preset
    check_keys(args)
    if args.config:
        cfg = ExperimentConfig.load(args.config)
    else:
        cfg = get_preset(args.preset or "quickstart")
    if args.overrides:
        cfg = cfg.with_overrides(args.overrides)
    return cfg.validate()


def _more_rounds(args):
    """--more-rounds N (or its old name --rounds N), checked; None when not given."""
    for flag, value in (("--more-rounds", args.more_rounds), ("--rounds", args.rounds_alias)):
        if value is not None and not 1 <= value <= MAX_ROUNDS_FLAG:
            raise UserError(f"{flag}={show(value)} is invalid: an integer in "
                            f"[1, {MAX_ROUNDS_FLAG}] is required")
    if args.more_rounds is not None and args.rounds_alias is not None:
        raise UserError("--rounds is the old name of --more-rounds: give only one of them")
    return args.more_rounds if args.more_rounds is not None else args.rounds_alias


def _run_target(args):
    """(config, output folder, whether the folder is new and ours to create)."""
    from fedjax_grid.runner.resume import resume_config
    from fedjax_grid.grid import run_dirs
    if args.out is not None:
        from fedjax_grid.grid.runlock import check_folder
        check_folder(args.out)  # control characters, a file: refused before anything
    if not args.resume:
        cfg = resolve_config(args)
        if args.out or cfg.out_dir:
            return cfg, pathlib.Path(args.out or cfg.out_dir), False
        return cfg, run_dirs.new_run_dir(cfg.name), True
    given = resolve_config(args) if (args.config or args.preset) else None
    check_keys(args)
    if args.out:
        out = pathlib.Path(args.out)
    else:
        name = (given or resolve_config(args)).name
        out = run_dirs.latest_run_dir(name)
        if out is None:
            raise UserError(f"--resume: no run of {name!r} in {str(run_dirs.DEFAULT_ROOT / name)!r} "
                            f"to continue; give the run's folder with --out DIR")
    given_by = " ".join(x for x in (f"--config {args.config}" if args.config else "",
                                    f"--preset {args.preset}" if args.preset else "",
                                    *(f"--set {o}" for o in args.overrides)) if x)
    return resume_config(out, given, given_by, args.overrides), out, False


def _check_before_start(cfg) -> None:
    """What can be refused before the data load and the step estimate: tracking packages,
    the TLS folder's certificates (one-line UserError; a scheduler nobody listens on is
    FederatedRun's to refuse, before its data load)."""
    from fedjax_grid import tracking
    tracking.check(cfg)
    if cfg.grid.tls_dir is not None:
        from fedjax_grid.grid.certs import require_certs
        require_certs(cfg.grid.tls_dir)


def cmd_run(args) -> int:
    more = _more_rounds(args)
    cfg, out, new_dir = _run_config(args)
    from fedjax_grid.grid import run_dirs
    from fedjax_grid.progress import Console
    _check_before_start(cfg)
    _quiet_dask_connection_logs()
    console = Console(cfg.name, cfg.training.rounds, quiet=args.quiet)
    if not args.quiet:
        print(f"{cfg.name}: {'resuming' if args.resume else 'output in'} {out.resolve()}",
              flush=True)
    found = run_dirs.FolderState(out)  # a start that fails puts the folder back as it was
    run = _new_run(cfg, out, args.resume, console)
    if args.resume and run.done and not run.evaluation_pending:
        return _already_finished(run, out)
    if not _confirm_cost(run, args, console):
        run.close()
        found.restore()  # declined: the folder as it was
        return EXIT_DECLINED
    first, records = run.round, None
    if new_dir:
        run_dirs.claim(out)
    t_start = time.time()
    try:
        records = _run_rounds(run, console, more)
    except KeyboardInterrupt:
        cut = getattr(run, "stopped", None)
        cut = f" (round {cut.round} stopped: {cut.tasks} task(s) recorded as 'stopped')" \
            if cut is not None and cut.tasks else ""
        if run.round or cut:
            console.interrupted(f"interrupted after round {run.round} of {cfg.training.rounds}"
                                f"{cut}; continue with: fedjax-grid run --resume --out {out}")
        else:
            console.interrupted("interrupted before the first round finished; nothing to resume")
        if not args.no_plots and run.records.num_rounds:
            _write_plots(cfg, run.records, out)   # Ctrl-C: the figures of the rounds done
        return EXIT_INTERRUPTED
    except UserError:
        console.end_line()
        raise
    except RunStalled as e:  # nothing folded for grid.max_rounds_without_update rounds
        console.close()
        console.end_line()
        print(f"error: {e}", file=sys.stderr)
        return EXIT_STALLED
    except OSError as e:
        console.close()
        console.end_line()
        raise _os_error(e, run.round, out) from None
    finally:
        _save_grid_events(cfg.grid.scheduler, out, t_start)
        _close_run(run, console, out, new_dir)
        if records is None and run.round == first:
            found.restore()
    rounds = records.rounds()
    if not args.no_plots and len(rounds):
        _write_plots(cfg, records, out)
    print_summary(cfg, rounds, out, run.round)
    return 0


def _already_finished(run, out) -> int:
    """--resume of a run that has all its rounds: say so and what it reached; start nothing."""
    from fedjax_grid.runner.run_index import finished_text
    run.close()
    print(finished_text(run.config, run.records.rounds(), out))
    return 0


def _confirm_cost(run, args, console) -> bool:
    """Print the run's estimate (a measured training step, experiments.cost); above the
    threshold ask before starting (--yes: do not ask; no terminal: refuse in one line)."""
    from fedjax_grid.experiments.cost import confirm_above_s, duration_text, estimate_run
    with run.stages.stage("estimate", f"measuring a training step of {run.config.model.name} "
                                      "to estimate the run") as info:
        est = estimate_run(run)
        info["detail"] = f"{est.step.step_s * 1000:.1f} ms per step"
    if not args.quiet:
        print(est.summary(), flush=True)
    if args.yes or not est.needs_confirmation():
        return True
    what = (f"{run.config.name} is estimated at {duration_text(est.wall_s)} of wall time, "
            f"above {duration_text(confirm_above_s())}")
    if not sys.stdin.isatty():
        run.close()
        raise UserError(f"{what}: not started without confirmation; pass --yes to start it, "
                        "or make it smaller (e.g. --set training.rounds=N)")
    try:
        answer = input(f"{what}. Start it? [y/N] ")
    except EOFError:
        answer = ""
    if answer.strip().lower() in ("y", "yes"):
        return True
    print("not started")
    return False


def _run_config(args):
    """(validated config with --scheduler/--workers applied, output folder, new folder?)."""
    cfg, out, new_dir = _run_target(args)
    sets = ["grid.allow_insecure=true"] if args.allow_insecure else []
    scheduler = args.scheduler or cfg.grid.scheduler  # a resumed run's config names it too
    if scheduler:
        # An emulated grid's scheduler (`fedjax-grid grid up`): join its hub namespace now,
        # before any Dask thread exists, and use its certificates.
        from fedjax_grid.emulation.attach import enter
        grid = enter(scheduler)
        if grid is not None:
            scheduler = grid.address  # tls://, also when given without it
            sets.append(f"grid.tls_dir={grid.tls_dir}")
        sets.append(f"grid.scheduler={scheduler}")
    if sets:
        cfg = cfg.with_overrides(sets)
    if args.workers is not None:
        cfg = cfg.with_overrides([f"grid.workers={args.workers}"])
    from fedjax_grid.grid.cluster import check_local_cluster, check_secure
    check_secure(cfg.grid)  # before the data is loaded
    check_local_cluster(cfg.grid)
    return cfg.validate(), out, new_dir


def _save_grid_events(scheduler, out, t_start: float) -> None:
    """An emulated grid's events during the run (``fedjax-grid grid up``) as grid_events.csv."""
    if scheduler:
        from fedjax_grid.emulation.events import save_run_events
        try:
            save_run_events(scheduler, out, t_start, time.time())
        except OSError:
            pass


def _new_run(cfg, out, resume: bool, console):
    """The FederatedRun (data, model, checkpoint restored); an error line starts on its own line."""
    from fedjax_grid.runner import FederatedRun
    try:
        return FederatedRun(cfg, out_dir=out, resume=resume, on_stage=console.stage)
    except BaseException:
        console.end_line()
        raise


def _run_rounds(run, console, more):
    """Start the grid and run the rounds (KeyboardInterrupt on Ctrl-C); returns the records."""
    # The LocalCluster's worker processes start with SIGINT ignored: Ctrl-C in the
    # terminal reaches the whole process group, and only the coordinator reacts
    # (one line, exit 130) instead of every worker printing a traceback.
    with _sigint_ignored_in_children():
        run.start()

    def on_round(row):
        from fedjax_grid.grid.records import round_warnings
        for w in round_warnings(row):
            console.warn(w)
        console.round_done(row, run.round)

    with _ctrl_c_stops_after_the_round() as interrupted:
        records = run.run(rounds=more, callback=on_round, should_stop=interrupted.is_set)
        if interrupted.is_set():  # a Ctrl-C that a library callback swallowed
            raise KeyboardInterrupt
    return records


def _os_error(e: OSError, rounds_done: int, out) -> UserError:
    """The one-line error of an OSError during the rounds: the grid lost, or the files."""
    from fedjax_grid.grid.dispatch import GridLostError
    from fedjax_grid.grid.health import NoWorkersError
    if not _is_grid_loss(e, (GridLostError, NoWorkersError)):
        return UserError(f"cannot write the run's files in --out {show_path(out)} "
                         f"({type(e).__name__}: {e.strerror or str(e).splitlines()[0]}"
                         f"{': ' + show_path(e.filename) if getattr(e, 'filename', None) else ''}); "
                         "allowed: a writable folder with free space")
    # The scheduler or every worker went away: the last checkpoint is resumable.
    return UserError(f"lost the Dask cluster ({type(e).__name__}: "
                     f"{str(e).splitlines()[0] if str(e) else ''}); "
                     f"{rounds_done} rounds are checkpointed in {show_path(out)}: "
                     "continue with --resume")


def _close_run(run, console, out, new_dir: bool) -> None:
    """Close the console and the run; our own new folder becomes 'latest' once it holds a
    round, else it goes."""
    from fedjax_grid.grid import run_dirs
    console.close()
    try:
        run.close()
    except KeyboardInterrupt:
        pass
    if new_dir:
        if (out / "checkpoints").is_dir():
            run_dirs.point_latest(out)
        else:
            shutil.rmtree(out, ignore_errors=True)


def _write_plots(cfg, records, out) -> None:
    from fedjax_grid import plots
    plots.run_figures(cfg, records, out)


def _is_grid_loss(e: OSError, grid_errors: tuple) -> bool:
    """True when ``e`` means the grid went away (not a local file problem)."""
    if isinstance(e, grid_errors) or isinstance(e, (ConnectionError, TimeoutError)):
        return True
    return type(e).__module__.split(".")[0] in ("distributed", "tornado")


class _ctrl_c_stops_after_the_round:
    """The first Ctrl-C sets an event that stops the run as a Stop does (within about a
    second: the round in flight cut, its tasks cancelled and recorded as ``stopped``, the
    last checkpoint kept); a second Ctrl-C raises KeyboardInterrupt at once. A
    KeyboardInterrupt raised inside a callback that Python runs for a library (a
    garbage-collection hook, say) is swallowed ("Exception ignored in ..."): it stops
    the run too. An ignored SIGINT (``nohup``, a background job) stays ignored."""

    def __enter__(self):
        import threading
        self.event = threading.Event()
        self._old = None
        try:
            if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
                self._old = signal.signal(signal.SIGINT, self._handler)
        except ValueError:  # not the main thread
            pass
        self._old_hook = sys.unraisablehook
        sys.unraisablehook = self._unraisable
        return self.event

    def _unraisable(self, info):
        """A swallowed KeyboardInterrupt: no 'Exception ignored' traceback, stop the run."""
        if isinstance(info.exc_value, KeyboardInterrupt):
            self.event.set()
            return
        self._old_hook(info)

    def _handler(self, signum, frame):
        if self.event.is_set():
            raise KeyboardInterrupt
        self.event.set()

    def __exit__(self, *exc):
        sys.unraisablehook = self._old_hook
        if self._old is not None:
            signal.signal(signal.SIGINT, self._old)


class _sigint_ignored_in_children:
    """Ignore SIGINT while child processes are spawned (they inherit SIG_IGN)."""

    def __enter__(self):
        try:
            self._old = signal.signal(signal.SIGINT, signal.SIG_IGN)
        except ValueError:  # not the main thread
            self._old = None

    def __exit__(self, *exc):
        if self._old is not None:
            signal.signal(signal.SIGINT, self._old)


def print_summary(cfg, rounds, out: pathlib.Path, done: int) -> None:
    """The result, the absolute output folder and the files written, on stdout."""
    from fedjax_grid.progress import describe_outputs
    if len(rounds):
        acc = rounds["global_accuracy"]
        last = rounds.iloc[-1]
        print(f"{cfg.name}: round {done}/{cfg.training.rounds}, final global accuracy "
              f"{100 * last['global_accuracy']:.1f} % (best {100 * acc.max():.1f} %), "
              f"loss {last['global_loss']:.4f}")
    else:
        print(f"{cfg.name}: round {done}/{cfg.training.rounds}, no new round")
    print(f"output folder: {out.resolve()}")
    files = describe_outputs(out)
    for kind in ("records", "plots"):
        if files[kind]:
            print(f"  {kind + ':':13s}{' '.join(files[kind])}")
    if files["checkpoints"]:
        more = "" if done >= cfg.training.rounds else f"; continue with: fedjax-grid run --resume --out {out}"
        print(f"  {'checkpoints:':13s}{files['checkpoints'][-1]} (the last of "
              f"{len(files['checkpoints'])}){more}")


#: Dask loggers that print multi-line tracebacks while the client tries to reconnect to
#: a lost scheduler; the engine detects the loss itself (``GridLostError``) and the CLI
#: reports it as one line, so on the command line only their critical messages remain.
_DASK_CONNECTION_LOGGERS = ("distributed.client", "distributed.utils", "distributed.comm",
                            "distributed.core", "distributed.batched")


def _quiet_dask_connection_logs() -> None:
    import logging

    import distributed  # noqa: F401  (its import configures these loggers: quiet them after)
    for name in _DASK_CONNECTION_LOGGERS:
        logging.getLogger(name).setLevel(logging.CRITICAL)


def cmd_presets(args) -> int:
    from fedjax_grid.emulation.profiles import list_profiles
    from fedjax_grid.experiments import list_presets
    for name, desc in list_presets().items():
        print(f"{name:46s} {desc}")
    print()
    print("grid profiles (fedjax-grid grid up --profile NAME):")
    for name, desc in list_profiles().items():
        print(f"  {name:44s} {desc}")
    print()
    print(choices_text())
    return 0


def cmd_show_config(args) -> int:
    print(resolve_config(args).to_yaml(comments=True), end="")
    return 0


def cmd_partition_report(args) -> int:
    from fedjax_grid.experiments.build import load_split, local_sets
    from fedjax_grid.partition.report import label_table
    from fedjax_grid.plots import label_distribution
    cfg = resolve_config(args)
    if not 1 <= args.round <= MAX_ROUNDS_FLAG:
        raise UserError(f"--round={show(args.round)} is invalid: an integer in "
                        f"[1, {MAX_ROUNDS_FLAG}] is required (rounds count from 1)")
    out = None
    if args.out:
        from fedjax_grid.grid.runlock import check_folder
        out = check_folder(args.out)  # a file (or a path under one) is refused up front
    train = load_split(cfg, "train")
    labels, assignments = local_sets(cfg, args.round, train)
    table = label_table(labels, assignments, class_names=list(train.info.class_names))
    wide = table.pivot(index="client", columns="class", values="count")
    print(wide.to_string())
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        table.to_csv(out / "partition.csv", index=False)
        fig = label_distribution(table, normalize=True,
                                 title="label distribution per client (fractions)")
        fig.savefig(out / "partition.png", dpi=120)
        print(f"wrote {out / 'partition.csv'} and {out / 'partition.png'}")
    return 0


def cmd_prepare(args) -> int:
    from fedjax_grid.data import prepare_source
    from fedjax_grid.names import check_path
    for flag, value in (("--path", args.path), ("--data-dir", args.data_dir)):
        if value is not None:
            check_path(value, flag)
    path = prepare_source(args.source, path=args.path, data_dir=args.data_dir)
    print(f"prepared {args.source} in {path}")
    return 0


def cmd_certs(args) -> int:
    from fedjax_grid.grid.certs import create_certificates
    from fedjax_grid.names import check_path
    check_path(args.directory, "certs DIRECTORY")
    hosts = [h.strip() for h in args.hosts.split(",") if h.strip()]
    paths = create_certificates(args.directory, hosts)
    for name, path in paths.items():
        print(f"{name:8s} {path}")
    return 0


def cmd_grid(args) -> int:
    from fedjax_grid.emulation.cli import cmd_grid as grid_command
    return grid_command(args)


def cmd_replay(args) -> int:
    """Exit 0 when the re-folded parameters equal the checkpoint's bit for bit, else 1."""
    from fedjax_grid.names import check_path
    from fedjax_grid.runner.replay import replay_run
    r = replay_run(check_path(args.run_dir, "RUN"))
    verdict = "bitwise equal to" if r["equal"] else "DIFFERENT from"
    print(f"replayed {r['arrivals']} arrivals into version {r['version']}: the server state "
          f"({r['leaves']} arrays) is {verdict} the last checkpoint (version "
          f"{r['checkpoint_version']})")
    return 0 if r["equal"] else 1


COMMANDS = {"run": cmd_run, "replay": cmd_replay, "presets": cmd_presets, "show-config": cmd_show_config,
            "partition-report": cmd_partition_report, "prepare": cmd_prepare, "certs": cmd_certs,
            "grid": cmd_grid}


def main(argv=None) -> int:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    try:
        args = build_parser().parse_args(argv)
        if not args.command:
            build_parser().print_help()
            return EXIT_USAGE
        return COMMANDS[args.command](args)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:  # Ctrl-C outside a run's rounds (loading data, starting up)
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
