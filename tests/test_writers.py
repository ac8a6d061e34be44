"""Metric writers: every backend is read back from what it wrote to disk."""

from __future__ import annotations

import json
import re
import math
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from unittest import mock

import numpy as np
import pytest
from PIL import Image

from mnist_ae import render
from mnist_ae import writers as W
from mnist_ae.writers.wandb import _has_wandb_credentials

from helpers import hparams_session_groups, projector_config, tb_accumulator, wandb_records

CLASSES = [str(i) for i in range(10)]


def _digits(n: int, seed: int = 0) -> np.ndarray:
    """Float images in [-1, 1], like the training data."""
    return np.random.default_rng(seed).uniform(-1, 1, (n, 28, 28)).astype(np.float32)


def _confusion() -> np.ndarray:
    counts = np.random.default_rng(0).integers(0, 20, (10, 10))
    np.fill_diagonal(counts, 900)
    return counts


# ----------------------------------------------------------------------------- JSONL


def test_jsonl_records_steps_keys_and_tags(tmp_path):
    path = tmp_path / "sub" / "metrics.jsonl"
    with W.JsonlWriter(path, tags={"member": 3, "latent_dim": 16}) as w:
        w.write_scalars(1, {"train/loss": np.float32(0.5)})
        w.write_scalars(2, {"train/loss": 0.25, "eval/acc": 0.9, "epoch": np.int32(1)})
        w.write_images(2, {"grid": np.zeros((4, 4, 1))})  # no-op
        w.write_hparams({"model": {"latent_dim": 16}, "lr": 1e-3}, {"test/acc": 0.95})
        with pytest.raises(ValueError, match="clash"):
            w.write_scalars(3, {"member": 1.0})
    records = [json.loads(line) for line in path.read_text().splitlines()]
    times = [r.pop("time") for r in records]  # wall-clock seconds, for provenance
    assert times == sorted(times) and times[0] == pytest.approx(time.time(), abs=60)
    assert records[:2] == [
        {"step": 1, "member": 3, "latent_dim": 16, "train/loss": 0.5},
        {"step": 2, "member": 3, "latent_dim": 16, "train/loss": 0.25, "eval/acc": 0.9, "epoch": 1},
    ]
    assert isinstance(records[1]["epoch"], int)  # integer scalars stay integers
    assert records[2] == {
        "hparams": {"model.latent_dim": 16, "lr": 1e-3},
        "metrics": {"test/acc": 0.95},
        "member": 3,
        "latent_dim": 16,
    }
    assert len(records) == 3


def test_jsonl_records_reach_the_file_line_by_line_and_a_closed_writer_takes_no_more(tmp_path):
    """Each record is on disk when written (a reader, or a run killed next, sees it without a flush),
    folders are made as deep as needed, and close() really closes: a later write is an error, not a
    record lost in a buffer."""
    path = tmp_path / "a" / "b" / "metrics.jsonl"
    w = W.JsonlWriter(path)
    w.write_scalars(1, {"loss": 0.5})
    assert json.loads(path.read_text())["loss"] == 0.5
    w.close()
    with pytest.raises(ValueError):
        w.write_scalars(2, {"loss": 0.25})
    assert len(path.read_text().splitlines()) == 1


def test_jsonl_non_finite_floats_are_json_nan_and_infinity(tmp_path):
    """NaN/Infinity as JSON's NaN/Infinity tokens (what `json.loads` reads as floats), not strings."""
    path = tmp_path / "metrics.jsonl"
    with W.JsonlWriter(path) as w:
        w.write_scalars(1, {"loss": float("nan"), "grad": np.float32(np.inf), "low": -np.inf})
        w.write_hparams({"lr": 0.1}, {"test/loss": np.float64(np.nan)})
    lines = path.read_text().splitlines()
    assert re.fullmatch(r'\{"step": 1, "time": [0-9.]+, "loss": NaN, "grad": Infinity, "low": -Infinity\}', lines[0])
    scalars, hparams = map(json.loads, lines)
    for value in (scalars["loss"], scalars["grad"], scalars["low"], hparams["metrics"]["test/loss"]):
        assert type(value) is float
    assert math.isnan(scalars["loss"]) and math.isnan(hparams["metrics"]["test/loss"])
    assert scalars["grad"] == math.inf and scalars["low"] == -math.inf


