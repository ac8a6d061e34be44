"""Checkpoint round trip, resume equivalence, refusal of a mismatched config, divergence handling."""

from __future__ import annotations

import functools
import shutil
import subprocess
import sys

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mnist_ae import build, tasks
from mnist_ae.checkpoint import CheckpointError, Checkpointer, _cause, state_digest
from mnist_ae.config import ConfigError
from mnist_ae.core import losses
from mnist_ae.core.loop import train_epoch
from mnist_ae.core.steps import init_state

import helpers
from helpers import eval_records, read_jsonl, restore_state, tiny, tiny_run

ROUNDS = 2048 // 64  # rounds per epoch of tiny(): train_limit / batch_size


def _leaves(tree) -> dict[str, np.ndarray]:
    return {jax.tree_util.keystr(k): np.asarray(v) for k, v in jax.tree_util.tree_leaves_with_path(tree)}


def test_the_digest_covers_every_leafs_path_dtype_shape_and_bytes():
    base = {"a": np.arange(4, dtype=np.float32), "b": np.zeros((2, 2), np.int32)}
    same = {"a": np.arange(4, dtype=np.float32), "b": np.zeros((2, 2), np.int32)}
    assert state_digest(base) == state_digest(same)
    for other in ({"a": np.arange(4, dtype=np.float32) + 1, "b": base["b"]},  # bytes
                  {"a": np.arange(4, dtype=np.float64), "b": base["b"]},  # dtype
                  {"a": base["a"], "b": np.zeros((4,), np.int32)},  # shape, same bytes
                  {"c": base["a"], "b": base["b"]}):  # path
        assert state_digest(other) != state_digest(base)
    import hashlib
    assert state_digest({}) == hashlib.sha256().hexdigest()  # nothing hashed but the leaves


def test_a_cause_is_the_innermost_os_error_or_the_first_line():
    try:
        try:
            raise OSError(28, "No space left on device", "/disk/x")
        except OSError as inner:
            raise RuntimeError("wrapped\nmore") from inner
    except RuntimeError as outer:
        assert _cause(outer) == "No space left on device (/disk/x)"
    try:  # chained implicitly (raised while handling, no `from`): __context__ only
        try:
            raise OSError(28, "No space left on device", "/disk/y")
        except OSError:
            raise RuntimeError("wrapped")  # noqa: B904
    except RuntimeError as outer:
        assert _cause(outer) == "No space left on device (/disk/y)"
    assert _cause(OSError(13, "Permission denied")) == "Permission denied"
    assert _cause(ValueError("first\nsecond")) == "ValueError: first"
    assert _cause(ValueError("")) == "ValueError: "
    disk_full = ('RESOURCE_EXHAUSTED: Error writing "epoch/0" in OCDBT database at local file "/x/": Failed '
                 "to write 240948 bytes to file 13: No space left on device [os_error_code='28']")
    assert _cause(ValueError(disk_full)) == "No space left on device"
    tensorstore = ("Encountered error while reading array index: (slice(0, 784, 1),). See full TensorStore "
                   "details: <bound method pybind11_detail_function_record.spec of TensorStore({")
    assert _cause(Exception(tensorstore)) == ("Exception: Encountered error while reading array index: "
                                              "(slice(0, 784, 1),).")


def test_a_checkpoint_folder_that_cannot_be_made_is_a_one_line_error(tmp_path):
    (tmp_path / "file").write_text("not a folder")
    with pytest.raises(CheckpointError, match=r"^cannot open checkpoints in .*file/ckpt: Not a directory"):
        Checkpointer(tmp_path / "file" / "ckpt", keep=1)


