"""Peer benchmark: fedjax_grid vs Flower on the same client work.

    pip install -e ".[compare]"                      # Flower (flwr[simulation], Ray): optional
    python benchmarks/vs_flower.py                   # 4 and 20 clients, 3 alternating reps each
    python benchmarks/vs_flower.py --clients 4 --reps 1 --rounds 8 --json out.json
    python benchmarks/vs_flower.py --check           # client updates equal to client_update?
    python benchmarks/vs_flower.py --only flower --clients 4 --reps 1   # one toolkit (debugging)
    python benchmarks/vs_flower.py --quick           # smoke test: 4 clients, 1 rep of 3 rounds
    python benchmarks/vs_flower.py --clients 20 --variant idle=grid.xla_threads=2,grid.pin_workers=false
                                                     # also fedjax_grid with those overrides

To reproduce a published figure on a 2-core machine: let it be quiet first (the load
average is printed with every run; above ~1.5 the other jobs take a share of the 2
cores and both toolkits slow down unevenly), then run the default command above. It
prints the environment (commit, CPU, versions of every library involved, the load
average at the start and end of each run) and the exact command line before the tables.

The quickstart preset (digits 32x32, VGG-11 width 0.25 with BatchNorm, 1 local epoch,
momentum SGD lr 0.05, batch 32, IID static local sets, ``--rounds`` rounds) for each
``--clients`` count, every measured run a fresh subprocess:

- fedjax_grid: ``python -m fedjax_grid.cli run --preset quickstart --set
  partition.num_clients=C --set training.rounds=R --quiet --no-plots`` (its 2-worker
  LocalCluster on 127.0.0.1, records and a checkpoint each round; no PNG plots);
- Flower: this script as a child (``--flower-child``) running a ``ServerApp`` and a
  ``ClientApp`` through ``flwr.simulation.run_simulation`` (Ray backend, ``ray.init``
  with 2 CPUs on 127.0.0.1 and no dashboard, 1 CPU per client: 2 actors), FedAvg over
  all C clients each round, no federated evaluation, and the same server work as the
  engine: the weighted mean of the clients' variables, the BatchNorm statistics
  re-estimated on the same 2048 training examples (``server.bn_mode=recalibrate``) and
  the central evaluation of the global model on the same test set each round.

Both sides do the same client work: the same preset, local sets (``experiments.build``),
model, hyper-parameters and per-client keys ``fold_in(seed, round, client, attempt 0)``
into ``fedjax_grid.training.local_train``; ``--check`` runs one Flower round and
compares every client's update (new params minus global, and its BatchNorm statistics)
with ``fedjax_grid.grid.tasks.client_update`` run in this process on the spec the engine
builds (``RunContext.task_spec``): the maximum absolute difference must be 0.0.
Both sides use fedjax_grid's persistent JAX compilation cache
(``FEDJAX_GRID_COMPILE_CACHE``, default ``~/.cache/fedjax_grid/jax``): the Flower
client and server processes enable it as the Dask workers do, and one unmeasured
warm-up run of each toolkit per client count (``--warmup-rounds``, 0: none) fills it.

Each toolkit runs as it ships: fedjax_grid's worker plugin pins its two Dask workers to
disjoint cores; Ray's two actors are not pinned (Ray only sets their OMP_NUM_THREADS to 1).

Runs alternate (fedjax_grid, Flower, fedjax_grid, ...). Measured per run: wall time
from process start to exit (taken by this parent), steady-state s/round = the median
over rounds 2..R of the round-to-round time (fedjax_grid: differences of
``rounds.csv:elapsed_s``; Flower: differences of the times at which the central
evaluation of each round ended), and the peak over time of the summed RSS of the
child and all its descendants (sampled every 0.2 s with psutil: Dask's nanny and
worker processes, Ray's gcs_server, raylet, actors and helpers; pages shared between
processes, such as the JAX libraries, count once per process on both sides). Printed: one
markdown table of the medians over the reps with their spread (min-max), then the
ratios fedjax_grid / Flower of the medians with the range of the ratios of the paired
runs (rep k of each toolkit ran back to back) and the goals (issue 28: steady-state <=
0.8, wall <= 0.8; peak RSS <= 0.6). ``--json PATH`` writes every run's raw measurements.

The floor (``ideal``, alternating with the two toolkits): the round's pure numerical work
(``benchmarks/cpu_bound.py``'s ``ideal_round``) run by two processes pinned to the two
cores at the same time, one XLA thread each, after both compiled; half of one process's
round time is the shortest steady round this work allows on these cores. ideal / Flower
is then the lowest steady ratio any toolkit could reach against Flower; fedjax_grid /
ideal is what the engine costs beyond it.
"""
from __future__ import annotations

import argparse
import functools
import importlib.util
import json
import os
import pathlib
import platform
import subprocess
import sys
import tempfile
import threading
import time