def test_flatten_hparams_handles_configdict_and_odd_values():
    ml_collections = pytest.importorskip("ml_collections")
    cfg = ml_collections.ConfigDict(
        {"model": {"widths": (32, 64), "act": None}, "seed": np.int64(1)}
    )
    assert W.flatten_hparams(cfg) == {"model.widths": "(32, 64)", "model.act": "None", "seed": 1}


# ----------------------------------------------------------------------------- TensorBoard






def test_tensorboard_reads_back_everything(tmp_path):
    logdir = tmp_path / "tb"
    with W.TensorBoardWriter(logdir) as w:
        w.write_scalars(1, {"train/loss": 0.5})
        w.write_scalars(5, {"train/loss": 0.25})
        w.write_images(5, {"recon": render.image_grid(_digits(8), rows=2)})
        w.write_histograms(5, {"codes": np.r_[np.random.randn(100), np.nan]})
        w.write_texts(5, {"notes": "| digit | acc |\n|---|---|\n| 0 | 0.99 |"})
        w.write_confusion(5, "confusion/test", _confusion(), CLASSES)
        with pytest.raises(ValueError, match="whole numbers"):
            w.write_confusion(5, "confusion/rates", np.eye(10) / 2, CLASSES)
        with pytest.raises(ValueError, match=r"counts \(3, 3\) must be \[C, C\] for 10 class names"):
            w.write_confusion(5, "confusion/small", np.eye(3), CLASSES)
        w.write_hparams({"model": {"latent_dim": 16}, "opt": "adam"}, {"test/acc": 0.95})

    acc = tb_accumulator(logdir)
    assert [(e.step, e.value) for e in acc.Scalars("train/loss")] == [(1, 0.5), (5, 0.25)]
    (recon,) = acc.Images("recon")
    assert (recon.step, recon.width, recon.height) == (5, 4 * 28 + 6, 2 * 28 + 2)
    (hist,) = acc.Histograms("codes")
    assert hist.step == 5 and hist.histogram_value.num == 100  # NaN dropped
    (text,) = acc.Tensors("notes/text_summary")
    assert text.tensor_proto.string_val[0].decode().startswith("| digit | acc |")
    (confusion,) = acc.Images("confusion/test")
    assert confusion.step == 5 and min(confusion.width, confusion.height) >= 300

    # HParams: written into this run (no timestamped sub-run), seen by the plugin.
    assert [p.parent for p in tmp_path.rglob("events.out.tfevents*")] == [logdir]
    (group,) = hparams_session_groups(tmp_path).session_groups
    assert [s.name for s in group.sessions] == ["tb"]
    assert group.hparams["model.latent_dim"].number_value == 16
    assert group.hparams["opt"].string_value == "adam"
    (metric,) = group.metric_values
    assert metric.name.tag == "trained/test/acc" and metric.value == pytest.approx(0.95)




