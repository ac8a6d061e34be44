"""The Python API: a run loaded from its workdir encodes, decodes and reconstructs like the run itself."""

from __future__ import annotations

import re
from pathlib import Path

import chex
import numpy as np
import pytest

from helpers import REPO, tiny, tiny_run, tiny_sweep
from mnist_ae import api, tasks
from mnist_ae.checkpoint import CheckpointError
from mnist_ae.data import load_dataset


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    return tiny_run(tmp_path_factory, epochs=2)


def test_a_loaded_run_reconstructs_the_test_set_with_the_runs_own_error(trained):
    workdir, final = trained
    run = api.load(workdir)
    assert run.epoch == 2 and run.config.latent_dim == 8
    images = load_dataset("mnist").test_images[:512]  # tiny(): test_limit=512
    codes = run.encode(images)
    chex.assert_shape(codes, (512, 8))
    assert type(codes) is np.ndarray and codes.dtype == np.float32  # host arrays, as the README says
    recon = run.reconstruct(images)
    chex.assert_shape(recon, (512, 28, 28))
    mse = np.mean((recon - (images.astype(np.float32) / 127.5 - 1.0)) ** 2)  # numpy, not the eval path
    assert mse == pytest.approx(final["test/recon_mse"], rel=1e-5)
    chex.assert_trees_all_close(run.decode(codes[:3]), recon[:3], atol=1e-6)
    evals = [r for r in run.records if "test/recon_mse" in r]
    assert [r["epoch"] for r in evals] == [0, 1, 2]


def test_an_earlier_epoch_loads_on_request_and_a_missing_one_is_one_line(trained):
    workdir, _ = trained
    assert api.load(workdir, epoch=1).epoch == 1
    with pytest.raises(CheckpointError, match=r"no checkpoint of epoch 7 .*there are \[1, 2\]"):
        api.load(workdir, epoch=7)


@pytest.mark.slow
def test_an_exported_sweep_member_loads_as_a_run(tmp_path):
    tasks.train_sweep(tiny_sweep(epochs=1), tmp_path, "none", quiet=True)
    member = api.load(tmp_path / "members" / "latent2_seed1_lr0.01")
    assert member.config.latent_dim == 2 and member.config.seed == 1
    chex.assert_shape(member.encode(load_dataset("mnist").test_images[:5]), (5, 2))


def test_the_readme_example_runs(tmp_path, monkeypatch):
    readme = (REPO / "README.md").read_text()
    example = re.search(r"### The library\n\n```python\n(.*?)```", readme, re.S).group(1)
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(compile(example.replace("config.epochs = 1", "config.update(tiny(epochs=1))"), "README", "exec"),
         {"tiny": tiny}, namespace)
    assert namespace["final"]["test/recon_mse"] < 1.0 and (Path("runs/demo/checkpoints")).is_dir()
    assert namespace["codes"].shape == (16, 8)


def test_runs_with_equal_autoencoders_share_one_jitted_encode_and_others_do_not():
    """A sweep's members of one latent size (here: other learning rates and seeds) trace `encode` once;
    another latent size or eval batch gets its own, and the shared one computes each run's own codes."""
    from mnist_ae import build
    from mnist_ae.core.steps import encode, init_state

    base, rate, wide = (build.learner(tiny(**o)) for o in ({}, {"learning_rate": 3e-3, "seed": 5}, {"latent_dim": 5}))
    assert api._jitted(base, "encode") is api._jitted(rate, "encode")
    assert api._jitted(base, "encode") is not api._jitted(wide, "encode")
    assert api._jitted(base, "encode") is not api._jitted(build.learner(tiny(eval_batch_size=128)), "encode")
    assert api._jitted(base, "encode") is not api._jitted(base, "decode")
    images = load_dataset("mnist").test_images[:64]
    params = init_state(rate, 5).params["ae"]
    chex.assert_trees_all_close(api._jitted(base, "encode")(params, images), encode(rate, params, images), atol=1e-6)
