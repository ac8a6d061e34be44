"""Checkpoint round trip, resume equivalence, refusal of a mismatched config, divergence handling."""

from __future__ import annotations

import json

import chex
import jax
import numpy as np
import pytest

from mnist_ae import build
from mnist_ae.core import losses
from mnist_ae.checkpoint import Checkpointer
from mnist_ae.config import ConfigError
from mnist_ae.core.steps import init_state
from mnist_ae.train import TrainingDiverged, run_training

from conftest import tiny


def test_round_trip_restores_every_leaf(tmp_path):
    config = tiny()
    state = init_state(build.learner(config), 3)
    ckpt = Checkpointer(tmp_path / "ckpt", keep=2)
    ckpt.save(1, state, config)
    ckpt.close()  # waits for the asynchronous save
    ckpt = Checkpointer(tmp_path / "ckpt", keep=2)
    chex.assert_trees_all_equal(ckpt.restore(init_state(build.learner(config), 0)), state)
    assert ckpt.saved_config()["latent_dim"] == config.latent_dim
    ckpt.close()


def _restore_final(workdir, config):
    ckpt = Checkpointer(workdir / "checkpoints", keep=3)
    state = ckpt.restore(init_state(build.learner(config), 0))
    ckpt.close()
    return state


def test_resume_gives_the_same_parameters_as_a_straight_run(tmp_path):
    straight = tiny(epochs=2)
    run_training(straight, tmp_path / "a", "none")
    run_training(tiny(epochs=1), tmp_path / "b", "none")
    resumed_metrics = run_training(tiny(epochs=2), tmp_path / "b", "none")
    a, b = _restore_final(tmp_path / "a", straight), _restore_final(tmp_path / "b", straight)
    assert int(b.epoch) == 2 and int(b.step) == int(a.step)
    chex.assert_trees_all_close(a.params, b.params, atol=1e-6)
    chex.assert_trees_all_close(a.opt_states, b.opt_states, atol=1e-6)
    evals = [r for r in map(json.loads, (tmp_path / "b" / "metrics.jsonl").read_text().splitlines())
             if "test/recon_mse" in r]
    assert [r["epoch"] for r in evals] == [0, 1, 2]  # step 0 once, then one eval per epoch
    assert evals[-1]["test/recon_mse"] == pytest.approx(resumed_metrics["test/recon_mse"])


def test_rerunning_a_finished_run_warns_and_reports_the_same_numbers(tmp_path, capsys):
    first = run_training(tiny(epochs=1), tmp_path, "none", quiet=True)
    capsys.readouterr()
    again = run_training(tiny(epochs=1), tmp_path, "none", quiet=True)
    err = capsys.readouterr().err
    assert err.count("warning:") == 1 and "already trained to epoch 1 (epochs=1)" in err and "--config.epochs" in err
    assert again["test/recon_mse"] == pytest.approx(first["test/recon_mse"], rel=1e-6)


def test_keeps_only_the_last_k_checkpoints(tmp_path):
    run_training(tiny(epochs=4, keep_checkpoints=2), tmp_path, "none")
    assert sorted(int(p.name) for p in (tmp_path / "checkpoints").iterdir() if p.name.isdigit()) == [3, 4]


def test_a_config_that_does_not_fit_the_checkpoint_is_refused(tmp_path):
    run_training(tiny(epochs=1), tmp_path, "none")
    with pytest.raises(ConfigError, match="latent_dim=8 but the config has latent_dim=4"):
        run_training(tiny(epochs=2, latent_dim=4), tmp_path, "none")


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


def test_divergence_stops_and_keeps_the_last_good_checkpoint(tmp_path, monkeypatch):
    run_training(tiny(epochs=1), tmp_path, "none")
    good = _restore_final(tmp_path, tiny())
    monkeypatch.setattr(losses, "mse", lambda recon, x: np.nan * jax.numpy.mean(recon - x))
    with pytest.raises(TrainingDiverged, match=r"in epoch 2 .*last good checkpoint \(epoch 1\)"):
        run_training(tiny(epochs=3), tmp_path, "none")
    assert Checkpointer(tmp_path / "checkpoints", keep=3).latest_epoch() == 1
    chex.assert_trees_all_equal(_restore_final(tmp_path, tiny()).params, good.params)


def test_closing_all_closes_everything_and_never_masks_the_body_error():
    from mnist_ae.train import closing_all

    class Resource:
        def __init__(self, fails: bool):
            self.fails, self.closed = fails, False

        def close(self):
            self.closed = True
            if self.fails:
                raise OSError("close failed")

    resources = [Resource(True), Resource(False)]
    with pytest.raises(TrainingDiverged, match="NaN"):
        with closing_all(*resources):
            raise TrainingDiverged("NaN in epoch 3")
    assert all(r.closed for r in resources)
    resources = [Resource(True), Resource(False)]
    with pytest.raises(OSError, match="close failed"):
        with closing_all(*resources):
            pass
    assert all(r.closed for r in resources)