def test_tensorboard_projector_files(tmp_path):
    n, dim = 30, 8
    codes = np.random.default_rng(0).normal(size=(n, dim))
    labels = [str(i % 10) for i in range(n)]
    extra = [[f"name{i % 10}", str(i % 2 == 0)] for i in range(n)]
    test_set = W.Embeddings("codes/test", codes, labels, _digits(n), ["digit", "correct"], extra)
    with W.TensorBoardWriter(tmp_path) as w:
        w.write_embeddings(7, test_set)
        w.write_embeddings(7, test_set)  # rewritten (a resumed run): one config entry
        w.write_embeddings(7, W.Embeddings("codes/train", codes[:5], labels[:5]))

    config = projector_config(tmp_path)
    assert [e.tensor_name for e in config.embeddings] == ["codes/test:00007", "codes/train:00007"]
    test, train = config.embeddings
    tensors = np.loadtxt(tmp_path / test.tensor_path, delimiter="\t")
    assert tensors.shape == (n, dim) and list(test.tensor_shape) == [n, dim]
    np.testing.assert_allclose(tensors, codes, rtol=1e-6)
    rows = (tmp_path / test.metadata_path).read_text().splitlines()
    assert len(rows) == n + 1 and rows[0] == "label\tdigit\tcorrect"
    assert rows[1] == "0\tname0\tTrue"
    sheet = Image.open(tmp_path / test.sprite.image_path)
    assert sheet.width == sheet.height <= render.MAX_SPRITE_PX
    assert list(test.sprite.single_image_dim) == [28, 28]
    assert sheet.width == 28 * 6  # ceil(sqrt(30)) thumbnails a side
    # Single-column metadata has no header row (the projector's convention).
    assert (tmp_path / train.metadata_path).read_text().splitlines() == labels[:5]
    assert not train.HasField("sprite")


def test_embeddings_are_checked_when_built():
    codes, labels = np.ones((3, 2)), ["a", "b", "c"]
    with pytest.raises(ValueError, match=r"must be \[N, D\]"):
        W.Embeddings("e", np.ones(3), labels)
    with pytest.raises(ValueError, match="one entry per point"):
        W.Embeddings("e", codes, labels[:2])
    with pytest.raises(ValueError, match="one entry per point"):
        W.Embeddings("e", codes, labels, _digits(2))
    with pytest.raises(ValueError, match="3 rows of 1 columns"):
        W.Embeddings("e", codes, labels, metadata_header=["x"], metadata=[["1"], ["2"]])
    with pytest.raises(ValueError, match="3 rows of 0 columns"):
        W.Embeddings("e", codes, labels, metadata=[["1"], ["2"], ["3"]])
    table = W.Embeddings("e", codes, [0, 1, 2], metadata_header=["x"], metadata=[[1], [2], [3]]).table()
    assert table == (["label", "x"], [["0", "1"], ["1", "2"], ["2", "3"]])
    assert W.Embeddings("e", codes, labels).table() == (["label"], [["a"], ["b"], ["c"]])


# ----------------------------------------------------------------------------- W&B


@pytest.fixture
def no_wandb_credentials(tmp_path, monkeypatch):
    """No API key, no netrc, no WANDB_MODE: the writer must pick offline by itself."""
    for var in ("WANDB_API_KEY", "WANDB_MODE", "WANDB_BASE_URL", "WANDB_IDENTITY_TOKEN_FILE"):
        monkeypatch.delenv(var, raising=False)
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("NETRC", str(home / ".netrc"))
    monkeypatch.setenv("WANDB_SILENT", "true")
    return home


def test_wandb_credentials_detection(no_wandb_credentials, monkeypatch):
    from mnist_ae.writers.wandb import default_mode

    assert _has_wandb_credentials() is False
    assert default_mode() == ("offline", "not logged in")
    netrc_file = no_wandb_credentials / ".netrc"
    netrc_file.write_text("machine api.wandb.ai\n  login user\n  password k\n")
    assert _has_wandb_credentials()
    monkeypatch.delenv("NETRC")  # ~/.netrc without $NETRC
    assert _has_wandb_credentials() and default_mode() == ("online", "logged in")
    netrc_file.rename(no_wandb_credentials / "elsewhere")  # $NETRC wins over ~/.netrc
    monkeypatch.setenv("NETRC", str(no_wandb_credentials / "elsewhere"))
    assert _has_wandb_credentials()
    (no_wandb_credentials / "elsewhere").unlink()
    monkeypatch.setenv("WANDB_API_KEY", "k" * 40)
    assert _has_wandb_credentials()
    monkeypatch.setenv("WANDB_MODE", "disabled")
    assert default_mode() == ("disabled", "WANDB_MODE")


