"""The worker timeline names the global version each asynchronous task trained from."""
import matplotlib

matplotlib.use("Agg")
import pandas as pd  # noqa: E402

from fedjax_grid import plots  # noqa: E402


def _tasks(versions):
    n = len(versions)
    return pd.DataFrame({"round": [1, 2, 2, 3][:n], "client": [0, 1, 2, 3][:n],
                         "worker": ["tcp://127.0.0.1:1", "tcp://127.0.0.1:2"] * (n // 2),
                         "start_s": [0.0, 0.5, 1.0, 1.5][:n], "end_s": [1.0, 1.4, 2.0, 2.5][:n],
                         "status": ["ok"] * n, "version": pd.array(versions, dtype="Int64")})


def _texts(fig):
    return sorted(t.get_text() for ax in fig.axes for t in ax.texts)


def test_async_bars_show_versions_and_sync_bars_do_not():
    fig = plots.worker_timeline(_tasks([0, 0, 1, 1]))  # round 3 trained from version 1: stale
    assert _texts(fig) == ["c0 v0", "c1 v0", "c2 v1", "c3 v1"]
    fig = plots.worker_timeline(_tasks([0, 1, 1, 2]))  # every task on its round's version
    assert _texts(fig) == ["c0", "c1", "c2", "c3"]