import numpy as np

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))
from output_paths import output_error  # noqa: E402
SCRIPT = pathlib.Path(__file__).resolve()
FLOWER_MISSING = "Flower is not installed: pip install -e '.[compare]'"
TOOLKITS = ("fedjax_grid", "flower", "ideal")
#: Goals of fedjax_grid / Flower (issue 28; peak RSS: issue 17): steady-state s/round,
#: wall time, peak RSS.
GOALS = {"steady_s": 0.8, "wall_s": 0.8, "peak_rss_mb": 0.6}
SAMPLE_S = 0.2
#: Seconds a child's descendants still running after it exited get to end by themselves
#: (not measured) before they are stopped, so that the next run starts on a quiet machine.
LEFTOVER_GRACE_S = 10.0
#: Ray on loopback, 2 CPUs, no dashboard; each client (ClientApp) takes 1 CPU: 2 actors.
RAY_INIT = {"num_cpus": 2, "include_dashboard": False, "_node_ip_address": "127.0.0.1"}
CLIENT_RESOURCES = {"num_cpus": 1, "num_gpus": 0.0}


def config(clients: int, rounds: int):
    """The quickstart preset for ``clients`` clients and ``rounds`` rounds (validated)."""
    from fedjax_grid.experiments import get_preset
    cfg = get_preset("quickstart").with_overrides(
        [f"partition.num_clients={clients}", f"training.rounds={rounds}",
         "grid.host=127.0.0.1", "grid.dashboard_address=127.0.0.1:0"]).validate()
    if cfg.training.clients_per_round is not None or cfg.grid.overcommit:
        raise SystemExit("error: the comparison needs every client in every round")
    return cfg


def child_env() -> dict:
    """The children's environment: this worktree first on PYTHONPATH, no telemetry."""
    path = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p)
    return dict(os.environ, PYTHONPATH=path, TF_CPP_MIN_LOG_LEVEL="3",
                FLWR_TELEMETRY_ENABLED="0", RAY_USAGE_STATS_ENABLED="0",
                RAY_DEDUP_LOGS="0")


def flower_available() -> bool:
    return all(importlib.util.find_spec(m) is not None for m in ("flwr", "ray"))


# --------------------------------------------------------------- measuring a child

class TreeSampler(threading.Thread):
    """Samples the summed RSS of a process and all its descendants every ``interval`` s."""

    def __init__(self, pid: int, interval: float = SAMPLE_S):
        super().__init__(daemon=True)
        import psutil
        self.root = psutil.Process(pid)
        self.interval = interval
        self.peak = 0
        self.max_procs = 0
        self.seen: dict[int, object] = {}
        self.names: dict[int, str] = {}
        self._done = threading.Event()

    def sample(self) -> None:
        import psutil
        try:
            procs = [self.root, *self.root.children(recursive=True)]
        except psutil.Error:
            return
        total = 0
        for p in procs:
            try:
                total += p.memory_info().rss
                if p.pid not in self.seen:
                    self.seen[p.pid] = p
                    self.names[p.pid] = process_name(p)
            except psutil.Error:
                pass
        self.peak = max(self.peak, total)
        self.max_procs = max(self.max_procs, len(procs))

    def run(self) -> None:
        while not self._done.is_set():
            self.sample()
            self._done.wait(self.interval)

    def stop(self) -> None:
        self._done.set()
        self.join()

    def leftovers(self) -> list:
        """Descendants seen during the run that are still alive after the child exited."""
        import psutil
        out = []
        for pid, p in self.seen.items():
            try:
                if pid != self.root.pid and p.is_running() and p.status() != psutil.STATUS_ZOMBIE:
                    out.append(p)
            except psutil.Error:
                pass
        return out


def stop_processes(procs: list, grace: float = 0.0) -> None:
    """Terminate (then kill) the given psutil processes -- only ones this run started --
    after letting them exit by themselves for ``grace`` seconds."""
    import psutil
    if grace > 0:
        _, procs = psutil.wait_procs(procs, timeout=grace)
    for p in procs:
        try:
            p.terminate()
        except psutil.Error:
            pass
    _, alive = psutil.wait_procs(procs, timeout=10)
    for p in alive:
        try:
            p.kill()
        except psutil.Error:
            pass


def measure(cmd: list[str], log: pathlib.Path, timeout: float) -> dict:
    """Run ``cmd`` as a fresh process: wall time (start to exit), peak RSS of its tree."""
    with open(log, "w") as out:
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, cwd=REPO,
                                env=child_env(), start_new_session=True)
        sampler = TreeSampler(proc.pid)
        sampler.start()
        try:
            rc = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            sampler.sample()
            stop_processes([sampler.root])
            rc = proc.wait()
        wall = time.perf_counter() - t0
        sampler.stop()
    left = sampler.leftovers()
    names = sorted(sampler.names.get(p.pid, "?") for p in left)
    stop_processes(left, grace=LEFTOVER_GRACE_S)
    return {"rc": rc, "wall_s": wall, "peak_rss_mb": sampler.peak / 2**20,
            "processes": sampler.max_procs, "leftover_processes": len(left), "leftover": names,
            "log": str(log)}


def process_name(p) -> str:
    """The program and its first arguments (for the report of leftover processes)."""
    import psutil
    try:
        return " ".join(os.path.basename(a) if i == 0 else a
                        for i, a in enumerate(p.cmdline()[:3]))[:100] or p.name()
    except psutil.Error:
        return "?"


def steady(ends: list[float]) -> tuple[list[float], float]:
    """(round times, median over rounds 2..R) from the end times of rounds 0..R
    (index 0: the start of round 1)."""
    rounds = [b - a for a, b in zip(ends[:-1], ends[1:])]
    return rounds, float(np.median(rounds[1:])) if len(rounds) > 1 else float("nan")


