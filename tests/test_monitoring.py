"""What a real training run logs, read back from disk and from a live TensorBoard server.

ONE tiny run (2 epochs of 2048 digits, TensorBoard and offline W&B) is shared by every test.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from helpers import tiny
from helpers import hparams_session_groups, projector_config, tb_accumulator, wandb_records

EPOCHS = 2
ROUNDS_PER_EPOCH = 2048 // 64  # tiny(): train_limit / batch_size
LOG_EVERY = 4  # tiny(): log_every_steps
LATENT = 8  # tiny(): latent_dim
POINTS = 64  # tiny(): projector_points (< test_limit)
EVAL_STEPS = [e * ROUNDS_PER_EPOCH for e in range(EPOCHS + 1)]  # step 0, then after each epoch
TRAIN_STEPS = list(range(LOG_EVERY, EPOCHS * ROUNDS_PER_EPOCH + 1, LOG_EVERY))
TB_TIMEOUT_S = 45.0


def _train(workdir: Path, home: Path, config) -> dict[str, float]:
    """Trains the tiny run with TensorBoard and W&B (offline: no credentials) in-process."""
    import wandb

    from mnist_ae.tasks import train_and_evaluate as run_training

    with pytest.MonkeyPatch.context() as mp:
        for var in ("WANDB_API_KEY", "WANDB_MODE", "WANDB_BASE_URL", "WANDB_IDENTITY_TOKEN_FILE"):
            mp.delenv(var, raising=False)
        mp.setenv("HOME", str(home))
        mp.setenv("NETRC", str(home / ".netrc"))
        mp.setenv("WANDB_SILENT", "true")
        try:
            return run_training(config, workdir, "both", quiet=True)
        finally:
            wandb.teardown()  # run.finish() returns before wandb-core has flushed the .wandb file


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> dict[str, Any]:
    """The shared run, trained once per session even under pytest-xdist (a file lock in the
    session's tmp, as in test_parallel.py); the other workers wait and read its files."""
    root = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        root = root.parent  # the session's tmp, shared by the xdist workers
    out = root / "monitoring"
    workdir, result = out / "run", out / "result.json"
    config = tiny(epochs=EPOCHS, run_name="monitoring-test")
    with open(root / "monitoring.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not result.exists():
            (out / "home").mkdir(parents=True, exist_ok=True)
            try:
                outcome = {"final": _train(workdir, out / "home", config)}
            except Exception as e:  # noqa: BLE001 - reported by every test below
                outcome = {"error": f"{type(e).__name__}: {e}"}
            result.write_text(json.dumps(outcome))
    outcome = json.loads(result.read_text())
    if "error" in outcome:
        pytest.fail(f"the shared training run failed: {outcome['error']}", pytrace=False)
    records = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
    return {"workdir": workdir, "config": config, "final": outcome["final"], "records": records}


def _eval_records(records: list[dict]) -> list[dict]:
    return [r for r in records if "step" in r and "test/recon_mse" in r]


# ----------------------------------------------------------------------------- TensorBoard files


def test_tensorboard_scalars_at_the_right_steps(run):
    acc = tb_accumulator(run["workdir"] / "tb")
    for tag in ("test/recon_mse", "test/probe_accuracy"):
        assert [e.step for e in acc.Scalars(tag)] == EVAL_STEPS, tag
    for tag in ("train/recon_mse", "train/learning_rate", "train/ae_grad_norm", "train/steps_per_s"):
        assert [e.step for e in acc.Scalars(tag)] == TRAIN_STEPS, tag
    assert all(e.value == pytest.approx(run["config"].learning_rate) for e in acc.Scalars("train/learning_rate"))
    assert [e.step for e in acc.Scalars("test/probe_per_class_accuracy/9")] == EVAL_STEPS
    assert [e.step for e in acc.Scalars("usage/host_rss_mb")] == EVAL_STEPS[1:]
    # The same numbers as metrics.jsonl, and the final metrics returned by run_training.
    jsonl = [(r["step"], r["test/recon_mse"]) for r in _eval_records(run["records"])]
    tb = [(e.step, e.value) for e in acc.Scalars("test/recon_mse")]
    assert [s for s, _ in tb] == [s for s, _ in jsonl]
    np.testing.assert_allclose([v for _, v in tb], [v for _, v in jsonl], rtol=1e-6)
    assert tb[-1][1] == pytest.approx(run["final"]["test/recon_mse"], rel=1e-6)


def test_tensorboard_images_histograms_text(run):
    acc = tb_accumulator(run["workdir"] / "tb")
    grids = acc.Images("views/reconstructions")
    assert [e.step for e in grids] == EVAL_STEPS
    digits = run["config"].grid_digits
    plain = (digits * 28 + (digits - 1) * 2, 2 * 28 + 2)  # enlarged 3x, a 36 px title band, 8 px margins
    assert {e.height for e in grids} == {36 + 3 * plain[1] + 8} and min(e.width for e in grids) > 3 * plain[0]
    confusion = acc.Images("test/probe_confusion")
    assert [e.step for e in confusion] == EVAL_STEPS and min(confusion[0].width, confusion[0].height) >= 300

    histograms = acc.Tags()["histograms"]
    assert [t for t in histograms if t.startswith("z/")] == [f"z/dim_{i:03d}" for i in range(LATENT)]
    weights = [t for t in histograms if t.startswith("weights/")]
    assert any(t.startswith("weights/ae/") and t.endswith("kernel") for t in weights)
    assert any(t.startswith("weights/probe/") for t in weights)
    assert [e.step for e in acc.Histograms("z/dim_000")] == EVAL_STEPS  # step 0 and every eval
    assert [e.step for e in acc.Histograms(weights[0])] == EVAL_STEPS
    (last,) = [e for e in acc.Histograms("z/dim_000") if e.step == EVAL_STEPS[-1]]
    assert last.histogram_value.num == 512  # the whole test set (tiny(): test_limit)

    (summary,) = acc.Tensors("model/summary/text_summary")
    text = summary.tensor_proto.string_val[0].decode()
    assert text.startswith("| parameter | shape | count |") and "**total**" in text


def test_tensorboard_hparams_with_final_metrics(run):
    (group,) = hparams_session_groups(run["workdir"]).session_groups
    assert [s.name for s in group.sessions] == ["tb"]
    assert group.hparams["latent_dim"].number_value == LATENT
    assert group.hparams["run_name"].string_value == "monitoring-test"
    metrics = {m.name.tag: m.value for m in group.metric_values}
    assert metrics["trained/test/recon_mse"] == pytest.approx(run["final"]["test/recon_mse"], rel=1e-6)
    assert metrics["trained/test/probe_accuracy"] == pytest.approx(run["final"]["test/probe_accuracy"])


def test_projector_files(run):
    logdir = run["workdir"] / "tb"
    (embedding,) = projector_config(logdir).embeddings
    assert list(embedding.tensor_shape) == [POINTS, LATENT]
    tensors = np.loadtxt(logdir / embedding.tensor_path, delimiter="\t", ndmin=2)
    assert tensors.shape == (POINTS, LATENT) and np.isfinite(tensors).all()
    rows = [r.split("\t") for r in (logdir / embedding.metadata_path).read_text().splitlines()]
    assert rows[0] == ["label", "probe_prediction"]
    assert len(rows) == POINTS + 1 and all(len(r) == 2 for r in rows)
    assert {r[0] for r in rows[1:]} <= set("0123456789") and {r[1] for r in rows[1:]} <= set("0123456789")
    sheet = Image.open(logdir / embedding.sprite.image_path)
    assert sheet.width == sheet.height <= 8192
    assert list(embedding.sprite.single_image_dim) == [28, 28]
    assert sheet.width == 28 * 8  # ceil(sqrt(64)) thumbnails a side


# ----------------------------------------------------------------------------- W&B offline run


def _wandb_history(run_file: Path) -> dict[int, dict[str, dict[str, Any]]]:
    """step -> key -> {field: value} of the run's history rows ("" is a plain value's field)."""
    history: dict[int, dict[str, dict[str, Any]]] = {}
    for record in wandb_records(run_file):
        if record.WhichOneof("record_type") == "history":
            row = history.setdefault(record.history.step.num, {})
            for item in record.history.item:
                key, *field = list(item.nested_key) or [item.key]
                row.setdefault(key, {})["/".join(field)] = json.loads(item.value_json)
    return history


def test_wandb_offline_run_matches_metrics_jsonl(run):
    (run_file,) = (run["workdir"] / "wandb").glob("offline-run-*/run-*.wandb")
    history = _wandb_history(run_file)
    steps = list(history)
    assert steps == sorted(steps) and len(set(steps)) == len(steps)  # logged in increasing order
    evals = _eval_records(run["records"])
    assert [r["step"] for r in evals] == EVAL_STEPS
    for record in evals:
        row = history[record["step"]]
        expected = {k: v for k, v in record.items() if k.startswith("test/")}
        assert {"test/recon_mse", "test/probe_accuracy"} <= set(expected)
        for key, value in expected.items():
            assert row[key][""] == pytest.approx(value, rel=1e-6), (record["step"], key)
        assert row["views/reconstructions"]["_type"] == "image-file"
        assert row["test/probe_confusion_table"]["_type"] == "table-file"
    codes = history[EVAL_STEPS[-1]]["codes"]  # the projector's points as a W&B table
    assert codes["_type"] == "table-file"
    assert (codes["nrows"], codes["ncols"]) == (POINTS, 2 + 1 + LATENT)  # label, probe_prediction, image, dims
    for step in TRAIN_STEPS:
        assert "train/recon_mse" in history[step] and "train/learning_rate" in history[step]


# ----------------------------------------------------------------------------- live TensorBoard


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url: str, data: bytes | None = None) -> Any:
    headers = {"Content-Type": "application/json"} if data is not None else {}
    request = urllib.request.Request(url, data=data, headers=headers)
    with urllib.request.urlopen(request, timeout=10) as response:
        body = response.read()
    return json.loads(body) if body[:1] in (b"{", b"[") else body.decode()


def _poll(fetch, ready, deadline: float, server: subprocess.Popen) -> Any:
    """Calls fetch() until ready(result), the server exits, or the deadline passes."""
    last: Any = None
    while time.monotonic() < deadline:
        if server.poll() is not None:
            pytest.fail(f"tensorboard exited with status {server.returncode}")
        try:
            last = fetch()
            if ready(last):
                return last
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.25)
    pytest.fail(f"tensorboard did not answer in time; last answer: {last!r}")


