"""What several test modules share: the tiny configs, one free port, one run-once harness, read-backs.

Imported as a plain module (`from helpers import tiny`): pytest puts tests/ on sys.path for the
test modules, and `python tests/test_parallel.py WORKER ...` has it as the script's folder.
Fixtures stay in conftest.py.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import struct
from collections.abc import Callable
from pathlib import Path
from typing import Any

import ml_collections
import pytest

REPO = Path(__file__).resolve().parents[1]



def __getattr__(name: str) -> Any:
    """`from helpers import TrainingDiverged`: the exception a run raises on non-finite metrics.

    Where `tasks.train_and_evaluate` raises it from: `mnist_ae.run.driver` once the driver rewrite
    is in, `mnist_ae.train` before it. The one place to change when `mnist_ae.train` goes; looked
    up on first use, so importing helpers stays light.
    """
    if name == "TrainingDiverged":
        try:
            from mnist_ae.run.driver import TrainingDiverged
        except ImportError:
            from mnist_ae.train import TrainingDiverged
        return TrainingDiverged
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# ----------------------------------------------------------------------------- configs


def tiny(**overrides: Any) -> ml_collections.ConfigDict:
    """A config that trains in about a second on CPU: 2048 real digits, a small MLP.

    32 rounds per epoch (2048 / 64), evals on 512 test digits, a log line every 4 rounds.
    """
    from mnist_ae.config import base_config

    config = base_config()
    config.update(dict(train_limit=2048, test_limit=512, hidden=(64, 32), latent_dim=8, probe_hidden=(16,),
                       batch_size=64, epochs=2, eval_batch_size=256, log_every_steps=4, grid_digits=4,
                       projector_points=64, analyze_at_end=False, latent_pictures=False, report_at_end=False,
                       report_codes=128, learning_rate=1e-2,
                       probe_learning_rate=1e-2))
    config.update(overrides)
    return config


def experiment_config(name: str) -> ml_collections.ConfigDict:
    """`get_config()` of experiments/NAME.py, as `--config experiments/NAME.py` loads it."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(f"experiment_{name}", REPO / "experiments" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config()


def frozen_epoch(mnist: Any, n: int, epoch: int = 0, **overrides: Any) -> tuple[dict, Any, Any, list]:
    """One jitted epoch of `tiny(**overrides)` on the first `n` training digits at a learning rate of 1e-30,
    so the parameters never move and each round's logged train MSE is the initial model's error on the batch
    it was given: (the epoch's metrics, the state it started from, the learner, each round's clean batch on
    [-1, 1], from the run key's order)."""
    import jax
    import jax.numpy as jnp

    from mnist_ae import build
    from mnist_ae.core import losses
    from mnist_ae.core.loop import epoch_indices, rounds_per_epoch, train_epoch
    from mnist_ae.core.steps import init_state

    images, labels = jnp.asarray(mnist.train_images[:n]), jnp.asarray(mnist.train_labels[:n])
    config = tiny(learning_rate=1e-30, probe_learning_rate=1e-30, train_limit=n, **overrides)
    learner = build.learner(config)
    state = init_state(learner, 3).replace(epoch=jnp.asarray(epoch, jnp.int32))
    _, metrics = jax.jit(lambda s: train_epoch(learner, s, images, labels, config.batch_size))(state)
    rounds = rounds_per_epoch(learner, n, config.batch_size)
    idx_rgb = epoch_indices(state.rng, state.epoch, n, rounds, 1, config.batch_size)
    return metrics, state, learner, [losses.to_unit_range(images[idx_rgb[r, 0]]) for r in range(rounds)]


def tiny_sweep(**overrides: Any) -> ml_collections.ConfigDict:
    """`tiny()` as a sweep of 4 members: latent 2 and 5, seeds 0 and 1, one learning rate."""
    return tiny(**{"task": "sweep", "latent_dims": (2, 5), "seeds": (0, 1), "learning_rates": (1e-2,),
                   **overrides})