def run_fedjax(clients: int, rounds: int, work: pathlib.Path, timeout: float,
               sets: tuple = ()) -> dict:
    """One fedjax-grid CLI run (``sets``: extra ``--set`` overrides of a variant); the
    steady state from its rounds.csv."""
    import pandas as pd
    out = work / "run"
    cmd = [sys.executable, "-m", "fedjax_grid.cli", "run", "--preset", "quickstart",
           "--set", f"partition.num_clients={clients}", "--set", f"training.rounds={rounds}",
           "--set", "grid.host=127.0.0.1", "--set", "grid.dashboard_address=127.0.0.1:0",
           *[a for kv in sets for a in ("--set", kv)],
           "--out", str(out), "--quiet", "--no-plots"]
    m = measure(cmd, work / "fedjax_grid.log", timeout)
    if m["rc"] == 0:
        table = pd.read_csv(out / "rounds.csv")
        elapsed = table["elapsed_s"].to_numpy(float)
        round_s, m["steady_s"] = steady([0.0, *elapsed])
        train_s = pd.read_csv(out / "profile.csv")["train_s"] if (out / "profile.csv").exists() else []
        m.update(round_s=round_s, round_time_s=table["round_time_s"].tolist(),
                 train_s=[float(x) for x in train_s],
                 final_accuracy=float(table["global_accuracy"].iloc[-1]))
    return m


def run_ideal(clients: int, rounds: int, work: pathlib.Path, timeout: float) -> dict:
    """The floor of the steady round (``cpu_bound.ideal_round`` in a child: the round's pure
    compute in two processes pinned to two cores, ``rounds - 1`` timed rounds after one that
    compiles). Not a toolkit: its wall time and memory are not comparable (``nan``; the
    child's own under ``child_*``)."""
    result = work / "ideal.json"
    cmd = [sys.executable, str(SCRIPT), "--ideal-child", "--clients", str(clients),
           "--rounds", str(rounds), "--child-out", str(result)]
    m = measure(cmd, work / "ideal.log", timeout)
    m.update(child_wall_s=m["wall_s"], child_peak_rss_mb=m["peak_rss_mb"], wall_s=float("nan"),
             peak_rss_mb=float("nan"), final_accuracy=float("nan"), train_s=[])
    if m["rc"] == 0:
        r = json.loads(result.read_text())
        m.update(steady_s=r["round_s"], process_round_s=r["process_round_s"], cores=r["cores"])
    return m


def ideal_child(args) -> None:
    """(``--ideal-child``) ``cpu_bound.ideal_round`` for the first ``--clients`` count,
    written to ``--child-out`` as JSON."""
    import cpu_bound
    with tempfile.TemporaryDirectory(prefix="ideal-") as work:
        r = cpu_bound.ideal_round(args.clients[0], args.rounds - 1, work, args.timeout)
    pathlib.Path(args.child_out).write_text(json.dumps(r))


def run_flower(clients: int, rounds: int, work: pathlib.Path, timeout: float,
               dump: pathlib.Path | None = None) -> dict:
    """One Flower simulation in a child; the steady state from its evaluation times."""
    result = work / "flower.json"
    cmd = [sys.executable, str(SCRIPT), "--flower-child", "--clients", str(clients),
           "--rounds", str(rounds), "--child-out", str(result)]
    if dump is not None:
        cmd += ["--dump-updates", str(dump)]
    m = measure(cmd, work / "flower.log", timeout)
    if m["rc"] == 0:
        child = json.loads(result.read_text())
        round_s, m["steady_s"] = steady(child["round_ends"])
        m.update(round_s=round_s, final_accuracy=child["accuracy"][-1], train_s=child["train_s"])
    return m


# --------------------------------------------------------------- the Flower side

def flatten(variables: dict) -> dict:
    """``{'params': {...}, 'batch_stats': {...}}`` -> ``{'params/a/b': array}``."""
    from flax import traverse_util
    return {k: np.asarray(v) for k, v in traverse_util.flatten_dict(variables, sep="/").items()}


def unflatten(flat: dict) -> dict:
    from flax import traverse_util
    return traverse_util.unflatten_dict(dict(flat), sep="/")


def to_record(variables: dict):
    from flwr.app import Array, ArrayRecord
    return ArrayRecord({k: Array(v) for k, v in flatten(variables).items()})


def from_record(record) -> dict:
    return unflatten({k: v.numpy() for k, v in record.items()})


@functools.lru_cache(maxsize=2)
def client_side(cfg_json: str) -> dict:
    """What a Flower client process holds (once per Ray actor): the training split,
    its normalisation, the model, the hyper-parameters (as the engine's coordinator
    and workers build them)."""
    from fedjax_grid.experiments import ExperimentConfig
    from fedjax_grid.experiments.build import build_hparams, build_model, load_split, normalisation
    from fedjax_grid.training import Standardize, enable_persistent_cache
    from fedjax_grid.training.compile_cache import default_cache_dir
    cfg = ExperimentConfig.from_dict(json.loads(cfg_json)).validate()
    enable_persistent_cache(cfg.grid.compile_cache_dir or default_cache_dir())
    train = load_split(cfg, "train")
    mean, std = normalisation(train)
    _, model = build_model(cfg, train.info.num_classes)
    return {"cfg": cfg, "train": train, "model": model, "hparams": build_hparams(cfg),
            "preprocess": Standardize(mean=mean, std=std)}