def test_write_errors_are_one_line_naming_the_checkpoint_that_failed_and_those_intact(tmp_path, monkeypatch):
    """A failed save, and an asynchronous write that fails after its save returned (surfacing at the next save
    or at close), are one-line CheckpointErrors naming that checkpoint, not the one being saved, and what is
    intact (the message said "earlier checkpoints are kept" when there were none)."""
    import errno

    import orbax.checkpoint as ocp

    def full_disk(self, *args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "ckpt"))

    state, config = {"w": np.zeros(2)}, tiny()
    checkpointer = Checkpointer(tmp_path / "ckpt", keep=5)
    with monkeypatch.context() as m:
        m.setattr(ocp.CheckpointManager, "save", full_disk)
        with pytest.raises(CheckpointError, match=r"^cannot write checkpoint .*ckpt/1: No space left on device "
                                                  r".*; no earlier checkpoint exists: free space"):
            checkpointer.save(1, state, config)
    checkpointer.save(1, state, config)
    checkpointer.save(2, state, config)
    with monkeypatch.context() as m:  # epoch 3's write fails after its save returned
        checkpointer.save(3, state, config)
        m.setattr(ocp.CheckpointManager, "wait_until_finished", full_disk)
        with pytest.raises(CheckpointError, match=r"^cannot write checkpoint .*ckpt/3: No space left on device "
                                                  r".*; checkpoints 1, 2 are intact: free space"):
            checkpointer.save(4, state, config)
    checkpointer.save(4, state, config)
    with monkeypatch.context() as m:
        m.setattr(ocp.CheckpointManager, "wait_until_finished", full_disk)
        with pytest.raises(CheckpointError, match=r"^cannot write checkpoint .*ckpt/4: .*; checkpoints 1, 2, 3 are"):
            checkpointer.close()
    assert Checkpointer(tmp_path / "ckpt", keep=5).epochs()[:3] == [1, 2, 3]  # what the message called intact


def test_when_every_checkpoint_is_damaged_restore_says_so_and_keeps_them(tmp_path):
    config = tiny()
    state = init_state(build.learner(config), 0)
    ckpt = Checkpointer(tmp_path / "c", keep=3)
    ckpt.save(1, state, config)
    ckpt.save(2, state, config)
    ckpt.close()
    shutil.rmtree(tmp_path / "c" / "1" / "state")
    shutil.rmtree(tmp_path / "c" / "2" / "state")
    warnings = []
    ckpt = Checkpointer(tmp_path / "c", keep=3, warn=warnings.append)
    with pytest.raises(CheckpointError, match=r"no intact checkpoint is left in .*c \(damaged ones are in "
                                              r".*c-damaged\): rerun to start afresh"):
        ckpt.restore(state)
    assert len(warnings) == 2 and "c/2 is damaged" in warnings[0] and "c/1 is damaged" in warnings[1]
    assert sorted(p.name.split("-")[0] for p in (tmp_path / "c-damaged").iterdir()) == ["1", "2"]  # a second one joins the first
    assert ckpt.epochs() == [] and ckpt.latest_epoch() is None  # the manager no longer counts it
    ckpt.close()

def test_a_chosen_epoch_is_restored_and_a_missing_one_named(tmp_path):
    config = tiny()
    learner = build.learner(config)
    first, second = init_state(learner, 1), init_state(learner, 2).replace(epoch=jnp.int32(2))
    ckpt = Checkpointer(tmp_path / "c", keep=3)
    ckpt.save(1, first, config)
    ckpt.save(2, second, tiny(epochs=7))  # a config of its own: run_config(1) must not read this one
    ckpt.close()
    ckpt = Checkpointer(tmp_path / "c", keep=3)
    assert ckpt.epochs() == [1, 2] and ckpt.latest_epoch() == 2
    chex.assert_trees_all_equal(ckpt.restore(init_state(learner, 0), epoch=1), first)
    chex.assert_trees_all_equal(ckpt.restore(init_state(learner, 0)), second)
    with pytest.raises(CheckpointError, match=r"no checkpoint of epoch 5 in .*: there are \[1, 2\]"):
        ckpt.restore(init_state(learner, 0), epoch=5)
    run_config = ckpt.run_config(1)
    assert run_config.hidden == (64, 32) and run_config.latent_dim == 8  # lists come back as tuples
    assert run_config.epochs == config.epochs != 7 and ckpt.run_config().epochs == 7
    shutil.rmtree(tmp_path / "c" / "1" / "state")
    with pytest.raises(CheckpointError, match=r"^checkpoint .*c/1 cannot be restored: "):
        ckpt.restore(init_state(learner, 0), epoch=1)  # a chosen one: no fallback to another
    ckpt.close()