def test_tensorboard_server_serves_the_run(run, tmp_path):
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    log = (tmp_path / "tensorboard.log").open("w")
    server = subprocess.Popen(
        [sys.executable, "-m", "tensorboard.main", "--logdir", str(run["workdir"] / "tb"),
         "--port", str(port), "--host", "127.0.0.1"],
        stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
    )
    try:
        deadline = time.monotonic() + TB_TIMEOUT_S
        runs = _poll(lambda: _get(f"{base}/data/runs"), lambda r: len(r) == 1, deadline, server)
        (name,) = runs  # the logdir itself holds the event file: TensorBoard calls that run "."
        tags = _poll(lambda: _get(f"{base}/data/plugin/scalars/tags"),
                     lambda t: "test/recon_mse" in t.get(name, {}), deadline, server)
        assert "train/learning_rate" in tags[name]
        # TensorBoard orders chart groups alphabetically: the test and train curves come first, and the
        # end-of-run numbers (trained/*), resource use (usage/*) and epoch (train/epoch) after them.
        groups = sorted({tag.split("/")[0] for tag in tags[name]}, key=str.lower)
        assert groups[:2] == ["test", "train"] and "epoch" not in tags[name], groups

        body = json.dumps({"experimentName": ""}).encode()
        experiment = _poll(lambda: _get(f"{base}/data/plugin/hparams/experiment", body),
                           lambda e: bool(e.get("hparamInfos")), deadline, server)
        hparams = {h["name"] for h in experiment["hparamInfos"]}
        assert {"latent_dim", "learning_rate", "batch_size", "model"} <= hparams
        metrics = {m["name"]["tag"] for m in experiment["metricInfos"]}
        assert {"trained/test/recon_mse", "trained/test/probe_accuracy"} <= metrics

        assert _poll(lambda: _get(f"{base}/data/plugin/projector/runs"), lambda r: name in r,
                     deadline, server) == [name]
        info = _get(f"{base}/data/plugin/projector/info?run={urllib.parse.quote(name)}")
        (embedding,) = info["embeddings"]
        assert embedding["tensorName"].startswith("codes:")
        assert [int(d) for d in embedding["tensorShape"]] == [POINTS, LATENT]
        assert embedding["sprite"]["imagePath"].endswith("sprite.png")
        metadata = _get(f"{base}/data/plugin/projector/metadata?run={urllib.parse.quote(name)}"
                        f"&name={urllib.parse.quote(embedding['tensorName'])}")
        assert metadata.splitlines()[0] == "label\tprobe_prediction"
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(timeout=10)
        log.close()