@functools.lru_cache(maxsize=8)
def round_assignments(cfg_json: str, round_: int) -> list:
    """Every client's local set (indices) of 0-based round ``round_``, drawn exactly as
    the engine draws them (forming strategy, ``forming_rng``)."""
    from fedjax_grid.experiments.build import forming_rng, partition_strategy
    side = client_side(cfg_json)
    cfg = side["cfg"]
    strategy = partition_strategy(cfg, np.asarray(side["train"].labels))
    state = strategy.init(cfg.seed)
    for r in range(round_ + 1):
        assignments, state = strategy.apply(state, forming_rng(cfg.seed, r), r)
    return assignments


def client_train(global_variables: dict, cfg_json: str, round_: int, client: int) -> tuple:
    """The client task's local work: ``local_train`` on the client's examples with the
    engine's key (``streams.client_key``, attempt 0)."""
    import jax

    from fedjax_grid.streams import client_key
    from fedjax_grid.training import local_train
    side = client_side(cfg_json)
    cfg, hp = side["cfg"], side["hparams"]
    batch = side["train"].__getitems__(round_assignments(cfg_json, round_)[client])
    key = client_key(cfg.seed, round_, client)
    variables, metrics = local_train(
        side["model"], global_variables, (batch["image"], batch["label"]), hp, key,
        preprocess=side["preprocess"],
        anchor_params=global_variables["params"] if hp.prox_mu > 0 else None)
    return jax.tree.map(np.asarray, variables), metrics


def flower_train(msg, context):
    """The ClientApp's train handler (module level: Ray imports it by reference, so the
    per-process caches above live as long as the actor)."""
    from flwr.app import Message, MetricRecord, RecordDict
    conf = msg.content["config"]
    client = int(context.node_config["partition-id"])
    t0 = time.perf_counter()
    variables, metrics = client_train(from_record(msg.content["arrays"]), str(conf["cfg"]),
                                      int(conf["server-round"]) - 1, client)
    train_s = time.perf_counter() - t0
    reply = RecordDict({"arrays": to_record(variables), "metrics": MetricRecord(
        {"num-examples": int(metrics["num_examples"]), "client": client,
         "loss": float(metrics["loss"]), "accuracy": float(metrics["accuracy"]),
         "train-s": train_s})})
    return Message(content=reply, reply_to=msg)


def make_client_app():
    from flwr.clientapp import ClientApp
    app = ClientApp()
    app.train()(flower_train)
    return app


class ServerSide:
    """The Flower server's work, as the engine's: BatchNorm recalibration after the
    aggregation, central evaluation (with the collapse check) after each round."""

    def __init__(self, cfg):
        from fedjax_grid.experiments.build import build_experiment, initial_variables
        from fedjax_grid.training import Standardize, enable_persistent_cache
        from fedjax_grid.training.compile_cache import default_cache_dir
        enable_persistent_cache(cfg.grid.compile_cache_dir or default_cache_dir())
        self.cfg = cfg
        self.exp = build_experiment(cfg)
        self.initial = initial_variables(cfg, self.exp.model, self.exp.data.info.image_shape)
        self.pre = Standardize(mean=self.exp.data.mean, std=self.exp.data.std)
        self.round_ends: list[float] = []
        self.accuracy: list[float] = []
        self.loss: list[float] = []
        #: per round, the clients' mean seconds of local training (as the engine's train_s)
        self.train_s: list[float] = []

    def recalibrate(self, variables: dict) -> dict:
        from fedjax_grid.training.bn_stats import calibration_indices, recalibrated_stats
        s, train = self.cfg.server, self.exp.data.train
        if s.bn_mode != "recalibrate" or "batch_stats" not in variables:
            return variables
        idx = calibration_indices(len(train), s.bn_calibration_examples, self.cfg.seed)
        stats = recalibrated_stats(self.exp.model, variables, train, self.cfg.training.batch_size,
                                   indices=idx, preprocess=self.pre)
        return dict(variables, batch_stats=stats)

    def evaluate(self, server_round: int, arrays):
        """Flower's ``evaluate_fn``: round 0 (before round 1) only notes the time."""
        from flwr.app import MetricRecord

        from fedjax_grid.training import evaluate
        from fedjax_grid.training.bn_stats import logit_spread
        if server_round > 0:
            variables = from_record(arrays)
            images, labels = self.exp.data.test_arrays
            b = self.cfg.training.test_batch_size
            out = evaluate(self.exp.model, variables, (images, labels), b, preprocess=self.pre)
            logit_spread(self.exp.model, variables, images[:b], preprocess=self.pre)
            self.accuracy.append(float(out["accuracy"]))
            self.loss.append(float(out["loss"]))
        self.round_ends.append(time.time())
        if server_round == 0:
            return None
        return MetricRecord({"accuracy": self.accuracy[-1], "loss": self.loss[-1]})


def make_strategy(server: ServerSide, clients: int, dump: str | None):
    """FedAvg over all clients, no federated evaluation; the aggregate recalibrated;
    with ``dump``, round 1's client variables saved (``--check``)."""
    from flwr.serverapp.strategy import FedAvg

    class EngineFedAvg(FedAvg):
        def aggregate_train(self, server_round, replies):
            replies = list(replies)
            if dump and server_round == 1:
                save_updates(dump, server.initial, replies)
            server.train_s.append(float(np.mean(
                [float(msg.content["metrics"]["train-s"]) for msg in replies if msg.has_content()])))
            arrays, metrics = super().aggregate_train(server_round, replies)
            if arrays is not None:
                arrays = to_record(server.recalibrate(from_record(arrays)))
            return arrays, metrics

    return EngineFedAvg(fraction_train=1.0, fraction_evaluate=0.0, min_train_nodes=clients,
                        min_available_nodes=clients)