def test_round_trip_restores_every_leaf_of_a_trained_state(tmp_path, mnist):
    """A state two epochs into training (step, epoch, Adam counts and moments all moved, another
    seed's rng) comes back leaf for leaf, bit for bit, into a template of a fresh state."""
    config = tiny()
    learner = build.learner(config)
    epoch = jax.jit(functools.partial(train_epoch, learner, batch_size=64))
    x, y = jnp.asarray(mnist.train_images[:256]), jnp.asarray(mnist.train_labels[:256])
    trained = init_state(learner, 3)
    for _ in range(2):
        trained, _ = epoch(trained, x, y)
    template = init_state(learner, 0)
    ckpt = Checkpointer(tmp_path / "ckpt", keep=2)
    ckpt.save(2, trained, config)
    ckpt.close()  # waits for the asynchronous save
    ckpt = Checkpointer(tmp_path / "ckpt", keep=2)
    restored = ckpt.restore(template)
    assert ckpt.saved_config()["latent_dim"] == config.latent_dim
    ckpt.close()

    chex.assert_trees_all_equal(restored, trained)  # every leaf, exact, dtypes included
    # What was saved is not the template: 2 epochs of 256 / 64 = 4 rounds, each 1 AE and 1 probe update.
    assert (int(restored.step), int(restored.epoch)) == (8, 2)
    for part in ("ae", "probe"):
        opt = restored.opt_states[part]
        assert int(opt.count) == 8 and int(opt.inner_state[0].count) == 8  # injected-hparams and Adam counts
    np.testing.assert_array_equal(restored.rng, jax.random.split(jax.random.PRNGKey(3))[1])
    # ... and every leaf but the injected hyperparameters (the same rates) differs from the template's.
    saved, fresh = _leaves(restored), _leaves(template)
    moved = {k for k in saved if not np.array_equal(saved[k], fresh[k])}
    unmoved = set(saved) - moved
    assert unmoved and all("hyperparams" in k for k in unmoved), sorted(unmoved)
    for must_move in (".step", ".epoch", ".rng"):
        assert must_move in moved
    assert any(".mu[" in k for k in moved) and any(".nu[" in k for k in moved)


def test_resume_continues_the_step_count_and_gives_the_same_parameters(tmp_path, tmp_path_factory):
    """A run stopped after epoch 1 and resumed ends where a straight run ends, and its eval records
    continue the step count: epoch e is logged at step e * rounds, before and after the resume."""
    straight_dir, straight = tiny_run(tmp_path_factory, epochs=2)
    shutil.copytree(tiny_run(tmp_path_factory, epochs=1)[0], tmp_path / "b")
    resumed = tasks.train_and_evaluate(tiny(epochs=2), tmp_path / "b", log_framework="none", quiet=True)
    evals = eval_records(tmp_path / "b")
    assert [(r["epoch"], r["step"]) for r in evals] == [(0, 0), (1, ROUNDS), (2, 2 * ROUNDS)]
    assert evals[-1]["test/recon_mse"] == pytest.approx(resumed["test/recon_mse"])
    train_steps = [r["step"] for r in read_jsonl(tmp_path / "b" / "metrics.jsonl") if "train/recon_mse" in r]
    assert train_steps == list(range(4, 2 * ROUNDS + 1, 4))  # every 4 rounds, on across the resume

    a, b = restore_state(straight_dir, tiny()), restore_state(tmp_path / "b", tiny())
    assert (int(b.epoch), int(b.step)) == (2, 2 * ROUNDS) == (int(a.epoch), int(a.step))
    for part in ("ae", "probe"):
        assert int(b.opt_states[part].inner_state[0].count) == 2 * ROUNDS
    chex.assert_trees_all_close(a.params, b.params, atol=1e-6)
    chex.assert_trees_all_close(a.opt_states, b.opt_states, atol=1e-6)
    assert resumed["test/recon_mse"] == pytest.approx(straight["test/recon_mse"], rel=1e-5)


@pytest.mark.slow
def test_rerunning_a_finished_run_warns_and_reports_the_same_numbers(tmp_path, capsys):
    first = tasks.train_and_evaluate(tiny(epochs=1), tmp_path, log_framework="none", quiet=True)
    capsys.readouterr()
    again = tasks.train_and_evaluate(tiny(epochs=1), tmp_path, log_framework="none", quiet=True)
    err = capsys.readouterr().err
    assert err.count("warning:") == 1 and "already trained to epoch 1 (epochs=1)" in err and "--config.epochs" in err
    assert again["test/recon_mse"] == pytest.approx(first["test/recon_mse"], rel=1e-6)


