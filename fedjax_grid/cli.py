"""The ``fedjax-grid`` command line.

  fedjax-grid run [--preset NAME | --config FILE] [--set key=value ...]
                  [--scheduler ADDR] [--workers N] [--out DIR] [--resume]
  fedjax-grid presets
  fedjax-grid show-config [--preset NAME | --config FILE] [--set ...]
  fedjax-grid partition-report [--preset NAME | --config FILE] [--set ...] [--round R] [--out DIR]
  fedjax-grid prepare SOURCE [--path ARCHIVE] [--data-dir DIR]
  fedjax-grid certs DIR [--hosts 127.0.0.1,localhost]

Bad input of any kind is reported as one line ``error: ...`` with exit code 2.
"""
from __future__ import annotations

import argparse
import os
import pathlib
import re
import signal
import sys

from fedjax_grid.errors import SHOW_MAX, UserError, show, show_path

EXIT_USAGE = 2
#: Exit code after Ctrl-C (128 + SIGINT), with one line saying how to continue.
EXIT_INTERRUPTED = 130
#: Upper bound of ``run --rounds`` (as for ``training.rounds``).
MAX_ROUNDS_FLAG = 100_000


def _shorten_tokens(message: str) -> str:
    """Truncate every run of more than SHOW_MAX non-space characters (echoed values)."""
    return re.sub(r"\S{%d,}" % (SHOW_MAX + 1),
                  lambda m: f"{m.group(0)[:SHOW_MAX - 1]}…({len(m.group(0))} characters)", message)


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, exit 2 (argparse prints usage too by default)
        raise UserError(_shorten_tokens(f"{self.prog}: {message}"))


def _config_args(p: argparse.ArgumentParser) -> None:
    src = p.add_mutually_exclusive_group()
    src.add_argument("--preset", help="a preset name (see `fedjax-grid presets`)")
    src.add_argument("--config", help="a JSON/YAML config file")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value, e.g. --set training.lr=0.01 (repeatable)")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="fedjax-grid", description="Federated learning on a desktop grid.")
    sub = parser.add_subparsers(dest="command", parser_class=_Parser)
    run = sub.add_parser("run", help="run a federated experiment")
    _config_args(run)
    run.add_argument("--scheduler", help="address of a Dask scheduler (default: a LocalCluster)")
    run.add_argument("--workers", type=int, help="LocalCluster worker processes")
    run.add_argument("--out", help="output directory (default: runs/<name>)")
    run.add_argument("--resume", action="store_true", help="continue from the last checkpoint")
    run.add_argument("--rounds", type=int, help="stop after this many more rounds")
    run.add_argument("--no-plots", action="store_true", help="do not write PNG plots")
    run.add_argument("--quiet", action="store_true", help="no progress bar")
    sub.add_parser("presets", help="list the presets")
    show = sub.add_parser("show-config", help="print the resolved config as YAML")
    _config_args(show)
    rep = sub.add_parser("partition-report", help="per-client label table and heatmap")
    _config_args(rep)
    rep.add_argument("--round", type=int, default=0, help="round whose local sets to report")
    rep.add_argument("--out", help="directory for partition.csv and partition.png")
    prep = sub.add_parser("prepare", help="write a source as a tfds array_record data set")
    prep.add_argument("source")
    prep.add_argument("--path", help="archive or folder of the source")
    prep.add_argument("--data-dir", help="where to write (default: the data dir)")
    certs = sub.add_parser("certs", help="create a CA and TLS certificates for a grid")
    certs.add_argument("directory")
    certs.add_argument("--hosts", default="127.0.0.1,localhost",
                       help="comma-separated host names/IPs for the certificates")
    return parser


def resolve_config(args):
    from fedjax_grid.experiments import ExperimentConfig, get_preset
    if args.config:
        cfg = ExperimentConfig.load(args.config)
    else:
        cfg = get_preset(args.preset or "quickstart")
    if args.overrides:
        cfg = cfg.with_overrides(args.overrides)
    return cfg.validate()