def save_updates(path: str, initial: dict, replies: list) -> None:
    """Round 1: the global variables and each client's returned variables (npz)."""
    arrays = {f"global|{k}": v for k, v in flatten(initial).items()}
    for msg in replies:
        client = int(msg.content["metrics"]["client"])
        for k, v in msg.content["arrays"].items():
            arrays[f"{client}|{k}"] = v.numpy()
    np.savez(path, **arrays)


def flower_child(args) -> None:
    """The Flower simulation of ``--clients`` clients, ``--rounds`` rounds (a child)."""
    from flwr.app import ConfigRecord
    from flwr.serverapp import ServerApp
    from flwr.simulation import run_simulation
    clients = args.clients[0]
    cfg = config(clients, args.rounds)
    server = ServerSide(cfg)
    strategy = make_strategy(server, clients, args.dump_updates)
    cfg_json = json.dumps(cfg.to_dict())
    app = ServerApp()

    @app.main()
    def main(grid, context):
        strategy.start(grid=grid, initial_arrays=to_record(server.initial),
                       num_rounds=cfg.training.rounds, train_config=ConfigRecord({"cfg": cfg_json}),
                       evaluate_fn=server.evaluate)

    try:
        run_simulation(server_app=app, client_app=make_client_app(), num_supernodes=clients,
                       backend_name="ray", backend_config={"init_args": dict(RAY_INIT),
                                                           "client_resources": dict(CLIENT_RESOURCES)})
    except BaseException:  # noqa: BLE001 - e.g. Ray's node did not start: exit, do not hang
        # ray.shutdown() after a failed start waits for a raylet that is gone; the parent
        # stops the leftover Ray processes (only those of this run).
        import traceback
        traceback.print_exc()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(3)
    import ray
    if ray.is_initialized():
        ray.shutdown()
    if len(server.accuracy) != cfg.training.rounds:
        raise SystemExit(f"error: Flower ran {len(server.accuracy)} of {cfg.training.rounds} rounds")
    pathlib.Path(args.child_out).write_text(json.dumps(
        {"round_ends": server.round_ends, "accuracy": server.accuracy, "loss": server.loss,
         "train_s": server.train_s}))


# --------------------------------------------------------------- --check

def engine_updates(clients: int, out: pathlib.Path) -> tuple[dict, dict]:
    """(global variables, client -> (params delta, batch_stats)) of round 1 computed by
    ``grid.tasks.client_update`` in this process on the engine's own task specs."""
    from fedjax_grid.compression import decode
    from fedjax_grid.experiments.build import forming_rng
    from fedjax_grid.grid.tasks import client_update
    from fedjax_grid.runner import FederatedRun
    run = FederatedRun(config(clients, 1), out_dir=out, notify=lambda m: None)
    assignments, _ = run.strategy.apply(run.strategy_state, forming_rng(run.config.seed, 0), 0)
    updates = {}
    for k in range(clients):
        batch = run.train.__getitems__(assignments[k])
        spec = run.context.task_spec(0, k, 0, assignments[k])
        res = client_update(run.global_variables, spec,
                            {"images": batch["image"], "labels": batch["label"]})
        updates[k] = (flatten({"params": decode(res["update"])}),
                      flatten({"batch_stats": res["batch_stats"]}))
    return flatten(run.global_variables), updates


def max_abs(a: dict, b: dict) -> float:
    if set(a) != set(b):
        return float("inf")
    return max(float(np.max(np.abs(np.asarray(a[k], np.float64) - np.asarray(b[k], np.float64))))
               for k in a)


def check(clients: int, timeout: float) -> int:
    """One Flower round; each client's update vs ``client_update``: 0 when all equal."""
    work = pathlib.Path(tempfile.mkdtemp(prefix="vs_flower_check_"))
    dump = work / "updates.npz"
    m = run_flower(clients, 1, work, timeout, dump=dump)
    if m["rc"] != 0:
        print(f"error: the Flower run failed (exit {m['rc']}); see {m['log']}", file=sys.stderr)
        return 1
    with np.load(dump) as z:
        saved = {name: z[name] for name in z.files}
    flower_global = {k.split("|", 1)[1]: v for k, v in saved.items() if k.startswith("global|")}
    engine_global, updates = engine_updates(clients, work / "engine")
    print(f"round 1, {clients} clients: Flower client vs fedjax_grid client_update")
    print("| client | max abs diff, params update | max abs diff, batch_stats |")
    print("|---|---|---|")
    worst = max_abs(flower_global, engine_global)
    for k, (delta, stats) in updates.items():
        new = {n.split("|", 1)[1]: v for n, v in saved.items() if n.startswith(f"{k}|")}
        f_delta = {n: np.subtract(v, flower_global[n], dtype=v.dtype)
                   for n, v in new.items() if n.startswith("params/")}
        f_stats = {n: v for n, v in new.items() if n.startswith("batch_stats/")}
        d_params, d_stats = max_abs(f_delta, delta), max_abs(f_stats, stats)
        worst = max(worst, d_params, d_stats)
        print(f"| {k} | {d_params} | {d_stats} |")
    print(f"global variables (Flower's initial arrays vs the engine's): max abs diff "
          f"{max_abs(flower_global, engine_global)}")
    print(f"max abs difference: {worst} ({'equal' if worst == 0.0 else 'NOT equal'})")
    return 0 if worst == 0.0 else 1


