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
        # Wait for the refusals themselves (not a fixed time): the scheduler logs the other
        # CA's failed handshakes and the plain-TCP ones; the worker without a certificate
        # cannot even start. Each is seen at least twice (retries were refused too).
        log = g.tmp / f"scheduler-{g.port}.log"
        refused = lambda: (log.read_text().count("TLSV1_ALERT_UNKNOWN_CA") >= 2  # noqa: E731
                           and log.read_text().count("WRONG_VERSION_NUMBER") >= 2
                           and intruders[1].poll() is not None)
        assert _poll(refused, 120), log.read_text()[-3000:]
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


def _poll(condition, timeout_s: float, every_s: float = 0.2) -> bool:
    """True as soon as ``condition()`` holds, False after ``timeout_s`` seconds."""
    end = time.time() + timeout_s
    while time.time() < end:
        if condition():
            return True
        time.sleep(every_s)
    return condition()


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


# -------------------------------------------------- TLS errors say what is wrong (issue 25)

def _wait_listening(port: int, timeout_s: float = 60) -> None:
    import socket

    def up():
        with socket.socket() as s:
            return s.connect_ex(("127.0.0.1", port)) == 0
    assert _poll(up, timeout_s), f"nothing listens on 127.0.0.1:{port}"


def test_tls_errors_name_the_certificate_and_the_file_to_use(tmp_path, capsys):
    """A real TLS-only `dask scheduler` (CA A) on 127.0.0.1: a coordinator with another CA's
    folder is told that the scheduler's certificate is not trusted and which ca.pem signed
    it; one whose client certificate the scheduler does not trust, that it was refused;
    tcp:// to the TLS scheduler and tls:// to a plain one, that one side does not speak TLS
    -- each one line, none 'cannot reach'."""
    import shutil

    from fedjax_grid.errors import UserError
    from fedjax_grid.grid.cluster import open_cluster
    ours = _certs(tmp_path / "grid-a")
    _certs(tmp_path / "grid-b")
    mixed = tmp_path / "mixed"   # our CA, but a client certificate of the other CA
    mixed.mkdir()
    shutil.copy(ours["ca"], mixed / "ca.pem")
    for f in ("client.pem", "client.key", "node.pem", "node.key"):
        shutil.copy(tmp_path / "grid-b" / f, mixed / f)
    tls, plain = ExternalGrid(tmp_path, tls=ours), ExternalGrid(tmp_path)
    tls.start_scheduler()
    plain.start_scheduler()
    try:
        _wait_listening(tls.port)
        _wait_listening(plain.port)
        code = main(["run", "--scheduler", tls.address, "--set", f"grid.tls_dir={tmp_path / 'grid-b'}",
                     "--out", str(tmp_path / "o"), "--quiet"])
        err = capsys.readouterr().err
        assert code == 2 and err.count("\n") == 1, err
        assert f"the scheduler's TLS certificate at {tls.address} is not trusted" in err, err
        assert "grid-b/ca.pem" in err and f"{tmp_path / 'grid-a' / 'ca.pem'}" in err, err
        cases = [(tls.address, mixed, "refused our client certificate"),
                 (tls.address.replace("tls://", "tcp://"), None, "speaks TLS; allowed: 'tls://"),
                 (plain.address.replace("tcp://", "tls://"), tmp_path / "grid-a",
                  "does not speak TLS")]
        for address, tls_dir, words in cases:
            cfg = tiny_config(**{"grid.scheduler": address, "grid.connect_timeout_s": 3,
                                 **({"grid.tls_dir": str(tls_dir)} if tls_dir else {})})
            with pytest.raises(UserError) as info:
                open_cluster(cfg.grid)
            assert words in str(info.value) and "cannot reach" not in str(info.value), info.value
        assert not (tmp_path / "o").exists()
    finally:
        tls.stop()
        plain.stop()