class _FakeWandb:
    """What WandbWriter asks of wandb, recorded: setup, init, the run's log/config/summary/finish, and the
    media and table types as tuples."""

    def __init__(self):
        self.setups, self.inits, self.logged, self.finished = [], [], [], False
        self.run = mock.MagicMock()
        self.run.log.side_effect = lambda data, step: self.logged.append((step, data))
        self.run.finish.side_effect = lambda: setattr(self, "finished", True)

    @staticmethod
    def Settings(**kwargs):  # noqa: N802 (wandb's name)
        return kwargs

    def setup(self, settings):
        self.setups.append(settings)

    def init(self, **kwargs):
        self.inits.append(kwargs)
        return self.run

    @staticmethod
    def Image(pil):  # noqa: N802
        return ("image", pil.size)

    @staticmethod
    def Html(text, data_is_not_path=False):  # noqa: N802
        return ("html", text, data_is_not_path)

    @staticmethod
    def Table(columns, data):  # noqa: N802
        return ("table", list(columns), data)


@pytest.mark.parametrize("mode", ["offline", "online"])
def test_wandb_writer_asks_wandb_for_what_it_promises(tmp_path, monkeypatch, mode):
    """Offline mode set process-wide before init (wandb's telemetry must not reach the network), the run's
    folder made, a quiet run that may coexist with others, the first step 0 accepted, texts as HTML,
    hparams that may change on a resume, thumbnails only up to MAX_WANDB_TABLE_IMAGES rows, and finish."""
    from mnist_ae.writers.wandb import MAX_WANDB_TABLE_IMAGES

    fake = _FakeWandb()
    monkeypatch.setitem(sys.modules, "wandb", fake)
    w = W.WandbWriter(project="p", dir=tmp_path / "a" / "b", mode=mode)
    assert fake.setups == ([{"mode": "offline"}] if mode == "offline" else [])
    assert (tmp_path / "a" / "b").is_dir()
    (init,) = fake.inits
    assert init["reinit"] == "create_new" and init["settings"] == {"silent": True, "console": "off"}
    assert init["mode"] == mode and init["dir"] == str(tmp_path / "a" / "b")
    w.write_scalars(0, {"loss": 1.0})
    w.write_texts(0, {"notes": "<b>"})
    assert fake.logged == [(0, {"loss": 1.0}), (0, {"notes": ("html", "<pre>&lt;b&gt;</pre>", True)})]
    w.write_hparams({"lr": 0.1}, {"test/acc": 0.5})
    fake.run.config.update.assert_called_once_with({"lr": 0.1}, allow_val_change=True)
    for n, with_images in ((MAX_WANDB_TABLE_IMAGES, True), (MAX_WANDB_TABLE_IMAGES + 1, False)):
        w.write_embeddings(1, W.Embeddings("codes", np.zeros((n, 2)), ["0"] * n, images_nhw=np.zeros((n, 4, 4))))
        _, columns, rows = fake.logged[-1][1]["codes"]
        assert ("image" in columns) == with_images and len(rows) == n and columns[-2:] == ["d0", "d1"]
    w.write_embeddings(1, W.Embeddings("plain", np.zeros((3, 2)), ["0"] * 3))
    assert "image" not in fake.logged[-1][1]["plain"][1]
    w.close()
    assert fake.finished


_NO_NETWORK_SCRIPT = """
import socket, sys
def refuse(host, *args, **kwargs):
    print("LOOKUP", host, file=sys.stderr, flush=True)
    raise OSError("no network in tests")
socket.getaddrinfo = refuse
from mnist_ae import writers
w = writers.WandbWriter(project="p", dir=sys.argv[1])
w.write_scalars(1, {"x": 1.0})
w.close()
"""