# --------------------------------------------------------------- the benchmark

RUNNERS = {"fedjax_grid": run_fedjax, "flower": run_flower, "ideal": run_ideal}
#: fedjax_grid variants measured besides the default (``--variant NAME=KEY=V,KEY=V``):
#: toolkit name ``fedjax_grid[NAME]`` -> its ``--set`` overrides.
VARIANTS: dict[str, tuple] = {}


def runner(toolkit: str):
    """The function that runs one measured run of ``toolkit`` (a variant: fedjax_grid
    with that variant's overrides)."""
    if toolkit in VARIANTS:
        return functools.partial(run_fedjax, sets=VARIANTS[toolkit])
    return RUNNERS[toolkit]


def parse_variant(text: str) -> tuple[str, tuple]:
    """``'NAME=KEY=V,KEY=V'`` -> ``('fedjax_grid[NAME]', ('KEY=V', 'KEY=V'))``."""
    name, _, sets = text.partition("=")
    pairs = tuple(kv.strip() for kv in sets.split(",") if kv.strip())
    if not name.strip() or not pairs or not all("=" in kv for kv in pairs):
        raise ValueError(text)
    return f"fedjax_grid[{name.strip()}]", pairs


#: What Flower's log says when Ray's node did not start (under load, Ray's raylet gives its
#: dashboard agent a fixed 15 s to write its port file: ray-project/ray#65983); such a run
#: is repeated up to RAY_START_RETRIES times (counted in ``ray_start_failures``).
RAY_START_FAILED = "The current node timed out during startup"
RAY_START_RETRIES = 6


def one_run(toolkit: str, clients: int, rounds: int, root: pathlib.Path, tag: str,
            timeout: float) -> dict:
    failures = 0
    while True:
        work = root / f"{toolkit.replace('[', '-').replace(']', '')}-{clients}-{tag}" / str(failures)
        work.mkdir(parents=True)
        load_start = os.getloadavg()[0]
        m = runner(toolkit)(clients, rounds, work, timeout)
        m["load_start"], m["load_end"] = load_start, os.getloadavg()[0]
        if (m["rc"] == 0 or failures >= RAY_START_RETRIES
                or RAY_START_FAILED not in pathlib.Path(m["log"]).read_text(errors="replace")):
            break
        failures += 1
        print(f"  {toolkit}: Ray's node did not start (load average {load_start:.1f}); "
              f"again ({failures} of {RAY_START_RETRIES})", flush=True)
    m["ray_start_failures"] = failures
    if m["rc"] != 0:
        raise SystemExit(f"error: {toolkit} with {clients} clients failed (exit {m['rc']}); "
                         f"see {m['log']}")
    # the clients' mean local training time per task, median over rounds 2..R (diagnostic)
    m["steady_train_s"] = float(np.median(m["train_s"][1:])) if len(m["train_s"]) > 1 else float("nan")
    return {"toolkit": toolkit, "clients": clients, "rounds": rounds, "run": tag, **m}


def benchmark(args, toolkits: list[str]) -> list[dict]:
    root = pathlib.Path(tempfile.mkdtemp(prefix="vs_flower_"))
    runs = []
    for clients in args.clients:
        if args.warmup_rounds:
            for t in toolkits:
                print(f"warm-up: {t}, {clients} clients, {args.warmup_rounds} rounds", flush=True)
                runs.append(one_run(t, clients, args.warmup_rounds, root, "warmup", args.timeout))
        for rep in range(1, args.reps + 1):
            for t in toolkits:
                r = one_run(t, clients, args.rounds, root, f"rep{rep}", args.timeout)
                if t == "ideal":
                    print(f"ideal, {clients} clients, rep {rep}: {r['steady_s']:.2f} s/round (the "
                          "round's pure compute in 2 processes pinned to 2 cores at once: "
                          + " / ".join(f"{x:.2f}" for x in r["process_round_s"])
                          + f" s per round each; load average {r['load_start']:.1f} -> "
                          f"{r['load_end']:.1f})", flush=True)
                    runs.append(r)
                    continue
                print(f"{t}, {clients} clients, rep {rep}: wall {r['wall_s']:.1f} s, "
                      f"{r['steady_s']:.2f} s/round ({r['steady_train_s']:.2f} s of local training "
                      f"per client task), peak RSS {r['peak_rss_mb']:.0f} MB "
                      f"({r['processes']} processes at most; load average {r['load_start']:.1f} "
                      f"-> {r['load_end']:.1f}"
                      + (f"; still running after exit: {', '.join(r['leftover'])}"
                         if r["leftover"] else "") + ")", flush=True)
                runs.append(r)
    return runs