@pytest.mark.slow  # second check: the best-checkpoint test rotates the last k
def test_keeps_only_the_last_k_checkpoints(tmp_path):
    tasks.train_and_evaluate(tiny(epochs=4, keep_checkpoints=2, train_limit=512), tmp_path, log_framework="none")
    assert sorted(int(p.name) for p in (tmp_path / "checkpoints").iterdir() if p.name.isdigit()) == [3, 4]


def test_a_config_that_does_not_fit_the_checkpoint_is_refused(tmp_path):
    """Refused before any training: the config is checked against the checkpoint's alone."""
    config = tiny(epochs=1)
    ckpt = Checkpointer(tmp_path / "checkpoints", keep=1)
    ckpt.save(1, init_state(build.learner(config), 0), config)
    ckpt.close()
    with pytest.raises(ConfigError, match="latent_dim=8 but the config has latent_dim=4"):
        tasks.train_and_evaluate(tiny(epochs=2, latent_dim=4), tmp_path, log_framework="none")


def test_a_run_is_held_to_its_own_values_and_a_sweep_to_its_lists(tmp_path):
    """An exported sweep member is a reconstruction checkpoint whose config still carries the sweep's
    lists; resuming it as a single run must not compare them (nor a sweep the single-run values)."""
    ckpt = Checkpointer(tmp_path / "run", keep=1)
    member = tiny(latent_dims=(3, 5), seeds=(0, 1))
    ckpt.save(1, init_state(build.learner(member), 0), member)
    ckpt.close()
    ckpt = Checkpointer(tmp_path / "run", keep=1)
    ckpt.check_fits(tiny())  # other sweep lists: fine for a single run
    with pytest.raises(ConfigError, match="seed=0 but the config has seed=1"):
        ckpt.check_fits(tiny(seed=1))
    ckpt.close()
    sweep = tiny(task="sweep", latent_dims=(3, 5))
    ckpt = Checkpointer(tmp_path / "sweep", keep=1)
    ckpt.save(1, init_state(build.learner(sweep), 0), sweep)
    ckpt.check_fits(tiny(task="sweep", latent_dims=(3, 5), latent_dim=2, seed=4))  # single-run values: ignored
    with pytest.raises(ConfigError, match=r"latent_dims=\[3, 5\] but the config has latent_dims=\[3, 6\]"):
        ckpt.check_fits(tiny(task="sweep", latent_dims=(3, 6)))
    ckpt.close()


def test_divergence_stops_and_keeps_the_last_good_checkpoint(tmp_path, tmp_path_factory, monkeypatch):
    tmp_path = shutil.copytree(tiny_run(tmp_path_factory, epochs=1)[0], tmp_path / "run")
    good = restore_state(tmp_path, tiny())
    monkeypatch.setattr(losses, "mse", lambda recon, x: np.nan * jax.numpy.mean(recon - x))
    with pytest.raises(helpers.TrainingDiverged, match=r"in epoch 2 .*last good checkpoint \(epoch 1\)"):
        tasks.train_and_evaluate(tiny(epochs=3), tmp_path, log_framework="none")
    assert Checkpointer(tmp_path / "checkpoints", keep=3).latest_epoch() == 1
    chex.assert_trees_all_equal(restore_state(tmp_path, tiny()).params, good.params)


def test_closing_all_closes_everything_and_never_masks_the_body_error():
    try:
        from mnist_ae.run.driver import closing_all
    except ImportError:
        from mnist_ae.train import closing_all

    class Resource:
        def __init__(self, fails: bool):
            self.fails, self.closed = fails, False

        def close(self):
            self.closed = True
            if self.fails:
                raise OSError("close failed")

    resources = [Resource(True), Resource(False)]
    with pytest.raises(RuntimeError, match="NaN"):
        with closing_all(*resources):
            raise RuntimeError("NaN in epoch 3")
    assert all(r.closed for r in resources)
    resources = [Resource(True), Resource(False)]
    with pytest.raises(OSError, match="close failed"):
        with closing_all(*resources):
            pass
    assert all(r.closed for r in resources)


def _stepped(state, step: int):
    return state.replace(step=jnp.asarray(step, state.step.dtype))