# ----------------------------------------------------------------------------- processes and servers


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_once(tmp_path_factory: pytest.TempPathFactory, name: str, produce: Callable[[Path], Any]) -> tuple[Path, Any]:
    """`produce(out)` once per test session, even under pytest-xdist; returns (out, its result).

    `out` is `<session tmp>/<name>`, shared by the xdist workers: the first to take the file lock
    runs `produce`, the others wait and read its result (which must be JSON-able) from
    `out/result.json`. If `produce` raised, every caller fails with its one-line error.
    """
    root = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        root = root.parent  # the session's tmp, shared by the xdist workers
    out = root / name
    result = out / "result.json"
    with open(root / f"{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not result.exists():
            out.mkdir(parents=True, exist_ok=True)
            try:
                outcome = {"value": produce(out)}
            except Exception as e:  # noqa: BLE001 - reported to every caller
                outcome = {"error": f"{type(e).__name__}: {e}"}
            result.write_text(json.dumps(outcome))
    outcome = json.loads(result.read_text())
    if "error" in outcome:
        pytest.fail(f"the shared {name} run failed: {outcome['error']}", pytrace=False)
    return out, outcome["value"]


def command_in_process(args: list[str], monkeypatch: pytest.MonkeyPatch) -> int:
    """`launch.py ARGS` in this process, its flags parsed afresh: the exit status (0 when it returns). What it
    printed: the caller's capsys. For the one line of a command that refuses before any compute, without a
    process's 0.2-2 s start; test_bad_input keeps whole processes for what only a process shows (its
    imports, its whole stderr).

    absl keeps a parse's values and the `--config.KEY` flags it defined (a second definition is an error: a
    process parses once), and absl's logging reads whether flags were parsed: the flags are left unparsed
    and without those, before and after, as the other tests in this process expect."""
    from absl import flags

    from mnist_ae import cli

    def unparse() -> None:
        for name in [name for name in flags.FLAGS if name.startswith("config.")]:
            delattr(flags.FLAGS, name)
        flags.FLAGS.unparse_flags()

    unparse()
    monkeypatch.setattr("sys.argv", ["launch.py", *args])
    try:
        cli.main()
    except SystemExit as exit_:
        return exit_.code
    finally:
        unparse()
    return 0


def record_digit_rows(monkeypatch: pytest.MonkeyPatch) -> dict[str, list[tuple[str, Any]]]:
    """Each digit-row figure drawn from now on (`analysis.digit_figures.digit_rows`, by its title): its rows
    (label, images). The figure is still drawn and written."""
    from mnist_ae.analysis import digit_figures

    drawn: dict[str, list[tuple[str, Any]]] = {}
    digit_rows = digit_figures.digit_rows

    def recording(rows, path, title="", col_labels=()):  # noqa: ANN001, ANN202
        drawn[title] = list(rows)
        return digit_rows(rows, path, title, col_labels)

    monkeypatch.setattr(digit_figures, "digit_rows", recording)
    return drawn


def tiny_run(tmp_path_factory: pytest.TempPathFactory, epochs: int) -> tuple[Path, dict[str, float]]:
    """A finished `tiny(epochs=...)` run with TensorBoard, trained once per session for every module
    that needs one: (its workdir, its final metrics). Read it in place; copy it to resume or damage it.

    Each such run costs 3-4 s of compiling, evals, checkpoints and pictures: shared by test_api,
    test_figures, test_faults, test_checkpoint and test_graph, the quick tier trains two of them instead of seven.
    """
    from mnist_ae import tasks

    out, final = run_once(tmp_path_factory, f"tiny_run_{epochs}", lambda out: tasks.train_and_evaluate(
        tiny(epochs=epochs), out / "run", log_framework="tensorboard", quiet=True))
    return out / "run", final


# ----------------------------------------------------------------------------- reading back what a run wrote


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in Path(path).read_text().splitlines()]


def eval_records(workdir: Path) -> list[dict[str, Any]]:
    """The test-set evaluations a run logged to `workdir/metrics.jsonl`, in order."""
    return [r for r in read_jsonl(Path(workdir) / "metrics.jsonl")
            if "test/recon_mse" in r or "test/accuracy" in r]


def restore_state(workdir: Path, config: ml_collections.ConfigDict):
    """The single-run train state of `config` saved last in `workdir/checkpoints`."""
    from mnist_ae import build
    from mnist_ae.checkpoint import Checkpointer
    from mnist_ae.core.steps import init_state

    ckpt = Checkpointer(Path(workdir) / "checkpoints", keep=100)
    try:
        return ckpt.restore(init_state(build.learner(config), 0))
    finally:
        ckpt.close()


def tb_accumulator(logdir: Path):
    """Every event TensorBoard reads from `logdir` (nothing sampled away)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    kinds = ("scalars", "images", "histograms", "tensors", "compressedHistograms", "audio")
    acc = EventAccumulator(str(logdir), size_guidance=dict.fromkeys(kinds, 0))
    acc.Reload()
    return acc


def hparams_session_groups(root: Path):
    """What TensorBoard's HParams tab lists for the runs under `root`."""
    from tensorboard import context
    from tensorboard.backend.event_processing import data_provider, plugin_event_multiplexer
    from tensorboard.plugins import base_plugin
    from tensorboard.plugins.hparams import api_pb2, backend_context, list_session_groups

    mux = plugin_event_multiplexer.EventMultiplexer()
    mux.AddRunsFromDirectory(str(root))
    mux.Reload()
    provider = data_provider.MultiplexerDataProvider(mux, str(root))
    ctx = backend_context.Context(base_plugin.TBContext(logdir=str(root), data_provider=provider))
    request = api_pb2.ListSessionGroupsRequest(
        start_index=0, slice_size=10, allowed_statuses=[api_pb2.STATUS_SUCCESS]
    )
    return list_session_groups.Handler(context.RequestContext(), ctx, "", request).run()


def projector_config(logdir: Path):
    """The TensorBoard projector's config in `logdir`, parsed."""
    from google.protobuf import text_format
    from tensorboard.plugins.projector import projector_config_pb2

    text = (Path(logdir) / "projector_config.pbtxt").read_text()
    return text_format.Parse(text, projector_config_pb2.ProjectorConfig())


def wandb_records(run_file: Path):
    """Decodes a .wandb file: a 7-byte header, then LevelDB-log chunks of Record protos."""
    from wandb.proto import wandb_internal_pb2

    data, block = Path(run_file).read_bytes(), 32 * 1024
    pos, payload, records = 7, b"", []
    while pos + 7 <= len(data):
        if block - pos % block < 7:  # block trailer too small for a chunk header
            pos += block - pos % block
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos : pos + 7])
        payload += data[pos + 7 : pos + 7 + length]
        pos += 7 + length
        if kind in (1, 4):  # FULL or LAST chunk
            record = wandb_internal_pb2.Record()
            record.ParseFromString(payload)
            records.append(record)
            payload = b""
    return records
