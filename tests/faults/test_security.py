"""Security: a TLS-only cluster on loopback refuses strangers; nothing listens on
0.0.0.0 by default; checkpoints are never unpickled."""
from __future__ import annotations

import os
import time

import numpy as np
import psutil
import pytest

from fedjax_grid.cli import main
from fedjax_grid.errors import CheckpointError
from fedjax_grid.runner import FederatedRun
from tests.faults.conftest import ExternalGrid, stop, write_pickled_npz
from tests.grid.conftest import tiny_config


def _certs(d):
    assert main(["certs", str(d)]) == 0
    return {"ca": str(d / "ca.pem"), "cert": str(d / "node.pem"), "key": str(d / "node.key"),
            "client_cert": str(d / "client.pem"), "client_key": str(d / "client.key")}


def test_tls_cluster_runs_a_round_and_refuses_strangers(tmp_path):
    ours = _certs(tmp_path / "grid-ca")
    other = _certs(tmp_path / "other-ca")
    assert oct(os.stat(ours["key"]).st_mode & 0o777) == "0o600"  # private keys not world-readable
    g = ExternalGrid(tmp_path, tls=ours)
    assert g.address.startswith("tls://127.0.0.1:")
    g.start_scheduler()
    g.start_worker()
    intruders = []
    try:
        g.wait_for(1)
        cfg = tiny_config(**{"grid.scheduler": g.address, "grid.tls_dir": str(tmp_path / "grid-ca"),
                             "training.rounds": 1, "partition.num_clients": 2})
        run = FederatedRun(cfg, out_dir=tmp_path / "run")
        try:
            run.run()
            tasks = run.records.tasks()
        finally:
            run.close()
        assert (tasks["status"] == "ok").all() and len(tasks) == 2
        assert tasks["worker"].str.startswith("tls://127.0.0.1:").all()  # results came over TLS
        # A worker with a certificate of another CA, one without any, one speaking plain TCP.
        intruders.append(g.start_worker(name="other-ca", tls_args=[
            "--tls-ca-file", other["ca"], "--tls-cert", other["cert"], "--tls-key", other["key"]]))
        intruders.append(g.start_worker(name="no-cert", tls_args=["--tls-ca-file", ours["ca"]]))
        plain = ExternalGrid(tmp_path)
        plain.address = g.address.replace("tls://", "tcp://")
        intruders.append(plain.start_worker(name="plain-tcp"))
        time.sleep(8)  # time enough for a TLS handshake to have succeeded
        with g.client() as c:
            names = {w["name"] for w in c.scheduler_info(n_workers=-1)["workers"].values()}
        assert names == {"desktop-0"}, names
        # A coordinator without our certificate cannot connect either.
        from distributed import Client
        from distributed.security import Security
        bad = Security(tls_ca_file=other["ca"], tls_client_cert=other["client_cert"],
                       tls_client_key=other["client_key"], require_encryption=True)
        with pytest.raises(Exception):
            Client(g.address, timeout=5, security=bad)
    finally:
        stop(intruders)
        g.stop()


def _listening(pid):
    return [c for c in psutil.Process(pid).net_connections(kind="inet")
            if c.status == psutil.CONN_LISTEN]


def test_default_local_cluster_listens_on_loopback_only(tmp_path):
    from fedjax_grid.grid.cluster import open_cluster
    cfg = tiny_config(**{"grid.workers": 2})
    assert cfg.grid.host == "127.0.0.1"
    handle = open_cluster(cfg.grid, local_directory=str(tmp_path / "dask"))
    try:
        info = handle.client.scheduler_info(n_workers=-1)
        assert info["address"].startswith("tcp://127.0.0.1:")
        assert len(info["workers"]) == 2
        assert all(a.startswith("tcp://127.0.0.1:") for a in info["workers"])
        worker_pids = set(handle.client.run(os.getpid).values())
        nanny_pids = {p.pid for p in psutil.Process().children(recursive=True)}
        pids = {os.getpid()} | worker_pids | nanny_pids
        sockets = [(pid, c.laddr) for pid in pids for c in _listening(pid)]
        assert sockets, "found no listening sockets: the check would be vacuous"
        ours = [s for s in sockets if s[0] in worker_pids]
        assert ours  # the workers' own listeners are among them
        wildcard = [s for s in sockets if s[1].ip not in ("127.0.0.1", "::1")]
        assert not wildcard, wildcard
    finally:
        handle.close()


def test_checkpoint_with_pickled_object_is_refused(tmp_path):
    from fedjax_grid.grid.checkpoint import load_checkpoint, save_checkpoint
    marker = tmp_path / "UNPICKLED"
    save_checkpoint(tmp_path, 0, {"w": np.zeros(3, np.float32)}, {"round": 0})
    evil = tmp_path / "ckpt-000001.npz"
    write_pickled_npz(evil, marker, keys=("header", "w"))
    with pytest.raises(CheckpointError, match="ckpt-000001"):
        load_checkpoint(evil)
    assert not marker.exists()
    # The records inside a checkpoint are JSON, the arrays plain npz: a good one loads.
    tree, meta, _ = load_checkpoint(tmp_path / "ckpt-000000.npz")
    assert meta["round"] == 0