def test_wandb_tags_from_the_command_line_are_split_on_commas():
    from mnist_ae.run.monitoring import split_tags

    assert split_tags(("baseline,mlp",)) == ("baseline", "mlp")  # what --config.wandb_tags=baseline,mlp gives
    assert split_tags(("a", " b , c", "")) == ("a", "b", "c")
    assert split_tags(()) == ()


@pytest.mark.slow  # second check: test_hooks' quick picture test has histograms every epoch, evals every 2
def test_histograms_follow_their_own_interval_not_the_evals(tmp_path):
    from mnist_ae.tasks import train_and_evaluate as run_training

    config = tiny(epochs=3, eval_every_epochs=2, histogram_every_epochs=1)
    run_training(config, tmp_path, "tensorboard", quiet=True)
    rounds = config.train_limit // config.batch_size
    acc = tb_accumulator(tmp_path / "tb")
    assert [e.step for e in acc.Histograms("z/dim_000")] == [0, rounds, 2 * rounds, 3 * rounds]
    assert [e.step for e in acc.Scalars("test/recon_mse")] == [0, 2 * rounds, 3 * rounds]  # evals: 2 and the end


@pytest.mark.slow
def test_histograms_projector_and_end_of_run_share_one_encoding_per_step(tmp_path, monkeypatch):
    from mnist_ae import tasks
    from mnist_ae.run.program import Program

    calls = []
    encode = Program.test_codes

    def counted(self, state, data):
        calls.append(1)
        return encode(self, state, data)

    monkeypatch.setattr(Program, "test_codes", counted)
    config = tiny(epochs=2, histogram_every_epochs=1, projector_every_evals=1)
    tasks.train_and_evaluate(config, tmp_path, "tensorboard", quiet=True)
    # Codes are due at step 0 (histograms), after epoch 1 (histograms, projector) and after epoch 2
    # (histograms, projector, end-of-run projector): one encoding per step, not one per use.
    assert len(calls) == 3


