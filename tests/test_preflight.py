"""Refusals before any compute: a run too big for its device, a checkpoint folder it cannot write."""

from __future__ import annotations

import subprocess
import sys

import pytest

from helpers import REPO, tiny
from mnist_ae.errors import PathError, ResourceError
from mnist_ae.run import preflight


def test_the_estimate_counts_the_state_its_gradients_and_the_test_codes():
    config = tiny(latent_dim=8, test_limit=500, analyze_at_end=True)
    need = preflight.estimated_bytes(config)
    hidden = config.hidden
    widths = [784, *hidden, 8]
    ae = sum(a * b + b for a, b in zip(widths, widths[1:])) * 2 - 8 + 784  # encoder + mirrored decoder
    assert need["state"] >= 4 * 4 * ae  # parameters, Adam's two moments and the gradients, float32
    assert need["codes"] == preflight.CODES_COPIES * 500 * 8 * 4 and need["analysis"] == 3 * 500 * 8 * 4


def test_a_sweeps_estimate_is_its_stacked_state_padded_to_the_widest_code():
    import math

    import jax

    from helpers import tiny_sweep
    from mnist_ae import build

    config = tiny_sweep(test_limit=300)
    setup = build.sweep_setup(config)
    state = jax.eval_shape(lambda: setup.initial_states(config))
    size = sum(math.prod(x.shape) * x.dtype.itemsize for x in jax.tree.leaves(state))
    params = sum(math.prod(x.shape) * x.dtype.itemsize for x in jax.tree.leaves(state.params))
    need = preflight.estimated_bytes(config)
    assert need["state"] == size + params  # the state and one gradient per parameter, exactly
    assert need["codes"] == preflight.CODES_COPIES * len(setup.members) * 300 * max(config.latent_dims) * 4


def test_a_model_too_big_for_the_device_is_refused_naming_its_size(monkeypatch):
    """The issue's model (two hidden layers of 100,000) hung forever in its initialisation; its shapes
    alone say it needs ~300 GiB (2e10 parameters, 16 bytes each with the moments and gradients)."""
    config = tiny(hidden=(100_000, 100_000))
    monkeypatch.setattr(preflight, "free_bytes", lambda: (16 * 2**30, "this host"))
    with pytest.raises(ResourceError, match=r"needs about 3\d\d\.\d GiB \(state .*\) but this host has 16\.0 GiB "
                                            r"free: use smaller --config.hidden"):
        preflight.check_memory(config)
    preflight.check_memory(tiny())  # the tests' own model fits


def test_a_file_or_a_read_only_folder_for_the_checkpoints_is_refused(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "checkpoints").write_text("not a folder")
    with pytest.raises(PathError, match=r"cannot write checkpoints in .*a/checkpoints: File exists"):
        preflight.check_checkpoints_writable(tmp_path / "a")
    preflight.check_checkpoints_writable(tmp_path / "b")
    assert sorted(p.name for p in (tmp_path / "b" / "checkpoints").iterdir()) == []  # the probe is gone


def test_the_command_line_refuses_a_model_no_machine_holds_at_once(tmp_path):
    """Ten times the issue's widths: about 29 TiB, so the refusal holds on any machine this runs on."""
    result = subprocess.run([sys.executable, "launch.py", "--workdir", str(tmp_path), "--log_framework", "none",
                             "--config.hidden=1000000,1000000"], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith("error: this run needs about ") and result.stderr.count("\n") == 1
    assert not (tmp_path / "checkpoints").exists() or not any((tmp_path / "checkpoints").iterdir())


def test_free_memory_is_the_hosts_available_on_cpu_and_the_allocators_room_on_an_accelerator(monkeypatch):
    import jax
    import psutil

    class Host:  # a fixed reading: the real one moves with whatever else the machine runs meanwhile
        available = 12 * 2**30

    monkeypatch.setattr(psutil, "virtual_memory", lambda: Host())
    assert preflight.free_bytes() == (12 * 2**30, "this host")

    class Accelerator:
        platform, device_kind = "gpu", "NVIDIA H100"

        def memory_stats(self):
            return {"bytes_limit": 80 * 2**30, "bytes_in_use": 30 * 2**30}

    monkeypatch.setattr(jax, "devices", lambda: [Accelerator()])
    assert preflight.free_bytes() == (50 * 2**30, "NVIDIA H100")


def test_only_a_reconstruction_run_with_its_analysis_counts_the_analysis_copies():
    assert preflight.estimated_bytes(tiny(analyze_at_end=False))["analysis"] == 0
    assert preflight.estimated_bytes(tiny(task="classification", analyze_at_end=True)) == {
        "state": preflight.estimated_bytes(tiny(task="classification"))["state"], "codes": 0, "analysis": 0}


def test_a_run_that_exactly_fits_is_let_through_and_check_runs_both_checks(tmp_path, monkeypatch):
    config = tiny()
    need = sum(preflight.estimated_bytes(config).values())
    monkeypatch.setattr(preflight, "free_bytes", lambda: (need / preflight.HEADROOM, "this host"))
    preflight.check(config, tmp_path / "fits")  # at the limit: allowed
    monkeypatch.setattr(preflight, "free_bytes", lambda: (need / preflight.HEADROOM - 64, "this host"))
    with pytest.raises(ResourceError):
        preflight.check(config, tmp_path / "fits")
    (tmp_path / "file").mkdir()
    (tmp_path / "file" / "checkpoints").write_text("")
    with pytest.raises(PathError):  # the cheaper check first
        preflight.check(config, tmp_path / "file")


def test_codes_too_wide_for_the_host_are_refused_even_without_the_analysis(monkeypatch):
    """A run with 100,000-unit codes and no analysis was OOM-killed at 19.6 GB on a 23 GB host (the codes'
    copies, `CODES_COPIES`); on such a host it is refused, and 20,000 units are not."""
    from mnist_ae.config import base_config

    monkeypatch.setattr(preflight, "free_bytes", lambda: (22.3 * 2**30, "this host"))
    config = base_config()
    config.update(latent_dim=100_000, analyze_at_end=False)
    with pytest.raises(ResourceError, match=r"needs about 22\.\d GiB \(state 0\.3 GiB, codes 22\.\d GiB\) but this "
                                            r"host has 22\.3 GiB free: use smaller --config.hidden / latent_dim or a "
                                            r"lower --config.test_limit$"):
        preflight.check_memory(config)
    config.latent_dim = 20_000
    preflight.check_memory(config)
