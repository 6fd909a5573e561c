"""tracking: per-round scalars as real TensorBoard event files (tensorboardX), read back;
MLflow when installed; a missing library is a one-line error naming the package."""
import glob
import importlib.util
import struct

import pytest

from fedjax_grid import tracking
from fedjax_grid.errors import UserError
from fedjax_grid.experiments import get_preset
from fedjax_grid.grid.records import Records

ROWS = [{"round": 1, "global_accuracy": 0.5, "global_loss": 1.4, "round_time_s": 3.0,
         "elapsed_s": 9.0, "clients_ok": 4, "bytes_sent": 1000, "quorum": True},
        {"round": 2, "global_accuracy": 0.75, "global_loss": 0.9, "round_time_s": 2.0,
         "elapsed_s": 11.0, "clients_ok": 3, "bytes_sent": 1000, "quorum": True}]


def read_events(logdir) -> dict:
    """{tag: [(step, value)]} from the TFRecord event files in ``logdir`` (parsed here:
    length, crc, Event proto, crc)."""
    from tensorboardX.proto import event_pb2
    out: dict = {}
    for path in sorted(glob.glob(f"{logdir}/events.out.tfevents.*")):
        data = open(path, "rb").read()
        i = 0
        while i < len(data):
            n = struct.unpack("<Q", data[i:i + 8])[0]
            event = event_pb2.Event()
            event.ParseFromString(data[i + 12:i + 12 + n])
            i += 12 + n + 4
            for v in event.summary.value:
                out.setdefault(v.tag, []).append((event.step, round(v.simple_value, 6)))
    return out


def test_scalars_are_the_finite_numbers_of_a_row():
    assert tracking.scalars({"round": 3, "global_accuracy": float("nan"), "global_loss": 0.5,
                             "clients_ok": None, "bytes_sent": 10}) == {"global_loss": 0.5,
                                                                        "bytes_sent": 10.0}


@pytest.mark.skipif(importlib.util.find_spec("tensorboardX") is None,
                    reason="tensorboardX is not installed (pip install tensorboardX)")
def test_rounds_go_to_tensorboard_event_files(tmp_path):
    cfg = get_preset("quickstart").with_overrides(["tracking.tensorboard=true"])
    tracker = tracking.Tracker(cfg, tmp_path)
    for row in ROWS:
        tracker.log_round(row)
    tracker.close()
    events = read_events(tmp_path / "tensorboard")
    assert events["fedjax_grid/global_accuracy"] == [(1, 0.5), (2, 0.75)]
    assert events["fedjax_grid/clients_ok"] == [(1, 4.0), (2, 3.0)]
    assert "fedjax_grid/quorum" not in events            # flags are not scalars


@pytest.mark.skipif(importlib.util.find_spec("tensorboardX") is None,
                    reason="tensorboardX is not installed (pip install tensorboardX)")
def test_an_existing_run_is_exported(tmp_path):
    cfg = get_preset("quickstart")
    cfg.save(tmp_path / "config.json")
    Records(rounds=ROWS).save(tmp_path)
    tracking.export(tmp_path, tensorboard=True)
    events = read_events(tmp_path / "tensorboard")
    assert events["fedjax_grid/global_loss"] == [(1, 1.4), (2, 0.9)]


def test_a_missing_library_is_one_line_naming_the_package(monkeypatch):
    monkeypatch.setattr(tracking, "available", lambda what: False)
    cfg = get_preset("quickstart").with_overrides(["tracking.mlflow=true"])
    with pytest.raises(UserError) as e:
        tracking.check(cfg)
    assert str(e.value) == ("tracking.mlflow=true needs the mlflow package, which is not "
                            "installed; allowed: pip install mlflow, or tracking.mlflow=false")
    assert e.value.path == "tracking.mlflow"


def test_tracking_may_change_on_resume_and_leaves_the_fingerprint():
    from fedjax_grid.runner.resume import differences
    a = get_preset("quickstart")
    b = a.with_overrides(["tracking.tensorboard=true"])
    assert a.fingerprint() == b.fingerprint() and differences(a, b) == []


@pytest.mark.skipif(importlib.util.find_spec("mlflow") is None,
                    reason="mlflow is not installed (pip install mlflow)")
def test_rounds_go_to_an_mlflow_run(tmp_path, monkeypatch):
    from mlflow.tracking import MlflowClient
    # a local file store (MLflow 3 asks to opt in to it; a server or database URI needs none)
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    uri = (tmp_path / "mlruns").as_uri()
    cfg = get_preset("quickstart").with_overrides(["tracking.mlflow=true",
                                                   f"tracking.mlflow_uri={uri}"])
    tracker = tracking.Tracker(cfg, tmp_path / "run")
    for row in ROWS:
        tracker.log_round(row)
    tracker.close()
    client = MlflowClient(tracking_uri=uri)
    run = client.get_run(tracker.run_id)
    assert run.info.status == "FINISHED" and run.data.params["training.rounds"] == "8"
    history = client.get_metric_history(tracker.run_id, "global_accuracy")
    assert [(m.step, m.value) for m in history] == [(1, 0.5), (2, 0.75)]