@pytest.mark.parametrize("metric, values", [("test/recon_mse", [0.5, 0.1, 0.3, None, 0.4, 0.35]),
                                            pytest.param("test/accuracy", [0.5, 0.9, 0.3, None, 0.4, 0.85], marks=pytest.mark.slow)])
def test_the_best_checkpoint_is_kept_when_later_ones_rotate_and_resume_uses_the_latest(tmp_path, metric, values):
    """keep=2 and six saves: the last two stay, and so does the best by the metric (lowest MSE, highest
    accuracy: picked here with numpy), even though four later ones rotated past it. A save without
    metrics (a checkpoint at an epoch without an eval) is never the best."""
    config = tiny()
    state = init_state(build.learner(config), 0)
    ckpt = Checkpointer(tmp_path / "ckpt", keep=2, best=metric)
    for epoch, value in enumerate(values, start=1):
        ckpt.save(epoch, _stepped(state, epoch), config, metrics=None if value is None else {metric: value})
    ckpt.close()
    scored = np.array([np.nan if v is None else v for v in values])
    best = 1 + int(np.nanargmin(scored) if "mse" in metric else np.nanargmax(scored))
    assert best == 2  # the values above make an early epoch the best
    reader = Checkpointer(tmp_path / "ckpt", keep=1)  # a reader (analyze, api) needs no policy to find it
    assert reader.epochs() == [best, 5, 6] and reader.best_epoch(metric) == best
    assert int(reader.restore(state).step) == 6  # resume: the newest, not the best
    assert int(reader.restore(state, epoch=best).step) == best
    reader.close()


@pytest.mark.slow  # second check: the best checkpoint's rotation test is quick
def test_a_run_keeps_its_best_checkpoint_and_analyze_can_take_it(tmp_path):
    """A real run with keep_checkpoints=1: each checkpoint carries its epoch's test MSE as logged in
    metrics.jsonl (read back here), the lowest one is kept besides the last, and analyze_checkpoint
    picks it (the rotation past an early best is the test above)."""
    from mnist_ae.analysis.task import chosen_epoch

    tasks.train_and_evaluate(tiny(epochs=3, keep_checkpoints=1), tmp_path, log_framework="none", quiet=True)
    mse = {r["epoch"]: r["test/recon_mse"] for r in eval_records(tmp_path) if r["epoch"] > 0}
    best = min(mse, key=mse.get)
    ckpt = Checkpointer(tmp_path / "checkpoints", keep=1)
    assert ckpt.epochs() == sorted({best, 3}) and ckpt.best_epoch("test/recon_mse") == best
    for epoch in ckpt.epochs():
        assert ckpt._manager.metrics(epoch) == {"test/recon_mse": pytest.approx(mse[epoch], rel=1e-7)}
    assert chosen_epoch(ckpt, tiny(analyze_checkpoint="best")) == best
    assert chosen_epoch(ckpt, tiny(analyze_checkpoint="latest")) is None
    assert chosen_epoch(ckpt, tiny(analyze_checkpoint="3")) == 3
    with pytest.raises(ConfigError, match="no checkpoint .* saved with test/accuracy"):
        chosen_epoch(ckpt, tiny(analyze_checkpoint="best", best_checkpoint_metric="test/accuracy"))
    ckpt.close()