def test_something_else_at_the_scheduler_address_is_one_line(tmp_path):
    """A server that is not Dask (here: one answering HTTP with garbage) is named as such,
    not a MemoryError traceback from reading its bytes as a frame length."""
    import socket
    import threading

    from fedjax_grid.errors import UserError
    from fedjax_grid.grid.cluster import open_cluster
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()

    def answer():
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            with conn:
                conn.sendall(b"HTTP/1.1 200 OK\r\n\r\n" + b"\xff" * 64)

    threading.Thread(target=answer, daemon=True).start()
    try:
        cfg = tiny_config(**{"grid.scheduler": f"tcp://127.0.0.1:{server.getsockname()[1]}",
                             "grid.connect_timeout_s": 3})
        with pytest.raises(UserError, match="but not a Dask scheduler"):
            open_cluster(cfg.grid)
    finally:
        server.close()


# ------------------------------------------- no unauthenticated grid by accident (issue 25)

class _Reached(Exception):
    pass


@pytest.mark.parametrize("argv, key", [
    (["--scheduler", "tcp://10.0.0.5:8786"], "grid.scheduler='tcp://10.0.0.5:8786' is refused"),
    (["--scheduler", "192.168.1.20:8786"], "grid.scheduler='192.168.1.20:8786' is refused"),
    (["--scheduler", "tcp://desktops.example.org:8786"], "plain TCP to a non-loopback address"),
    (["--scheduler", "tcp://[fd00::5]:8786"], "is refused"),
    (["--set", "grid.scheduler=tcp://10.0.0.5:8786"], "grid.scheduler='tcp://10.0.0.5:8786' is refused"),
    (["--set", "grid.host=0.0.0.0"], "grid.host='0.0.0.0' is refused: a LocalCluster listening"),
    (["--set", "grid.host=10.0.0.5"], "grid.host='10.0.0.5' is refused"),
])
def test_a_plain_tcp_grid_beyond_loopback_is_refused_before_any_connection(
        argv, key, tmp_path, capsys, monkeypatch):
    """Only as strings: the refusal comes before any connection or LocalCluster (the run is
    stopped where it would start: reaching that point fails the test)."""
    from fedjax_grid import cli

    def reached(*a, **k):
        raise _Reached()
    monkeypatch.setattr(cli, "_new_run", reached)
    code = main(["run", *argv, "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and key in err, err
    assert "tls://HOST:PORT with grid.tls_dir" in err and "--allow-insecure" in err
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("argv", [
    ["--scheduler", "tcp://10.0.0.5:8786", "--allow-insecure"],
    ["--scheduler", "tcp://10.0.0.5:8786", "--set", "grid.allow_insecure=true"],
    ["--set", "grid.host=0.0.0.0", "--allow-insecure"],
    ["--scheduler", "tls://10.0.0.5:8786", "--set", "grid.tls_dir=certs"],
    ["--scheduler", "tcp://127.0.0.1:8786"], ["--scheduler", "tcp://localhost:8786"],
    ["--scheduler", "tcp://[::1]:8786"], ["--set", "grid.host=127.0.0.2"],
])
def test_tls_loopback_or_an_explicit_opt_in_is_accepted(argv, tmp_path, capsys, monkeypatch):
    from fedjax_grid import cli
    from fedjax_grid.grid.cluster import check_secure
    _certs(tmp_path / "certs")
    monkeypatch.chdir(tmp_path)
    seen = []

    def reached(cfg, *a, **k):
        check_secure(cfg.grid)  # what open_cluster checks first, before connecting
        seen.append(cfg)
        raise _Reached()
    monkeypatch.setattr(cli, "_new_run", reached)
    with pytest.raises(_Reached):
        main(["run", *argv, "--out", str(tmp_path / "o")])
    assert seen and ("--allow-insecure" not in argv or seen[0].grid.allow_insecure)


def test_open_cluster_refuses_a_plain_tcp_grid_beyond_loopback(tmp_path):
    from fedjax_grid.errors import UserError
    from fedjax_grid.grid.cluster import open_cluster
    for sets in ({"grid.scheduler": "tcp://10.0.0.5:8786"}, {"grid.host": "0.0.0.0"}):
        with pytest.raises(UserError, match="is refused"):
            open_cluster(tiny_config(**sets).grid, local_directory=str(tmp_path / "dask"))
    assert not (tmp_path / "dask").exists()