def summarize(runs: list[dict], toolkits: list[str], clients_list: list[int]) -> list[dict]:
    """Per client count and toolkit: medians and (min, max) over the measured runs."""
    rows = []
    for clients in clients_list:
        for t in toolkits:
            rs = [r for r in runs if r["toolkit"] == t and r["clients"] == clients
                  and r["run"] != "warmup"]
            row = {"clients": clients, "toolkit": t, "reps": len(rs)}
            for k in ("wall_s", "steady_s", "peak_rss_mb", "final_accuracy", "load_start"):
                values = [r[k] for r in rs]
                row[k] = float(np.median(values))
                row[k + "_range"] = (float(np.min(values)), float(np.max(values)))
            row["per_rep"] = {r["run"]: r for r in rs}
            rows.append(row)
    return rows


def _spread(row: dict, key: str, fmt: str) -> str:
    if not np.isfinite(row[key]):
        return "-"
    lo, hi = row[key + "_range"]
    return f"{fmt.format(row[key])} ({fmt.format(lo)}-{fmt.format(hi)})"


def print_tables(rows: list[dict], rounds: int) -> None:
    print(f"\n| clients | toolkit | runs | wall s (process start -> exit) | steady-state s/round "
          f"(rounds 2-{rounds}) | peak RSS of all processes (MB) | final accuracy % | "
          f"load average at start |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        acc = dict(r, final_accuracy=100 * r["final_accuracy"],
                   final_accuracy_range=tuple(100 * v for v in r["final_accuracy_range"]))
        print(f"| {r['clients']} | {r['toolkit']} | {r['reps']} | {_spread(r, 'wall_s', '{:.1f}')} "
              f"| {_spread(r, 'steady_s', '{:.2f}')} | {_spread(r, 'peak_rss_mb', '{:.0f}')} "
              f"| {_spread(acc, 'final_accuracy', '{:.1f}')} | {_spread(r, 'load_start', '{:.1f}')} |")
    print("\nmedian (min-max); spread = min-max over the runs")
    pairs = {}
    for r in rows:
        pairs.setdefault(r["clients"], {})[r["toolkit"]] = r
    if not all("flower" in p and len(p) >= 2 for p in pairs.values()):
        return
    variants = len([t for t in next(iter(pairs.values())) if t not in ("flower", "ideal")]) > 1
    print("\n| clients | " + ("fedjax_grid | " if variants else "")
          + "steady-state fedjax_grid/Flower (goal <= 0.8) | wall (goal <= 0.8) | "
          "peak RSS (goal <= 0.6) |")
    print("|---|---|---|---|" + ("---|" if variants else ""))
    for clients, p in pairs.items():
        for mine in (t for t in p if t not in ("flower", "ideal")):
            print(f"| {clients} | " + (f"{mine} | " if variants else "")
                  + " | ".join(_ratio_cell(p[mine], p["flower"], key, goal)
                               for key, goal in GOALS.items()) + " |")
    print("\nratio of the medians; runs: the ratios of the paired runs (rep k of both toolkits)")
    if all("ideal" in p for p in pairs.values()):
        print_floor(pairs)


def print_floor(pairs: dict) -> None:
    """The floor of the steady-round ratio: the ideal round (``run_ideal``) against Flower's
    steady round, and fedjax_grid's against the ideal one, medians and paired runs."""
    print("\n| clients | ideal round s (2 pinned processes, no coordination) | Flower steady s "
          "| ideal / Flower: the lowest steady ratio this work allows here (goal 0.8) "
          "| fedjax_grid / ideal |")
    print("|---|---|---|---|---|")
    for clients, p in pairs.items():
        ideal, flower, mine = p["ideal"], p["flower"], p.get("fedjax_grid")
        cells = [str(clients), _spread(ideal, "steady_s", "{:.2f}"),
                 _spread(flower, "steady_s", "{:.2f}"), _paired(ideal, flower),
                 _paired(mine, ideal) if mine else "-"]
        print("| " + " | ".join(cells) + " |")
    print("\nideal: every core runs the round's whole numerical work (local_train of every "
          "client, BatchNorm re-estimation, evaluation) at once, one XLA thread each, so a "
          "round's work takes half a process's round time: no toolkit doing this work with "
          "these kernels on these cores can be faster. When ideal / Flower is above a goal, "
          "the goal is below what the work allows.")


def _paired(num: dict, den: dict, key: str = "steady_s") -> str:
    """'ratio of the medians, runs min-max of the paired ratios'."""
    ratio = num[key] / den[key]
    paired = [num["per_rep"][k][key] / den["per_rep"][k][key]
              for k in num["per_rep"] if k in den["per_rep"]]
    return f"{ratio:.2f}" + (f", runs {min(paired):.2f}-{max(paired):.2f}" if paired else "")


def _ratio_cell(mine: dict, flower: dict, key: str, goal: float) -> str:
    """'ratio of the medians, runs min-max of the paired ratios (met|missed)'."""
    ratio = mine[key] / flower[key]
    paired = [mine["per_rep"][k][key] / flower["per_rep"][k][key]
              for k in mine["per_rep"] if k in flower["per_rep"]]
    span = f", runs {min(paired):.2f}-{max(paired):.2f}" if paired else ""
    return f"{ratio:.2f}{span} ({'met' if ratio <= goal else 'missed'})"