@pytest.mark.slow  # second check: the quick tier refuses a config that does not fit
def test_a_checkpoint_of_another_shape_is_refused_in_one_line_and_stays_where_it_is(tmp_path):
    """A latent-8 checkpoint restored into a latent-4 model (what a change of the model's code between
    versions looks like) is not damage: one line naming the leaf and both shapes, nothing set aside (damage
    still is: test_faults.py). So is a model with a leaf more or less, and a chosen epoch."""
    config = tiny()
    ckpt = Checkpointer(tmp_path / "c", keep=3)
    ckpt.save(1, init_state(build.learner(config), 0), config)
    ckpt.close()
    narrow = init_state(build.learner(tiny(latent_dim=4)), 0)
    warnings = []
    ckpt = Checkpointer(tmp_path / "c", keep=3, warn=warnings.append)
    with pytest.raises(CheckpointError, match=r"^checkpoint .*c/1 holds a state this model does not fit "
                                              r"\(params/ae/params/decoder/\S*Dense_0/kernel: saved float32\[8, 32\], "
                                              r"the model's float32\[4, 32\]\): .*nothing was moved") as refused:
        ckpt.restore(narrow)
    assert "\n" not in str(refused.value) and warnings == []
    with pytest.raises(CheckpointError, match=r"c/1 holds a state this model does not fit"):
        ckpt.restore(narrow, epoch=1)  # a chosen epoch is checked the same way
    deeper = init_state(build.learner(tiny(probe_hidden=(16, 16))), 0)  # one probe layer more: other leaves
    with pytest.raises(CheckpointError, match=r"holds a state this model does not fit \(params/probe/params/Dense_2/"
                                              r"\w+ is in the model but not saved\)"):
        ckpt.restore(deeper)
    shallow = init_state(build.learner(tiny(probe_hidden=())), 0)
    with pytest.raises(CheckpointError, match=r"\(\S*Dense_1/\w+ is saved but not in the model\)"):
        ckpt.restore(shallow)
    assert ckpt.epochs() == [1] and not (tmp_path / "c-damaged").exists() and warnings == []
    ckpt.close()
    ckpt = Checkpointer(tmp_path / "c", keep=3)  # the same checkpoint still restores into its own model
    chex.assert_trees_all_equal(ckpt.restore(init_state(build.learner(config), 1)),
                                init_state(build.learner(config), 0))
    ckpt.close()


def test_importing_the_checkpointer_writes_replicated_arrays_whole_and_says_nothing():
    """Our array handler (first replica writes, no per-device slices) replaces orbax's, and orbax's warning
    about the override, which reached stderr on every report and compare before run.log exists, is muted."""
    probe = ("import jax, orbax.checkpoint as ocp, mnist_ae.checkpoint; "
             "print(ocp.type_handlers.get_type_handler(jax.Array)._use_replica_parallel)")
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert (result.stdout, result.stderr) == ("False\n", "")


def test_muting_orbax_s_override_warning_leaves_absl_s_level_as_it_was():
    """The handler's registration raises absl's logger to ERROR only while it runs: absl's own warnings
    (and the run.log routing of them) keep the level they had."""
    import logging

    from mnist_ae import checkpoint

    absl = logging.getLogger("absl")
    before = absl.level
    try:
        for level in (logging.INFO, logging.WARNING):
            absl.setLevel(level)
            checkpoint._register_array_handler()
            assert absl.level == level
    finally:
        absl.setLevel(before)


def test_a_write_error_names_what_is_on_disk_now_not_what_the_manager_last_saw(tmp_path, monkeypatch):
    """The intact checkpoints a write error names are read again from the disk: after the folder was
    removed under the run (a cleaned scratch disk), none is called intact."""
    import errno

    import orbax.checkpoint as ocp

    state, config = {"w": np.zeros(2)}, tiny()
    checkpointer = Checkpointer(tmp_path / "ckpt", keep=5)
    checkpointer.save(1, state, config)
    checkpointer.save(2, state, config)
    checkpointer.close()
    shutil.rmtree(tmp_path / "ckpt")

    def full_disk(self, *args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "ckpt"))

    monkeypatch.setattr(ocp.CheckpointManager, "save", full_disk)
    with pytest.raises(CheckpointError, match=r"ckpt/3: No space left on device.*; no earlier checkpoint exists"):
        checkpointer.save(3, state, config)


def test_closing_closes_orbax_s_manager_and_a_failed_close_is_one_line(tmp_path, monkeypatch):
    import orbax.checkpoint as ocp

    closed = []
    checkpointer = Checkpointer(tmp_path / "ckpt", keep=2)
    checkpointer.save(1, {"w": np.zeros(2)}, tiny())
    real_close = ocp.CheckpointManager.close
    monkeypatch.setattr(ocp.CheckpointManager, "close", lambda self: closed.append(self) or real_close(self))
    checkpointer.close()
    assert closed == [checkpointer._manager]  # its threads and files: released

    failing = Checkpointer(tmp_path / "other", keep=2)
    failing.save(1, {"w": np.zeros(2)}, tiny())

    def broken(self):
        real_close(self)
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(ocp.CheckpointManager, "close", broken)
    with pytest.raises(CheckpointError, match=r"^cannot close the checkpoints in .*other: Input/output error$"):
        failing.close()