def test_a_wandb_run_is_named_by_what_it_trains_not_by_its_task():
    from mnist_ae.config import base_config
    from mnist_ae.run.monitoring import run_title

    config = base_config()
    assert run_title(config, Path("runs/reconstruction")) == "reconstruction: mlp latent 64, lr 0.001, seed 0, 5 epochs"
    config.update(dict(model="conv", seed=3, learning_rate=3e-3))
    assert run_title(config, Path("runs/c")) == "c: conv latent 256, lr 0.003, seed 3, 5 epochs"  # 2x2x64 code
    config.update(dict(task="classification", model="mlp"))
    assert run_title(config, Path("runs/k")).startswith("k: mlp classifier, lr 0.003")


def test_an_offline_wandb_run_says_so_and_how_to_sync(tmp_path, monkeypatch):
    from mnist_ae.run.monitoring import wandb_note

    for var in ("WANDB_API_KEY", "WANDB_MODE", "WANDB_BASE_URL", "WANDB_IDENTITY_TOKEN_FILE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("NETRC", str(tmp_path / "no-netrc"))
    assert wandb_note(tmp_path / "run") == (f"W&B: offline (not logged in), sync later with "
                                            f"`wandb sync {tmp_path / 'run' / 'wandb'}/offline-run-*`")
    monkeypatch.setenv("WANDB_MODE", "offline")
    assert wandb_note(tmp_path / "run").startswith("W&B: offline (WANDB_MODE), sync later")
    monkeypatch.delenv("WANDB_MODE")
    monkeypatch.setenv("WANDB_API_KEY", "x" * 40)
    assert wandb_note(tmp_path / "run") is None  # online: nothing to sync later