def cmd_run(args) -> int:
    cfg = resolve_config(args)
    if args.scheduler:
        cfg = cfg.with_overrides([f"grid.scheduler={args.scheduler}"])
    if args.workers is not None:
        cfg = cfg.with_overrides([f"grid.workers={args.workers}"])
    if args.rounds is not None and not 1 <= args.rounds <= MAX_ROUNDS_FLAG:
        raise UserError(f"--rounds={show(args.rounds)} is invalid: an integer in "
                        f"[1, {MAX_ROUNDS_FLAG}] is required")
    cfg.validate()
    from fedjax_grid.grid.dispatch import GridLostError
    from fedjax_grid.grid.engine import FederatedRun
    from fedjax_grid.grid.health import NoWorkersError
    _quiet_dask_connection_logs()
    out = pathlib.Path(args.out or cfg.out_dir or pathlib.Path("runs") / cfg.name)
    run = FederatedRun(cfg, out_dir=out, resume=args.resume)
    bar = None
    try:
        # The LocalCluster's worker processes start with SIGINT ignored: Ctrl-C in the
        # terminal reaches the whole process group, and only the coordinator reacts
        # (one line, exit 130) instead of every worker printing a traceback.
        with _sigint_ignored_in_children():
            run.start()
        total = cfg.training.rounds
        if not args.quiet:
            from tqdm.auto import tqdm
            bar = tqdm(total=total, initial=run.round, desc=cfg.name, unit="round",
                       file=sys.stderr, dynamic_ncols=True)

        def on_round(row):
            from fedjax_grid.grid.records import round_warnings
            for w in round_warnings(row):
                (bar.write if bar is not None else print)(f"warning: {w}", file=sys.stderr)
            if bar is not None:
                bar.update(1)
                bar.set_postfix(acc=f"{row['global_accuracy']:.4f}",
                                ok=f"{row['clients_ok']}/{row['clients_sampled']}")

        records = run.run(rounds=args.rounds, callback=on_round)
    except KeyboardInterrupt:
        print(f"interrupted after round {run.round}; continue with --resume --out {out}",
              file=sys.stderr)
        return EXIT_INTERRUPTED
    except OSError as e:
        if not _is_grid_loss(e, (GridLostError, NoWorkersError)):
            raise UserError(f"cannot write the run's files in --out {show_path(out)} "
                            f"({type(e).__name__}: {e.strerror or str(e).splitlines()[0]}"
                            f"{': ' + show_path(e.filename) if getattr(e, 'filename', None) else ''}); "
                            "allowed: a writable folder with free space") from None
        # The scheduler or every worker went away: the last checkpoint is resumable.
        raise UserError(f"lost the Dask cluster ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}); "
                        f"{run.round} rounds are checkpointed in {show_path(out)}: "
                        "continue with --resume") from None
    finally:
        if bar is not None:
            bar.close()
        try:
            run.close()
        except KeyboardInterrupt:
            pass
    rounds = records.rounds()
    if not args.no_plots and len(rounds):
        from fedjax_grid import plots
        plots.global_accuracy(rounds, save=out / "global_accuracy.png")
        tasks = records.tasks()
        if (tasks["status"] == "ok").any():
            plots.local_loss(tasks, save=out / "local_loss.png")
    last = rounds.iloc[-1] if len(rounds) else None
    if last is not None:
        print(f"{cfg.name}: {len(rounds)} rounds, final global accuracy "
              f"{last['global_accuracy']:.4f} (best {rounds['global_accuracy'].max():.4f}), "
              f"loss {last['global_loss']:.4f}; records in {out}")
    return 0


def _is_grid_loss(e: OSError, grid_errors: tuple) -> bool:
    """True when ``e`` means the grid went away (not a local file problem)."""
    if isinstance(e, grid_errors) or isinstance(e, (ConnectionError, TimeoutError)):
        return True
    return type(e).__module__.split(".")[0] in ("distributed", "tornado")


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


#: Dask loggers that print multi-line tracebacks while the client tries to reconnect to
#: a lost scheduler; the engine detects the loss itself (``GridLostError``) and the CLI
#: reports it as one line, so on the command line only their critical messages remain.
_DASK_CONNECTION_LOGGERS = ("distributed.client", "distributed.utils", "distributed.comm",
                            "distributed.core", "distributed.batched")


def _quiet_dask_connection_logs() -> None:
    import logging
    for name in _DASK_CONNECTION_LOGGERS:
        logging.getLogger(name).setLevel(logging.CRITICAL)


def cmd_presets(args) -> int:
    from fedjax_grid.experiments import list_presets
    for name, desc in list_presets().items():
        print(f"{name:46s} {desc}")
    return 0


def cmd_show_config(args) -> int:
    print(resolve_config(args).to_yaml(), end="")
    return 0


def cmd_partition_report(args) -> int:
    import numpy as np
    from fedjax_grid.experiments.build import forming_rng, load_split, partition_strategy
    from fedjax_grid.partition.report import label_heatmap, label_table
    cfg = resolve_config(args)
    if not 0 <= args.round <= MAX_ROUNDS_FLAG:
        raise UserError(f"--round={show(args.round)} is invalid: an integer in "
                        f"[0, {MAX_ROUNDS_FLAG}] is required")
    out = None
    if args.out:
        from fedjax_grid.grid.runlock import check_folder
        out = check_folder(args.out)  # a file (or a path under one) is refused up front
    train = load_split(cfg, "train")
    labels = np.asarray(train.labels)
    strategy = partition_strategy(cfg, labels)
    state = strategy.init(cfg.seed)
    for r in range(args.round + 1):
        assignments, state = strategy.apply(state, forming_rng(cfg.seed, r), r)
    table = label_table(labels, assignments, class_names=list(train.info.class_names))
    wide = table.pivot(index="client", columns="class", values="count")
    print(wide.to_string())
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        table.to_csv(out / "partition.csv", index=False)
        fig = label_heatmap(table)
        fig.savefig(out / "partition.png", dpi=120)
        print(f"wrote {out / 'partition.csv'} and {out / 'partition.png'}")
    return 0


def cmd_prepare(args) -> int:
    from fedjax_grid.data import prepare_source
    path = prepare_source(args.source, path=args.path, data_dir=args.data_dir)
    print(f"prepared {args.source} in {path}")
    return 0


def cmd_certs(args) -> int:
    from fedjax_grid.grid.certs import create_certificates
    hosts = [h.strip() for h in args.hosts.split(",") if h.strip()]
    paths = create_certificates(args.directory, hosts)
    for name, path in paths.items():
        print(f"{name:8s} {path}")
    return 0


COMMANDS = {"run": cmd_run, "presets": cmd_presets, "show-config": cmd_show_config,
            "partition-report": cmd_partition_report, "prepare": cmd_prepare, "certs": cmd_certs}


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