def environment() -> str:
    """One paragraph: date, commit, CPU, cores, memory, Python and library versions."""
    import datetime
    import importlib.metadata as md
    versions = []
    for dist in ("jax", "jaxlib", "flax", "optax", "dask", "distributed", "flwr", "ray", "numpy"):
        try:
            versions.append(f"{dist} {md.version(dist)}")
        except md.PackageNotFoundError:
            versions.append(f"{dist} -")
    try:
        commit = subprocess.run(["git", "describe", "--always", "--dirty"], cwd=REPO,
                                capture_output=True, text=True, timeout=10).stdout.strip() or "?"
    except (OSError, subprocess.SubprocessError):
        commit = "?"
    cpu, flags = platform.processor() or platform.machine(), []
    try:
        with open("/proc/cpuinfo") as f:
            info = f.read()
        cpu = next((ln.split(":", 1)[1].strip() for ln in info.splitlines()
                    if ln.startswith("model name")), cpu)
        flags = [f for f in next(ln for ln in info.splitlines() if ln.startswith("flags")).split()
                 if f in ("avx2", "avx512f", "avx512_bf16", "amx_bf16")]
    except (OSError, StopIteration):
        pass
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30 if hasattr(os, "sysconf") else 0
    return (f"{datetime.datetime.now().isoformat(timespec='seconds')}, commit {commit}; {cpu} "
            f"({', '.join(flags)}), {os.cpu_count()} cores, {mem:.1f} GiB; Python "
            f"{platform.python_version()}; {', '.join(versions)}; load average "
            f"{' / '.join(f'{x:.1f}' for x in os.getloadavg())} (1 / 5 / 15 min)")


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clients", default="4,20", help="comma-separated client counts (default 4,20)")
    ap.add_argument("--reps", type=int, default=3, help="alternating measured runs per toolkit")
    ap.add_argument("--rounds", type=int, default=8, help="rounds per run (default 8)")
    ap.add_argument("--warmup-rounds", type=int, default=2,
                    help="rounds of the unmeasured warm-up run of each toolkit per client "
                         "count (fills the compilation cache; 0: no warm-up)")
    ap.add_argument("--only", choices=TOOLKITS, help="run one toolkit only (debugging)")
    ap.add_argument("--variant", action="append", default=[], metavar="NAME=KEY=V[,KEY=V]",
                    help="also measure fedjax_grid with these config overrides, as toolkit "
                         "fedjax_grid[NAME] (repeatable; runs alternate with the others), e.g. "
                         "--variant idle=grid.xla_threads=2,grid.pin_workers=false")
    ap.add_argument("--check", action="store_true",
                    help="only check that Flower's client updates equal client_update's "
                         "(round 1, the first --clients count)")
    ap.add_argument("--json", help="write the raw measurements of every run here")
    ap.add_argument("--quick", action="store_true",
                    help="smoke test: 4 clients, 1 run of 3 rounds per toolkit, 1 warm-up round")
    ap.add_argument("--timeout", type=float, default=1800, help="seconds per run")
    ap.add_argument("--flower-child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--ideal-child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--child-out", help=argparse.SUPPRESS)
    ap.add_argument("--dump-updates", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.quick:
        args.clients, args.reps, args.rounds, args.warmup_rounds = "4", 1, 3, 1
    try:
        args.clients = [int(c) for c in str(args.clients).split(",") if c.strip()]
    except ValueError:
        args.clients = []
    if not args.clients or min(args.clients) < 1 or args.reps < 1 or args.warmup_rounds < 0:
        ap.error("--clients must be integers >= 1, --reps >= 1, --warmup-rounds >= 0")
    try:
        args.variant = [parse_variant(v) for v in args.variant]
    except ValueError as e:
        ap.error(f"--variant {e} is invalid: NAME=KEY=VALUE[,KEY=VALUE...] is required")
    if args.rounds < 2 and not (args.flower_child or args.ideal_child or args.check):
        ap.error("--rounds must be >= 2 (the steady state is rounds 2..R)")
    if not (args.flower_child or args.ideal_child) and (error := output_error(json=args.json)):
        ap.error(error)
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.flower_child:
        # Through the module's importable name, so that Ray pickles the ClientApp's
        # handler by reference (its per-process caches then persist in each actor).
        import vs_flower
        vs_flower.flower_child(args)
        return 0
    if args.ideal_child:
        ideal_child(args)
        return 0
    VARIANTS.update(args.variant)
    toolkits = [args.only] if args.only else list(TOOLKITS)
    toolkits[1:1] = [name for name in VARIANTS if args.only in (None, "fedjax_grid")]
    if ("flower" in toolkits or args.check) and not flower_available():
        print(FLOWER_MISSING, file=sys.stderr)
        return 2
    if args.check:
        return check(args.clients[0], args.timeout)
    print(f"environment at start: {environment()}")
    print(f"command: python {' '.join(sys.argv)}", flush=True)
    runs = benchmark(args, toolkits)
    rows = summarize(runs, toolkits, args.clients)
    print(f"\nenvironment at end: {environment()}")
    print(f"medians of {args.reps} alternating runs of {args.rounds} rounds per toolkit and "
          f"client count, after {args.warmup_rounds}-round warm-up runs")
    print_tables(rows, args.rounds)
    if args.json:
        pathlib.Path(args.json).write_text(json.dumps(
            {"clients": args.clients, "reps": args.reps, "rounds": args.rounds,
             "warmup_rounds": args.warmup_rounds, "machine": {"cpus": os.cpu_count(),
                                                              "python": platform.python_version()},
             "environment": environment(), "argv": sys.argv, "runs": runs,
             "summary": [{k: v for k, v in r.items() if k != "per_rep"} for r in rows]},
            indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
