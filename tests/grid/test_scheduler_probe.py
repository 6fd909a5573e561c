"""``cluster.require_listening``: a scheduler port nobody listens on is refused in one line
within ``grid.connect_timeout_s`` (before the run loads data and compiles); a port that opens
within the timeout is waited for; an embedded cluster is not probed."""
import socket
import threading
import time

import pytest

from fedjax_grid.errors import UserError
from fedjax_grid.experiments.config import GridConfig
from fedjax_grid.grid.cluster import require_listening
from tests.conftest import within
from tests.faults.conftest import free_port


def test_nobody_listening_is_refused_in_one_line_after_the_timeout():
    port = free_port()
    grid = GridConfig(scheduler=f"tcp://127.0.0.1:{port}", connect_timeout_s=1.0)
    t = time.monotonic()
    with pytest.raises(UserError) as e:
        require_listening(grid)
    waited = time.monotonic() - t
    assert 0.7 <= waited and within(waited, 5.0), waited  # retried for the timeout
    assert str(e.value) == (f"cannot reach the Dask scheduler at 'tcp://127.0.0.1:{port}' "
                            "within 1 s; allowed: the address of a running scheduler (is it "
                            "started, and is the host/port right?)")


def test_a_scheduler_that_starts_within_the_timeout_is_waited_for():
    port = free_port()
    server = socket.socket()
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)

    def listen_later():
        time.sleep(0.8)
        server.bind(("127.0.0.1", port))
        server.listen()
    thread = threading.Thread(target=listen_later)
    thread.start()
    try:
        t = time.monotonic()
        require_listening(GridConfig(scheduler=f"127.0.0.1:{port}", connect_timeout_s=10.0))
        waited = time.monotonic() - t
        assert 0.7 <= waited and within(waited, 5.0), waited
    finally:
        thread.join()
        server.close()


def test_an_embedded_cluster_is_not_probed():
    t = time.monotonic()
    require_listening(GridConfig(scheduler=None, connect_timeout_s=1.0))  # no raise
    assert time.monotonic() - t < 0.5