def test_wandb_offline_never_resolves_a_host(tmp_path, no_wandb_credentials):
    """wandb's usage telemetry exports at interpreter exit, hence a fresh process."""
    result = subprocess.run(
        [sys.executable, "-c", _NO_NETWORK_SCRIPT, str(tmp_path)],
        cwd=Path(__file__).resolve().parents[1],
        env=os.environ,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "LOOKUP" not in result.stderr




def test_wandb_offline_run_reads_back(tmp_path, no_wandb_credentials):
    config = {"model": {"latent_dim": 16}}
    w = W.WandbWriter(project="mnist_ae", name="t", config=config, dir=tmp_path)
    assert w.mode == "offline"
    w.write_scalars(1, {"train/loss": 0.5})
    w.write_scalars(2, {"train/loss": 0.25})
    w.write_scalars(2, {"eval/acc": 0.9})  # same step: merged into one row
    w.write_images(3, {"recon": render.image_grid(_digits(4), 2)})
    w.write_histograms(3, {"codes": np.random.randn(50)})
    w.write_texts(3, {"notes": "**bold** <x>"})
    w.write_confusion(3, "confusion/test", _confusion(), CLASSES)
    codes = np.arange(18, dtype=np.float32).reshape(6, 3)
    w.write_embeddings(3, W.Embeddings("codes/test", codes, list("012345"), _digits(6), ["odd"],
                                       [[str(i % 2 == 1)] for i in range(6)]))
    with pytest.raises(ValueError, match="step 2 < last logged step 3"):
        w.write_scalars(2, {"late": 1.0})
    w.write_hparams({"opt": "adam"}, {"test/acc": 0.95})
    w.close()
    import wandb

    wandb.teardown()  # finish() returns before wandb-core has flushed the .wandb file

    (run_file,) = (tmp_path / "wandb").glob("offline-run-*/run-*.wandb")
    records = wandb_records(run_file)
    history: dict[int, dict[str, dict]] = {}  # step -> key -> {field: value}
    for r in records:
        if r.WhichOneof("record_type") == "history":
            row = history.setdefault(r.history.step.num, {})
            for item in r.history.item:
                key, *field = list(item.nested_key) or [item.key]
                row.setdefault(key, {})["/".join(field)] = json.loads(item.value_json)
    internal = {"_timestamp", "_runtime", "_step"}
    assert sorted(history) == [1, 2, 3]
    assert {k: v[""] for k, v in history[1].items() if k not in internal} == {"train/loss": 0.5}
    assert {k: v[""] for k, v in history[2].items() if k not in internal} == {
        "train/loss": 0.25,
        "eval/acc": 0.9,
    }
    row = history[3]
    assert set(row) - internal == {"recon", "codes", "notes", "confusion/test_table", "codes/test"}
    assert row["recon"]["_type"] == "image-file" and row["recon"]["width"] == 58
    assert row["codes"]["_type"] == "histogram" and sum(row["codes"]["values"]) == 50
    assert len(row["codes"]["values"]) == 64  # the bins TensorBoard's histograms use too, so they compare
    assert row["notes"]["_type"] == "html-file"
    files = run_file.parent / "files"
    assert (row["codes/test"]["nrows"], row["codes/test"]["ncols"]) == (6, 2 + 1 + 3)
    embedding = json.loads((files / row["codes/test"]["path"]).read_text())
    assert embedding["columns"] == ["label", "odd", "image", "d0", "d1", "d2"]
    assert [r[:2] + r[3:] for r in embedding["data"]] == [
        [str(i), str(i % 2 == 1), *codes[i].tolist()] for i in range(6)
    ]
    assert [r[2] for r in embedding["data"]] == ["Image"] * 6  # how wandb serialises a wandb.Image cell
    table = json.loads((files / row["confusion/test_table"]["path"]).read_text())
    assert table["columns"] == ["Actual", "Predicted", "nPredictions"]
    assert sum(r[2] for r in table["data"]) == _confusion().sum()
    logged_config = {  # init config travels in the run record, later updates as config records
        u.key: json.loads(u.value_json)
        for r in records
        for u in (r.run.config.update if r.HasField("run") else r.config.update)
    }
    assert logged_config["model.latent_dim"] == 16 and logged_config["opt"] == "adam"
    summary = {
        "/".join(u.nested_key) or u.key: u.value_json
        for r in records
        if r.WhichOneof("record_type") == "summary"
        for u in r.summary.update
    }
    assert json.loads(summary["test/acc"]) == 0.95


# ----------------------------------------------------------------------------- combinators


def _mock_writer() -> mock.NonCallableMagicMock:
    return mock.create_autospec(W.MetricWriter, instance=True)


def test_an_embeddings_record_cannot_change_after_its_checks():
    """Frozen: the checks run when it is built, on the caller's thread, so it must stay as checked."""
    import dataclasses

    points = W.Embeddings("codes", np.ones((2, 2)), ["a", "b"])
    with pytest.raises(dataclasses.FrozenInstanceError):
        points.vectors_nd = np.ones((3, 2))


def test_multiwriter_fans_out_and_closes_all():
    a, b = _mock_writer(), _mock_writer()
    multi = W.MultiWriter([a, b])
    multi.write_scalars(1, {"x": 1.0})
    multi.write_confusion(1, "c", np.eye(2), ["a", "b"])
    points = W.Embeddings("codes", np.ones((2, 2)), ["a", "b"])
    multi.write_embeddings(1, points)
    multi.flush()
    a.close.side_effect = OSError("disk full")
    with pytest.raises(OSError, match="disk full"):
        multi.close()
    for w in (a, b):
        assert [c[0] for c in w.method_calls] == ["write_scalars", "write_confusion", "write_embeddings", "flush",
                                                  "close"]
    assert b.write_scalars.call_args == mock.call(1, {"x": 1.0})
    assert b.write_embeddings.call_args == mock.call(1, points)


def test_async_writer_preserves_order_and_close_drains():
    inner = _mock_writer()
    main = threading.get_ident()
    threads = set()
    def slow_write(*args):
        threads.add(threading.get_ident())
        time.sleep(0.002)

    inner.write_scalars.side_effect = slow_write
    w = W.AsyncWriter(inner, max_pending=4)  # also exercises back-pressure
    for step in range(20):
        w.write_scalars(step, {"x": float(step)})
    w.write_texts(20, {"t": "done"})
    w.close()
    w.close()  # idempotent
    steps = [c.args[0] for c in inner.method_calls if c[0] == "write_scalars"]
    assert steps == list(range(20))
    assert [c[0] for c in inner.method_calls[-2:]] == ["write_texts", "close"]
    assert len(threads) == 1 and main not in threads


def test_async_writer_holds_at_most_max_pending_calls_and_its_flush_and_close_reach_the_writer():
    """Back-pressure: with the backend stuck, the caller is held once `max_pending` calls wait (not one
    later, not never); flush() is passed on and waits; close() leaves no thread behind."""
    inner, stuck, worker = _mock_writer(), threading.Event(), []
    inner.write_scalars.side_effect = lambda *args: worker.append(threading.current_thread()) or stuck.wait(10)
    w = W.AsyncWriter(inner, max_pending=2)
    returned: list[int] = []

    def produce():
        for step in range(4):
            w.write_scalars(step, {"x": 1.0})
            returned.append(step)

    producer = threading.Thread(target=produce)
    producer.start()
    time.sleep(0.3)
    assert returned == [0, 1]  # the third call waits for the first, still stuck in the backend
    stuck.set()
    producer.join(timeout=10)
    assert returned == [0, 1, 2, 3]
    w.flush()
    assert inner.flush.called and inner.write_scalars.call_count == 4
    w.close()
    assert not worker[0].is_alive()  # its own thread, not a count that other writers' threads could offset


def test_async_writer_reraises_thread_error_on_next_call_and_close():
    inner = _mock_writer()
    inner.write_scalars.side_effect = RuntimeError("boom")
    w = W.AsyncWriter(inner)
    w.write_scalars(1, {"x": 1.0})
    time.sleep(0.05)
    with pytest.raises(RuntimeError, match="boom"):
        w.write_texts(2, {"t": "next call"})
    w.write_scalars(3, {"x": 1.0})
    with pytest.raises(RuntimeError, match="boom"):
        w.close()
    assert inner.close.called


def test_async_writer_reraises_on_flush():
    inner = _mock_writer()
    inner.write_images.side_effect = ValueError("bad image")
    w = W.AsyncWriter(inner)
    w.write_images(1, {"x": np.zeros((2, 2, 1))})
    with pytest.raises(ValueError, match="bad image"):
        w.flush()
    w.close()


def test_async_writer_builds_from_a_factory_on_its_thread():
    inner, built_on, release = _mock_writer(), [], threading.Event()

    def slow_factory():  # like wandb.init: the caller must not wait for it
        assert release.wait(timeout=10)
        built_on.append(threading.get_ident())
        return inner

    w = W.AsyncWriter(slow_factory)
    w.write_scalars(1, {"x": 1.0})  # returns while the factory is still blocked
    assert not built_on
    release.set()
    w.close()
    assert built_on[0] != threading.get_ident()
    assert [c[0] for c in inner.method_calls] == ["write_scalars", "close"]


def test_async_writer_factory_error_surfaces_once_as_a_writer_error():
    release = threading.Event()

    def broken():
        assert release.wait(timeout=10)
        raise PermissionError("cannot create the W&B run dir")

    w = W.AsyncWriter(broken)
    w.write_scalars(1, {"x": 1.0})  # queued behind the build, which has not failed yet
    release.set()
    with pytest.raises(W.WriterError, match="could not start: PermissionError: cannot create the W&B run dir"):
        w.flush()
    w.write_scalars(2, {"x": 1.0})  # nothing was built: later calls do nothing
    w.close()  # and nothing is left to raise


# ----------------------------------------------------------------------------- factory


def test_create_writer_unknown_framework_is_one_clear_line(tmp_path):
    with pytest.raises(ValueError) as err:
        W.create_writer("bogus", tmp_path)
    message = str(err.value)
    assert "\n" not in message and "'bogus'" in message
    assert all(name in message for name in W.FRAMEWORKS)


def test_create_writer_tensorboard_writes_jsonl_and_events(tmp_path):
    w = W.create_writer("tensorboard", tmp_path, jsonl_tags={"member": 0}, is_main_process=True)
    assert isinstance(w, W.AsyncWriter)
    w.write_scalars(4, {"loss": 1.5})
    w.close()
    record = json.loads((tmp_path / "metrics.jsonl").read_text())
    assert record.pop("time") == pytest.approx(time.time(), abs=60) and record == {"step": 4, "member": 0, "loss": 1.5}
    assert [e.value for e in tb_accumulator(tmp_path / "tb").Scalars("loss")] == [1.5]


def test_create_writer_default_process_index_is_main(tmp_path):
    with W.create_writer("none", tmp_path, asynchronous=False) as w:  # jax.process_index() == 0
        w.write_scalars(1, {"loss": 1.0})
    record = json.loads((tmp_path / "metrics.jsonl").read_text())
    assert record.pop("time") == pytest.approx(time.time(), abs=60) and record == {"step": 1, "loss": 1.0}
    assert not (tmp_path / "tb").exists()  # "none": the JSONL log only


def test_non_main_process_writes_nothing(tmp_path):
    with W.create_writer("both", tmp_path / "run", is_main_process=False) as w:
        w.write_scalars(1, {"loss": 1.0})
        w.write_hparams({"lr": 0.1}, {"acc": 1.0})
        w.write_embeddings(1, W.Embeddings("codes", np.ones((2, 2)), ["a", "b"]))
    assert not (tmp_path / "run").exists()


def _full_disk(*args, **kwargs):
    raise OSError(28, "No space left on device")  # what a write to an open file raises: no file name


def test_a_full_disk_under_tensorboard_is_an_error_naming_its_folder_not_a_hang(tmp_path, monkeypatch):
    """tensorboardX's writer thread died at its first OSError and every later event waited forever on its full
    queue (a run hung 10 minutes on a 5 MiB disk): the error now comes back from the next call, and close ends."""
    import tensorboardX.record_writer

    with monkeypatch.context() as m:  # already at the event file's first record
        m.setattr(tensorboardX.record_writer.RecordWriter, "write", _full_disk)
        with pytest.raises(OSError) as error:
            W.TensorBoardWriter(tmp_path / "full")
        assert (error.value.errno, error.value.filename) == (28, str(tmp_path / "full"))
    writer = W.TensorBoardWriter(tmp_path / "tb")
    monkeypatch.setattr(tensorboardX.record_writer.RecordWriter, "write", _full_disk)
    errors = []

    def log_a_run():
        try:
            for step in range(50):  # many more events than tensorboardX's queue holds (10)
                writer.write_scalars(step, {"loss": 1.0})
                time.sleep(0.01)
        except OSError as e:
            errors.append(e)
        try:
            writer.close()
        except OSError as e:
            errors.append(e)

    thread = threading.Thread(target=log_a_run, daemon=True)
    thread.start()
    thread.join(timeout=60)
    assert not thread.is_alive(), "the writer hung on a full disk"
    assert errors and all((e.errno, e.filename) == (28, str(tmp_path / "tb")) for e in errors)


def test_a_full_disk_under_the_jsonl_log_names_the_file(tmp_path):
    writer = W.JsonlWriter(tmp_path / "metrics.jsonl")
    writer.write_scalars(0, {"loss": 1.0})
    real, writer._file = writer._file, mock.Mock(write=_full_disk, flush=_full_disk, close=_full_disk)
    for call in (lambda: writer.write_scalars(1, {"loss": 0.5}), writer.flush, writer.close):
        with pytest.raises(OSError) as error:
            call()
        assert (error.value.errno, error.value.filename) == (28, str(tmp_path / "metrics.jsonl"))
    real.close()
    assert [json.loads(line)["step"] for line in (tmp_path / "metrics.jsonl").read_text().splitlines()] == [0]


def test_after_a_full_disk_every_tensorboard_call_raises_the_same_error(tmp_path, monkeypatch):
    """Each way in (a step's write, hparams, the graph, flush, close) gives the kept error back, naming the folder."""
    import tensorboardX.record_writer
    from tensorboardX.proto.graph_pb2 import GraphDef

    writer = W.TensorBoardWriter(tmp_path / "tb")
    monkeypatch.setattr(tensorboardX.record_writer.RecordWriter, "write", _full_disk)
    writer.write_texts(0, {"t": "x"})  # taken; its write fails on tensorboardX's thread, which keeps the error
    deadline = time.monotonic() + 30
    while writer._failed is None and time.monotonic() < deadline:
        time.sleep(0.01)
    calls = [lambda: writer.write_scalars(1, {"a": 1.0}), lambda: writer.write_hparams({"lr": 1.0}, {"a": 1.0}),
             lambda: writer.write_graph(GraphDef()), writer.flush, writer.close]
    for call in calls:
        with pytest.raises(OSError) as error:
            call()
        assert (error.value.errno, error.value.strerror, error.value.filename) == (
            28, "No space left on device", str(tmp_path / "tb"))
